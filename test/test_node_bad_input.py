"""Bad input to the real chair_detector over DDS: it warns clearly, stays up, and the next
good frame is processed correctly.

One node process for the module (autostart); tests run in file order with increasing stamps.
"""

from __future__ import annotations

import math
from pathlib import Path

from node_harness import (
    camera_info_msg,
    detections_msg,
    Harness,
    image_msg,
    NodeProcess,
    running_node,
)
import numpy as np
import pytest
from rclpy.event_handler import PublisherEventCallbacks
from rclpy.qos import QoSProfile, ReliabilityPolicy
from vision_msgs.msg import Detection2DArray

pytestmark = pytest.mark.ros


@pytest.fixture(scope='module')
def node(ros_env: dict[str, str], install_prefix: Path, manifest: Path) -> NodeProcess:
    yield from running_node(ros_env, 'autostart:=true', f'model.manifest:={manifest}',
                            'diagnostics.period_s:=0.5')


@pytest.fixture(scope='module')
def harness(node: NodeProcess) -> Harness:
    h = Harness()
    h.wait_inputs_matched()
    yield h
    h.close()


def _good_frame(harness: Harness, t: float) -> None:
    harness.send_frame(t)
    objects = harness.frame_outputs(t)['objects']
    assert len(objects.objects) == 1
    assert all(math.isfinite(v) for v in objects.objects[0].keypoints_2d)


def _expect_warning(harness: Harness, node: NodeProcess, mark: int, text: str,
                    timeout_s: float = 30.0) -> str:
    line = harness.wait_for(lambda: next(
        (ln for ln in node.lines[mark:] if text in ln), None), timeout_s)
    assert 'WARN' in line, line
    return line


def test_missing_camera_info(harness: Harness, node: NodeProcess) -> None:
    mark = len(node.lines)
    # The node's best-effort image reader may still miss the very first frames while it
    # matches this writer: resend (new stamps) until the warning comes.
    for k in range(30):
        harness.send_frame(10.0 + 0.01 * k, send_info=False)
        try:
            line = _expect_warning(harness, node, mark, 'no valid camera_info', timeout_s=2.0)
            break
        except AssertionError:
            continue
    assert '/camera/camera_info' in line
    _good_frame(harness, 11.0)


def test_nan_camera_info_is_rejected_and_the_last_valid_one_kept(harness: Harness,
                                                                  node: NodeProcess) -> None:
    mark = len(node.lines)
    harness.send_frame(12.0, info=camera_info_msg(12.0, fx=math.nan))
    _expect_warning(harness, node, mark, 'camera_info rejected')
    # The frame itself is processed with the last valid intrinsics.
    assert len(harness.frame_outputs(12.0)['objects'].objects) == 1
    _good_frame(harness, 13.0)


def test_camera_info_with_unusable_distortion_is_rejected(harness: Harness,
                                                          node: NodeProcess) -> None:
    # Three coefficients: a valid-looking message whose D OpenCV refuses in every PnP call.
    bad = camera_info_msg(13.3)
    bad.d = [0.01, 0.01, 0.01]
    mark = len(node.lines)
    harness.send_frame(13.3, info=bad)
    line = _expect_warning(harness, node, mark, '3 distortion coefficients')
    assert 'keeping the last valid camera_info' in line
    # The frame is processed with the last valid intrinsics instead of failing.
    assert len(harness.frame_outputs(13.3)['objects'].objects) == 1
    assert 'frame failed' not in node.log_since(mark)
    _good_frame(harness, 13.6)


def test_unsupported_encoding(harness: Harness, node: NodeProcess) -> None:
    mark = len(node.lines)
    harness.send_frame(14.0, image=image_msg(14.0, encoding='weird42'))
    _expect_warning(harness, node, mark, "unsupported image encoding 'weird42'")
    _good_frame(harness, 15.0)


def test_small_boxes_are_filtered_not_reported_as_bad(harness: Harness) -> None:
    # A 10 px box is below filter.min_box_size_px (16): configured filtering, like the class
    # filter, so it is not counted in total.bad.boxes (checked at the end of the module).
    dets = detections_msg(15.5, [(160.0, 110.0, 120.0, 190.0), (50.0, 50.0, 10.0, 10.0)])
    harness.send_frame(15.5, detections=dets)
    assert len(harness.frame_outputs(15.5)['objects'].objects) == 1


def test_wrong_data_length(harness: Harness, node: NodeProcess) -> None:
    bad = image_msg(16.0)
    bad.data = bytes(bad.data)[: len(bad.data) // 2]
    mark = len(node.lines)
    harness.send_frame(16.0, image=bad)
    _expect_warning(harness, node, mark, 'does not match')
    _good_frame(harness, 17.0)


def test_empty_frame_id_is_reported(harness: Harness, node: NodeProcess) -> None:
    img = image_msg(17.5)
    img.header.frame_id = ''
    mark = len(node.lines)
    harness.send_frame(17.5, image=img)
    line = _expect_warning(harness, node, mark, 'empty header.frame_id')
    assert 'output.camera_frame' in line
    # Still answered (the stamp is kept), with the empty frame it came with.
    assert harness.frame_outputs(17.5)['objects'].header.frame_id == ''
    _good_frame(harness, 17.7)


def test_empty_out_of_image_and_nan_boxes(harness: Harness, node: NodeProcess) -> None:
    boxes = [(50.0, 50.0, 0.0, 0.0), (5000.0, 5000.0, 40.0, 40.0), (math.nan, 10.0, 5.0, 5.0),
             (160.0, 110.0, 120.0, 190.0)]
    dets = detections_msg(18.0, boxes)
    dets.detections[3].results[0].hypothesis.score = math.nan  # a good box, a broken score
    mark = len(node.lines)
    harness.send_frame(18.0, detections=dets)
    line = _expect_warning(harness, node, mark, 'detection boxes skipped')
    assert 'non-finite' in line and 'outside the image' in line
    assert '#3: invalid detector score nan' in line
    # The frame is still answered, with no objects.
    assert harness.frame_outputs(18.0)['objects'].objects == []
    _good_frame(harness, 19.0)


def test_duplicate_and_backward_stamps_are_dropped(harness: Harness,
                                                   node: NodeProcess) -> None:
    mark = len(node.lines)
    harness.pub_image.publish(image_msg(19.0))  # the stamp of the last good frame
    _expect_warning(harness, node, mark, 'is duplicate')
    harness.pub_image.publish(image_msg(18.5))
    _expect_warning(harness, node, mark, 'is out of order')
    _good_frame(harness, 20.0)
    assert len(harness.with_stamp('objects', 18.5)) == 0
    assert len(harness.with_stamp('objects', 19.0)) == 1


def test_backward_clock_jump_resets_and_continues(harness: Harness, node: NodeProcess) -> None:
    before = harness.with_stamp('objects', 20.0)[0].objects[0].track_id
    mark = len(node.lines)
    _good_frame(harness, 2.0)  # a bag loop: far back in time
    _expect_warning(harness, node, mark, 'jumped back')
    after = harness.with_stamp('objects', 2.0)[0].objects[0].track_id
    assert after != before  # tracks were reset: a new track
    _good_frame(harness, 2.1)


def test_best_effort_publisher_on_reliable_detections(harness: Harness,
                                                      node: NodeProcess) -> None:
    mark = len(node.lines)
    best_effort = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
    # This side's own warning about the mismatch is not under test: silence it.
    quiet = PublisherEventCallbacks(incompatible_qos=lambda info: None)
    pub = harness.node.create_publisher(Detection2DArray, '/detections', best_effort,
                                        event_callbacks=quiet)
    line = _expect_warning(harness, node, mark, 'incompatible QoS on /detections')
    assert 'input.detections_qos_reliability' in line and 'RELIABILITY' in line.upper()
    harness.node.destroy_publisher(pub)
    _good_frame(harness, 3.0)


def test_node_is_alive_and_counted_the_bad_inputs(harness: Harness,
                                                  node: NodeProcess) -> None:
    assert node.alive()

    # Only /diagnostics published after every earlier test finished count (the one in flight
    # when this test starts may predate the last events): skip the first that arrives.
    mark = len(harness.received['diagnostics'])

    def counters() -> dict | None:
        fresh = harness.received['diagnostics'][mark + 1:]
        if not fresh:
            return None
        values = {kv.key: float(kv.value) for kv in fresh[-1].status[0].values
                  if kv.key.startswith('total.')}
        return values if values.get('total.processed', 0) >= 10 else None

    values = harness.wait_for(counters)
    assert values['total.bad.image'] == 2
    assert values['total.bad.camera_info'] == 2
    assert values['total.bad.boxes'] == 4
    assert values['total.bad.frame_id'] == 1
    assert values['total.dropped.duplicate'] == 1
    assert values['total.dropped.out_of_order'] == 1
    assert values['total.clock_jumps'] >= 1
    assert values['total.qos_incompatible'] >= 1
    assert 'Traceback' not in node.log_since(0)
    assert np.isfinite(values['total.objects'])
