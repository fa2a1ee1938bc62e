"""Malformed inputs of the node, one builder per class, for the fuzz tests and bench_fuzz.

Each class makes the messages of one frame (image, camera_info, detections) at a stamp, of
which one part is broken in a known way, and says what the node must do with it: `counter`
is the /diagnostics total that must grow (the input is refused or noted), and `answered`
says whether the frame must still be answered with objects (the bad part was replaced by the
last valid one or ignored). Seeded: the same seed makes the same messages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
import math
from typing import Any

from node_harness import (
    camera_info_msg,
    chair_image,
    detections_msg,
    FRAME,
    HEIGHT,
    image_msg,
    stamp,
    WIDTH,
)
import numpy as np
from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import Detection2DArray, ObjectHypothesisWithPose


@dataclass
class Frame:
    """The messages of one frame; None: not sent."""

    t: float
    image: Image | None
    info: CameraInfo | None
    detections: Detection2DArray | None


@dataclass(frozen=True)
class FuzzClass:
    """One class of malformed input: how to make it and what the node must do."""

    name: str
    make: Callable[[float, np.random.Generator], Frame]
    counter: str  # total.<counter> grows
    answered: bool  # the frame is still answered with an object in front of the camera
    counted_at_next_pair: bool = False  # counted only once the next frame pairs


def good(t: float) -> Frame:
    return Frame(t, image_msg(t), camera_info_msg(t), detections_msg(t))


def _changed(part: str, change: Callable[[Any], None]) -> Callable[..., Frame]:
    """A good frame whose `part` ('image', 'info' or 'detections') `change` breaks."""
    def make(t: float, rng: np.random.Generator) -> Frame:
        f = good(t)
        change(getattr(f, part))
        return f
    return make


def _with_info(change: Callable[[CameraInfo], None]) -> Callable[..., Frame]:
    return _changed('info', change)


def _with_image(change: Callable[[Image], None]) -> Callable[..., Frame]:
    return _changed('image', change)


def _with_detections(change: Callable[[Detection2DArray], None]) -> Callable[..., Frame]:
    return _changed('detections', change)


def _set_k(**entries: float) -> Callable[[CameraInfo], None]:
    index = {'fx': 0, 'skew': 1, 'cx': 2, 'k10': 3, 'fy': 4, 'cy': 5, 'k20': 6, 'k21': 7,
             'k22': 8}

    def change(info: CameraInfo) -> None:
        k = list(info.k)
        for name, value in entries.items():
            k[index[name]] = value
        info.k = k
    return change


def _set_d(d: list[float], model: str = 'plumb_bob') -> Callable[[CameraInfo], None]:
    def change(info: CameraInfo) -> None:
        info.d, info.distortion_model = d, model
    return change


def _scores(*scores: float) -> Callable[[Detection2DArray], None]:
    def change(dets: Detection2DArray) -> None:
        det = dets.detections[0]
        det.results = []
        for s in scores:
            hyp = ObjectHypothesisWithPose()
            hyp.hypothesis.class_id, hyp.hypothesis.score = 'chair', s
            det.results.append(hyp)
    return change


def _theta(theta: float) -> Callable[[Detection2DArray], None]:
    def change(dets: Detection2DArray) -> None:
        dets.detections[0].bbox.center.theta = theta
    return change


def _frame_id(frame_id: str) -> Callable[[Image], None]:
    def change(img: Image) -> None:
        img.header.frame_id = frame_id
    return change


def _longer_data(img: Image) -> None:
    img.data = bytes(img.data) + bytes(img.step)


def _nanosec(img: Image) -> None:
    img.header.stamp.nanosec = 1_500_000_000


def _negative_sec(img: Image) -> None:
    img.header.stamp.sec = -5


def _future(t: float, rng: np.random.Generator) -> Frame:
    f = good(t)
    f.image.header.stamp = stamp(t + 1e6)
    f.detections.header.stamp = stamp(t + 1e6)
    return f


def _detections_off(t: float, rng: np.random.Generator) -> Frame:
    f = good(t)
    f.detections.header.stamp = stamp(t + 0.04)
    return f


def _oversized_info(info: CameraInfo) -> None:
    # A consistent, plausible calibration of a 20000 x 20000 camera: over max_image_pixels.
    info.width, info.height = 20000, 20000
    info.k = [20000.0, 0.0, 9999.5, 0.0, 20000.0, 9999.5, 0.0, 0.0, 1.0]


# Classes of the second outside fuzz run (issue 22) and of the hardening issue (20).
CLASSES: tuple[FuzzClass, ...] = (
    FuzzClass('camera_info fx = fy = 1e-9', _with_info(_set_k(fx=1e-9, fy=1e-9)),
              'bad.camera_info', True),
    FuzzClass('camera_info fx = fy = 1e12', _with_info(_set_k(fx=1e12, fy=1e12)),
              'bad.camera_info', True),
    FuzzClass('camera_info fy = 100 fx', _with_info(_set_k(fy=28000.0)), 'bad.camera_info',
              True),
    FuzzClass('camera_info cx = -1e6', _with_info(_set_k(cx=-1e6)), 'bad.camera_info', True),
    FuzzClass('camera_info D = 1e30', _with_info(_set_d([1e30, 0.0, 0.0, 0.0, 0.0])),
              'bad.camera_info', True),
    FuzzClass('camera_info D not invertible', _with_info(_set_d([-2.0, 0.0, 0.0, 0.0, 0.0])),
              'bad.camera_info', True),
    FuzzClass('camera_info K[2][2] = 2', _with_info(_set_k(k22=2.0)), 'bad.camera_info', True),
    FuzzClass('camera_info garbage bottom row', _with_info(_set_k(k20=3.0, k21=-7.0)),
              'bad.camera_info', True),
    FuzzClass('camera_info K[1][0] set', _with_info(_set_k(k10=5.0)), 'bad.camera_info', True),
    FuzzClass('camera_info large skew', _with_info(_set_k(skew=30.0)), 'bad.camera_info',
              True),
    FuzzClass('camera_info small skew (ignored)', _with_info(_set_k(skew=0.5)),
              'ignored.camera_info.skew', True),
    FuzzClass('camera_info unknown model with D',
              _with_info(_set_d([0.1, 0.01, 0.0, 0.0], 'equidistant')), 'bad.camera_info',
              True),
    FuzzClass('camera_info unknown model, zero D (ignored)',
              _with_info(_set_d([0.0] * 4, 'mystery')), 'ignored.camera_info.distortion_model',
              True),
    FuzzClass('camera_info 20000 x 20000', _with_info(_oversized_info), 'bad.camera_info',
              True),
    FuzzClass('detection score 7.0', _with_detections(_scores(7.0)), 'bad.hypotheses', False),
    FuzzClass('detection score +inf', _with_detections(_scores(math.inf)), 'bad.hypotheses',
              False),
    FuzzClass('detection score -5', _with_detections(_scores(-5.0)), 'bad.hypotheses', False),
    FuzzClass('hypotheses [nan, 0.9]', _with_detections(_scores(math.nan, 0.9)),
              'bad.hypotheses', True),
    FuzzClass('hypotheses [0.9, nan]', _with_detections(_scores(0.9, math.nan)),
              'bad.hypotheses', True),
    FuzzClass('rotated box', _with_detections(_theta(0.3)), 'ignored.detections.rotated', True),
    FuzzClass('box theta nan', _with_detections(_theta(math.nan)), 'bad.boxes', False),
    FuzzClass('stamp nanosec 1.5e9', _with_image(_nanosec), 'bad.stamp', False),
    FuzzClass('stamp sec -5', _with_image(_negative_sec), 'bad.stamp', False),
    FuzzClass('stamp 1e6 s ahead', _future, 'dropped.ahead', False),
    FuzzClass('frame_id of 10 KB', _with_image(_frame_id('c' * 10240)), 'bad.frame_id', False),
    FuzzClass('frame_id unicode', _with_image(_frame_id('kamera_\u00fc')), 'bad.frame_id',
              False),
    FuzzClass('frame_id whitespace', _with_image(_frame_id('camera optical')), 'bad.frame_id',
              False),
    FuzzClass('frame_id leading slash', _with_image(_frame_id('/camera')), 'bad.frame_id',
              False),
    FuzzClass('raw data longer than step x height', _with_image(_longer_data), 'bad.image',
              False),
    FuzzClass('detections 40 ms off their image', _detections_off, 'dropped.sync_near_miss',
              False, counted_at_next_pair=True),
)


def mixed(seed: int, n: int, t0: float, dt: float = 0.01) -> Iterator[tuple[str, Frame]]:
    """`n` frames of randomly chosen classes (and random garbage on top), stamps from `t0`
    (made one at a time: a long fuzz never holds them all)."""
    rng = np.random.default_rng(seed)
    extra = (_garbage_image, _garbage_info, _garbage_detections)
    for k in range(n):
        t = t0 + k * dt
        if rng.random() < 0.75:
            cls = CLASSES[int(rng.integers(len(CLASSES)))]
            yield cls.name, cls.make(t, rng)
        else:
            make = extra[int(rng.integers(len(extra)))]
            yield make.__name__, make(t, rng)


def _garbage_image(t: float, rng: np.random.Generator) -> Frame:
    """A raw image whose size, step, encoding and data are random."""
    f = good(t)
    img = f.image
    img.width, img.height = int(rng.integers(0, 2 * WIDTH)), int(rng.integers(0, 2 * HEIGHT))
    img.step = int(rng.integers(0, 4 * WIDTH))
    img.encoding = str(rng.choice(['rgb8', 'bgr8', 'mono8', 'mono16', '32FC1', 'bayer_rggb8',
                                   'yuv422', 'nonsense', '']))
    img.data = rng.integers(0, 256, int(rng.integers(0, 3 * WIDTH * HEIGHT)),
                            dtype=np.uint8).tobytes()
    return f


def _garbage_info(t: float, rng: np.random.Generator) -> Frame:
    """camera_info with random K, D and size (mostly nonsense, kept finite or not)."""
    f = good(t)
    info = f.info
    scale = 10.0 ** rng.uniform(-12, 12, 9)
    k = rng.normal(0, 1, 9) * scale
    if rng.random() < 0.3:
        k[int(rng.integers(9))] = rng.choice([math.nan, math.inf, -math.inf])
    info.k = [float(v) for v in k]
    info.d = [float(v) for v in rng.normal(0, 10.0 ** rng.uniform(-3, 30),
                                            int(rng.choice([0, 3, 4, 5, 8, 20])))]
    info.width, info.height = int(rng.integers(0, 5000)), int(rng.integers(0, 5000))
    info.distortion_model = str(rng.choice(['plumb_bob', 'rational_polynomial', 'equidistant',
                                            '', 'x' * 100]))
    return f


def _garbage_detections(t: float, rng: np.random.Generator) -> Frame:
    """Detections with random boxes, angles, scores and class ids."""
    f = good(t)
    boxes = [tuple(float(v) for v in rng.normal(160, 1e3 * rng.random(), 4))
             for _ in range(int(rng.integers(0, 40)))]
    dets = detections_msg(t, boxes)
    specials = [math.nan, math.inf, -math.inf, 7.0, -5.0, 0.5, 1.0, 0.0]
    for det in dets.detections:
        det.bbox.center.theta = float(rng.choice([0.0, 0.0, 0.5, math.nan, 1e30]))
        for hyp in det.results:
            hyp.hypothesis.score = float(rng.choice(specials))
            hyp.hypothesis.class_id = str(rng.choice(['chair', '', 'ch\u00e4ir', '56']))
    f.detections = dets
    return f


def publish(harness: Any, frame: Frame) -> None:
    """Send the frame's messages (camera_info, detections, image: a camera's order)."""
    if frame.info is not None:
        harness.pub_info.publish(frame.info)
    if frame.detections is not None:
        harness.pub_det.publish(frame.detections)
    if frame.image is not None:
        harness.pub_image.publish(frame.image)


__all__ = ['CLASSES', 'FRAME', 'Frame', 'FuzzClass', 'chair_image', 'good', 'mixed', 'publish']
