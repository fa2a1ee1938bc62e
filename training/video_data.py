"""Track crops for the video stage (seed 001): from rendered video sets or from rosbags.

:func:`load_tracks` reads a rendered video set (``training.synthesize videos``);
:func:`load_bag_tracks` reads any rosbag2 with an image topic (raw or compressed),
camera_info and vision_msgs/Detection2DArray (the topics of ``training.bag make-demo``;
:func:`perception_3dinn.ros.replay.load_frames`). Both return the same dictionary of crops
(made as the runtime crops a detection) and tracks, which :func:`cut_clips` cuts into clips.

Tracks in a bag follow the detector's ids (``Detection2D.id``). Detections without an id are
joined to the previous frame's track they overlap most (IoU >= ``iou``,
:func:`perception_3dinn.tracking.box_iou`), else start a new track. A track breaks where
its box is missing (or smaller than ``min_box``) for more than ``max_gap`` frames in a row;
shorter gaps (a detector's missed frame) are bridged: the clip skips the missing frames, and
the report counts them. ``stride`` keeps every stride-th image.

Which frames teach something: the video losses need the same static object seen from a
moving camera. A bag has no such label, so the tool measures image motion per track: the
median over neighbouring frames of the box's centre shift plus its size change, relative
to the box size. Tracks below ``min_motion`` (default 0.01, 1 % of the box per frame) are
counted as static. A bag in which every track is static gets a warning that it teaches
nothing beyond the labelled images. An object that moves itself in front of a still camera
also shows image motion; with odometry in /tf one could tell the two apart. We do not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from perception_3dinn.crops import Crop, crop_image

VIDEO_FIELDS = ['frames', 'box', 'present', 'object_valid']


def track_runs(usable: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs ``[start, stop)`` of True in a (T,) bool array."""
    u = np.concatenate([[False], np.asarray(usable, bool), [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(u))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def usable_frames(video: dict, min_box: float) -> np.ndarray:
    """(T, M) bool: object slot present with a box at least ``min_box`` pixels each way."""
    box = np.asarray(video['box'], np.float64)
    size = np.minimum(box[..., 2] - box[..., 0], box[..., 3] - box[..., 1])
    return (np.asarray(video['present'], bool) & np.asarray(video['object_valid'], bool)[None]
            & (size >= min_box))


def load_tracks(root: str | Path, videos: range, size: int, pad: float, min_box: float,
                labels: bool = False) -> dict:
    """Crops of every track frame of the given videos of a rendered video set.

    Returns:
        dict: ``crops (F, S, S, 3) uint8``, ``scale (F,)`` crop scales, ``tracks`` a list of
        ``(first, length)`` runs of consecutive rows of ``crops``, ``track_video`` and
        ``track_object`` (per track) and, with ``labels`` where the set has them,
        ``structure (tracks, K)``.
    """
    from training.synth.dataset import ShardDataset

    ds = ShardDataset(root, fields=VIDEO_FIELDS)
    labels = labels and 'structure' in ds.manifest.get('fields', {})
    if labels:
        ds.fields = VIDEO_FIELDS + ['structure']
    if ds.kind != 'videos':
        raise SystemExit(f'{root}: a {ds.kind!r} data set; --videos needs a video set '
                         '(python -m training.synthesize videos)')
    crops, scales, tracks, where, structure = [], [], [], [], []
    for v in tqdm(videos, desc=f'cropping {Path(root).name}', leave=False):
        video = ds[v]
        usable = usable_frames(video, min_box)
        for m in range(usable.shape[1]):
            for a, b in track_runs(usable[:, m]):
                tracks.append((len(crops), b - a))
                where.append((v, m))
                if labels:
                    structure.append(video['structure'][m])
                for t in range(a, b):
                    crop = Crop.from_box(video['box'][t, m], size, pad)
                    crops.append(crop_image(video['frames'][t], crop))
                    scales.append(crop.scale)
    out = {'crops': np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8),
           'scale': np.asarray(scales, np.float32), 'tracks': tracks,
           'track_video': np.array([w[0] for w in where], np.int64),
           'track_object': np.array([w[1] for w in where], np.int64)}
    if labels:
        out['structure'] = np.asarray(structure, np.float64)
    return out


def cut_clips(tracks: list[tuple[int, int]], length: int, stride: int = 0) -> tuple:
    """Clips of ``length`` consecutive frames along each track, every ``stride`` frames
    (0: ``length``, no overlap).

    Returns:
        clips (n, length) int64 rows of the crops, their track (n,), and a report: ``clips``,
        ``tracks``, ``short_tracks_skipped`` and ``short_track_frames`` (tracks shorter than
        ``length`` and their frames).
    """
    if length < 2:
        raise ValueError(f'clip length must be at least 2, got {length}')
    stride = stride or length
    clips, owner, short, short_frames = [], [], 0, 0
    for i, (first, n) in enumerate(tracks):
        if n < length:
            short += 1
            short_frames += n
            continue
        for s in range(0, n - length + 1, stride):
            clips.append(first + s + np.arange(length))
            owner.append(i)
    arr = np.stack(clips).astype(np.int64) if clips else np.zeros((0, length), np.int64)
    report = {'clips': len(clips), 'tracks': len(tracks), 'short_tracks_skipped': short,
              'short_track_frames': short_frames}
    return arr, np.asarray(owner, np.int64), report


def _box_motion(boxes: np.ndarray) -> float:
    """Median relative motion of consecutive boxes (T, 4): centre shift plus size change
    over the box size."""
    if len(boxes) < 2:
        return 0.0
    c = 0.5 * (boxes[:, :2] + boxes[:, 2:])
    wh = boxes[:, 2:] - boxes[:, :2]
    size = np.maximum(wh.max(1), 1.0)
    d = (np.linalg.norm(np.diff(c, axis=0), axis=1)
         + np.abs(np.diff(wh, axis=0)).sum(1)) / size[:-1]
    return float(np.median(d))


def bag_track_boxes(frames: list, min_box: float, iou: float = 0.3,
                    max_gap: int = 2) -> tuple[dict, dict]:
    """Per-track boxes of a bag's frames (detections without an id join the overlapping
    track last seen at most ``max_gap`` frames before).

    Returns:
        ``{track key: [(frame index, box (4,)), ...]}`` and counts ``frames``,
        ``frames_with_detections``, ``detections``, ``small_boxes`` (< ``min_box``).
    """
    from perception_3dinn.ros import inputs
    from perception_3dinn.tracking import box_iou

    tracks: dict[str, list] = {}
    counts = {'frames': len(frames), 'frames_with_detections': 0, 'detections': 0,
              'small_boxes': 0}
    fresh = 0
    for k, f in enumerate(frames):
        boxes = inputs.detections_to_boxes(f.detections) if f.detections else []
        counts['frames_with_detections'] += bool(boxes)
        taken: set[str] = set()
        for b in boxes:
            arr = np.asarray(b.as_array(), np.float64)
            if not np.all(np.isfinite(arr)):
                continue
            counts['detections'] += 1
            if min(arr[2] - arr[0], arr[3] - arr[1]) < min_box:
                counts['small_boxes'] += 1
                continue
            key = f'id:{b.detection_id}' if b.detection_id else ''
            if not key:
                recent = [(kk, v[-1][1]) for kk, v in tracks.items() if kk not in taken
                          and kk.startswith('new:') and k - v[-1][0] <= 1 + max_gap]
                if recent:
                    ov = box_iou(arr[None], np.stack([r[1] for r in recent]))[0]
                    j = int(np.argmax(ov))
                    if ov[j] >= iou:
                        key = recent[j][0]
            if not key:
                fresh += 1
                key = f'new:{fresh}'
            taken.add(key)
            tracks.setdefault(key, []).append((k, arr))
    return tracks, counts


def load_bag_tracks(paths: list[str | Path], size: int, pad: float, min_box: float,
                    stride: int = 1, min_motion: float = 0.01,
                    max_gap: int = 2) -> tuple[dict, dict]:
    """Crops and tracks of every bag (the format of :func:`load_tracks`; ``track_video`` is
    the bag's index, ``track_object`` the track's number in its bag) and a report per bag.
    SystemExit naming the topic when a bag has no images, no camera_info or no
    detections."""
    from perception_3dinn.ros import bagio, inputs
    from perception_3dinn.ros.replay import load_frames

    crops, scales, tracks, where, report = [], [], [], [], []
    for bi, path in enumerate(paths):
        try:
            frames = load_frames(path)[::max(1, stride)]
        except ValueError as e:
            raise SystemExit(str(e)) from None
        if not frames:
            raise SystemExit(f'{path}: no image messages')
        if all(f.camera_info is None for f in frames):
            raise SystemExit(f'{path}: no {bagio.CAMERA_INFO_TOPIC} before any image '
                             '(sensor_msgs/CameraInfo is needed to read the images)')
        if all(f.detections is None for f in frames):
            raise SystemExit(f'{path}: no {bagio.DETECTIONS_TOPIC} '
                             "(vision_msgs/Detection2DArray) with the images' stamps")
        boxes, counts = bag_track_boxes(frames, min_box, max_gap=max_gap)
        rep = {'bag': str(path), **counts, 'stride': stride, 'tracks': 0, 'track_frames': 0,
               'static_tracks': 0, 'bridged_frames': 0, 'motion': []}
        for ki, items in enumerate(tqdm(boxes.values(), desc=f'cropping {Path(path).name}',
                                        leave=False)):
            runs, run = [], [items[0]]
            for a, b in zip(items, items[1:]):
                if b[0] - a[0] <= 1 + max_gap:
                    rep['bridged_frames'] += b[0] - a[0] - 1
                    run.append(b)
                else:
                    runs.append(run)
                    run = [b]
            runs.append(run)
            for run in runs:
                motion = _box_motion(np.stack([r[1] for r in run]))
                rep['tracks'] += 1
                rep['track_frames'] += len(run)
                rep['static_tracks'] += motion < min_motion
                rep['motion'].append(round(motion, 4))
                tracks.append((len(crops), len(run)))
                where.append((bi, ki))
                for k, box in run:
                    f = frames[k]
                    intr = inputs.camera_info_to_intrinsics(f.camera_info)
                    rgb = inputs.image_to_rgb(f.image, (intr.width, intr.height))
                    crop = Crop.from_box(box, size, pad)
                    crops.append(crop_image(rgb, crop))
                    scales.append(crop.scale)
        if rep['tracks'] and rep['static_tracks'] == rep['tracks']:
            tqdm.write(f"warning: {path}: nothing moves (every track's box moves less than "
                       f'{min_motion:.0%} of its size per frame): the video losses learn '
                       'nothing from it; record while the camera moves around the objects')
        report.append(rep)
    out = {'crops': np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8),
           'scale': np.asarray(scales, np.float32), 'tracks': tracks,
           'track_video': np.array([w[0] for w in where], np.int64),
           'track_object': np.array([w[1] for w in where], np.int64)}
    return out, {'bags': report}


def split_tracks(data: dict, val_fraction: float) -> tuple[dict, dict]:
    """Hold out the last ``val_fraction`` of every track's frames for validation (a bag of
    one long track still gives both splits; the first frames train, the last validate)."""
    parts = []
    for side in (0, 1):
        rows, tracks, owner = [], [], []
        for i, (first, length) in enumerate(data['tracks']):
            cut = int(round((1.0 - val_fraction) * length))
            a, b = (first, first + cut) if side == 0 else (first + cut, first + length)
            if b > a:
                tracks.append((len(rows), b - a))
                rows.extend(range(a, b))
                owner.append(i)
        rows = np.asarray(rows, np.int64)
        parts.append({'crops': data['crops'][rows], 'scale': data['scale'][rows],
                      'tracks': tracks, 'track_video': data['track_video'][owner],
                      'track_object': data['track_object'][owner]})
    if not parts[0]['tracks'] or not parts[1]['tracks']:
        raise SystemExit('too few track frames to hold out validation frames')
    return parts[0], parts[1]
