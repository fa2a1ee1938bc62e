"""Temporal smoothing: jitter and lag with and without it, and its cost per object.

    python bench/bench_smoothing.py [--frames 300] [--seeds 5]
    python bench/bench_smoothing.py --videos DIR --manifest MODEL_DIR   # + pipeline on videos

Part 1 (always): camera trajectories around a chair at 30 fps (static camera, an orbit, a fast
pan with changing distance) observed with Gaussian pose noise (rotation sigma per axis,
translation sigma as a fraction of the distance, three times larger along depth as PnP
gives); the tracker's output is compared with the raw measurements against the truth
(`perception_3dinn.inference.temporal`: jitter = RMS frame-to-frame change minus the true
change; lag = best-fitting delay in frames, on the noisy run and, as the filter's own delay,
on the exact trajectory). Part 2 (with --videos and a trained model): the
same metrics for the full pipeline on synthetic benchmark videos with their true intrinsics,
plus the metric translation error as a percentage of the camera distance.
Results: bench/results/bench_smoothing.{json,md}. Targets: rotation jitter cut >= 50 % with
mean lag <= 1 frame; median translation error <= 5 % of the distance.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import platform
import sys
import time

import numpy as np
from scipy.spatial.transform import Rotation
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from perception_3dinn.geometry import pose_from_viewpoint  # noqa: E402
from perception_3dinn.inference.temporal import (  # noqa: E402
    rotation_jitter,
    rotation_lag,
    translation_jitter,
    translation_lag,
)
from perception_3dinn.tracking import Observation, Tracker, TrackerConfig  # noqa: E402

FPS = 30.0


def trajectory(kind: str, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(T, 3, 3), (T, 3) object -> camera poses of a chair seen from a moving camera."""
    s = np.arange(frames) / FPS
    if kind == 'static':
        az, el, dist = np.full_like(s, 0.7), np.full_like(s, 0.3), np.full_like(s, 3.0)
    elif kind == 'orbit':  # walking around the chair at 20 deg/s, slight bobbing
        az = np.radians(20.0) * s
        el = 0.3 + 0.05 * np.sin(2 * np.pi * 0.5 * s)
        dist = 3.0 + 0.3 * np.sin(2 * np.pi * 0.1 * s)
    elif kind == 'fast_pan':  # swinging +-40 deg at 0.4 Hz while approaching
        az = np.radians(40.0) * np.sin(2 * np.pi * 0.4 * s)
        el = 0.25 + 0.1 * np.sin(2 * np.pi * 0.3 * s)
        dist = 4.0 - 1.5 * s / s[-1]
    else:
        raise ValueError(kind)
    poses = [pose_from_viewpoint(a, e, d, target=(0.0, 0.0, 0.45))
             for a, e, d in zip(az, el, dist)]
    return np.stack([p[0] for p in poses]), np.stack([p[1] for p in poses])


def measure(R: np.ndarray, t: np.ndarray, rot_deg: float, trans_frac: float,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Noisy measurements: rotation noise in the camera frame, depth noise 3x lateral."""
    noise = Rotation.from_rotvec(rng.normal(0, np.radians(rot_deg), (len(R), 3)))
    Rm = (noise * Rotation.from_matrix(R)).as_matrix()
    dist = np.linalg.norm(t, axis=1, keepdims=True)
    tm = t + rng.normal(0, 1, t.shape) * trans_frac * dist * np.array([1.0, 1.0, 3.0])
    return Rm, tm


def smooth(Rm: np.ndarray, tm: np.ndarray, config: TrackerConfig) -> tuple:
    tracker = Tracker(config)
    box = np.array([100.0, 100.0, 200.0, 300.0])
    out_R, out_t = [], []
    for i in range(len(Rm)):
        est = tracker.update(i / FPS, [Observation(box, Rm[i], tm[i], np.zeros(4), 'chair')])[0]
        out_R.append(est.R)
        out_t.append(est.t)
    return np.stack(out_R), np.stack(out_t)


def temporal_row(R_gt, t_gt, R_raw, t_raw, R_s, t_s, skip: int = 15) -> dict:
    sl = slice(skip, None)  # after the filter's start-up
    rj_raw, rj_s = rotation_jitter(R_raw[sl], R_gt[sl]), rotation_jitter(R_s[sl], R_gt[sl])
    tj_raw, tj_s = (translation_jitter(t_raw[sl], t_gt[sl]),
                    translation_jitter(t_s[sl], t_gt[sl]))
    return {
        'rot_jitter_raw_deg': np.degrees(rj_raw), 'rot_jitter_smooth_deg': np.degrees(rj_s),
        'rot_jitter_cut_pct': 100.0 * (1.0 - rj_s / rj_raw),
        'rot_lag_raw_frames': rotation_lag(R_raw[sl], R_gt[sl]),
        'rot_lag_smooth_frames': rotation_lag(R_s[sl], R_gt[sl]),
        'trans_jitter_raw_mm': 1e3 * tj_raw, 'trans_jitter_smooth_mm': 1e3 * tj_s,
        'trans_jitter_cut_pct': 100.0 * (1.0 - tj_s / tj_raw),
        'trans_lag_raw_frames': translation_lag(t_raw[sl], t_gt[sl]),
        'trans_lag_smooth_frames': translation_lag(t_s[sl], t_gt[sl]),
    }


def simulated(frames: int, seeds: int, config: TrackerConfig) -> list[dict]:
    rows = []
    cases = [(k, r, f) for k in ('static', 'orbit', 'fast_pan')
             for r, f in ((2.0, 0.01), (5.0, 0.03))]
    for kind, rot_deg, frac in tqdm(cases, desc='simulated trajectories'):
        R_gt, t_gt = trajectory(kind, frames)
        per_seed = []
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            Rm, tm = measure(R_gt, t_gt, rot_deg, frac, rng)
            Rs, ts = smooth(Rm, tm, config)
            per_seed.append(temporal_row(R_gt, t_gt, Rm, tm, Rs, ts))
        row = {k: float(np.mean([p[k] for p in per_seed])) for k in per_seed[0]}
        # the filter's own delay: smooth the exact trajectory (noise makes the lag fit noisy)
        R0, t0 = smooth(R_gt, t_gt, config)
        row['rot_lag_noise_free_frames'] = rotation_lag(R0[15:], R_gt[15:], step=0.05)
        row['trans_lag_noise_free_frames'] = translation_lag(t0[15:], t_gt[15:], step=0.05)
        rows.append({'trajectory': kind, 'rot_noise_deg': rot_deg, 'trans_noise_frac': frac,
                     **{k: round(v, 3) for k, v in row.items()}})
    return rows


def simulated_on_videos(root: Path, seeds: int, config: TrackerConfig,
                        limit: int | None) -> list[dict]:
    """The tracker on the true object poses of synthetic videos (camera paths with hand-held
    shake) observed with simulated noise; one row per noise level, mean over objects."""
    from training.synth.dataset import ShardDataset

    ds = ShardDataset(root, fields=['R', 't', 'present', 'object_valid'])
    n = len(ds) if limit is None else min(limit, len(ds))
    rows = []
    for rot_deg, frac in ((2.0, 0.01), (5.0, 0.03)):
        per, free = [], []
        for v in range(n):
            video = ds[v]
            for i in np.flatnonzero(video['object_valid']):
                if not video['present'][:, i].all():
                    continue  # the filter's view of an object that leaves the frame differs
                R_gt = video['R'][:, i].astype(np.float64)
                t_gt = video['t'][:, i].astype(np.float64)
                R0, t0 = smooth(R_gt, t_gt, config)
                free.append((rotation_lag(R0[5:], R_gt[5:], step=0.05),
                             translation_lag(t0[5:], t_gt[5:], step=0.05)))
                for seed in range(seeds):
                    Rm, tm = measure(R_gt, t_gt, rot_deg, frac, np.random.default_rng(seed))
                    Rs, ts = smooth(Rm, tm, config)
                    per.append(temporal_row(R_gt, t_gt, Rm, tm, Rs, ts, skip=5))
        if per:
            row = {k: round(float(np.mean([p[k] for p in per])), 3) for k in per[0]}
            row['rot_lag_noise_free_frames'] = float(np.mean([f[0] for f in free]))
            row['trans_lag_noise_free_frames'] = float(np.mean([f[1] for f in free]))
            rows.append({'trajectory': f'videos ({len(per) // seeds} objects)',
                         'rot_noise_deg': rot_deg, 'trans_noise_frac': frac, **row})
    return rows


def smoothing_cost(config: TrackerConfig, frames: int = 200) -> list[dict]:
    """Median tracker time per frame and per object for 1, 4 and 8 objects."""
    rows = []
    rng = np.random.default_rng(0)
    for n in (1, 4, 8):
        tracker = Tracker(config)
        boxes = [np.array([60.0 * i, 0.0, 60.0 * i + 50.0, 100.0]) for i in range(n)]
        times = []
        for f in range(frames):
            obs = [Observation(b, Rotation.from_rotvec(rng.normal(0, 0.05, 3)).as_matrix(),
                               np.array([0.0, 0.0, 3.0]) + rng.normal(0, 0.01, 3),
                               rng.normal(0, 0.1, 4), 'chair') for b in boxes]
            t0 = time.perf_counter()
            tracker.update(f / FPS, obs)
            times.append((time.perf_counter() - t0) * 1e3)
        med = float(np.median(times[10:]))
        rows.append({'objects': n, 'tracker_ms_per_frame': round(med, 4),
                     'tracker_ms_per_object': round(med / n, 4)})
    return rows


def _video_lines(video: dict, note: str) -> list[str]:
    if not video:
        return [note]
    summary = video['summary']
    lines = [f'{video["dataset"]}: {summary["videos"]} videos, {summary["objects"]} objects at '
             f'{summary["fps"]} fps, true boxes as detections, true intrinsics; floor: '
             f'{summary.get("floor", "not given")}; network: '
             f'{summary["network"]}; model trained: {summary["model_trained"]}; videos made '
             f'with `{summary["made_with"]}`.'
             + ('' if summary['model_trained'] or summary['network'] != 'model' else
                ' **UNTRAINED model: plumbing only, the numbers say nothing about '
                'accuracy.**'), '', '| metric | raw | smoothed |', '|---|---|---|']
    for key, name in (('median_trans_err_pct', 'median translation error, % of distance'),
                      ('median_rot_err_deg', 'median rotation error, deg'),
                      ('mean_rot_jitter_deg', 'rotation jitter, deg'),
                      ('mean_trans_jitter_mm', 'translation jitter, mm'),
                      ('mean_rot_lag_frames', 'rotation lag, frames'),
                      ('mean_trans_lag_frames', 'translation lag, frames')):
        lines.append(f'| {name} | {summary[key + "_raw"]} | {summary[key + "_smooth"]} |')
    if 'rot_jitter_cut_pct' in summary:
        lines += ['', f'Rotation jitter cut: {summary["rot_jitter_cut_pct"]} %. Lag added by '
                  f'smoothing (smoothed minus raw fit, frames): rotation '
                  f'{summary.get("mean_added_rot_lag_frames")}, translation '
                  f'{summary.get("mean_added_trans_lag_frames")}; the raw estimates show a '
                  'fitted "lag" of their own because their errors are correlated in time.']
    return lines


def markdown(meta: dict, sim: list[dict], cost: list[dict], video: dict, oracle: dict,
             images: dict, floors: list[dict] | None = None) -> str:
    lines = [f'# bench_smoothing ({meta["date_utc"]})', '', f'Command: `{meta["command"]}`',
             '', f'Machine: {meta["machine"]}. Tracker: {meta["tracker"]}.', '',
             '## Simulated measurements (mean over seeds)', '',
             '| trajectory | rot noise deg | trans noise | rot jitter raw -> smooth deg (cut) '
             '| rot lag raw / smooth frames | trans jitter raw -> smooth mm (cut) '
             '| trans lag raw / smooth frames | lag of the filter on exact input rot / trans '
             'frames |', '|---|---|---|---|---|---|---|---|']
    for r in sim:
        lines.append(
            f'| {r["trajectory"]} | {r["rot_noise_deg"]} | {100 * r["trans_noise_frac"]:.0f} % '
            f'| {r["rot_jitter_raw_deg"]:.2f} -> {r["rot_jitter_smooth_deg"]:.2f} '
            f'({r["rot_jitter_cut_pct"]:.0f} %) '
            f'| {r["rot_lag_raw_frames"]:.1f} / {r["rot_lag_smooth_frames"]:.1f} '
            f'| {r["trans_jitter_raw_mm"]:.1f} -> {r["trans_jitter_smooth_mm"]:.1f} '
            f'({r["trans_jitter_cut_pct"]:.0f} %) '
            f'| {r["trans_lag_raw_frames"]:.1f} / {r["trans_lag_smooth_frames"]:.1f} '
            f'| {r["rot_lag_noise_free_frames"]:.2f} / {r["trans_lag_noise_free_frames"]:.2f} |')
    lines += ['', '## Cost of tracking + smoothing', '',
              '| objects | ms per frame | ms per object |', '|---|---|---|']
    lines += [f'| {r["objects"]} | {r["tracker_ms_per_frame"]:.3f} | '
              f'{r["tracker_ms_per_object"]:.3f} |' for r in cost]
    lines += ['', '## Pipeline on synthetic videos (the model)', '']
    lines += _video_lines(video, meta.get('video_note', 'not run'))
    lines += ['', '## Pipeline on synthetic videos (simulated network: truth + noise)', '',
              'The network replaced by bench.video_eval.NoisyOracleEngine: what the '
              'pipeline (PnP, size model, tracking, smoothing) makes of outputs with the stated '
              'noise; not a measurement of any trained model.', '']
    lines += _video_lines(oracle, meta.get('video_note', 'not run'))
    for run in floors or []:
        lines += ['', f'## Pipeline on synthetic videos (the model), with the floor plane: '
                  f'{run["summary"]["floor"]}', '',
                  'The metric scale fused from the size model and the floor the objects stand '
                  'on (`perception_3dinn.inference.pose.floor_log_scale`), as a robot that '
                  'knows its camera mount gets it.', '']
        lines += _video_lines(run, '')
    lines += ['', '## Single rendered images (true intrinsics, no smoothing)', '']
    if images:
        if not images.get('model_trained'):
            lines += ['**UNTRAINED model**: only the true-keypoint columns (the floor set by '
                      'the unknown instance size) are meaningful.', '']
        lines += ['| ' + ' | '.join(images) + ' |', '|' + '---|' * len(images),
                  '| ' + ' | '.join(str(v) for v in images.values()) + ' |']
    else:
        lines.append('not run: no --images given')
    lines += ['', 'Targets: rotation jitter cut >= 50 % with lag <= 1 frame; median metric '
              'translation error <= 5 % of the camera distance.', '']
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--frames', type=int, default=300)
    parser.add_argument('--seeds', type=int, default=5)
    parser.add_argument('--videos', type=Path, default=None,
                        help='synthetic benchmark videos (training.synthesize videos)')
    parser.add_argument('--video-limit', type=int, default=None, help='at most this many videos')
    parser.add_argument('--oracle-kp-px', type=float, default=2.0,
                        help='simulated network: keypoint noise, crop pixels')
    parser.add_argument('--oracle-rot-deg', type=float, default=5.0,
                        help='simulated network: interpreter rotation noise per axis, degrees')
    parser.add_argument('--oracle-trans-frac', type=float, default=0.05,
                        help='simulated network: interpreter translation noise, fraction')
    parser.add_argument('--images', type=Path, default=None,
                        help='rendered image data set: single-frame metric pose accuracy')
    parser.add_argument('--image-limit', type=int, default=300)
    parser.add_argument('--manifest', type=Path, default=None,
                        help='model for --videos / --images (default: the shipped one)')
    parser.add_argument('--floor', action='store_true',
                        help='with --videos: also run with the floor plane, true and '
                        'miscalibrated by --floor-tilt-deg / --floor-height-m')
    parser.add_argument('--floor-tilt-deg', type=float, default=1.0)
    parser.add_argument('--floor-height-m', type=float, default=0.02)
    parser.add_argument('--out', type=Path, default=REPO / 'bench' / 'results')
    args = parser.parse_args(argv)
    config = TrackerConfig()
    sim = simulated(args.frames, args.seeds, config)
    cost = smoothing_cost(config)
    video: dict = {}
    oracle: dict = {}
    meta = {
        'date_utc': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
        'command': 'python bench/bench_smoothing.py ' + ' '.join(argv or sys.argv[1:]),
        'machine': f'{platform.machine()}, {os.cpu_count()} CPUs, '
                   f'Python {platform.python_version()}, load average '
                   f'{os.getloadavg()[0]:.1f}',
        'tracker': ', '.join(f'{k}={v}' for k, v in vars(config).items()),
        'video_note': ('not run: no --videos given (needs synthetic benchmark videos and a '
                       'trained model)'),
    }
    if args.videos is not None:
        from bench.video_eval import evaluate_videos

        sim += simulated_on_videos(args.videos, args.seeds, config, args.video_limit)
        video = evaluate_videos(args.videos, args.manifest, config, args.video_limit)
        video['dataset'] = str(args.videos)
        oracle = evaluate_videos(args.videos, args.manifest, config, args.video_limit,
                                 oracle={'kp_px': args.oracle_kp_px,
                                         'rot_deg': args.oracle_rot_deg,
                                         'trans_frac': args.oracle_trans_frac})
        oracle['dataset'] = str(args.videos)
    floors: list[dict] = []
    if args.videos is not None and args.floor:
        for spec in ({}, {'tilt_deg': args.floor_tilt_deg, 'height_m': args.floor_height_m}):
            run = evaluate_videos(args.videos, args.manifest, config, args.video_limit,
                                  floor=spec)
            run['dataset'] = str(args.videos)
            floors.append(run)
    images: dict = {}
    if args.images is not None:
        from bench.video_eval import evaluate_images

        images = evaluate_images(args.images, args.manifest, args.image_limit)
        images['dataset'] = str(args.images)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / 'bench_smoothing.json').write_text(json.dumps(
        {'meta': meta, 'simulated': sim, 'cost': cost, 'videos': video,
         'videos_simulated_network': oracle, 'videos_floor': floors, 'images': images},
        indent=1) + '\n')
    text = markdown(meta, sim, cost, video, oracle, images, floors)
    (args.out / 'bench_smoothing.md').write_text(text)
    print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
