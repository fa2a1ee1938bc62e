"""Accuracy of the pipeline on synthetic data with true intrinsics (used by bench_smoothing).

- `evaluate_videos`: runs the pipeline over the videos of a video data set
  (`training.synthesize videos`) with and without smoothing, the objects' true boxes as
  detections: rotation/translation jitter and lag (`perception_3dinn.inference.temporal`),
  and the metric translation error as a percentage of the camera distance.
- `evaluate_images`: single rendered images (an image data set of `training.synthesize`):
  translation error (% of distance), geodesic rotation error, share of PnP poses, and the
  floor any single-image estimate has here: PnP on the true keypoints and true shape, with
  the metric scale from the size model or the bare size prior.

The metric scale comes from the category's size prior, while each synthetic instance has its
own size: the error with the instance's true scale (`*_scale_corrected`) separates the pose
estimate from that single-image ambiguity.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation
from tqdm import tqdm

from perception_3dinn.camera import CameraIntrinsics
from perception_3dinn.codec import HeatmapCodec
from perception_3dinn.crops import Crop
from perception_3dinn.geometry import geodesic_angle
from perception_3dinn.inference import Box2D, Pipeline, PipelineConfig
from perception_3dinn.inference.engines import Engine
from perception_3dinn.inference.manifest import default_model_dir, load_manifest
from perception_3dinn.inference.pipeline import prepare_boxes
from perception_3dinn.inference.pose import crop_camera_pose, FloorPlane, solve_pnp
from perception_3dinn.inference.temporal import (
    rotation_jitter,
    rotation_lag,
    translation_jitter,
    translation_lag,
)
from perception_3dinn.skeleton import load_category
from perception_3dinn.tracking import TrackerConfig


def _intrinsics(K: np.ndarray, image: np.ndarray) -> CameraIntrinsics:
    return CameraIntrinsics.from_matrix(np.asarray(K, np.float64), image.shape[1],
                                        image.shape[0])


def _box(frame: dict) -> Box2D:
    return Box2D(*np.asarray(frame['box'], np.float64), class_id='chair', score=1.0,
                 detection_id='0')


def evaluate_images(dataset: str | Path, manifest: str | Path | None,
                    limit: int = 300) -> dict:
    """Per-image pose accuracy on a rendered image data set (no smoothing)."""
    from training.synth.dataset import ShardDataset

    ds = ShardDataset(dataset)
    pipe = Pipeline.from_manifest(manifest, config=PipelineConfig(smoothing=False))
    t_err, t_err_scaled, r_err, pnp, bound, bound_prior = [], [], [], [], [], []
    for i in tqdm(range(min(limit, len(ds))), desc='images', unit='img'):
        s = ds[i]
        image = np.ascontiguousarray(s['image'])
        # The floor set by the unknown instance size: PnP on the true keypoints and the true
        # shape, scaled by the runtime's size model (and by the bare size prior).
        cam = _intrinsics(s['K'], image)
        t_true = np.asarray(s['t'], np.float64)
        alpha = np.asarray(s['structure'], np.float64)
        vis = np.asarray(s['visible'], bool)
        if vis.sum() >= 6:
            for scale, out in ((pipe.scale_m(alpha), bound),
                               (pipe.category.size_prior_m, bound_prior)):
                fit = solve_pnp(pipe.category.structure(alpha)[vis] * scale,
                                np.asarray(s['keypoints_2d'], np.float64)[vis], cam,
                                np.asarray(s['R'], np.float64), t_true)
                if fit is not None:
                    out.append(100.0 * np.linalg.norm(fit.t - t_true) / np.linalg.norm(t_true))
        result = pipe.process(image, cam, [_box(s)], float(i))
        pipe.reset()
        if not result.objects:
            continue
        obj = result.objects[0]
        t_gt = np.asarray(s['t'], np.float64)
        dist = np.linalg.norm(t_gt)
        t_err.append(100.0 * np.linalg.norm(obj.t - t_gt) / dist)
        scaled = obj.t * float(s['scale_m']) / obj.scale_m
        t_err_scaled.append(100.0 * np.linalg.norm(scaled - t_gt) / dist)
        r_err.append(np.degrees(geodesic_angle(obj.R, np.asarray(s['R'], np.float64))))
        pnp.append(obj.pose_source == 'pnp')
    return {'images': len(t_err),
            'trans_err_median_pct': round(float(np.median(t_err)), 2),
            'trans_err_median_pct_scale_corrected': round(float(np.median(t_err_scaled)), 2),
            'rot_err_median_deg': round(float(np.median(r_err)), 2),
            'pnp_share': round(float(np.mean(pnp)), 3),
            'model_trained': pipe.manifest.trained,
            'true_keypoints_trans_err_median_pct_size_model': round(float(np.median(bound)), 2),
            'true_keypoints_trans_err_median_pct_size_prior': round(
                float(np.median(bound_prior)), 2)}


class NoisyOracleEngine(Engine):
    """A simulated network: the true keypoints and crop-camera pose of each box's object plus
    noise of a stated size, for measuring the pipeline (PnP, size model, smoothing) on the
    benchmark videos before a trained model exists. Not a model of any real network's errors.

    Noise per object and frame: keypoints N(0, kp_px) crop pixels (keypoints the renderer
    marks invisible get empty heatmaps), rotation N(0, rot_deg) per axis, translation x
    (1 + N(0, trans_frac)), structure + N(0, 0.2 alpha_std).
    """

    backend = 'oracle'

    def __init__(self, manifest, category, config: PipelineConfig, kp_px: float = 2.0,
                 rot_deg: float = 5.0, trans_frac: float = 0.05, seed: int = 0) -> None:
        super().__init__(manifest)
        self.category, self.config = category, config
        self.codec = HeatmapCodec(manifest.input_size, manifest.stride, manifest.sigma)
        self.kp_px, self.rot_deg, self.trans_frac = kp_px, rot_deg, trans_frac
        self.rng = np.random.default_rng(seed)
        self.items: list[dict] = []

    def expect(self, boxes: list[Box2D], truths: list[dict], width: int, height: int,
               cam: CameraIntrinsics) -> None:
        """The truth of each box, in box order; the boxes the pipeline will keep are found
        with the same `prepare_boxes`."""
        kept, _ = prepare_boxes(boxes, width, height, self.config)
        self.items = [dict(truths[i], box=box.as_array(), cam=cam) for i, box in kept]

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        batch = self.check_batch(batch)
        if len(batch) != len(self.items):
            raise RuntimeError('oracle: batch does not match the expected boxes')
        s = self.manifest.input_size
        out: dict[str, list] = {k: [] for k in self.manifest.output_names}
        for it in self.items:
            crop = Crop.from_box(it['box'], s, pad=self.config.crop_pad)
            kp = crop.to_crop(it['keypoints_2d']) + self.rng.normal(0, self.kp_px,
                                                                    it['keypoints_2d'].shape)
            out['heatmaps'].append(self.codec.encode(kp, it['visible']))
            noise = Rotation.from_rotvec(self.rng.normal(0, np.radians(self.rot_deg), 3))
            R_c, t_c, f_c = crop_camera_pose(noise.as_matrix() @ it['R'], it['t'], crop,
                                             it['cam'], it['scale_m'])
            out['rotation'].append(R_c)
            out['translation'].append(t_c * (1.0 + self.rng.normal(0, self.trans_frac)))
            out['focal'].append(f_c)
            out['structure'].append(it['structure'] + self.rng.normal(
                0, 0.2 * self.category.alpha_std))
        return self.check_outputs({k: np.stack(v) for k, v in out.items()}, len(batch))


def _longest_run(mask: np.ndarray) -> slice:
    """The longest run of True in a 1-D mask, as a slice."""
    best, start, best_slice = 0, None, slice(0, 0)
    for k, m in enumerate(list(mask) + [False]):
        if m and start is None:
            start = k
        elif not m and start is not None:
            if k - start > best:
                best, best_slice = k - start, slice(start, k)
            start = None
    return best_slice


def video_floor(video: dict, k: int, tilt_rad: float = 0.0, height_m: float = 0.0,
                azimuth_rad: float = 0.0) -> FloorPlane | None:
    """The room's floor in the camera frame of frame k (all objects of a video stand on the
    floor z = 0), optionally miscalibrated: the normal tilted by `tilt_rad` (about an axis
    perpendicular to it at `azimuth_rad`) and the camera height off by `height_m`."""
    slots = np.flatnonzero(np.asarray(video['object_valid'], bool))
    if slots.size == 0:
        return None
    i = int(slots[0])
    floor = FloorPlane.from_object_pose(np.asarray(video['R'][k, i], np.float64),
                                        np.asarray(video['t'][k, i], np.float64))
    if tilt_rad == 0.0 and height_m == 0.0:
        return floor
    n = floor.normal
    a = np.cross(n, [1.0, 0.0, 0.0] if abs(n[0]) < 0.9 else [0.0, 1.0, 0.0])
    a /= np.linalg.norm(a)
    axis = Rotation.from_rotvec(azimuth_rad * n).apply(a)
    tilted = Rotation.from_rotvec(tilt_rad * axis).apply(n)
    return FloorPlane.from_coefficients([*tilted, floor.offset + height_m])


def evaluate_video(video: dict, pipes: dict[bool, Pipeline], fps: float,
                   trajectories: list[str] | None = None,
                   floor: dict | None = None) -> list[dict]:
    """Metrics per object of one video (`training.synth.videos` layout), raw and smoothed.

    Every present object's box is given to the pipeline as a detection (with the object's
    slot as detection id); jitter and lag use the longest run of frames with an estimate.
    With `floor` (keyword arguments of `video_floor`: {} for the true floor) the pipeline is
    given the floor plane of each frame.
    """
    frames, K = video['frames'], np.asarray(video['K'], np.float64)
    T, M = video['R'].shape[:2]
    valid = np.asarray(video['object_valid'], bool)
    present = np.asarray(video['present'], bool) & valid[None]
    est = {mode: (np.full((T, M, 3, 3), np.nan), np.full((T, M, 3), np.nan)) for mode in pipes}
    for mode, pipe in pipes.items():
        pipe.reset()
        for k in range(T):
            image = np.ascontiguousarray(frames[k])
            slots = [i for i in range(M) if present[k, i]]
            boxes = [Box2D(*np.asarray(video['box'][k, i], np.float64), class_id='chair',
                           score=1.0, detection_id=str(i)) for i in slots]
            cam = _intrinsics(K, image)
            if isinstance(pipe.engine, NoisyOracleEngine):
                truths = [{'keypoints_2d': np.asarray(video['keypoints_2d'][k, i], np.float64),
                           'visible': np.asarray(video['visible'][k, i], bool),
                           'R': np.asarray(video['R'][k, i], np.float64),
                           't': np.asarray(video['t'][k, i], np.float64),
                           'structure': np.asarray(video['structure'][i], np.float64),
                           'scale_m': float(video['scale_m'][i])} for i in slots]
                pipe.engine.expect(boxes, truths, image.shape[1], image.shape[0], cam)
            plane = video_floor(video, k, **floor) if floor is not None else None
            result = pipe.process(image, cam, boxes, k / fps, floor=plane)
            for obj in result.objects:
                i = slots[obj.box_index]
                est[mode][0][k, i], est[mode][1][k, i] = obj.R, obj.t
    rows = []
    for i in np.flatnonzero(valid):
        have = present[:, i] & np.all([np.isfinite(est[m][1][:, i, 0]) for m in pipes], axis=0)
        if have.sum() < 12:
            continue
        gt_R = np.asarray(video['R'][:, i], np.float64)
        gt_t = np.asarray(video['t'][:, i], np.float64)
        run = _longest_run(have)
        kind = video.get('trajectory', '')
        if trajectories and np.issubdtype(np.asarray(kind).dtype, np.integer):
            kind = trajectories[int(kind)]
        row = {'trajectory': str(kind), 'object': int(i),
               'frames': int(have.sum()), 'run': run.stop - run.start}
        for mode in pipes:
            tag = 'smooth' if mode else 'raw'
            R_est, t_est = est[mode][0][:, i], est[mode][1][:, i]
            dist = np.linalg.norm(gt_t[have], axis=1)
            row[f'trans_err_pct_{tag}'] = float(np.median(
                100.0 * np.linalg.norm(t_est[have] - gt_t[have], axis=1) / dist))
            row[f'rot_err_deg_{tag}'] = float(np.median(np.degrees(
                geodesic_angle(R_est[have], gt_R[have]))))
            if row['run'] >= 12:
                r, g = R_est[run], gt_R[run]
                row[f'rot_jitter_deg_{tag}'] = float(np.degrees(rotation_jitter(r, g)))
                row[f'trans_jitter_mm_{tag}'] = 1e3 * translation_jitter(t_est[run], gt_t[run])
                row[f'rot_lag_frames_{tag}'] = rotation_lag(r, g)
                row[f'trans_lag_frames_{tag}'] = translation_lag(t_est[run], gt_t[run])
        rows.append(row)
    return rows


def evaluate_videos(root: str | Path, manifest: str | Path | None,
                    tracker: TrackerConfig | None = None, limit: int | None = None,
                    oracle: dict | None = None, floor: dict | None = None) -> dict:
    """Per-object rows over a video data set and their summary (medians / means).

    With `oracle` (keyword arguments of NoisyOracleEngine, e.g. {'kp_px': 2.0}) the network
    is replaced by the simulated one. With `floor` (a dict of `tilt_deg`, `height_m`, the
    miscalibration; {} for the true floor) each frame comes with the floor plane; the tilt's
    direction is drawn per video (seeded by the video index).
    """
    from training.synth.dataset import ShardDataset

    ds = ShardDataset(root)
    fps = float(ds.manifest.get('config', {}).get('fps', 15.0))
    pipes = {}
    for mode in (False, True):
        config = PipelineConfig(smoothing=mode, tracker=tracker or TrackerConfig())
        if oracle is None:
            pipes[mode] = Pipeline.from_manifest(manifest, config=config)
        else:
            m = load_manifest(manifest if manifest is not None else default_model_dir())
            category = load_category(m.category)
            engine = NoisyOracleEngine(m, category, config, **oracle)
            pipes[mode] = Pipeline(engine, m, category, config)
    rows = []
    n = len(ds) if limit is None else min(limit, len(ds))
    for v in tqdm(range(n), desc='videos', unit='video'):
        plane = None
        if floor is not None:
            plane = {'tilt_rad': np.radians(floor.get('tilt_deg', 0.0)),
                     'height_m': floor.get('height_m', 0.0),
                     'azimuth_rad': float(np.random.default_rng(v).uniform(0, 2 * np.pi))}
        for row in evaluate_video(ds[v], pipes, fps, ds.manifest.get('trajectories'), plane):
            rows.append({'video': v, **row})
    summary: dict = {'videos': n, 'objects': len(rows), 'fps': fps,
                     'model_trained': pipes[True].manifest.trained,
                     'network': ('simulated: truth + noise ' + json.dumps(oracle)
                                 if oracle is not None else 'model'),
                     'floor': ('not given' if floor is None else
                               'true floor plane' if not any(floor.values()) else
                               'floor plane miscalibrated by ' + json.dumps(floor)),
                     'made_with': (f'python -m training.synthesize videos --category '
                                   f'{ds.manifest.get("category")} --count '
                                   f'{ds.manifest.get("count")} --seed '
                                   f'{ds.manifest.get("seed")} --frames '
                                   f'{ds.manifest.get("config", {}).get("frames")}')}
    for tag in ('raw', 'smooth'):
        for key in ('trans_err_pct', 'rot_err_deg'):
            vals = [r[f'{key}_{tag}'] for r in rows]
            summary[f'median_{key}_{tag}'] = round(float(np.median(vals)), 3) if vals else None
        for key in ('rot_jitter_deg', 'trans_jitter_mm', 'rot_lag_frames', 'trans_lag_frames'):
            vals = [r[f'{key}_{tag}'] for r in rows if f'{key}_{tag}' in r]
            summary[f'mean_{key}_{tag}'] = round(float(np.mean(vals)), 3) if vals else None
    for key in ('rot_lag_frames', 'trans_lag_frames'):
        pairs = [r[f'{key}_smooth'] - r[f'{key}_raw'] for r in rows if f'{key}_raw' in r]
        # the lag fit also finds a 'lag' in raw estimates whose errors are correlated in time:
        # what smoothing adds is the difference
        summary[f'mean_added_{key}'] = round(float(np.mean(pairs)), 3) if pairs else None
    if summary.get('mean_rot_jitter_deg_raw'):
        summary['rot_jitter_cut_pct'] = round(100.0 * (
            1.0 - summary['mean_rot_jitter_deg_smooth'] / summary['mean_rot_jitter_deg_raw']), 1)
    return {'summary': summary, 'rows': rows}
