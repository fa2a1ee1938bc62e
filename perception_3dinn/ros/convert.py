"""Message conversion at the node's boundary: stamps, and the results as messages.

Results become messages (ObjectStructureArray, VoxelGridArray, Detection3DArray, TFMessage,
SkeletonInfo); the inputs are checked and converted in `perception_3dinn.ros.inputs`.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping
import math
from typing import Any

from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Pose, PoseWithCovariance, TransformStamped, Vector3
import numpy as np
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage
from transforms3d.quaternions import mat2quat
from vision_msgs.msg import Detection3D, Detection3DArray, ObjectHypothesisWithPose

from perception_3dinn.inference.types import FrameResult, ObjectEstimate
from perception_3dinn.skeleton import Category
from perception_3dinn_msgs.msg import (
    ObjectStructure,
    ObjectStructureArray,
    SkeletonInfo,
    VoxelGrid,
    VoxelGridArray,
)

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
    msg.pose_covariance = covariance_list(obj.covariance)
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


def covariance_list(covariance: np.ndarray | None) -> list[float]:
    """A (6, 6) pose covariance as the 36 row-major floats of a message (zeros: unknown,
    also for a non-finite matrix)."""
    if covariance is None:
        return [0.0] * 36
    c = np.asarray(covariance, np.float64)
    if c.shape != (6, 6) or not np.all(np.isfinite(c)):
        return [0.0] * 36
    return [float(v) for v in c.reshape(-1)]


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
    hyp.pose = PoseWithCovariance(pose=pose_msg(R, t),
                                  covariance=covariance_list(obj.covariance))
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
                     skip_prefix: str | tuple[str, ...] = '') -> tuple[int, list[str]]:
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


def category_of(obj: ObjectEstimate, categories: Category | Mapping[str, Category]) -> Category:
    """The object's category among ``categories`` (a single Category serves every object)."""
    if isinstance(categories, Category):
        return categories
    found = categories.get(obj.category)
    return found if found is not None else next(iter(categories.values()))


def frame_messages(result: FrameResult, header: Header,
                   category: Category | Mapping[str, Category], prefix: str,
                   ids: TrackIds, min_score: float = 0.0,
                   wanted: frozenset[str] = frozenset({'objects', 'voxels', 'detections3d',
                                                       'tf'})) -> dict[str, Any]:
    """All per-frame output messages of one FrameResult.

    Args:
        category: the category, or every served category by name (each object's own is
            used: its 3D box size, its TF frame name).
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
        cat = category_of(obj, category)
        tid = ids.get(obj)
        child = child_frame(prefix, obj.category or cat.name, tid)
        kept.append((tid, child, obj))
        if 'objects' in wanted:
            structures.append(object_msg(obj, header, tid, child))
        if 'detections3d' in wanted:
            dets.append(detection3d_msg(obj, header, tid, cat))
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
