"""Temporal metrics of pose sequences: jitter and lag against ground truth (numpy, scipy).

- jitter: RMS of the frame-to-frame change of the estimate minus the true change (rotation:
  geodesic angle of `(E_i E_{i-1}^T)(G_i G_{i-1}^T)^T`; translation: metres), so a smooth but
  offset estimate has no jitter and measurement noise shows up in full;
- lag: the delay s (frames, on a grid) that minimises the mean error between the estimate at
  frame i and the truth interpolated at frame i - s (slerp for rotations).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation, Slerp


def _check(R: np.ndarray, name: str) -> np.ndarray:
    R = np.asarray(R, np.float64)
    if R.ndim != 3 or R.shape[1:] != (3, 3) or len(R) < 3:
        raise ValueError(f'{name} must be (T >= 3, 3, 3), got {R.shape}')
    return R


def _check_t(t: np.ndarray, name: str) -> np.ndarray:
    t = np.asarray(t, np.float64)
    if t.ndim != 2 or t.shape[1] != 3 or len(t) < 3:
        raise ValueError(f'{name} must be (T >= 3, 3), got {t.shape}')
    return t


def rotation_jitter(R_est: np.ndarray, R_gt: np.ndarray) -> float:
    """RMS (radians) of frame-to-frame rotation change minus the true change.

    Args:
        R_est: `(T, 3, 3)` estimates.
        R_gt: `(T, 3, 3)` ground truth.
    """
    est = Rotation.from_matrix(_check(R_est, 'R_est'))
    gt = Rotation.from_matrix(_check(R_gt, 'R_gt'))
    if len(est) != len(gt):
        raise ValueError('R_est and R_gt must have the same length')
    d_est = est[1:] * est[:-1].inv()
    d_gt = gt[1:] * gt[:-1].inv()
    return float(np.sqrt(np.mean((d_est * d_gt.inv()).magnitude() ** 2)))


def translation_jitter(t_est: np.ndarray, t_gt: np.ndarray) -> float:
    """RMS (metres) of frame-to-frame translation change minus the true change, `(T, 3)`."""
    t_est, t_gt = _check_t(t_est, 't_est'), _check_t(t_gt, 't_gt')
    if t_est.shape != t_gt.shape:
        raise ValueError('t_est and t_gt must have the same shape')
    diff = np.diff(t_est, axis=0) - np.diff(t_gt, axis=0)
    return float(np.sqrt(np.mean(np.sum(diff * diff, axis=1))))


def rotation_lag(R_est: np.ndarray, R_gt: np.ndarray, max_lag: float = 5.0,
                 step: float = 0.1) -> float:
    """Delay (frames) of the estimate behind the truth that best explains it, `(T, 3, 3)`."""
    est = Rotation.from_matrix(_check(R_est, 'R_est'))
    frames = np.arange(len(est), dtype=np.float64)
    slerp = Slerp(frames, Rotation.from_matrix(_check(R_gt, 'R_gt')))
    start = int(np.ceil(max_lag))
    if len(est) <= start + 2:
        raise ValueError(f'need more than {start + 2} frames for max_lag {max_lag}')
    shifts = np.arange(0.0, max_lag + 1e-9, step)
    errors = [np.mean((est[start:] * slerp(frames[start:] - s).inv()).magnitude())
              for s in shifts]
    return float(shifts[int(np.argmin(errors))])


def translation_lag(t_est: np.ndarray, t_gt: np.ndarray, max_lag: float = 5.0,
                    step: float = 0.1) -> float:
    """Delay (frames) of the estimate behind the truth that best explains it, `(T, 3)`."""
    t_est, t_gt = _check_t(t_est, 't_est'), _check_t(t_gt, 't_gt')
    frames = np.arange(len(t_est), dtype=np.float64)
    start = int(np.ceil(max_lag))
    if len(t_est) <= start + 2:
        raise ValueError(f'need more than {start + 2} frames for max_lag {max_lag}')
    shifts = np.arange(0.0, max_lag + 1e-9, step)
    errors = []
    for s in shifts:
        ref = np.stack([np.interp(frames[start:] - s, frames, t_gt[:, k]) for k in range(3)],
                       axis=1)
        errors.append(np.mean(np.linalg.norm(t_est[start:] - ref, axis=1)))
    return float(shifts[int(np.argmin(errors))])
