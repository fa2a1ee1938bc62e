"""The node's inputs, checked and converted once at the boundary.

CameraInfo -> `CameraIntrinsics`, Image / CompressedImage -> `(H, W, 3)` RGB array,
Detection2DArray -> list of `Box2D`, header stamps -> integer nanoseconds, frame ids checked
against the TF frame-name rules. Anything the node cannot use raises `InputError` (its
`kind` names the problem, for throttled warnings and counters). Things that are usable but
not used as sent (a rotated box, a skew term, a compressed `format` that names another codec
than the data) are reported as `(kind, text)` notes in a list the caller passes in, so the
node can say so once.
"""

from __future__ import annotations

import io
import math
import re
from typing import Any
import warnings

import cv2
import numpy as np
from PIL import Image as PILImage
from rosbags.image import image as rbimage

from perception_3dinn.camera import CameraIntrinsics
from perception_3dinn.inference.types import Box2D

Notes = list[tuple[str, str]]

# Numbers of distortion coefficients OpenCV accepts (k1, k2, p1, p2[, k3[, k4-k6[, s1-s4
# [, tau_x, tau_y]]]]).
OPENCV_DISTORTION_LENGTHS = (4, 5, 8, 12, 14)
# Distortion models whose D the pipeline uses (OpenCV's radial-tangential polynomial).
DISTORTION_MODELS = ('plumb_bob', 'rational_polynomial')
# A skew K[0][1] up to this fraction of fx is ignored with a note; a larger one is refused.
MAX_IGNORED_SKEW = 0.01
# Largest image decoded or converted when no camera_info gives the size (4K UHD is 8.3 MP).
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096
# Compressed codecs the node decodes (what image_transport's compressed plugin writes).
COMPRESSED_CODECS = {'JPEG': 'jpeg', 'PNG': 'png'}
# Stamps: nanoseconds of a builtin_interfaces/Time are in [0, 1e9).
NS_PER_S = 1_000_000_000
# tf2 refuses empty frame ids and ids starting with '/'; we also refuse whitespace, control
# and non-ASCII characters and absurd lengths, which no TF tool displays or types well.
MAX_FRAME_ID_LENGTH = 256
_FRAME_ID = re.compile(r'[A-Za-z0-9_.\-][A-Za-z0-9_./\-]*\Z')


class InputError(ValueError):
    """A message the node cannot use; `kind` names the problem (for throttling warnings)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


# ---------------------------------------------------------------------------------------------
# Stamps and frame ids


def header_stamp_ns(stamp: Any, what: str = 'message') -> int:
    """builtin_interfaces/Time -> integer nanoseconds, refusing what is no valid time.

    Raises:
        InputError('stamp'): nanosec outside [0, 1e9) or a negative sec.
    """
    sec, nanosec = int(stamp.sec), int(stamp.nanosec)
    if not 0 <= nanosec < NS_PER_S or sec < 0:
        raise InputError('stamp', f'{what} stamp sec={sec} nanosec={nanosec} is not a valid '
                         'time (need sec >= 0 and 0 <= nanosec < 1e9)')
    return sec * NS_PER_S + nanosec


def frame_id_problem(frame_id: str) -> str | None:
    """None when `frame_id` is a usable TF frame name, else why not (empty is allowed here:
    the node reports it separately)."""
    if frame_id == '':
        return None
    if len(frame_id) > MAX_FRAME_ID_LENGTH:
        return f'frame_id of {len(frame_id)} characters (at most {MAX_FRAME_ID_LENGTH})'
    if frame_id.startswith('/'):
        return f'frame_id {frame_id!r} starts with "/", which tf2 refuses'
    if not _FRAME_ID.match(frame_id):
        return (f'frame_id {frame_id[:40]!r} has characters TF frame names do not use (letters, '
                'digits, "_", ".", "-" and "/" only)')
    return None


# ---------------------------------------------------------------------------------------------
# CameraInfo


def camera_info_to_intrinsics(msg: Any, notes: Notes | None = None,
                              max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> CameraIntrinsics:
    """sensor_msgs/CameraInfo -> CameraIntrinsics (K and D of the raw image), checked.

    Args:
        notes: receives (kind, text) for fields that are ignored (a small skew, D of an unknown
            model that is all zero).
        max_pixels: a larger width x height is refused (images are decoded only at the
            camera_info size, so this bounds what any image may cost).

    Raises:
        InputError: no calibration (K all zero), NaN values, a K that is no pinhole camera
            matrix, a large skew, a number of distortion coefficients OpenCV cannot use, a
            distortion model the pipeline cannot apply, or intrinsics that are implausible for
            the image size (CameraIntrinsics.check_plausible), a size above `max_pixels`.
    """
    notes = notes if notes is not None else []
    w, h = int(msg.width), int(msg.height)
    if w * h > max_pixels:
        raise InputError('too_large', f'camera_info rejected: {w}x{h} is more than '
                         f'input.max_image_pixels = {max_pixels} pixels')
    k = np.asarray(msg.k, np.float64)
    if k.shape != (9,) or not np.any(k):
        raise InputError('no_calibration', 'camera_info has no calibration (K is all zero): '
                         'calibrate the camera or publish its intrinsics')
    d_all = np.asarray(msg.d, np.float64).reshape(-1)
    if not (np.all(np.isfinite(k)) and np.all(np.isfinite(d_all))):
        raise InputError('invalid', f'camera_info rejected: K or D not finite (K {k.tolist()})')
    K = k.reshape(3, 3)
    if not (np.allclose(K[2], (0.0, 0.0, 1.0), rtol=0.0, atol=1e-9) and K[1, 0] == 0.0):
        raise InputError('matrix', f'camera_info rejected: K {k.tolist()} is no pinhole camera '
                         'matrix (its bottom row must be [0, 0, 1] and K[1][0] zero)')
    if K[0, 1] != 0.0:
        if abs(K[0, 1]) > MAX_IGNORED_SKEW * abs(K[0, 0]):
            raise InputError('skew', f'camera_info rejected: skew K[0][1] = {K[0, 1]:.6g} '
                             f'(more than {MAX_IGNORED_SKEW:g} fx); the pipeline models a '
                             'zero-skew pinhole camera')
        notes.append(('skew', f'camera_info skew K[0][1] = {K[0, 1]:.6g} is ignored'))
    model = str(msg.distortion_model)
    if not np.any(d_all):
        d: tuple[float, ...] = ()  # all zero (or none): no distortion, whatever the model
        if model not in DISTORTION_MODELS + ('',):
            notes.append(('distortion_model', f'camera_info distortion_model {model!r} is not '
                          'used (its D is all zero: no distortion)'))
    elif model not in DISTORTION_MODELS:
        raise InputError('distortion_model', f'camera_info rejected: distortion_model '
                         f'{model!r} with non-zero D; the pipeline applies '
                         f'{" and ".join(DISTORTION_MODELS)} only. Rectify the image '
                         '(image_proc) and publish the rectified camera_info, or calibrate '
                         'with plumb_bob')
    elif len(d_all) not in OPENCV_DISTORTION_LENGTHS:
        raise InputError('distortion', f'camera_info rejected: {len(d_all)} distortion '
                         f'coefficients for model {model!r}; OpenCV needs 4, 5, 8, 12 or 14 '
                         '(plumb_bob: 5, rational_polynomial: 8)')
    else:
        d = tuple(float(x) for x in d_all)
    intr = CameraIntrinsics.from_matrix(K, w, h, d)
    try:
        return intr.validate().check_plausible()
    except ValueError as err:
        raise InputError('implausible', f'camera_info rejected: {err}') from None


# ---------------------------------------------------------------------------------------------
# Images


def _declared_codec(fmt: str) -> str:
    """The codec a CompressedImage `format` names: 'jpeg', 'png', 'compresseddepth', another
    word, or '' (empty format). Both the plain form ('jpeg') and image_transport's
    ('rgb8; jpeg compressed bgr8') are understood."""
    text = fmt.strip().lower()
    if ';' in text:
        text = text.split(';', 1)[1].strip()
    word = text.split(' ', 1)[0] if text else ''
    return {'jpg': 'jpeg'}.get(word, word)


def _limit_size(w: int, h: int, expected: tuple[int, int] | None, max_pixels: int,
                what: str) -> None:
    if expected is not None and (w, h) != tuple(expected):
        raise InputError('size', f'{what} is {w}x{h} but camera_info says '
                         f'{expected[0]}x{expected[1]}: frame dropped; publish the camera_info '
                         'of this image')
    if expected is None and w * h > max_pixels:
        raise InputError('too_large', f'{what} is {w}x{h} ({w * h} pixels), more than '
                         f'input.max_image_pixels = {max_pixels}: not decoded')


def compressed_to_rgb(msg: Any, expected_size: tuple[int, int] | None = None,
                      max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                      notes: Notes | None = None) -> np.ndarray:
    """sensor_msgs/CompressedImage -> `(H, W, 3)` uint8 RGB, decoded only when its header
    (read first, without decoding a pixel) says a JPEG or PNG of the expected size.

    The data decides the codec; a `format` that names another one is decoded with a note.
    """
    data = bytes(msg.data)
    declared = _declared_codec(str(msg.format))
    if declared == 'compresseddepth':
        raise InputError('format', f'compressed image format {msg.format!r} is a depth image; '
                         'publish a colour image (jpeg or png)')
    try:
        with warnings.catch_warnings():  # our own size limit applies, not Pillow's warning
            warnings.simplefilter('ignore', PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(data)) as header:  # reads the header only
                content, (w, h) = header.format, header.size
    except PILImage.DecompressionBombError as err:  # more than Pillow's own limit
        kind, size = ('size', f'camera_info says {expected_size[0]}x{expected_size[1]}'
                      ) if expected_size else ('too_large', 'an absurd size')
        raise InputError(kind, f'compressed image ({msg.format!r}, {len(data)} bytes) '
                         f'announces {err} ({size}): not decoded') from None
    except (OSError, ValueError, SyntaxError):  # Pillow's "cannot identify image file"
        raise InputError('decode', f'compressed image ({msg.format!r}, {len(data)} bytes) '
                         'could not be decoded: its header is no image format; publish jpeg or png'
                         ) from None
    codec = COMPRESSED_CODECS.get(content)
    if codec is None:
        raise InputError('format', f'compressed image data is {content} (format field '
                         f'{msg.format!r}); only JPEG and PNG are decoded')
    if declared != codec and notes is not None:
        notes.append(('format', f'compressed image format {msg.format!r} does not name its '
                      f'data, which is {codec}: decoded as {codec}'))
    _limit_size(w, h, expected_size, max_pixels, f'compressed {codec} image')
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        img = None
    if img is None or img.shape[:2] != (h, w):
        raise InputError('decode', f'compressed image ({msg.format!r}, {len(data)} bytes) '
                         'could not be decoded; publish jpeg or png')
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB, dst=img)  # in place: no second full copy


def raw_to_rgb(msg: Any, expected_size: tuple[int, int] | None = None,
               max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """sensor_msgs/Image -> `(H, W, 3)` uint8 RGB; its data must be exactly step x height."""
    try:
        _, _, typestr, nchan = rbimage.to_cvtype(msg.encoding)
    except rbimage.ImageFormatError:
        raise InputError('encoding', f'unsupported image encoding {msg.encoding!r}; publish '
                         'rgb8, bgr8, mono8 or another sensor_msgs/image_encodings type'
                         ) from None
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise InputError('empty', f'image is empty ({w}x{h})')
    _limit_size(w, h, expected_size, max_pixels, 'image')
    itemsize = np.dtype(typestr).itemsize
    row = w * nchan * itemsize
    if step < row or len(msg.data) != step * h:
        raise InputError('length', f'image data length {len(msg.data)} does not match {w}x{h} '
                         f'{msg.encoding} with step {step} (need step >= {row} and exactly '
                         f'step x height = {step * h} bytes)')
    dtype = np.dtype(typestr).newbyteorder('>' if msg.is_bigendian else '<')
    data = np.frombuffer(memoryview(msg.data).cast('B'), np.uint8)
    img = np.ndarray((h, w, nchan), dtype=dtype, buffer=data,
                     strides=(step, nchan * itemsize, itemsize))
    if dtype.byteorder not in ('=', '|') and itemsize > 1:
        img = img.astype(typestr)  # foreign byte order: one native copy
    if nchan == 1:
        img = img[:, :, 0]
    try:
        rgb = rbimage.convert_color(img, msg.encoding, 'rgb8')
    except (rbimage.ImageError, cv2.error) as err:
        raise InputError('conversion', f'image encoding {msg.encoding!r} cannot be converted '
                         f'to rgb8: {err}') from None
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def image_to_rgb(msg: Any, expected_size: tuple[int, int] | None = None,
                 max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                 notes: Notes | None = None) -> np.ndarray:
    """sensor_msgs/Image or CompressedImage -> `(H, W, 3)` uint8 RGB.

    Args:
        expected_size: (width, height) of the camera_info; another size is refused before
            any pixel is decoded or converted.
        max_pixels: without `expected_size`, larger images are refused (before decoding).
        notes: receives (kind, text) for a compressed `format` that does not name its data.

    Raises:
        InputError: unsupported encoding or codec, data length that is not step x height,
            undecodable data, a size other than `expected_size` or above `max_pixels`.
    """
    if hasattr(msg, 'format'):
        return compressed_to_rgb(msg, expected_size, max_pixels, notes)
    return raw_to_rgb(msg, expected_size, max_pixels)


# ---------------------------------------------------------------------------------------------
# Detections


def _axis_aligned_size(w: float, h: float, theta: float) -> tuple[float, float]:
    """Width and height of the axis-aligned hull of a w x h box rotated by theta."""
    c, s = abs(math.cos(theta)), abs(math.sin(theta))
    return w * c + h * s, w * s + h * c


def detections_to_boxes(msg: Any, notes: Notes | None = None) -> list[Box2D]:
    """vision_msgs/Detection2DArray -> one Box2D per detection, in message order.

    The class and score are those of the best hypothesis whose score is a number in [0, 1];
    others are ignored with a note (so the order of the hypotheses never matters). A
    detection whose hypotheses are all invalid keeps the first invalid score, which the
    pipeline then refuses. A rotated box (`bbox.center.theta` != 0) becomes its axis-aligned
    hull, with a note. Boxes are otherwise passed on as they are: the pipeline skips bad ones
    and says why.
    """
    notes = notes if notes is not None else []
    boxes = []
    for i, det in enumerate(msg.detections):
        class_id, score = '', 1.0
        hyps = [(float(r.hypothesis.score), str(r.hypothesis.class_id)) for r in det.results]
        valid = [hs for hs in hyps if 0.0 <= hs[0] <= 1.0]  # False for NaN
        if len(valid) < len(hyps):
            bad = [s for s, _ in hyps if not 0.0 <= s <= 1.0]
            notes.append(('hypothesis', f'detection #{i}: hypothesis scores '
                          f'{", ".join(f"{s:.3g}" for s in bad)} ignored (a score is a '
                          'number in [0, 1])'))
        if valid:
            score, class_id = max(valid)  # ties: the larger class id, whatever the order
        elif hyps:
            score, class_id = hyps[0]
        c = det.bbox.center.position
        w, h = float(det.bbox.size_x), float(det.bbox.size_y)
        theta = float(det.bbox.center.theta)
        if theta != 0.0:
            if math.isfinite(theta):
                notes.append(('rotated', f'detection #{i}: rotated box (theta {theta:.3g} rad) '
                              'taken as its axis-aligned hull'))
            w, h = _axis_aligned_size(w, h, theta)  # NaN for a non-finite theta: skipped
        boxes.append(Box2D.from_center(float(c.x), float(c.y), w, h, class_id=class_id,
                                       score=score, detection_id=det.id or None))
    return boxes


def no_detector_box(width: int, height: int, mode: str, fraction: float,
                    class_id: str) -> Box2D:
    """The box of the no-detector mode: the whole image or a centred box."""
    if mode == 'full':
        return Box2D(0.0, 0.0, width - 1.0, height - 1.0, class_id=class_id)
    return Box2D.from_center((width - 1) / 2.0, (height - 1) / 2.0, width * fraction,
                             height * fraction, class_id=class_id)
