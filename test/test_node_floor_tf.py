"""pose.floor_frame: the node takes the floor from /tf at each image stamp (real node, DDS).

A rendered chair with its true pose; the floor frame is published the way a robot does
(`floor -> camera_optical_frame`, the camera's pose above the floor). The node's answer must
match the in-process pipeline given the same floor, and without a transform it must match
the pipeline without a floor and say why.
"""

from __future__ import annotations

from pathlib import Path

from geometry_msgs.msg import TransformStamped
from lifecycle_msgs.msg import Transition
from node_harness import FRAME, Harness, NodeProcess, running_node, stamp
import numpy as np
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage
from transforms3d.quaternions import mat2quat

from perception_3dinn.inference.pose import FloorPlane

pytestmark = pytest.mark.ros


@pytest.fixture(scope='module')
def node(ros_env: dict[str, str], install_prefix: Path, manifest: Path) -> NodeProcess:
    yield from running_node(ros_env, 'autostart:=false', f'model.manifest:={manifest}',
                            'smoothing.enabled:=false', 'pose.floor_frame:=floor')


@pytest.fixture(scope='module')
def scene() -> dict:
    """One rendered 320x240 frame with one chair: image, intrinsics, box, true pose."""
    from perception_3dinn.camera import CameraIntrinsics
    from perception_3dinn.skeleton import load_category
    from training.synth.videos import render_video, VideoConfig

    video = render_video(load_category('chair'), np.random.default_rng(11),
                         VideoConfig(width=320, height=240, frames=2, objects=(1, 1),
                                     voxels=False))
    i = int(np.flatnonzero(video['object_valid'])[0])
    assert video['present'][0, i]
    return {'image': video['frames'][0],
            'intr': CameraIntrinsics.from_matrix(np.asarray(video['K'], np.float64), 320, 240),
            'box': np.asarray(video['box_visible'][0, i], np.float64),
            'R': np.asarray(video['R'][0, i], np.float64),
            't': np.asarray(video['t'][0, i], np.float64)}


def offline(manifest: Path, scene: dict, floor: FloorPlane | None) -> np.ndarray:
    """Translation found by the in-process pipeline with the node's default settings."""
    from perception_3dinn.inference import load_manifest, Pipeline
    from perception_3dinn.inference.types import Box2D
    from perception_3dinn.ros.params import NodeSettings, PARAMS

    values = {p.name: p.default for p in PARAMS}
    values['smoothing.enabled'] = False
    config = NodeSettings(values).pipeline_config(load_manifest(manifest).crop_pad)
    pipe = Pipeline.from_manifest(manifest, backend='onnxruntime', config=config)
    box = Box2D(*scene['box'], class_id='chair', score=1.0)
    result = pipe.process(scene['image'], scene['intr'], [box], 0.0, floor=floor)
    pipe.close()
    assert len(result.objects) == 1
    return result.objects[0].t


def send(harness: Harness, scene: dict, t: float) -> None:
    from perception_3dinn.ros.bagdata import (
        camera_info_msg,
        Detection,
        detections_msg,
        image_msgs,
    )

    header = Header(stamp=stamp(t), frame_id=FRAME)
    harness.send_frame(t, image=image_msgs(scene['image'], header, compressed=False),
                       info=camera_info_msg(scene['intr'], header),
                       detections=detections_msg([Detection(scene['box'])], header))


def test_floor_from_tf_matches_the_pipeline_given_that_floor(
        node: NodeProcess, manifest: Path, scene: dict) -> None:
    floor = FloorPlane.from_object_pose(scene['R'], scene['t'])
    t_floor, t_none = offline(manifest, scene, floor), offline(manifest, scene, None)
    # the floor changes this chair's distance, so the comparison below can tell them apart
    assert np.linalg.norm(t_floor - t_none) > 0.01 * np.linalg.norm(t_floor)

    harness = Harness()
    try:
        pub_tf = harness.node.create_publisher(
            TFMessage, '/tf', QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        assert harness.transition(Transition.TRANSITION_CONFIGURE)
        assert harness.transition(Transition.TRANSITION_ACTIVATE)
        harness.wait_inputs_matched()
        harness.wait_for(lambda: pub_tf.get_subscription_count() > 0)

        # no transform yet: the size model alone, and the log says why
        mark = len(node.lines)
        send(harness, scene, 10.0)
        out = harness.frame_outputs(10.0)['objects'].objects
        got = np.array([out[0].pose.position.x, out[0].pose.position.y,
                        out[0].pose.position.z])
        np.testing.assert_allclose(got, t_none, rtol=1e-3, atol=1e-4)
        # the floor frame was never in TF: the node says so, and how to fix it
        harness.wait_for(lambda: "pose.floor_frame 'floor' is not in TF"
                         in node.log_since(mark))

        # the camera's pose in the floor frame at the image stamp, as a robot's TF gives it
        # (floor -> camera, the inverse of the floor's pose in the camera)
        R_fc, p_fc = scene['R'].T, -scene['R'].T @ scene['t']
        tr = TransformStamped()
        tr.header.frame_id, tr.child_frame_id = 'floor', FRAME
        tr.transform.translation.x, tr.transform.translation.y, tr.transform.translation.z = (
            float(v) for v in p_fc)
        w, x, y, z = mat2quat(R_fc)
        rot = tr.transform.rotation
        rot.x, rot.y, rot.z, rot.w = float(x), float(y), float(z), float(w)
        # /tf and the image are separate topics: under load the image can reach the node
        # before the transform published just ahead of it (the node then rightly answers
        # without the floor). Repeat with a new stamp until the transform was there in time.
        for k in range(10):
            t_k = 11.0 + k
            tr.header.stamp = stamp(t_k)
            pub_tf.publish(TFMessage(transforms=[tr]))
            send(harness, scene, t_k)
            out = harness.frame_outputs(t_k)['objects'].objects
            got = np.array([out[0].pose.position.x, out[0].pose.position.y,
                            out[0].pose.position.z])
            if not np.allclose(got, t_none, rtol=1e-4, atol=1e-5):
                break
        np.testing.assert_allclose(got, t_floor, rtol=1e-3, atol=1e-4)
        assert node.alive() and 'Traceback' not in node.log_since(0)
    finally:
        harness.close()
