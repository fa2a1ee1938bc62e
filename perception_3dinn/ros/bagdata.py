"""Plain records <-> the messages of the demo bag and of the node's outputs.

`DemoFrame` (numpy) is what a synthetic video gives per frame; `write_demo_bag` turns a list
of them into a rosbag2 with /camera/image_raw (or /compressed), /camera/camera_info,
/detections and /ground_truth/objects (ObjectStructureArray holding the true poses,
structure and keypoints; track_id = the object's id, detection_id = its detection's id).
`ObjectRecord` is one object as read back from an ObjectStructureArray (node output or
ground truth), so evaluation works on numpy only.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
from geometry_msgs.msg import Point
import numpy as np
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

from perception_3dinn.camera import CameraIntrinsics
from perception_3dinn.ros import bagio
from perception_3dinn.ros.convert import ns_to_stamp, pose_msg, tf_msg, transform_msg
from perception_3dinn.skeleton import Category
from perception_3dinn_msgs.msg import ObjectStructure, ObjectStructureArray


@dataclass
class GroundTruthObject:
    """One object of a synthetic frame (all in the camera optical frame).

    Attributes:
        object_id: stable id of the object over the video (> 0).
        R: (3, 3) object -> camera rotation; t: (3,) metres.
        structure: (K,) structure parameters.
        keypoints_2d: (N, 2) pixels; visible: (N,) bool; keypoints_3d: (N, 3) metres.
        box: (4,) x_min, y_min, x_max, y_max pixels (of the visible object).
        category: its category name ('': the category `write_demo_bag` is given).
    """

    object_id: int
    R: np.ndarray
    t: np.ndarray
    structure: np.ndarray
    keypoints_2d: np.ndarray
    visible: np.ndarray
    keypoints_3d: np.ndarray
    box: np.ndarray
    category: str = ''


@dataclass
class Detection:
    """A 2D detection as a detector would publish it (box x_min, y_min, x_max, y_max)."""

    box: np.ndarray
    class_id: str = 'chair'
    score: float = 1.0
    detection_id: str = ''


@dataclass
class DemoFrame:
    """One frame of a demo sequence: image, camera, ground truth and detections."""

    image: np.ndarray
    intrinsics: CameraIntrinsics
    objects: list[GroundTruthObject] = field(default_factory=list)
    detections: list[Detection] = field(default_factory=list)
    camera_in_floor: tuple[np.ndarray, np.ndarray] | None = None  # (R, p): camera pose


@dataclass
class ObjectRecord:
    """One object read from an ObjectStructureArray (numpy)."""

    track_id: int
    detection_id: str
    score: float
    R: np.ndarray
    t: np.ndarray
    structure: np.ndarray
    keypoints_2d: np.ndarray
    confidences: np.ndarray
    keypoints_3d: np.ndarray
    box: np.ndarray
    covariance: np.ndarray | None = None  # (6, 6), None when the message has none
    category: str = ''  # ObjectStructure.category


def records_from_msg(msg: ObjectStructureArray) -> list[ObjectRecord]:
    """(N, ...) numpy records of every object of an ObjectStructureArray."""
    out = []
    for o in msg.objects:
        q = o.pose.orientation
        R = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()
        p = o.pose.position
        out.append(ObjectRecord(
            track_id=int(o.track_id), detection_id=o.detection_id, score=float(o.score), R=R,
            t=np.array([p.x, p.y, p.z]), structure=np.asarray(o.structure, np.float64),
            keypoints_2d=np.asarray(o.keypoints_2d, np.float64).reshape(-1, 2),
            confidences=np.asarray(o.keypoint_confidences, np.float64),
            keypoints_3d=np.array([[k.x, k.y, k.z] for k in o.keypoints_3d]).reshape(-1, 3),
            box=np.asarray(o.box, np.float64),
            covariance=(np.asarray(o.pose_covariance, np.float64).reshape(6, 6)
                        if np.any(np.asarray(o.pose_covariance)) else None),
            category=str(o.category)))
    return out


def camera_info_msg(intr: CameraIntrinsics, header: Header) -> CameraInfo:
    """CameraInfo of pinhole intrinsics (plumb_bob, P = [K | 0])."""
    msg = CameraInfo(header=header, width=int(intr.width), height=int(intr.height),
                     distortion_model='plumb_bob')
    msg.k = [float(v) for v in intr.K.reshape(-1)]
    msg.d = [float(v) for v in (list(intr.distortion) + [0.0] * 5)[:5]]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [intr.fx, 0.0, intr.cx, 0.0, 0.0, intr.fy, intr.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg


def image_msgs(image: np.ndarray, header: Header, compressed: bool,
               jpeg_quality: int = 90) -> Image | CompressedImage:
    """(H, W, 3) uint8 RGB -> Image rgb8, or CompressedImage jpeg."""
    if compressed:
        ok, buf = cv2.imencode('.jpg', cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
        if not ok:
            raise ValueError('JPEG encoding failed')
        return CompressedImage(header=header, format='rgb8; jpeg compressed bgr8',
                               data=array('B', buf.tobytes()))
    h, w = image.shape[:2]
    # array.array: the message setter then skips its per-byte Python check.
    return Image(header=header, height=h, width=w, encoding='rgb8', step=w * 3,
                 data=array('B', np.ascontiguousarray(image, np.uint8).tobytes()))


def detections_msg(dets: Sequence[Detection], header: Header) -> Detection2DArray:
    msg = Detection2DArray(header=header)
    for d in dets:
        x0, y0, x1, y1 = (float(v) for v in d.box)
        det = Detection2D(header=header, id=d.detection_id)
        det.bbox.center.position.x, det.bbox.center.position.y = (x0 + x1) / 2, (y0 + y1) / 2
        det.bbox.size_x, det.bbox.size_y = x1 - x0, y1 - y0
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id, hyp.hypothesis.score = d.class_id, float(d.score)
        det.results.append(hyp)
        msg.detections.append(det)
    return msg


def ground_truth_msg(objects: Sequence[GroundTruthObject], header: Header,
                     category: Category) -> ObjectStructureArray:
    out = ObjectStructureArray(header=header)
    for o in objects:
        name = o.category or category.name
        m = ObjectStructure(header=header, track_id=int(o.object_id),
                            detection_id=str(o.object_id), category=name,
                            child_frame_id=f'gt_{name}_{o.object_id}', score=1.0)
        m.pose = pose_msg(o.R, o.t)
        m.structure = [float(v) for v in o.structure]
        m.box = [float(v) for v in o.box]
        m.keypoints_2d = [float(v) for v in np.asarray(o.keypoints_2d).reshape(-1)]
        m.keypoint_confidences = [float(v) for v in np.asarray(o.visible, np.float64)]
        m.keypoints_3d = [Point(x=float(p[0]), y=float(p[1]), z=float(p[2]))
                          for p in np.asarray(o.keypoints_3d)]
        out.objects.append(m)
    return out


def write_demo_bag(frames: Sequence[DemoFrame], path: str | Path, category: Category,
                   fps: float, compressed: bool = True, frame_id: str = 'camera_optical_frame',
                   floor_frame: str = 'floor', start_ns: int = 1_000_000_000,
                   progress: Callable[[], None] | None = None) -> dict[str, int]:
    """Write frames as a rosbag2 folder (deterministic: fixed stamps from `start_ns`).

    Ground truth is of `category` unless an object names its own (mixed scenes).

    Frames with `camera_in_floor` also get /tf `floor_frame -> frame_id` at their stamp (the
    camera's pose above the floor, what a robot's TF tree gives).

    Returns:
        topic -> message count.
    """
    path = Path(path)
    if path.exists():
        raise FileExistsError(f'{path} exists; remove it first')
    image_topic = bagio.COMPRESSED_TOPIC if compressed else bagio.IMAGE_TOPIC
    with bagio.BagWriter(path) as bag:
        for k, f in enumerate(frames):
            t_ns = int(start_ns + round(k * 1e9 / fps))
            header = Header(stamp=ns_to_stamp(t_ns), frame_id=frame_id)
            bag.write(bagio.CAMERA_INFO_TOPIC, camera_info_msg(f.intrinsics, header), t_ns)
            bag.write(bagio.DETECTIONS_TOPIC, detections_msg(f.detections, header), t_ns)
            bag.write(bagio.GROUND_TRUTH_TOPIC, ground_truth_msg(f.objects, header, category),
                      t_ns)
            if f.camera_in_floor is not None:
                floor_header = Header(stamp=header.stamp, frame_id=floor_frame)
                bag.write(bagio.TF_TOPIC, tf_msg([transform_msg(floor_header, frame_id,
                                                                *f.camera_in_floor)]), t_ns)
            bag.write(image_topic, image_msgs(f.image, header, compressed), t_ns)
            if progress is not None:
                progress()
        return dict(bag.counts)
