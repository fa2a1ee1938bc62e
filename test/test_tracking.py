"""Tracking and temporal smoothing on known trajectories (perception_3dinn.tracking)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from perception_3dinn.inference.temporal import (
    rotation_jitter,
    rotation_lag,
    translation_jitter,
    translation_lag,
)
from perception_3dinn.tracking import box_iou, Observation, Tracker, TrackerConfig

FPS = 30.0


def _obs(R, t, box=(100, 100, 200, 200), structure=(0.0, 0.0), detection_id=None,
         category='chair'):
    return Observation(box=np.asarray(box, float), R=np.asarray(R, float),
                       t=np.asarray(t, float), structure=np.asarray(structure, float),
                       category=category, detection_id=detection_id)


def _iou_reference(a, b):
    out = np.zeros((len(a), len(b)))
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            w = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
            h = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
            inter = w * h
            union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
            out[i, j] = inter / union if union > 0 else 0.0
    return out


def test_box_iou_matches_reference():
    rng = np.random.default_rng(0)
    lo = rng.uniform(0, 100, (7, 2))
    a = np.concatenate([lo, lo + rng.uniform(1, 60, (7, 2))], axis=1)
    lo = rng.uniform(0, 100, (5, 2))
    b = np.concatenate([lo, lo + rng.uniform(1, 60, (5, 2))], axis=1)
    np.testing.assert_allclose(box_iou(a, b), _iou_reference(a, b), atol=1e-12)
    assert box_iou(a, a).diagonal() == pytest.approx(1.0)
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 5)


def _simulate(trajectory, noise_deg, noise_m, n=240, seed=0, config=None):
    """Feed noisy measurements of a known trajectory; return truths, measurements, estimates."""
    rng = np.random.default_rng(seed)
    tracker = Tracker(config or TrackerConfig())
    truth, meas, est = [], [], []
    for i in range(n):
        s = i / FPS
        R, t = trajectory(s)
        Rm = Rotation.from_rotvec(rng.normal(0, np.radians(noise_deg), 3)) * R
        tm = t + rng.normal(0, noise_m, 3)
        out = tracker.update(s, [_obs(Rm.as_matrix(), tm)])
        assert len(out) == 1 and out[0].track_id == '1'
        truth.append((R, t))
        meas.append((Rm, tm))
        est.append((Rotation.from_matrix(out[0].R), out[0].t))
    return truth, meas, est


def _rot_error(truth, seq, start=30, shift=0.0):
    """Mean geodesic error (deg) of seq[i] against the truth at frame i - shift."""
    errs = []
    for i in range(start, len(seq)):
        j = i - shift
        j0 = int(np.floor(j))
        f = j - j0
        r0, r1 = truth[j0][0], truth[j0 + 1][0] if f > 0 else truth[j0][0]
        ref = r0 * Rotation.from_rotvec(f * (r0.inv() * r1).as_rotvec())
        errs.append((seq[i][0] * ref.inv()).magnitude())
    return np.degrees(np.mean(errs))


def _static(s):
    return Rotation.from_euler('xyz', [0.3, -0.2, 1.0]), np.array([0.2, -0.1, 3.0])


def _moving(s):
    rot = Rotation.from_rotvec([0.0, np.radians(30.0) * s, 0.0]) * Rotation.from_euler(
        'x', 0.4)
    t = np.array([0.4 * np.sin(0.8 * s), 0.05 * s, 3.0 + 0.3 * s])
    return rot, t


def test_static_object_converges():
    # start from a wrong pose, then exact measurements: the filter settles on the truth
    tracker = Tracker()
    R, t = _static(0)
    wrong = Rotation.from_rotvec([0.3, 0.0, 0.0]) * R
    tracker.update(0.0, [_obs(wrong.as_matrix(), t + np.array([0.2, 0.0, 0.0]))])
    for i in range(1, 90):
        out = tracker.update(i / FPS, [_obs(R.as_matrix(), t)])[0]
    assert (Rotation.from_matrix(out.R) * R.inv()).magnitude() < 1e-4
    np.testing.assert_allclose(out.t, t, atol=1e-4)
    # noisy measurements: less scatter than the measurements, no bias
    truth, meas, est = _simulate(_static, noise_deg=3.0, noise_m=0.03)
    assert _rot_error(truth, est) < 0.6 * _rot_error(truth, meas)
    t_err_raw = np.sqrt(np.mean([np.sum((m[1] - g[1]) ** 2) for m, g in zip(meas, truth)]))
    t_err = np.sqrt(np.mean([np.sum((e[1] - g[1]) ** 2) for e, g in zip(est[30:], truth)]))
    assert t_err < 0.7 * t_err_raw
    bias = np.mean([e[1] for e in est[30:]], axis=0) - truth[0][1]
    assert np.linalg.norm(bias) < 0.01


def test_noise_free_moving_object_is_followed_exactly():
    truth, _, est = _simulate(_moving, noise_deg=0.0, noise_m=0.0)
    # alpha-beta filters have no steady-state error on constant-velocity motion; the
    # translation here also accelerates slightly (sin), so allow a small residual.
    assert _rot_error(truth, est, start=120) < 0.05
    t_err = max(np.linalg.norm(e[1] - g[1]) for e, g in zip(est[120:], truth[120:]))
    assert t_err < 5e-3


def test_moving_object_jitter_halved_with_little_lag():
    truth, meas, est = _simulate(_moving, noise_deg=3.0, noise_m=0.02)
    gt_R = np.stack([g[0].as_matrix() for g in truth])[30:]
    gt_t = np.stack([g[1] for g in truth])[30:]
    est_R = np.stack([e[0].as_matrix() for e in est])[30:]
    est_t = np.stack([e[1] for e in est])[30:]
    meas_R = np.stack([m[0].as_matrix() for m in meas])[30:]
    meas_t = np.stack([m[1] for m in meas])[30:]
    assert rotation_jitter(est_R, gt_R) <= 0.5 * rotation_jitter(meas_R, gt_R)
    assert translation_jitter(est_t, gt_t) <= 0.5 * translation_jitter(meas_t, gt_t)
    assert rotation_lag(est_R, gt_R) <= 1.0
    assert translation_lag(est_t, gt_t) <= 1.0


def test_structure_is_the_window_median():
    cfg = TrackerConfig(structure_window=5)
    tracker = Tracker(cfg)
    rng = np.random.default_rng(3)
    values = rng.normal(size=(9, 2))
    R, t = _static(0)
    for i, v in enumerate(values):
        out = tracker.update(i / FPS, [_obs(R.as_matrix(), t, structure=v)])[0]
        window = values[max(0, i - 4):i + 1]
        np.testing.assert_allclose(out.structure, np.median(window, axis=0))


def test_measured_scale_is_the_window_median_of_its_logs():
    tracker = Tracker(TrackerConfig(structure_window=4))
    R, t = _static(0)
    out = tracker.update(0.0, [_obs(R.as_matrix(), t)])[0]
    assert out.scale is None  # no scale measured: the pipeline uses its size model
    logs = [0.1, -0.2, 0.3, 0.05, 0.4, None, -0.1]
    seen = []
    for i, v in enumerate(logs, start=1):
        obs = _obs(R.as_matrix(), t)
        obs.log_scale = v
        out = tracker.update(i / FPS, [obs])[0]
        if v is not None:
            seen.append(v)
        assert out.scale == pytest.approx(np.exp(np.median(seen[-4:])), rel=1e-12)
    bad = _obs(R.as_matrix(), t)
    bad.log_scale = float('inf')
    with pytest.raises(ValueError, match='log_scale'):
        tracker.update(1.0, [bad])


def test_backward_time_jump_resets():
    tracker = Tracker()
    R, t = _static(0)
    for i in range(5):
        first = tracker.update(10.0 + i / FPS, [_obs(R.as_matrix(), t)])[0]
    assert first.track_id == '1' and first.hits == 5
    after = tracker.update(2.0, [_obs(R.as_matrix(), t)])[0]
    assert after.track_id != '1' and after.hits == 1 and after.is_new


def test_outliers_ignored_and_persistent_jump_reinitialises():
    tracker = Tracker(TrackerConfig(outlier_frames=3))
    R, t = _static(0)
    for i in range(10):
        tracker.update(i / FPS, [_obs(R.as_matrix(), t)])
    flipped = Rotation.from_euler('z', np.pi) * R
    # one flipped frame (a symmetric flip) and one depth outlier: ignored
    out = tracker.update(10 / FPS, [_obs(flipped.as_matrix(), t)])[0]
    assert out.outlier and not out.is_new
    np.testing.assert_allclose(out.R, R.as_matrix(), atol=1e-9)
    tracker.update(11 / FPS, [_obs(R.as_matrix(), t)])  # a good frame ends the run
    out = tracker.update(12 / FPS, [_obs(R.as_matrix(), t * 3.0)])[0]
    assert out.outlier
    np.testing.assert_allclose(out.t, t, atol=1e-9)
    tracker.update(13 / FPS, [_obs(R.as_matrix(), t)])
    # the flip persists for three frames: the track re-initialises on it
    for k in range(3):
        out = tracker.update((14 + k) / FPS, [_obs(flipped.as_matrix(), t)])[0]
        assert out.track_id == '1' and out.is_new == (k == 2) and out.outlier == (k < 2)
    np.testing.assert_allclose(out.R, flipped.as_matrix(), atol=1e-9)
    # outlier_frames=1: every jump re-initialises at once
    tracker = Tracker(TrackerConfig(outlier_frames=1))
    tracker.update(0.0, [_obs(R.as_matrix(), t)])
    out = tracker.update(1 / FPS, [_obs(flipped.as_matrix(), t)])[0]
    assert out.is_new and not out.outlier


def test_association_by_box_and_by_detection_id():
    tracker = Tracker()
    R, t = _static(0)
    a, b = (0, 0, 100, 100), (300, 0, 400, 100)
    ids = [o.track_id for o in tracker.update(0.0, [_obs(R.as_matrix(), t, a),
                                                    _obs(R.as_matrix(), t, b)])]
    # same objects, moved a little and given in the other order
    out = tracker.update(0.033, [_obs(R.as_matrix(), t, (305, 2, 405, 102)),
                                 _obs(R.as_matrix(), t, (3, 1, 103, 101))])
    assert [o.track_id for o in out] == ids[::-1]
    # a detector id wins over box overlap, even for a far jump
    tracker.reset()
    first = tracker.update(0.0, [_obs(R.as_matrix(), t, a, detection_id='7')])[0].track_id
    out = tracker.update(0.033, [_obs(R.as_matrix(), t, b, detection_id='7'),
                                 _obs(R.as_matrix(), t, a, detection_id='8')])
    assert out[0].track_id == first and out[1].track_id != first
    # other categories never match
    tracker.reset()
    first = tracker.update(0.0, [_obs(R.as_matrix(), t, a)])[0].track_id
    out = tracker.update(0.033, [_obs(R.as_matrix(), t, a, category='table')])[0]
    assert out.track_id != first


def test_tracks_expire():
    tracker = Tracker(TrackerConfig(max_age_s=0.5))
    R, t = _static(0)
    first = tracker.update(0.0, [_obs(R.as_matrix(), t)])[0].track_id
    tracker.update(0.3, [])
    assert tracker.num_tracks == 1
    out = tracker.update(0.9, [_obs(R.as_matrix(), t)])[0]
    assert out.track_id != first and out.is_new


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match='rotation_alpha'):
        Tracker(TrackerConfig(rotation_alpha=0.0))
    tracker = Tracker()
    R, t = _static(0)
    with pytest.raises(ValueError, match='non-finite'):
        tracker.update(0.0, [_obs(R.as_matrix(), [np.nan, 0, 1])])
    with pytest.raises(ValueError, match='shape'):
        tracker.update(0.0, [_obs(np.eye(2), t)])
    with pytest.raises(ValueError, match='stamp'):
        tracker.update(float('nan'), [])


def test_temporal_metrics_on_known_sequences():
    frames = np.arange(60)
    rotvec = np.stack([0.02 * frames, 0.3 * np.sin(0.1 * frames), 0 * frames], axis=1)
    gt = Rotation.from_rotvec(rotvec).as_matrix()
    t_gt = np.stack([0.01 * frames, np.cos(0.1 * frames), 3 + 0 * frames], axis=1)
    # identical -> no jitter, no lag; a constant offset -> still no jitter
    assert rotation_jitter(gt, gt) == pytest.approx(0.0, abs=1e-12)
    offset = Rotation.from_rotvec([0.0, 0.0, 0.2]).as_matrix()
    assert rotation_jitter(offset @ gt, gt) > 0  # left offset changes the increments' axes
    assert rotation_jitter(gt @ offset, gt) == pytest.approx(0.0, abs=1e-9)
    assert translation_jitter(t_gt + 0.5, t_gt) == pytest.approx(0.0, abs=1e-12)
    # a copy delayed by exactly two frames
    late = np.concatenate([gt[:1].repeat(2, 0), gt[:-2]])
    assert rotation_lag(late, gt) == pytest.approx(2.0)
    t_late = np.concatenate([t_gt[:1].repeat(2, 0), t_gt[:-2]])
    assert translation_lag(t_late, t_gt) == pytest.approx(2.0)
    assert translation_lag(t_gt, t_gt) == 0.0
    # white noise of std s per axis: translation jitter is sqrt(2 * 3) s
    rng = np.random.default_rng(0)
    noisy = t_gt.repeat(50, 0)[:3000] + rng.normal(0, 0.01, (3000, 3))
    assert translation_jitter(noisy, t_gt.repeat(50, 0)[:3000]) == pytest.approx(
        0.01 * np.sqrt(6), rel=0.05)
    with pytest.raises(ValueError, match='T >= 3'):
        rotation_jitter(gt[:2], gt[:2])
