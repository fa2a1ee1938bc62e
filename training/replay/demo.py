"""make-demo: render a synthetic video and write it as the demo rosbag.

The video (training.synth.videos, deterministic for a seed) is of the chair, or with
``categories`` a mixed scene (each object one of them). The bag holds
/camera/image_raw/compressed (JPEG; raw sensor_msgs/Image on request), /camera/camera_info,
/detections (the ground-truth boxes with realistic noise, misses and false positives, each
with the class label a COCO detector gives its category: chair, dining table, couch, bed),
/ground_truth/objects (per object its category, pose, structure and keypoints) and /tf
``floor -> camera_optical_frame`` (the camera's pose above the floor, as a robot's TF tree
gives it, with a fixed calibration error).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm


@dataclass
class DetectionNoise:
    """How the simulated detector deviates from the ground-truth boxes.

    Attributes:
        jitter: std of each box side's shift as a fraction of the box size.
        miss_prob: probability that a present object is not detected in a frame.
        false_positive_prob: probability of one spurious box per frame.
        min_visible_px: objects whose visible box is smaller are not detected.
    """

    jitter: float = 0.03
    miss_prob: float = 0.05
    false_positive_prob: float = 0.05
    min_visible_px: float = 12.0


def detector_label(category: str) -> str:
    """The class label a COCO-style detector gives objects of ``category``: the first label
    of the default class map whose best guess is the category (chair -> chair, table ->
    dining table, sofa -> couch, bed -> bed, swivel_chair -> office chair), else the name
    (``ClassMap.default`` maps every served category's name to itself)."""
    from perception_3dinn.inference.multi import DEFAULT_VOCABULARY

    return next((label for label, cats in DEFAULT_VOCABULARY.items() if cats[0] == category),
                category)


def noisy_detections(boxes: np.ndarray, ids: np.ndarray, width: int, height: int,
                     rng: np.random.Generator, noise: DetectionNoise,
                     labels: Sequence[str] | None = None,
                     false_positive_labels: Sequence[str] = ('chair',)) -> list[Any]:
    """Detections of one frame from visible ground-truth boxes.

    Args:
        boxes: (M, 4) visible boxes x_min, y_min, x_max, y_max of the present objects.
        ids: (M,) their object ids (used as detection ids, as a tracking detector would).
        labels: (M,) their detector class labels (default: all 'chair').
        false_positive_labels: the label of a spurious box is one of these (drawn when
            there are several).

    Returns:
        list of perception_3dinn.ros.bagdata.Detection.
    """
    from perception_3dinn.ros.bagdata import Detection

    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    labels = ['chair'] * len(boxes) if labels is None else list(labels)
    out = []
    for box, oid, label in zip(boxes, ids, labels):
        w, h = box[2] - box[0], box[3] - box[1]
        if min(w, h) < noise.min_visible_px or rng.random() < noise.miss_prob:
            continue
        b = box + rng.normal(0.0, noise.jitter, 4) * np.array([w, h, w, h])
        b = np.clip(b, 0, [width - 1, height - 1, width - 1, height - 1])
        if b[2] - b[0] < 2 or b[3] - b[1] < 2:
            continue
        out.append(Detection(b, label, float(rng.uniform(0.6, 0.95)), str(int(oid))))
    if rng.random() < noise.false_positive_prob:
        w, h = rng.uniform(0.1, 0.3) * width, rng.uniform(0.15, 0.4) * height
        x0, y0 = rng.uniform(0, width - w), rng.uniform(0, height - h)
        score = float(rng.uniform(0.3, 0.6))
        fp = list(false_positive_labels)
        label = fp[int(rng.integers(len(fp)))] if len(fp) > 1 else fp[0]
        out.append(Detection(np.array([x0, y0, x0 + w, y0 + h]), label, score, ''))
    return out


def camera_in_floor(video: dict, frame: int, tilt_bias_deg: float = 0.0,
                    height_bias_m: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The camera's pose (R, p) in the floor frame (the video's world: z up, floor z = 0),
    optionally with a fixed calibration error: the orientation tilted by `tilt_bias_deg`
    about a horizontal axis and the height off by `height_bias_m` (same for every frame)."""
    from scipy.spatial.transform import Rotation

    Rc = np.asarray(video['camera_R'][frame], np.float64)  # world -> camera
    tc = np.asarray(video['camera_t'][frame], np.float64)
    R, p = Rc.T, -Rc.T @ tc
    if tilt_bias_deg or height_bias_m:
        heading = np.random.default_rng([seed, 2]).uniform(0.0, 2.0 * np.pi)
        axis = np.array([np.cos(heading), np.sin(heading), 0.0])
        R = Rotation.from_rotvec(np.radians(tilt_bias_deg) * axis).as_matrix() @ R
        p = p + np.array([0.0, 0.0, height_bias_m])
    return R, p


def video_frames(video: dict, noise: DetectionNoise, seed: int, tilt_bias_deg: float = 0.0,
                 height_bias_m: float = 0.0, category: str = 'chair') -> list[Any]:
    """DemoFrames of one rendered video (training.synth.videos.render_video output), with
    the camera's pose above the floor (and the given calibration error) for /tf.

    A video of one category is of `category`; a mixed one names each object's category
    (``object_category`` into ``_categories``), and its ground truth has that category's
    keypoint and basis counts (the padding dropped). Each detection has its object's
    category's :func:`detector_label`, a false positive one of the video's.
    """
    from perception_3dinn.camera import CameraIntrinsics
    from perception_3dinn.ros.bagdata import DemoFrame, GroundTruthObject
    from perception_3dinn.skeleton import load_category

    frames = video['frames']
    T, H, W = frames.shape[:3]
    intr = CameraIntrinsics.from_matrix(np.asarray(video['K'], np.float64), W, H)
    rng = np.random.default_rng([seed, 1])
    valid = np.asarray(video['object_valid'], bool)
    mixed = 'object_category' in video
    names = list(video['_categories']) if mixed else [category]
    kind = np.asarray(video['object_category']) if mixed else np.zeros(len(valid), np.int64)
    if mixed:
        cats = [load_category(n) for n in names]
        sizes = [(c.num_keypoints, c.num_bases) for c in cats]
    else:  # the arrays are the category's own
        sizes = [(video['keypoints_2d'].shape[2], video['structure'].shape[1])]
    det_labels = [detector_label(n) for n in names]
    out = []
    for f in range(T):
        objects, vis_boxes, ids, labels = [], [], [], []
        for i in np.flatnonzero(valid):
            if not video['present'][f, i]:
                continue
            oid = int(video['object_id'][i])
            n, k = sizes[kind[i]]
            objects.append(GroundTruthObject(
                object_id=oid, R=np.asarray(video['R'][f, i], np.float64),
                t=np.asarray(video['t'][f, i], np.float64),
                structure=np.asarray(video['structure'][i, :k], np.float64),
                keypoints_2d=np.asarray(video['keypoints_2d'][f, i, :n], np.float64),
                visible=np.asarray(video['visible'][f, i, :n], bool),
                keypoints_3d=np.asarray(video['keypoints_3d'][f, i, :n], np.float64),
                box=np.asarray(video['box'][f, i], np.float64), category=names[kind[i]]))
            vis_boxes.append(video['box_visible'][f, i])
            ids.append(oid)
            labels.append(det_labels[kind[i]])
        dets = noisy_detections(np.asarray(vis_boxes).reshape(-1, 4), np.asarray(ids), W, H,
                                rng, noise, labels, det_labels)
        out.append(DemoFrame(frames[f], intr, objects, dets, camera_in_floor(
            video, f, tilt_bias_deg, height_bias_m, seed)))
    return out


def detections_per_category(frames: list[Any]) -> dict[str, int]:
    """Category -> number of detections of its objects (false positives not counted)."""
    counts: dict[str, int] = {}
    for f in frames:
        category = {str(o.object_id): o.category for o in f.objects}
        for d in f.detections:
            if d.detection_id in category:
                counts[category[d.detection_id]] = counts.get(category[d.detection_id], 0) + 1
    return counts


def make_demo(out: Path, seed: int, frames: int, width: int, fps: float, compressed: bool,
              noise: DetectionNoise, objects: tuple[int, int] | None = None,
              tilt_bias_deg: float = 1.0, height_bias_m: float = 0.02,
              domain: str = 'default', categories: Sequence[str] = ()) -> dict[str, int]:
    """Render a synthetic video (render `domain`, training.synth.domains) and write it as
    the demo bag at `out`.

    Args:
        objects: (min, max) objects per scene; default (1, 3), for several categories
            (n, n + 1) with n of them, so that each appears.
        categories: empty: chairs (the demo bag as it always was); one name: that category
            alone; several: a mixed scene (training.synth.videos, VideoConfig.categories).

    Returns:
        topic -> message count.
    """
    from perception_3dinn.ros.bagdata import write_demo_bag
    from perception_3dinn.skeleton import load_category
    from training.synth.videos import render_video, VideoConfig

    names = tuple(categories) or ('chair',)
    mixed = len(names) > 1
    if objects is None:
        objects = (len(names), len(names) + 1) if mixed else (1, 3)
    config = VideoConfig(width=width, height=width * 3 // 4, frames=frames, fps=fps,
                         objects=tuple(objects), voxels=False, domain=domain,
                         categories=names if mixed else ())
    cat = load_category(names[0])
    print(f'rendering {frames} frames of {config.width}x{config.height} (seed {seed}'
          + (f', categories {", ".join(names)}' if categories else '') + ')', flush=True)
    video = render_video(None if mixed else cat, np.random.default_rng(seed), config)
    demo = video_frames(video, noise, seed, tilt_bias_deg, height_bias_m, names[0])
    if mixed:
        counts = detections_per_category(demo)
        print('detections per category: ' + ', '.join(f'{n} {counts.get(n, 0)}'
                                                      for n in names), flush=True)
        for n in names:
            if counts.get(n, 0) < len(demo) // 10:
                print(f'warning: {n} is (nearly) never detected in this scene (hidden or too '
                      'small); another --seed gives another scene', flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tqdm(total=len(demo), desc='writing bag', unit='frame') as bar:
        return write_demo_bag(demo, out, cat, fps, compressed=compressed, progress=bar.update)
