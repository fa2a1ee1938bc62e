"""Bag tools: demo bag writing/reading, simulated detections, matching and evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from perception_3dinn.camera import CameraIntrinsics
from perception_3dinn.ros import bagio
from perception_3dinn.ros.bagdata import (
    DemoFrame,
    Detection,
    GroundTruthObject,
    records_from_msg,
    write_demo_bag,
)
from perception_3dinn.ros.replay import load_frames
from perception_3dinn.skeleton import load_category
from training.bag import accuracy, DetectionNoise, make_demo, match_objects, noisy_detections


def _frames(n: int = 3, seed: int = 0) -> list[DemoFrame]:
    rng = np.random.default_rng(seed)
    cat = load_category('chair')
    intr = CameraIntrinsics(120.0, 121.0, 31.5, 23.5, 64, 48)
    out = []
    for k in range(n):
        q = rng.normal(size=4)
        from scipy.spatial.transform import Rotation

        R = Rotation.from_quat(q / np.linalg.norm(q)).as_matrix()
        t = np.array([0.1 * k, 0.0, 3.0])
        alpha = rng.normal(size=cat.num_bases)
        y = cat.metric_structure(alpha) @ R.T + t
        kp = y[:, :2] / y[:, 2:] * [intr.fx, intr.fy] + [intr.cx, intr.cy]
        gt = GroundTruthObject(k + 1, R, t, alpha, kp, rng.random(cat.num_keypoints) > 0.3, y,
                               np.array([5.0, 6.0, 40.0, 44.0]))
        dets = [Detection(np.array([4.0, 5.0, 41.0, 45.0]), 'chair', 0.8, str(k + 1))]
        img = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        out.append(DemoFrame(img, intr, [gt], dets))
    return out


def test_demo_bag_round_trip(tmp_path: Path) -> None:
    frames = _frames()
    cat = load_category('chair')
    counts = write_demo_bag(frames, tmp_path / 'bag', cat, fps=10.0, compressed=False)
    assert counts == {bagio.IMAGE_TOPIC: 3, bagio.CAMERA_INFO_TOPIC: 3,
                      bagio.DETECTIONS_TOPIC: 3, bagio.GROUND_TRUTH_TOPIC: 3}
    back = load_frames(tmp_path / 'bag')
    assert [f.stamp_ns for f in back] == [1_000_000_000, 1_100_000_000, 1_200_000_000]
    for src, f in zip(frames, back):
        img = np.frombuffer(bytes(f.image.data), np.uint8).reshape(48, 64, 3)
        np.testing.assert_array_equal(img, src.image)
        np.testing.assert_allclose(np.reshape(f.camera_info.k, (3, 3)), src.intrinsics.K)
        d = f.detections.detections[0]
        assert d.id == src.detections[0].detection_id
        assert d.bbox.size_x == pytest.approx(37.0)
        gt = records_from_msg(f.ground_truth)[0]
        want = src.objects[0]
        np.testing.assert_allclose(gt.R, want.R, atol=1e-9)
        np.testing.assert_allclose(gt.t, want.t)
        np.testing.assert_allclose(gt.keypoints_2d, want.keypoints_2d, rtol=1e-6)
        np.testing.assert_allclose(gt.structure, want.structure, rtol=1e-6)
        assert gt.track_id == want.object_id and gt.detection_id == str(want.object_id)


def test_demo_bag_decodes_with_rosbags_own_types(tmp_path: Path) -> None:
    """The bag carries correct definitions: rosbags alone (no rclpy) can decode it."""
    write_demo_bag(_frames(1), tmp_path / 'bag', load_category('chair'), fps=10.0)
    store = bagio.make_typestore()
    with Reader(tmp_path / 'bag') as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        assert types[bagio.GROUND_TRUTH_TOPIC] == 'perception_3dinn_msgs/msg/ObjectStructureArray'
        for conn, _, raw in reader.messages():
            msg = store.deserialize_cdr(raw, conn.msgtype)
            if conn.topic == bagio.GROUND_TRUTH_TOPIC:
                assert msg.objects[0].category == 'chair'
            if conn.topic == bagio.COMPRESSED_TOPIC:
                assert msg.format.endswith('jpeg compressed bgr8')


def test_writer_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / 'bag').mkdir()
    with pytest.raises(FileExistsError):
        write_demo_bag(_frames(1), tmp_path / 'bag', load_category('chair'), fps=10.0)


def test_noisy_detections() -> None:
    boxes = np.array([[10.0, 10.0, 60.0, 90.0], [100.0, 20.0, 104.0, 24.0]])
    ids = np.array([5, 6])
    exact = DetectionNoise(jitter=0.0, miss_prob=0.0, false_positive_prob=0.0)
    dets = noisy_detections(boxes, ids, 200, 100, np.random.default_rng(0), exact)
    assert len(dets) == 1  # the 4 px box is below min_visible_px
    np.testing.assert_array_equal(dets[0].box, boxes[0])
    assert dets[0].detection_id == '5'
    none = DetectionNoise(miss_prob=1.0, false_positive_prob=0.0)
    assert noisy_detections(boxes, ids, 200, 100, np.random.default_rng(0), none) == []
    fp = DetectionNoise(miss_prob=1.0, false_positive_prob=1.0)
    spurious = noisy_detections(boxes, ids, 200, 100, np.random.default_rng(0), fp)
    assert len(spurious) == 1 and spurious[0].detection_id == ''
    b = spurious[0].box
    assert 0 <= b[0] < b[2] <= 200 and 0 <= b[1] < b[3] <= 100
    a = noisy_detections(boxes, ids, 200, 100, np.random.default_rng(3), DetectionNoise())
    b2 = noisy_detections(boxes, ids, 200, 100, np.random.default_rng(3), DetectionNoise())
    assert [d.box.tolist() for d in a] == [d.box.tolist() for d in b2]


def test_matching_and_accuracy_on_known_errors(tmp_path: Path) -> None:
    frames = _frames(2)
    write_demo_bag(frames, tmp_path / 'bag', load_category('chair'), fps=10.0)
    gts = [records_from_msg(f.ground_truth) for f in load_frames(tmp_path / 'bag')]
    preds = [[records_from_msg(f.ground_truth)[0]] for f in load_frames(tmp_path / 'bag')]
    # Perfect predictions.
    acc = accuracy(preds, gts)
    assert acc['matched'] == 2 and acc['recall'] == 1.0
    assert acc['rotation']['median_deg'] == pytest.approx(0.0, abs=1e-4)
    assert acc['translation_m']['median'] == pytest.approx(0.0, abs=1e-6)
    # Shift one prediction by 0.3 m and rotate it 10 degrees about its z axis.
    from scipy.spatial.transform import Rotation

    p = preds[0][0]
    p.t = p.t + np.array([0.3, 0.0, 0.0])
    p.R = p.R @ Rotation.from_euler('z', 10, degrees=True).as_matrix()
    acc = accuracy(preds, gts, (320, 240))
    errors = sorted(acc['per_object']['geodesic_deg'])
    assert errors == pytest.approx([0.0, 10.0], abs=1e-4)
    # binned: every matched object once per attribute; the shifted one's rotation error
    # is in the bins' medians
    table = acc['binned']
    for name in ('distance_m', 'box_height_px', 'truncation', 'occlusion', 'view'):
        assert sum(r['count'] for r in table[name]) == 2, name
    assert table['all']['rotation_median_deg'] == pytest.approx(5.0, abs=1e-3)
    assert max(acc['per_object']['translation_m']) == pytest.approx(0.3)
    # Without a detection id, matching falls back to box overlap.
    p.detection_id = ''
    assert len(match_objects(preds[0], gts[0])) == 1
    p.box = np.array([500.0, 500.0, 510.0, 510.0])
    assert match_objects(preds[0], gts[0]) == []


def test_make_demo_is_deterministic(tmp_path: Path) -> None:
    noise = DetectionNoise()
    for name in ('a', 'b'):
        make_demo(tmp_path / name, seed=3, frames=3, width=160, fps=10.0, compressed=True,
                  noise=noise, objects=(1, 2))
    # Compared as messages: CDR padding bytes are not initialised by the serialiser.
    a = list(bagio.read_bag(tmp_path / 'a'))
    b = list(bagio.read_bag(tmp_path / 'b'))
    assert len(a) == 15  # camera_info, detections, ground truth, /tf, image per frame
    assert a == b


@pytest.mark.parametrize('tilt_deg, height_m', [(0.0, 0.0), (1.0, 0.02)])
def test_demo_tf_gives_the_floor_the_objects_stand_on(tmp_path: Path, tilt_deg: float,
                                                      height_m: float) -> None:
    """/tf floor -> camera in the demo bag against the ground-truth objects: their frames
    have the origin on the floor and z up, so the floor they define must be the one TF
    gives, exactly without calibration error and within it with."""
    from perception_3dinn.inference.pose import FloorPlane
    from perception_3dinn.ros.convert import store_tf_message
    from perception_3dinn.tf_buffer import floor_in_camera, TransformBuffer

    make_demo(tmp_path / 'bag', seed=4, frames=3, width=160, fps=10.0, compressed=True,
              noise=DetectionNoise(), objects=(2, 2), tilt_bias_deg=tilt_deg,
              height_bias_m=height_m)
    frames = load_frames(tmp_path / 'bag')
    checked = 0
    for f in frames:
        buf = TransformBuffer()
        stored, errors = store_tf_message(buf, f.tf, static=False)
        assert stored == 1 and not errors
        tf_floor = floor_in_camera(buf, f.image.header.frame_id, 'floor', f.stamp_ns)
        for obj in records_from_msg(f.ground_truth):
            gt_floor = FloorPlane.from_object_pose(obj.R, obj.t)
            angle = np.degrees(np.arccos(np.clip(gt_floor.normal @ tf_floor.normal, -1, 1)))
            assert angle == pytest.approx(tilt_deg, abs=0.01)
            # the object's origin lies on the true floor: its height above TF's floor is
            # the calibration error (up to the tilt over the object's distance)
            tilt_m = np.radians(tilt_deg) * np.linalg.norm(obj.t)
            assert abs(tf_floor.normal @ obj.t + tf_floor.offset) <= height_m + tilt_m + 1e-4
            checked += 1
    assert checked >= 4


def test_evaluate_offline_writes_metrics(tmp_path: Path) -> None:
    from training.bag import evaluate, summary

    make_demo(tmp_path / 'bag', seed=5, frames=4, width=320, fps=10.0, compressed=True,
              noise=DetectionNoise(), objects=(1, 2))
    result = evaluate(tmp_path / 'bag', tmp_path / 'eval', offline=True, live=False,
                      start=False, rate_hz=10.0, loops=1, manifest=None,
                      backend='onnxruntime', num_threads=1, floor_frame='floor')
    metrics = json.loads((tmp_path / 'eval' / 'metrics.json').read_text())
    assert metrics['frames'] == 4 and metrics['live'] is None
    off = metrics['offline']
    assert off['frames'] == 4 and off['frame_ms']['count'] == 4
    assert off['floor_frame'] == 'floor' and off['frames_with_floor'] == 4
    assert metrics['offline_without_floor']['frames_with_floor'] == 0
    assert "floor from TF frame 'floor'" in summary(result)
    assert off['accuracy']['ground_truth_objects'] >= 4
    binned = off['accuracy']['binned']
    assert binned['all']['count'] == off['accuracy']['matched']
    assert 0.0 <= binned['all']['inside_1sigma'] <= 1.0  # the pipeline's covariance is read
    for name in ('latency.png', 'errors.png', 'annotated.mp4', 'binned_offline.png',
                 'binned_offline.md'):
        assert (tmp_path / 'eval' / name).stat().st_size > 0
    assert 'offline' in summary(result)


@pytest.mark.ros
def test_evaluate_live_through_the_node(tmp_path: Path, install_prefix: Path) -> None:
    from training.bag import evaluate

    make_demo(tmp_path / 'bag', seed=5, frames=6, width=320, fps=10.0, compressed=True,
              noise=DetectionNoise(miss_prob=0.0, false_positive_prob=0.0), objects=(1, 1))
    result = evaluate(tmp_path / 'bag', tmp_path / 'eval', offline=True, live=True,
                      start=True, rate_hz=5.0, loops=1, manifest=None,
                      backend='onnxruntime', num_threads=1, floor_frame='floor')
    live = json.loads((tmp_path / 'eval' / 'metrics.json').read_text())['live']
    assert live['frames_sent'] == 6
    assert live['frames_answered'] + live['dropped'] == 6
    assert live['frames_answered'] >= 1 and live['latency_ms']['p50'] > 0
    assert live['accuracy']['predicted_objects'] >= live['frames_answered']
    assert 'ros_overhead_ms' in result
    topics = bagio.bag_topics(tmp_path / 'eval' / 'output_bag')
    assert topics['/chair_detector/objects'][1] == live['frames_answered']
    assert topics[bagio.COMPRESSED_TOPIC][1] == 6
    assert topics['/tf'][0] == 'tf2_msgs/msg/TFMessage'
    log = (tmp_path / 'eval' / 'node.log').read_text()
    assert 'Traceback' not in log
    # the node took the floor from the replayed /tf (a discovery race may cost the first
    # warm-up frame its transform, nothing more)
    assert log.count('no floor for this image') <= 1


def test_live_replay_needs_the_objects_topic() -> None:
    from perception_3dinn.ros.replay import LiveReplay

    with pytest.raises(ValueError, match='objects'):
        LiveReplay(compressed=False, topics=('/tf', '/diagnostics'))
