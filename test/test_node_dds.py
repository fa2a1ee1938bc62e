"""The real chair_detector executable over real DDS: lifecycle and one frame end to end.

One node process for the module (started unconfigured, autostart false); the tests run in
file order and walk it through its lifecycle with the lifecycle_msgs services.
"""

from __future__ import annotations

import json
from pathlib import Path

from lifecycle_msgs.msg import Transition
from node_harness import (
    FRAME,
    Harness,
    HEIGHT,
    NodeProcess,
    running_node,
    WIDTH,
)
import numpy as np
import pytest

from perception_3dinn.skeleton import load_category
from perception_3dinn.voxels import grid_for_dimensions

pytestmark = pytest.mark.ros


@pytest.fixture(scope='module')
def node(ros_env: dict[str, str], install_prefix: Path, manifest: Path) -> NodeProcess:
    yield from running_node(ros_env, 'autostart:=false', f'model.manifest:={manifest}',
                            'diagnostics.period_s:=0.5')


@pytest.fixture(scope='module')
def harness(node: NodeProcess) -> Harness:
    h = Harness()
    yield h
    h.close()


def test_starts_unconfigured(harness: Harness, node: NodeProcess) -> None:
    assert harness.state() == 'unconfigured'
    assert node.alive()


def test_bad_parameter_is_refused_with_its_reason(harness: Harness) -> None:
    result = harness.set_parameter('input.sync_slop_s', 7.0)
    assert not result.successful and 'sync_slop_s' in result.reason
    result = harness.set_parameter('model.backend', 'caffe')
    assert not result.successful and 'onnxruntime' in result.reason
    assert harness.set_parameter('input.sync_slop_s', 0.01).successful


def test_configure_and_activate(harness: Harness, node: NodeProcess) -> None:
    assert harness.transition(Transition.TRANSITION_CONFIGURE)
    assert harness.state() == 'inactive'
    # Publishers exist once configured; inputs are subscribed only when active.
    harness.wait_for(lambda: harness.subs['objects'].get_publisher_count() > 0)
    assert harness.pub_image.get_subscription_count() == 0
    assert harness.transition(Transition.TRANSITION_ACTIVATE)
    assert harness.state() == 'active'
    harness.wait_inputs_matched()
    info = harness.wait_for(lambda: harness.received['skeleton'])[0]
    chair = load_category('chair')
    assert info.category == 'chair'
    assert tuple(info.keypoint_names) == chair.keypoint_names
    assert list(info.edges) == chair.edges.reshape(-1).tolist()
    assert info.num_structure_params == chair.num_bases


def test_one_frame_gives_every_output_with_its_stamp(harness: Harness) -> None:
    t, out = harness.first_frame(100.25, ('objects', 'markers', 'tf', 'voxels',
                                          'detections3d'))
    objects = out['objects']
    assert objects.header.frame_id == FRAME
    assert len(objects.objects) == 1
    obj = objects.objects[0]
    assert obj.category == 'chair' and obj.track_id > 0
    assert obj.child_frame_id == f'chair_{obj.track_id}'
    assert obj.detection_id == '1'
    n = load_category('chair').num_keypoints
    assert len(obj.keypoints_2d) == 2 * n and len(obj.keypoints_3d) == n
    assert len(obj.keypoint_confidences) == n
    assert np.allclose(obj.box, [100.0, 15.0, 220.0, 205.0])
    tf = out['tf'].transforms[0]
    assert tf.header.frame_id == FRAME and tf.child_frame_id == obj.child_frame_id
    assert tf.transform.translation.z == pytest.approx(obj.pose.position.z)
    grid = out['voxels'].grids[0]
    assert grid.header.frame_id == obj.child_frame_id and grid.track_id == obj.track_id
    assert len(grid.data) == grid.size_x * grid.size_y * grid.size_z > 0
    det = out['detections3d'].detections[0]
    assert det.results[0].hypothesis.class_id == 'chair'
    # the pose covariance: the same in both messages, symmetric, positive definite, and its
    # range standard deviation a plausible fraction of the distance
    cov = np.array(det.results[0].pose.covariance).reshape(6, 6)
    np.testing.assert_array_equal(cov, np.array(obj.pose_covariance).reshape(6, 6))
    np.testing.assert_allclose(cov, cov.T)
    assert np.all(np.linalg.eigvalsh(cov) > 0)
    p = obj.pose.position
    t_obj = np.array([p.x, p.y, p.z])
    u = t_obj / np.linalg.norm(t_obj)
    assert 0.005 < np.sqrt(u @ cov[:3, :3] @ u) / np.linalg.norm(t_obj) < 2.0
    namespaces = {m.ns for m in out['markers'].markers}
    assert {'skeleton', 'keypoints', 'labels'} <= namespaces
    assert all(m.header.frame_id == FRAME for m in out['markers'].markers)


def test_track_keeps_its_id_over_frames(harness: Harness) -> None:
    first = harness.received['objects'][-1].objects[0].track_id
    # within the track's max_age_s (1 s) of the first frame even if the busy node drops the
    # frames in between (latest wins)
    stamps = [100.25 + 0.2 * k for k in range(1, 4)]
    for t in stamps:
        harness.send_frame(t)
    last = harness.frame_outputs(stamps[-1])['objects'].objects[0]
    assert last.track_id == first


def test_diagnostics_report_backend_and_counts(harness: Harness) -> None:
    def latest_processed() -> dict | None:
        for arr in reversed(harness.received['diagnostics']):
            values = {kv.key: kv.value for kv in arr.status[0].values}
            if float(values.get('total.processed', 0)) >= 1:
                return values
        return None

    values = harness.wait_for(latest_processed)
    assert values['backend'] == 'onnxruntime/cpu'
    assert float(values['latency_ms.p50']) > 0
    # the poses go out before the voxels, 3D detections and markers (all subscribed here)
    assert float(values['latency_all_ms.p50']) > float(values['latency_ms.p50'])
    # the per-frame breakdown of the node's own work (ROS overhead = processing - pipeline)
    parts = [float(values[f'{k}_ms.p50']) for k in ('image', 'pipeline', 'build', 'publish')]
    assert all(p >= 0 for p in parts)
    assert sum(parts) <= float(values['processing_ms.p50']) * 1.5 + 1.0


def test_deactivate_unsubscribes_and_reactivation_works(harness: Harness) -> None:
    assert harness.transition(Transition.TRANSITION_DEACTIVATE)
    assert harness.state() == 'inactive'
    harness.wait_for(lambda: harness.pub_image.get_subscription_count() == 0)
    assert harness.transition(Transition.TRANSITION_CLEANUP)
    assert harness.state() == 'unconfigured'
    harness.wait_for(lambda: harness.subs['objects'].get_publisher_count() == 0)
    assert harness.transition(Transition.TRANSITION_CONFIGURE)
    assert harness.transition(Transition.TRANSITION_ACTIVATE)
    harness.wait_inputs_matched()
    # A fresh start: stamps need not continue the earlier ones.
    _, out = harness.first_frame(50.0)
    assert len(out['objects'].objects) == 1


def test_configure_fails_cleanly_on_a_missing_model(harness: Harness,
                                                    node: NodeProcess) -> None:
    assert harness.transition(Transition.TRANSITION_DEACTIVATE)
    assert harness.transition(Transition.TRANSITION_CLEANUP)
    assert harness.set_parameter('model.manifest', '/nonexistent/manifest.json').successful
    mark = len(node.lines)
    assert not harness.transition(Transition.TRANSITION_CONFIGURE)
    assert harness.state() == 'unconfigured'
    harness.wait_for(lambda: 'does not exist' in node.log_since(mark))
    assert 'Traceback' not in node.log_since(0)
    assert node.alive()


def test_configure_refuses_a_missing_shape_graph_unless_skeleton(
        harness: Harness, node: NodeProcess, manifest: Path, tmp_path: Path) -> None:
    # A manifest naming a shape graph that is not there: refused at configure with the file
    # named (voxel_source learned), a warning and skeleton voxels with voxel_source skeleton.
    assert harness.state() == 'unconfigured'
    data = json.loads(manifest.read_text())
    data['onnx']['file'] = str((manifest.parent / data['onnx']['file']).resolve())
    s, k = data['input']['shape'][2], data['num_bases']
    res, origin = grid_for_dimensions(load_category(data['category']).dimensions_m, 32)
    data['shape'] = {'file': 'shape.onnx', 'sha256': '0' * 64, 'opset': 18,
                     'inputs': {'image': ['B', 3, s, s], 'structure': ['B', k]},
                     'outputs': {'occupancy': ['B', 32, 32, 32]},
                     'grid': {'size': 32, 'resolution': res, 'origin': origin.tolist()},
                     'threshold': 0.5}
    bad = tmp_path / 'manifest.json'
    bad.write_text(json.dumps(data))
    assert harness.set_parameter('model.manifest', str(bad)).successful
    mark = len(node.lines)
    assert not harness.transition(Transition.TRANSITION_CONFIGURE)
    assert harness.state() == 'unconfigured'
    harness.wait_for(lambda: 'shape.onnx does not exist' in node.log_since(mark))
    assert harness.set_parameter('output.voxel_source', 'skeleton').successful
    mark = len(node.lines)
    assert harness.transition(Transition.TRANSITION_CONFIGURE)
    assert harness.transition(Transition.TRANSITION_ACTIVATE)
    harness.wait_for(lambda: 'publishing skeleton voxels' in node.log_since(mark))
    assert harness.transition(Transition.TRANSITION_DEACTIVATE)
    assert harness.transition(Transition.TRANSITION_CLEANUP)
    assert harness.set_parameter('output.voxel_source', 'learned').successful
    assert 'Traceback' not in node.log_since(0)
    assert node.alive()


def test_no_detector_mode_after_reconfiguring(harness: Harness, manifest: Path) -> None:
    # Parameters set while unconfigured take effect at the next configure.
    assert harness.state() == 'unconfigured'
    assert harness.set_parameter('model.manifest', str(manifest)).successful
    assert harness.set_parameter('input.use_detections', False).successful
    assert harness.set_parameter('input.no_detector_box', 'full').successful
    assert harness.transition(Transition.TRANSITION_CONFIGURE)
    assert harness.transition(Transition.TRANSITION_ACTIVATE)
    harness.wait_inputs_matched(use_detections=False)
    harness.wait_for(lambda: harness.pub_det.get_subscription_count() == 0)
    _, out = harness.first_frame(300.0)
    objects = out['objects'].objects
    assert len(objects) == 1
    assert np.allclose(objects[0].box, [0.0, 0.0, WIDTH - 1.0, HEIGHT - 1.0])
    assert objects[0].detection_id == ''


def test_floor_plane_is_validated_at_configure(harness: Harness, node: NodeProcess) -> None:
    assert harness.transition(Transition.TRANSITION_DEACTIVATE)
    assert harness.transition(Transition.TRANSITION_CLEANUP)
    # a list of the wrong length is refused when set; a plane below the camera at configure
    result = harness.set_parameter('pose.floor_plane', [0.0, -1.0, 0.0])
    assert not result.successful and 'floor_plane' in result.reason
    assert harness.set_parameter('pose.floor_plane', [0.0, -1.0, 0.0, -1.2]).successful
    mark = len(node.lines)
    assert not harness.transition(Transition.TRANSITION_CONFIGURE)
    harness.wait_for(lambda: 'pose.floor_plane' in node.log_since(mark))
    assert 'above the floor' in node.log_since(mark) and node.alive()
    # camera 1.2 m above a level floor (optical frame: y down, so the up normal is -y)
    assert harness.set_parameter('pose.floor_plane', [0.0, -1.0, 0.0, 1.2]).successful
    assert harness.transition(Transition.TRANSITION_CONFIGURE)
    assert harness.transition(Transition.TRANSITION_ACTIVATE)
    harness.wait_inputs_matched(use_detections=False)
    _, out = harness.first_frame(400.0)
    assert len(out['objects'].objects) == 1
    assert 'Traceback' not in node.log_since(0)
