"""Message conversion at the node's boundary.

Inputs become domain objects once (CameraInfo -> `CameraIntrinsics`, Image ->
`(H, W, 3)` RGB array, Detection2DArray -> list of `Box2D`); results become messages
(ObjectStructureArray, VoxelGridArray, Detection3DArray, TFMessage, SkeletonInfo).
Invalid input raises ValueError with a message that says what is wrong.
"""

from __future__ import annotations

from array import array
import math
from typing import Any

from builtin_interfaces.msg import Time
import cv2
from geometry_msgs.msg import Point, Pose, PoseWithCovariance, TransformStamped, Vector3
import numpy as np
from rosbags.image import image as rbimage
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage
from transforms3d.quaternions import mat2quat
from vision_msgs.msg import Detection3D, Detection3DArray, ObjectHypothesisWithPose

from perception_3dinn.camera import CameraIntrinsics
from perception_3dinn.inference.types import Box2D, FrameResult, ObjectEstimate
from perception_3dinn.skeleton import Category
from perception_3dinn_msgs.msg import (
    ObjectStructure,
    ObjectStructureArray,
    SkeletonInfo,
    VoxelGrid,
    VoxelGridArray,
)


class InputError(ValueError):
    """A message the node cannot use; `kind` names the problem (for throttling warnings)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


# ---------------------------------------------------------------------------------------------
# Time


def stamp_to_ns(stamp: Time) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> Time:
    """Integer nanoseconds -> builtin_interfaces/Time."""
    ns = int(ns)
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


# ---------------------------------------------------------------------------------------------
# Inputs


# Numbers of distortion coefficients OpenCV accepts (k1, k2, p1, p2[, k3[, k4-k6[, s1-s4
# [, tau_x, tau_y]]]]).
OPENCV_DISTORTION_LENGTHS = (4, 5, 8, 12, 14)


def camera_info_to_intrinsics(msg: Any) -> CameraIntrinsics:
    """sensor_msgs/CameraInfo -> CameraIntrinsics (K and D of the raw image).

    Raises:
        ValueError: no calibration (K all zero), NaN values, non-positive focal or size, a
            number of distortion coefficients OpenCV cannot use.
    """
    k = np.asarray(msg.k, np.float64)
    if k.shape != (9,) or not np.any(k):
        raise InputError('no_calibration', 'camera_info has no calibration (K is all zero): '
                         'calibrate the camera or publish its intrinsics')
    d = tuple(float(x) for x in msg.d) if msg.distortion_model in (
        'plumb_bob', 'rational_polynomial', '') else ()
    if not any(d):
        d = ()  # all zero (or none): no distortion, whatever the length
    elif len(d) not in OPENCV_DISTORTION_LENGTHS:
        raise InputError('distortion', f'camera_info rejected: {len(d)} distortion coefficients '
                         f'for model {msg.distortion_model!r}; OpenCV needs 4, 5, 8, 12 or '
                         '14 (plumb_bob: 5, rational_polynomial: 8)')
    intr = CameraIntrinsics.from_matrix(k.reshape(3, 3), int(msg.width), int(msg.height), d)
    try:
        return intr.validate()
    except ValueError as err:
        raise InputError('invalid', f'camera_info rejected: {err}') from None


def image_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/Image or CompressedImage -> `(H, W, 3)` uint8 RGB.

    Raises:
        ValueError: unsupported encoding, data length that does not match the header,
            undecodable compressed data.
    """
    if hasattr(msg, 'format'):
        buf = np.frombuffer(bytes(msg.data), np.uint8)
        try:
            img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
        except cv2.error:  # e.g. a header announcing more pixels than OpenCV allows
            img = None
        if img is None:
            raise InputError('decode', f'compressed image ({msg.format!r}, {buf.size} bytes) '
                             'could not be decoded; publish jpeg or png')
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    try:
        _, _, typestr, nchan = rbimage.to_cvtype(msg.encoding)
    except rbimage.ImageFormatError:
        raise InputError('encoding', f'unsupported image encoding {msg.encoding!r}; publish '
                         'rgb8, bgr8, mono8 or another sensor_msgs/image_encodings type'
                         ) from None
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    itemsize = np.dtype(typestr).itemsize
    row = w * nchan * itemsize
    if h <= 0 or w <= 0:
        raise InputError('empty', f'image is empty ({w}x{h})')
    if step < row or len(msg.data) < step * (h - 1) + row:
        raise InputError('length', f'image data length {len(msg.data)} does not match {w}x{h} '
                         f'{msg.encoding} with step {step} (need step >= {row} and '
                         f'{step * h} bytes)')
    dtype = np.dtype(typestr).newbyteorder('>' if msg.is_bigendian else '<')
    data = np.frombuffer(memoryview(msg.data).cast('B'), np.uint8)
    img = np.ndarray((h, w, nchan), dtype=dtype, buffer=data,
                     strides=(step, nchan * itemsize, itemsize)).astype(typestr)
    if nchan == 1:
        img = img[:, :, 0]
    try:
        rgb = rbimage.convert_color(img, msg.encoding, 'rgb8')
    except (rbimage.ImageError, cv2.error) as err:
        raise InputError('conversion', f'image encoding {msg.encoding!r} cannot be converted '
                         f'to rgb8: {err}') from None
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def detections_to_boxes(msg: Any) -> list[Box2D]:
    """vision_msgs/Detection2DArray -> list of Box2D (best hypothesis as class and score).

    Boxes are passed on as they are (NaN or empty ones too): the pipeline skips bad boxes
    and says why.
    """
    boxes = []
    for det in msg.detections:
        class_id, score = '', 1.0
        if det.results:
            best = max(det.results, key=lambda r: r.hypothesis.score)
            class_id, score = str(best.hypothesis.class_id), float(best.hypothesis.score)
        c = det.bbox.center.position
        boxes.append(Box2D.from_center(float(c.x), float(c.y), float(det.bbox.size_x),
                                       float(det.bbox.size_y), class_id=class_id,
                                       score=score, detection_id=det.id or None))
    return boxes


def no_detector_box(width: int, height: int, mode: str, fraction: float,
                    class_id: str) -> Box2D:
    """The box of the no-detector mode: the whole image or a centred box."""
    if mode == 'full':
        return Box2D(0.0, 0.0, width - 1.0, height - 1.0, class_id=class_id)
    return Box2D.from_center((width - 1) / 2.0, (height - 1) / 2.0, width * fraction,
                             height * fraction, class_id=class_id)


# ---------------------------------------------------------------------------------------------
# Outputs


class TrackIds:
    """Maps the runtime's track ids (str) to stable positive integers for messages."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._next = 1

    def get(self, obj: ObjectEstimate) -> int:
        key = str(obj.track_id)
        if not key:
            return max(int(obj.box_index), 0) + 1
        if key.isdigit() and int(key) > 0:
            return int(key)
        if key not in self._ids:
            self._ids[key] = 100000 + self._next
            self._next += 1
        return self._ids[key]


def pose_msg(R: np.ndarray, t: np.ndarray) -> Pose:
    """(3, 3) rotation and (3,) translation -> geometry_msgs/Pose (quaternion with w >= 0)."""
    w, x, y, z = mat2quat(np.asarray(R, np.float64))
    if w < 0:
        w, x, y, z = -w, -x, -y, -z
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in t)
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = (
        float(x), float(y), float(z), float(w))
    return pose


def child_frame(prefix: str, category: str, track_id: int) -> str:
    """TF frame of an object: <prefix><category>_<track id>."""
    return f'{prefix}{category}_{track_id}'


def float32_array(values: Any) -> array:
    """Any float array -> flat array.array('f') (what float32[] message fields hold)."""
    return array('f', np.ascontiguousarray(values, np.float32).reshape(-1).tobytes())


def object_msg(obj: ObjectEstimate, header: Header, track_id: int,
               child_frame_id: str) -> ObjectStructure:
    """One ObjectEstimate -> ObjectStructure (poses and points in the header frame)."""
    msg = ObjectStructure()
    msg.header = header
    msg.track_id = int(track_id)
    msg.detection_id = obj.box.detection_id or ''
    msg.category = obj.category
    msg.child_frame_id = child_frame_id
    msg.score = float(obj.score)
    msg.pose = pose_msg(obj.R, obj.t)
    msg.pose_source = (ObjectStructure.POSE_SOURCE_PNP if obj.pose_source == 'pnp'
                       else ObjectStructure.POSE_SOURCE_INTERPRETER)
    err = float(obj.reproj_error_px)
    msg.reprojection_error_px = err if math.isfinite(err) else -1.0
    msg.structure = float32_array(obj.structure)
    msg.focal_px = float(obj.focal)
    msg.box = [float(v) for v in obj.box.as_array()]
    msg.keypoints_2d = float32_array(obj.keypoints_2d)
    msg.keypoint_confidences = float32_array(obj.confidences)
    msg.keypoints_3d = [Point(x=float(p[0]), y=float(p[1]), z=float(p[2]))
                        for p in np.asarray(obj.keypoints_3d, np.float64)]
    return msg


def objects_msg(header: Header, objects: list[ObjectStructure]) -> ObjectStructureArray:
    return ObjectStructureArray(header=header, objects=objects)


def voxel_msg(grid: Any, header: Header, track_id: int) -> VoxelGrid:
    """perception_3dinn.voxels.VoxelGrid -> VoxelGrid message (header frame: the object)."""
    occ = np.ascontiguousarray(grid.occupancy, dtype=np.uint8)
    if occ.ndim != 3:
        raise ValueError(f'voxel occupancy must be (X, Y, Z), got {occ.shape}')
    msg = VoxelGrid()
    msg.header = header
    msg.track_id = int(track_id)
    msg.resolution = float(grid.resolution)
    msg.size_x, msg.size_y, msg.size_z = (int(s) for s in occ.shape)
    o = np.asarray(grid.origin, np.float64)
    msg.origin = Point(x=float(o[0]), y=float(o[1]), z=float(o[2]))
    msg.data = array('B', occ.tobytes())  # array.array: no per-element check in the setter
    return msg


def detection3d_msg(obj: ObjectEstimate, header: Header, track_id: int,
                    category: Category) -> Detection3D:
    """Object -> vision_msgs/Detection3D: a box around its skeleton, posed like the object."""
    R = np.asarray(obj.R, np.float64)
    t = np.asarray(obj.t, np.float64)
    pts = (np.asarray(obj.keypoints_3d, np.float64) - t) @ R  # object frame
    if pts.size and np.all(np.isfinite(pts)):
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        lo[2] = min(lo[2], 0.0)
    else:
        half = category.dimensions_m / 2.0
        lo, hi = np.array([-half[0], -half[1], 0.0]), np.array([half[0], half[1],
                                                                category.dimensions_m[2]])
    centre = (lo + hi) / 2.0
    det = Detection3D()
    det.header = header
    det.id = str(track_id)
    det.bbox.center = pose_msg(R, R @ centre + t)
    size = np.maximum(hi - lo, 1e-3)
    det.bbox.size = Vector3(x=float(size[0]), y=float(size[1]), z=float(size[2]))
    hyp = ObjectHypothesisWithPose()
    hyp.hypothesis.class_id = obj.category
    hyp.hypothesis.score = float(obj.score)
    hyp.pose = PoseWithCovariance(pose=pose_msg(R, t))
    det.results = [hyp]
    return det


def detections3d_msg(header: Header, detections: list[Detection3D]) -> Detection3DArray:
    return Detection3DArray(header=header, detections=detections)


def transform_msg(header: Header, child_frame_id: str, R: np.ndarray,
                  t: np.ndarray) -> TransformStamped:
    """Transform header frame -> `child_frame_id` (the child frame's pose R, t in the header
    frame; e.g. camera -> object)."""
    pose = pose_msg(R, t)
    tf = TransformStamped()
    tf.header = header
    tf.child_frame_id = child_frame_id
    tf.transform.translation = Vector3(x=pose.position.x, y=pose.position.y,
                                       z=pose.position.z)
    tf.transform.rotation = pose.orientation
    return tf


def store_tf_message(buffer: Any, msg: TFMessage, static: bool,
                     skip_prefix: str = '') -> tuple[int, list[str]]:
    """Put the transforms of a /tf or /tf_static message into a `TransformBuffer`.

    Args:
        skip_prefix: child frames starting with it are ignored (the node's own outputs).

    Returns:
        (number stored, one message per transform that was refused).
    """
    stored, errors = 0, []
    for tr in msg.transforms:
        child = tr.child_frame_id
        if skip_prefix and child.startswith(skip_prefix):
            continue
        q, v = tr.transform.rotation, tr.transform.translation
        try:
            buffer.set_transform(tr.header.frame_id, child, stamp_to_ns(tr.header.stamp),
                                 (q.x, q.y, q.z, q.w), (v.x, v.y, v.z), static=static)
            stored += 1
        except ValueError as err:
            errors.append(str(err))
    return stored, errors


def tf_msg(transforms: list[TransformStamped]) -> TFMessage:
    return TFMessage(transforms=transforms)


def skeleton_info_msg(category: Category, header: Header) -> SkeletonInfo:
    """Category -> SkeletonInfo (published latched)."""
    msg = SkeletonInfo()
    msg.header = header
    msg.category = category.name
    msg.keypoint_names = list(category.keypoint_names)
    msg.edges = [int(v) for v in category.edges.reshape(-1)]
    msg.symmetric_pairs = [int(v) for v in category.symmetric_pairs.reshape(-1)]
    msg.num_structure_params = int(category.num_bases)
    msg.dimensions_m = [float(v) for v in category.dimensions_m]
    return msg


def frame_messages(result: FrameResult, header: Header, category: Category, prefix: str,
                   ids: TrackIds, min_score: float = 0.0,
                   wanted: frozenset[str] = frozenset({'objects', 'voxels', 'detections3d',
                                                       'tf'})) -> dict[str, Any]:
    """All per-frame output messages of one FrameResult.

    Args:
        wanted: which messages to build (the others come back empty).

    Returns:
        dict with 'objects' (ObjectStructureArray), 'voxels' (VoxelGridArray), 'detections3d'
        (Detection3DArray), 'tf' (TFMessage) and 'kept' (list of (track id, child frame,
        ObjectEstimate) published).
    """
    structures, grids, dets, tfs, kept = [], [], [], [], []
    for obj in result.objects:
        if not obj.score >= min_score:
            continue
        tid = ids.get(obj)
        child = child_frame(prefix, obj.category or category.name, tid)
        kept.append((tid, child, obj))
        if 'objects' in wanted:
            structures.append(object_msg(obj, header, tid, child))
        if 'detections3d' in wanted:
            dets.append(detection3d_msg(obj, header, tid, category))
        if 'tf' in wanted:
            tfs.append(transform_msg(header, child, obj.R, obj.t))
        if obj.voxels is not None and 'voxels' in wanted:
            grids.append(voxel_msg(obj.voxels, Header(stamp=header.stamp, frame_id=child),
                                   tid))
    return {
        'objects': objects_msg(header, structures),
        'voxels': VoxelGridArray(header=header, grids=grids),
        'detections3d': detections3d_msg(header, dets),
        'tf': tf_msg(tfs),
        'kept': kept,
    }
