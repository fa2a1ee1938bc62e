"""The full-frame benchmark: the runtime pipeline on whole camera frames, errors binned.

    python -m training.evaluate --data datasets/frames_640 --out bench/results/frames_640 \
        [--model perception_3dinn/data/models/chair/manifest.json] [--floor]

The data are scenes of ``training.synth.scenes`` (written once by the commands in
docs/evaluation.md). Every object whose visible box is at least ``min_box_px`` high and wide
is given to ``inference.Pipeline.process`` as a detection with that box, exactly as the node
does (ONNX Runtime, the manifest's crop padding, PnP, size model; smoothing off: one frame
per scene). With ``--floor`` the pipeline also gets the floor plane, with a fixed calibration
error of 1 degree of tilt and 2 cm of height (``training.bag.camera_in_floor``).

Per object: translation error / distance, range ratio, geodesic rotation error, PCK@0.1 of
the visible keypoints (of the box size), the size ratio (estimated keypoint-box diagonal /
true, metres) and the 2D spread ratio (RMS distance of the predicted visible keypoints from
their centroid / the same of the true ones). Range ratio ~ size ratio / spread ratio, so
these two say whether a range bias comes from the size model or from the 2D keypoints.
"""

from __future__ import annotations

import json
from pathlib import Path
import time

import numpy as np
from tqdm import tqdm

from training import binned

CALIBRATION_TILT_DEG = 1.0
CALIBRATION_HEIGHT_M = 0.02


def _spread(points: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.sum((points - points.mean(0)) ** 2, axis=1))))


def _diagonal(points: np.ndarray) -> float:
    return float(np.linalg.norm(points.max(0) - points.min(0)))


def scene_floor(scene: dict, index: int, seed: int):
    """The floor plane in the camera frame with the benchmark's calibration error."""
    from perception_3dinn.inference.pose import FloorPlane
    from training.bag import camera_in_floor

    R, p = camera_in_floor({'camera_R': scene['camera_R'][None],
                            'camera_t': scene['camera_t'][None]}, 0, CALIBRATION_TILT_DEG,
                           CALIBRATION_HEIGHT_M, seed + index)
    return FloorPlane.from_object_pose(R.T, -R.T @ p)


def evaluate_scenes(data_root: str | Path, out: str | Path, model: str | Path | None = None,
                    floor: bool = False, limit: int = 0, threads: int = 1,
                    min_box_px: float = 16.0, backend: str = 'onnxruntime',
                    overrides: dict | None = None,
                    checkpoint: str | Path | None = None) -> dict:
    """Run the benchmark; writes metrics.json (with 'binned'), per_object.npz, binned.md and
    binned.png into `out`. `overrides`: PipelineConfig fields to change (selection runs);
    `checkpoint`: run this torch checkpoint instead of the manifest's ONNX graph (the
    manifest still gives the crop padding and the size model)."""
    from perception_3dinn import metrics
    from perception_3dinn.camera import CameraIntrinsics
    from perception_3dinn.inference import Box2D, load_manifest, Pipeline, PipelineConfig
    from perception_3dinn.inference.manifest import default_model_dir
    from perception_3dinn.inference.pose import touched_edges
    from perception_3dinn.inference.uncertainty import range_sigma
    from training.synth.dataset import read_manifest, ShardDataset

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    info = read_manifest(data_root)
    path = Path(model) if model else default_model_dir(info['category']) / 'manifest.json'
    man = load_manifest(path)
    pipe = Pipeline.from_manifest(path, backend='torch' if checkpoint else backend,
                                  checkpoint=checkpoint, config=PipelineConfig(
        num_threads=threads, crop_pad=man.crop_pad, smoothing=False, compute_voxels=False,
        class_ids=(), **(overrides or {})))
    ds = ShardDataset(data_root)
    n = min(len(ds), limit) if limit else len(ds)
    rows: dict[str, list] = {}
    given = answered = 0
    t0 = time.time()
    for k in tqdm(range(n), desc='scenes' + (' (floor)' if floor else ''), unit='scene'):
        s = ds[k]
        H, W = s['image'].shape[:2]
        intr = CameraIntrinsics.from_matrix(np.asarray(s['K'], np.float64), W, H)
        boxes, slots = [], []
        for i in np.flatnonzero(s['object_valid']):
            b = s['box_visible'][i].astype(np.float64)
            if min(b[2] - b[0], b[3] - b[1]) < min_box_px or s['visible_pixels'][i] == 0:
                continue
            boxes.append(Box2D(*b, class_id=info['category'], detection_id=str(i)))
            slots.append(int(i))
        given += len(boxes)
        res = pipe.process(s['image'], intr, boxes, float(k),
                           floor=scene_floor(s, k, info['seed']) if floor else None)
        for o in res.objects:
            i = slots[o.box_index]
            answered += 1
            vis = s['visible'][i]
            gt2 = s['keypoints_2d'][i].astype(np.float64)
            box = s['box_visible'][i]
            size = max(box[2] - box[0], box[3] - box[1])
            err = np.linalg.norm(o.keypoints_2d - gt2, axis=1)
            obj_pts = (o.keypoints_3d - o.t) @ o.R
            row = {
                'R_pred': o.R, 't_pred': o.t, 'R_gt': s['R'][i], 't_gt': s['t'][i],
                'box_height_px': box[3] - box[1], 'truncation': s['truncation'][i],
                'occlusion': s['occlusion'][i],
                'pck10': float(np.mean(err[vis] <= 0.1 * size)) if vis.any() else np.nan,
                'size_ratio': _diagonal(obj_pts) / float(s['scale_m'][i]),
                'spread_ratio': (_spread(o.keypoints_2d[vis]) / _spread(gt2[vis])
                                 if vis.sum() >= 3 else np.nan),
                'range_sigma': range_sigma(o.covariance, o.t),
                'touches_border': any(touched_edges(box, W, H)),
                'low_confidence': float(np.mean(o.confidences < 0.3)),
                # keypoints outside the image kept as confident (not marked absent)
                'outside_confident': (float(np.mean(o.confidences[~s['in_image'][i]] >= 0.3))
                                      if (~s['in_image'][i]).any() else np.nan),
                'reproj_px': o.reproj_error_px,
                'pose_source': o.pose_source, 'scene': k, 'slot': i,
            }
            for key, value in row.items():
                rows.setdefault(key, []).append(value)
    pipe.close()
    arr = {k: np.asarray(v) for k, v in rows.items()}
    attrs = binned.view_attributes(arr['R_gt'], arr['t_gt'])
    attrs.update({k: arr[k] for k in ('box_height_px', 'truncation', 'occlusion')})
    errors = binned.pose_errors(arr['R_pred'], arr['t_pred'], arr['R_gt'], arr['t_gt'])
    errors.update({k: arr[k].astype(np.float64) for k in ('pck10', 'size_ratio',
                                                          'spread_ratio')})
    range_err = np.abs(np.linalg.norm(arr['t_pred'], axis=1) - attrs['distance_m'])
    errors['inside_1sigma'] = (range_err <= arr['range_sigma']).astype(np.float64)
    table = binned.binned_errors(attrs, errors)
    name = f"{info['config']['width']}x{info['config']['height']}" + (' + floor' if floor
                                                                       else '')
    result = {
        'data': str(data_root), 'model': str(path), 'category': info['category'],
        'checkpoint': str(checkpoint) if checkpoint else None,
        'camera': name, 'floor': floor, 'scenes': n, 'objects_given': given,
        'objects_answered': answered,
        'pnp_fraction': float(np.mean(arr['pose_source'] == 'pnp')),
        'floor_calibration_error': ({'tilt_deg': CALIBRATION_TILT_DEG,
                                     'height_m': CALIBRATION_HEIGHT_M} if floor else None),
        'outside_keypoints_confident': float(np.nanmean(arr['outside_confident'])),
        'azimuth_median_deg': float(np.degrees(np.median(metrics.azimuth_error(
            arr['R_pred'], arr['R_gt'])))),
        'pipeline_overrides': overrides or {}, 'seconds': time.time() - t0, 'binned': table,
    }
    (out / 'metrics.json').write_text(json.dumps(result, indent=1) + '\n')
    (out / 'binned.md').write_text(binned.markdown(table, f"{info['category']}, {name}")
                                   + '\n')
    binned.plot(table, out / 'binned.png', f"{info['category']}, {name}: {data_root}")
    np.savez_compressed(out / 'per_object.npz', **{k: v for k, v in arr.items()},
                        **{f'attr_{k}': v for k, v in attrs.items()},
                        **{f'err_{k}': v for k, v in errors.items()})
    return result
