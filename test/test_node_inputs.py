"""Input checks of the node (perception_3dinn.ros.inputs, camera plausibility, stamp guard,
near-miss pairing, image-loss monitor), built in-process. References are independent: OpenCV's
own projection and rotated-rectangle corners, Pillow's encoder, float64 by hand.
"""

from __future__ import annotations

import io
import math

import cv2
import numpy as np
from PIL import Image as PILImage
import pytest
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

from perception_3dinn.camera import CameraIntrinsics
from perception_3dinn.ros import inputs
from perception_3dinn.ros.diagnostics import ImageLossMonitor
from perception_3dinn.ros.sync import StampGuard, StampPairer

S = 1_000_000_000


def _info(k: list[float] | None = None, d: list[float] | None = None,
          model: str = 'plumb_bob', size: tuple[int, int] = (640, 480)) -> CameraInfo:
    msg = CameraInfo(width=size[0], height=size[1], distortion_model=model)
    msg.k = k or [600.0, 0.0, 319.5, 0.0, 600.0, 239.5, 0.0, 0.0, 1.0]
    msg.d = d if d is not None else [0.0] * 5
    return msg


# Calibrations of real cameras of the kinds robots carry (plumb_bob and rational_polynomial,
# as camera_calibration writes them): all must pass.
REAL = [
    ([615.4, 0.0, 326.1, 0.0, 615.7, 240.9, 0.0, 0.0, 1.0], [0.0] * 5, (640, 480)),
    ([1380.0, 0.0, 962.0, 0.0, 1380.0, 546.0, 0.0, 0.0, 1.0],
     [0.11, -0.23, 0.001, -0.002, 0.09], (1920, 1080)),
    ([380.2, 0.0, 318.0, 0.0, 380.9, 236.5, 0.0, 0.0, 1.0],
     [-0.31, 0.09, 0.0006, -0.0004, -0.011], (640, 480)),
    ([520.0, 0.0, 331.0, 0.0, 521.0, 242.0, 0.0, 0.0, 1.0],
     [2.1, 0.8, 0.0, 0.0, 0.02, 2.4, 1.5, 0.11], (640, 480)),
]


@pytest.mark.parametrize('k,d,size', REAL)
def test_real_calibrations_pass(k: list[float], d: list[float], size: tuple[int, int]) -> None:
    model = 'rational_polynomial' if len(d) == 8 else 'plumb_bob'
    intr = inputs.camera_info_to_intrinsics(_info(k, d, model, size))
    assert (intr.fx, intr.cy) == (k[0], k[5])


@pytest.mark.parametrize('change,words', [
    (dict(k=[1e-9, 0, 320, 0, 1e-9, 240, 0, 0, 1]), 'field of view'),
    (dict(k=[1e12, 0, 320, 0, 1e12, 240, 0, 0, 1]), 'field of view'),
    (dict(k=[300, 0, 320, 0, 700, 240, 0, 0, 1.0]), 'fy / fx'),
    (dict(k=[600, 0, -1e6, 0, 600, 240, 0, 0, 1]), 'principal point'),
    (dict(d=[1e30, 0, 0, 0, 0]), 'larger than'),
    (dict(d=[-2.0, 0, 0, 0, 0]), 'cannot be inverted'),
    (dict(k=[600, 0, 320, 0, 600, 240, 0, 0, 2.0]), 'no pinhole camera matrix'),
    (dict(k=[600, 0, 320, 1.0, 600, 240, 0, 0, 1]), 'no pinhole camera matrix'),
    (dict(k=[600, 30, 320, 0, 600, 240, 0, 0, 1]), 'skew'),
    (dict(d=[0.1, 0.0, 0.0, 0.0], model='equidistant'), "'equidistant' with non-zero D"),
    (dict(size=(20000, 20000), k=[2e4, 0, 1e4, 0, 2e4, 1e4, 0, 0, 1]), 'max_image_pixels'),
])
def test_implausible_camera_info_is_refused(change: dict, words: str) -> None:
    with pytest.raises(inputs.InputError, match=words):
        inputs.camera_info_to_intrinsics(_info(**change))


def test_ignored_fields_are_noted_not_dropped_silently() -> None:
    notes: inputs.Notes = []
    intr = inputs.camera_info_to_intrinsics(
        _info(k=[600, 0.5, 320, 0, 600, 240, 0, 0, 1], d=[0.0] * 4, model='mystery'), notes)
    assert intr.distortion == ()
    assert [kind for kind, _ in notes] == ['skew', 'distortion_model']


def test_distortion_round_trip_matches_opencv_projection() -> None:
    """A plausible distortion: the points the check undistorts project back through OpenCV
    (an independent forward model, evaluated here in float64 by hand too)."""
    d = (-0.31, 0.09, 0.0006, -0.0004, -0.011)
    intr = CameraIntrinsics(380.2, 380.9, 318.0, 236.5, 640, 480, d).check_plausible()
    assert intr._distortion_round_trip_px() < 1e-6
    x, y = 0.4, -0.3  # a ray; OpenCV's projection against plumb_bob written out
    k1, k2, p1, p2, k3 = d
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    px, _ = cv2.projectPoints(np.array([[x, y, 1.0]]), np.zeros(3), np.zeros(3), intr.K,
                              intr.dist_coeffs)
    np.testing.assert_allclose(px.reshape(2), [380.2 * xd + 318.0, 380.9 * yd + 236.5],
                               atol=1e-9)


def _compressed(fmt: str, pil_format: str, size: tuple[int, int] = (64, 48)) -> CompressedImage:
    buf = io.BytesIO()
    PILImage.new('RGB', size, (10, 200, 30)).save(buf, format=pil_format)
    return CompressedImage(format=fmt, data=buf.getvalue())


def test_compressed_codec_comes_from_the_data() -> None:
    notes: inputs.Notes = []
    rgb = inputs.image_to_rgb(_compressed('jpeg', 'PNG'), (64, 48), notes=notes)
    assert rgb.shape == (48, 64, 3) and tuple(rgb[0, 0]) == (10, 200, 30)
    assert notes and notes[0][0] == 'format' and 'png' in notes[0][1]
    for fmt in ('png', 'rgb8; png compressed bgr8', 'PNG'):
        notes = []
        inputs.image_to_rgb(_compressed(fmt, 'PNG'), (64, 48), notes=notes)
        assert notes == [], fmt
    with pytest.raises(inputs.InputError, match='BMP') as err:
        inputs.image_to_rgb(_compressed('jpeg', 'BMP'), (64, 48))
    assert err.value.kind == 'format'


def test_image_size_is_checked_before_decoding() -> None:
    with pytest.raises(inputs.InputError, match='camera_info says 640x480') as err:
        inputs.image_to_rgb(_compressed('jpeg', 'JPEG', (641, 480)), (640, 480))
    assert err.value.kind == 'size'
    with pytest.raises(inputs.InputError, match='max_image_pixels') as err:
        inputs.image_to_rgb(_compressed('png', 'PNG', (101, 100)), None, max_pixels=10000)
    assert err.value.kind == 'too_large'


def test_raw_data_must_be_exactly_step_times_height() -> None:
    rgb = np.zeros((4, 5, 3), np.uint8)
    msg = Image(height=4, width=5, encoding='rgb8', step=15, data=rgb.tobytes() + b'\0' * 15)
    with pytest.raises(inputs.InputError, match='exactly') as err:
        inputs.image_to_rgb(msg)
    assert err.value.kind == 'length'
    msg.data = rgb.tobytes()
    assert inputs.image_to_rgb(msg).shape == (4, 5, 3)


def test_big_endian_mono16_is_converted() -> None:
    values = np.array([[0, 256, 65535]], np.uint16)
    msg = Image(height=1, width=3, encoding='mono16', step=6, is_bigendian=True,
                data=values.astype('>u2').tobytes())
    out = inputs.image_to_rgb(msg)
    assert out.shape == (1, 3, 3) and out[0, 2, 0] == 255 and out[0, 0, 0] == 0


def _detection(scores: list[float], theta: float = 0.0) -> Detection2DArray:
    det = Detection2D(id='1')
    det.bbox.center.position.x, det.bbox.center.position.y = 100.0, 80.0
    det.bbox.center.theta = theta
    det.bbox.size_x, det.bbox.size_y = 40.0, 20.0
    for k, s in enumerate(scores):
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id, hyp.hypothesis.score = f'c{k}', s
        det.results.append(hyp)
    return Detection2DArray(detections=[det])


def test_hypotheses_are_order_independent_and_invalid_ones_noted() -> None:
    a_notes: inputs.Notes = []
    b_notes: inputs.Notes = []
    (a,) = inputs.detections_to_boxes(_detection([math.nan, 0.9]), a_notes)
    (b,) = inputs.detections_to_boxes(_detection([0.9, math.nan]), b_notes)
    assert a.score == b.score == 0.9
    assert len(a_notes) == len(b_notes) == 1 and a_notes[0][0] == 'hypothesis'
    for bad in (7.0, math.inf, -5.0, -math.inf):
        notes: inputs.Notes = []
        (box,) = inputs.detections_to_boxes(_detection([bad]), notes)
        assert not 0.0 <= box.score <= 1.0 and notes[0][0] == 'hypothesis'


@pytest.mark.parametrize('theta', [0.3, -1.1, math.pi / 2, 2.5])
def test_rotated_box_becomes_its_axis_aligned_hull(theta: float) -> None:
    notes: inputs.Notes = []
    (box,) = inputs.detections_to_boxes(_detection([0.9], theta), notes)
    corners = cv2.boxPoints(((100.0, 80.0), (40.0, 20.0), math.degrees(theta)))
    np.testing.assert_allclose(box.as_array(), [*corners.min(axis=0), *corners.max(axis=0)],
                               atol=1e-3)
    assert notes[0][0] == 'rotated'


def test_stamps_and_frame_ids() -> None:
    from builtin_interfaces.msg import Time

    assert inputs.header_stamp_ns(Time(sec=3, nanosec=5)) == 3 * S + 5
    for bad in (Time(sec=3, nanosec=1_500_000_000), Time(sec=-5, nanosec=0)):
        with pytest.raises(inputs.InputError, match='not a valid time'):
            inputs.header_stamp_ns(bad)
    for good in ('camera_optical_frame', 'robot1/camera_link', 'cam-0.optical', ''):
        assert inputs.frame_id_problem(good) is None, good
    for bad in ('c' * 10240, 'kamera_\u00fc', 'camera optical', '/camera', 'cam\n'):
        assert inputs.frame_id_problem(bad) is not None, bad


def test_stamp_far_ahead_is_dropped_until_confirmed() -> None:
    g = StampGuard(jump_threshold_ns=S, max_ahead_ns=600 * S, confirm=3)
    assert g.check(10 * S) == 'ok'
    assert g.check(10 * S + 10 ** 6 * S) == 'ahead'
    assert g.check(11 * S) == 'ok'  # normal frames go on, no jump back
    assert [g.check(10 ** 7 * S + k * S) for k in range(3)] == ['ahead', 'ahead', 'jump_ahead']
    assert g.check(10 ** 7 * S + 3 * S) == 'ok'
    # Not increasing: no confirmation.
    g.reset()
    g.check(0)
    assert [g.check(s * S) for s in (5000, 4000, 3000)] == ['ahead'] * 3
    assert StampGuard(S, 0).check(10 ** 9 * S) == 'ok'


def test_near_miss_is_counted_when_the_image_is_dropped() -> None:
    p = StampPairer(slop_ns=20 * 10 ** 6)
    p.add_detections(1040 * 10 ** 6, 'd-off')
    p.add_image(1000 * 10 ** 6, 'img')  # 40 ms off: no pair
    p.add_detections(2000 * 10 ** 6, 'd')
    assert p.add_image(2000 * 10 ** 6, 'img2') == (2000 * 10 ** 6, 'img2', 'd')
    assert p.stats.near_misses == 1 and p.stats.last_near_miss_ns == 40 * 10 ** 6
    assert p.stats.unmatched == 2
    # Far apart is plain unmatched, not a near miss.
    p.add_image(5000 * 10 ** 6, 'lonely')
    p.add_detections(9000 * 10 ** 6, 'late')
    p.add_image(9000 * 10 ** 6, 'img3')
    assert p.stats.near_misses == 1


def test_image_loss_monitor() -> None:
    m = ImageLossMonitor(window_s=5.0, min_messages=20, max_loss=0.05)
    assert m.update(0.0, 0, 0, 0) is None
    assert m.update(5.0, 100, 100, 100) is None  # nothing lost
    message = m.update(10.0, 180, 200, 200)  # 20 % of the last 100 lost
    assert message and '20% lost' in message and 'fastdds_large_images.xml' in message
    m.reset()
    m.update(0.0, 0, 0, 0)
    assert m.update(1.0, 0, 10, 10) is None  # too few to tell
