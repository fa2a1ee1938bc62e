"""Evaluation metrics of the 3D Interpreter Network (numpy, float64).

2D keypoints (seed 000, sec. 4.1):

* PCK@a: fraction of keypoints whose error is below ``a * max(box w, h)``;
* PCP: percentage of correct parts, a skeleton edge is correct when both its endpoints lie
  within ``0.5 * |edge|`` (ground-truth length) of the truth (the usual PCP of pose papers;
  the paper's PCP uses annotator spread, which synthetic data does not have);
* AE: mean keypoint error in units of ``ae_unit * max(box w, h)`` (default 5 % of the box, a
  proxy for the annotators' standard deviation), each error bounded by 5 as in the paper.

3D (sec. 4.2): structure RMSE after centring each skeleton on its centroid and scaling it to
unit RMS radius (so neither position nor scale counts, which one image cannot fix), the
recall curve over RMSE thresholds and its average (average recall); azimuth error of the
viewpoint, geodesic rotation error and metric translation error.
"""

from __future__ import annotations

import numpy as np

from perception_3dinn.geometry import angle_difference, geodesic_angle, viewpoint_from_rotation

#: RMSE thresholds (unit-RMS-radius skeletons) of the structure recall curve.
RMSE_THRESHOLDS = np.linspace(0.01, 0.3, 30)


def _points(name: str, x: np.ndarray, dim: int) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim != 3 or x.shape[-1] != dim:
        raise ValueError(f'{name} must be (B, N, {dim}), got {x.shape}')
    return x


def _pair(pred: np.ndarray, gt: np.ndarray, dim: int,
          visible: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pred, gt = _points('pred', pred, dim), _points('gt', gt, dim)
    if pred.shape != gt.shape:
        raise ValueError(f'pred {pred.shape} and gt {gt.shape} differ')
    vis = np.ones(gt.shape[:2], bool) if visible is None else np.asarray(visible, bool)
    if vis.shape != gt.shape[:2]:
        raise ValueError(f'visible must be {gt.shape[:2]}, got {vis.shape}')
    return pred, gt, vis


def _box_size(box_size: np.ndarray, b: int) -> np.ndarray:
    size = np.asarray(box_size, np.float64).reshape(-1)
    if size.shape != (b,) or np.any(size <= 0):
        raise ValueError(f'box_size must be ({b},) positive, got {size.shape}')
    return size


def keypoint_errors(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Euclidean errors: (B, N, D), (B, N, D) -> (B, N)."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f'pred {pred.shape} and gt {gt.shape} differ')
    return np.linalg.norm(pred - gt, axis=-1)


def pck(pred: np.ndarray, gt: np.ndarray, box_size: np.ndarray, alpha: float = 0.1,
        visible: np.ndarray | None = None) -> float:
    """PCK@alpha over visible keypoints.

    Args:
        pred, gt: (B, N, 2) pixels.
        box_size: (B,) ``max(box w, h)`` pixels.
        alpha: threshold as a fraction of the box size.
        visible: (B, N) bool, keypoints to count (default all).
    """
    pred, gt, vis = _pair(pred, gt, 2, visible)
    size = _box_size(box_size, gt.shape[0])
    correct = keypoint_errors(pred, gt) < alpha * size[:, None]
    return float(correct[vis].mean()) if vis.any() else float('nan')


def pck_per_keypoint(pred: np.ndarray, gt: np.ndarray, box_size: np.ndarray,
                     alpha: float = 0.1, visible: np.ndarray | None = None) -> np.ndarray:
    """(N,) PCK@alpha of each keypoint over the visible instances (NaN when never visible)."""
    pred, gt, vis = _pair(pred, gt, 2, visible)
    size = _box_size(box_size, gt.shape[0])
    correct = (keypoint_errors(pred, gt) < alpha * size[:, None]) & vis
    count = vis.sum(0)
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(count > 0, correct.sum(0) / np.maximum(count, 1), np.nan)


def pcp(pred: np.ndarray, gt: np.ndarray, edges: np.ndarray,
        visible: np.ndarray | None = None, fraction: float = 0.5) -> float:
    """Percentage of correct parts (as a fraction in [0, 1]).

    Args:
        pred, gt: (B, N, 2) pixels.
        edges: (E, 2) keypoint index pairs.
        visible: (B, N); an edge counts when both endpoints are visible.
        fraction: endpoint tolerance as a fraction of the true edge length.
    """
    pred, gt, vis = _pair(pred, gt, 2, visible)
    edges = np.asarray(edges, np.int64).reshape(-1, 2)
    err = keypoint_errors(pred, gt)
    length = np.linalg.norm(gt[:, edges[:, 0]] - gt[:, edges[:, 1]], axis=-1)
    tol = fraction * length
    ok = (err[:, edges[:, 0]] <= tol) & (err[:, edges[:, 1]] <= tol)
    counted = vis[:, edges[:, 0]] & vis[:, edges[:, 1]]
    return float(ok[counted].mean()) if counted.any() else float('nan')


def average_error(pred: np.ndarray, gt: np.ndarray, box_size: np.ndarray,
                  visible: np.ndarray | None = None, ae_unit: float = 0.05,
                  bound: float = 5.0) -> float:
    """AE: mean of ``min(error / (ae_unit * box_size), bound)`` over visible keypoints."""
    pred, gt, vis = _pair(pred, gt, 2, visible)
    size = _box_size(box_size, gt.shape[0])
    err = np.minimum(keypoint_errors(pred, gt) / (ae_unit * size[:, None]), bound)
    return float(err[vis].mean()) if vis.any() else float('nan')


def normalise_structure(points: np.ndarray) -> np.ndarray:
    """Centre skeletons on their centroid and scale them to unit RMS radius.

    Args:
        points: (B, N, 3).

    Returns:
        (B, N, 3) with zero mean and ``sqrt(mean |p|^2) = 1`` per skeleton.
    """
    points = _points('points', points, 3)
    centred = points - points.mean(axis=1, keepdims=True)
    radius = np.sqrt((centred ** 2).sum(-1).mean(-1))
    if np.any(radius <= 0):
        raise ValueError('a skeleton has all keypoints at one point')
    return centred / radius[:, None, None]


def structure_rmse(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """3D keypoint RMSE after centring and scale normalisation.

    Args:
        pred, gt: (B, N, 3) skeletons in the same (canonical object) frame.

    Returns:
        (B,) RMSE in units of the skeleton's RMS radius.
    """
    pred, gt, _ = _pair(pred, gt, 3, None)
    diff = normalise_structure(pred) - normalise_structure(gt)
    return np.sqrt((diff ** 2).sum(-1).mean(-1))


def recall_curve(errors: np.ndarray, thresholds: np.ndarray = RMSE_THRESHOLDS) -> np.ndarray:
    """Fraction of samples with error <= each threshold: (B,), (T,) -> (T,)."""
    errors = np.asarray(errors, np.float64).reshape(-1)
    thresholds = np.asarray(thresholds, np.float64).reshape(-1)
    if errors.size == 0:
        raise ValueError('no errors given')
    return (errors[None, :] <= thresholds[:, None]).mean(axis=1)


def average_recall(errors: np.ndarray, thresholds: np.ndarray = RMSE_THRESHOLDS) -> float:
    """Mean of the recall curve over the thresholds (seed 000, Fig. 7)."""
    return float(recall_curve(errors, thresholds).mean())


def _rotations(name: str, R: np.ndarray) -> np.ndarray:
    R = np.asarray(R, np.float64)
    if R.ndim != 3 or R.shape[1:] != (3, 3):
        raise ValueError(f'{name} must be (B, 3, 3), got {R.shape}')
    return R


def azimuth_error(R_pred: np.ndarray, R_gt: np.ndarray) -> np.ndarray:
    """Absolute azimuth difference of the viewpoints, radians in [0, pi]: -> (B,)."""
    R_pred, R_gt = _rotations('R_pred', R_pred), _rotations('R_gt', R_gt)
    return angle_difference(viewpoint_from_rotation(R_pred)[0],
                            viewpoint_from_rotation(R_gt)[0])


def elevation_error(R_pred: np.ndarray, R_gt: np.ndarray) -> np.ndarray:
    """Absolute elevation difference of the viewpoints, radians: -> (B,)."""
    R_pred, R_gt = _rotations('R_pred', R_pred), _rotations('R_gt', R_gt)
    return np.abs(viewpoint_from_rotation(R_pred)[1] - viewpoint_from_rotation(R_gt)[1])


def geodesic_error(R_pred: np.ndarray, R_gt: np.ndarray) -> np.ndarray:
    """Angle of ``R_pred^T R_gt``, radians in [0, pi]: (B, 3, 3), (B, 3, 3) -> (B,)."""
    return geodesic_angle(_rotations('R_pred', R_pred), _rotations('R_gt', R_gt))


def translation_error(t_pred: np.ndarray, t_gt: np.ndarray) -> np.ndarray:
    """Euclidean translation error (metres when given metres): (B, 3), (B, 3) -> (B,)."""
    t_pred, t_gt = np.asarray(t_pred, np.float64), np.asarray(t_gt, np.float64)
    if t_pred.ndim != 2 or t_pred.shape[1] != 3 or t_pred.shape != t_gt.shape:
        raise ValueError(f't_pred {t_pred.shape} and t_gt {t_gt.shape} must both be (B, 3)')
    return np.linalg.norm(t_pred - t_gt, axis=-1)


def summarise_angles(errors_rad: np.ndarray, accuracy_deg: float = 30.0) -> dict:
    """Median, mean (degrees) and accuracy at ``accuracy_deg`` of angular errors (B,)."""
    deg = np.degrees(np.asarray(errors_rad, np.float64).reshape(-1))
    return {'median_deg': float(np.median(deg)), 'mean_deg': float(deg.mean()),
            f'acc_{accuracy_deg:g}deg': float((deg <= accuracy_deg).mean())}
