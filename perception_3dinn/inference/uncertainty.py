"""The covariance of an object's metric pose (docs/inference.md, "Pose covariance").

Two independent sources:

1. The reprojection fit. The pose is the least-squares fit of the skeleton to the keypoints
   used (PnP, or the interpreter's pose evaluated on the same keypoints). Linearised at the
   fit, with per-coordinate keypoint noise sigma_px, its covariance is
   ``sigma_px^2 (J^T J)^-1`` where J (2M x 6) is the Jacobian of the projected keypoints
   with respect to a translation (x, y, z) and a small rotation (about the camera's x, y, z
   axes, applied about the object origin). sigma_px is the fit's own residual
   (``rms * sqrt(2M / (2M - 6))`` per coordinate), but at least a floor proportional to the
   box size (the keypoint decoder's resolution).
2. The metric scale. One image fixes the object's shape only up to scale; the scale comes
   from the size model (or the floor), with log-standard deviation sigma_s. A relative scale
   error moves the translation along itself: ``sigma_s^2 t t^T``.

The sum is scaled by ``inflation`` (one number, chosen on the full-frame selection sets so
that the range errors fall inside 1 sigma about 68 % of the time; docs/evaluation.md).
Ordering as geometry_msgs/PoseWithCovariance: (x, y, z, rotation about x, y, z), metres and
radians, in the camera optical frame.
"""

from __future__ import annotations

import numpy as np

from perception_3dinn.camera import CameraIntrinsics

# The decoder's resolution: a keypoint is located to about this fraction of the box size
# even when the fit's residual is smaller (few keypoints fit almost exactly).
MIN_SIGMA_BOX_FRACTION = 0.01


def projection_jacobian(R: np.ndarray, t: np.ndarray, points_m: np.ndarray,
                        intrinsics: CameraIntrinsics) -> np.ndarray:
    """(2M, 6) Jacobian of the pinhole projections of `points_m` (M, 3, object frame) with
    respect to (dx, dy, dz, dthx, dthy, dthz): X = exp([dth]x) R p + t + dt.

    Rows are u0, v0, u1, v1, ...; lens distortion is left out (a small correction to J).
    """
    X = np.asarray(points_m, np.float64).reshape(-1, 3) @ np.asarray(R, np.float64).T
    Xc = X + np.asarray(t, np.float64).reshape(3)
    z = Xc[:, 2]
    fx, fy = intrinsics.fx, intrinsics.fy
    d_proj = np.zeros((len(X), 2, 3))
    d_proj[:, 0, 0] = fx / z
    d_proj[:, 0, 2] = -fx * Xc[:, 0] / z ** 2
    d_proj[:, 1, 1] = fy / z
    d_proj[:, 1, 2] = -fy * Xc[:, 1] / z ** 2
    # d(exp([th]x) X)/d th at 0 = -[X]x
    skew = np.zeros((len(X), 3, 3))
    skew[:, 0, 1], skew[:, 0, 2] = X[:, 2], -X[:, 1]
    skew[:, 1, 0], skew[:, 1, 2] = -X[:, 2], X[:, 0]
    skew[:, 2, 0], skew[:, 2, 1] = X[:, 1], -X[:, 0]
    J = np.concatenate([d_proj, d_proj @ skew], axis=2)
    return J.reshape(-1, 6)


def pose_covariance(R: np.ndarray, t: np.ndarray, points_m: np.ndarray,
                    intrinsics: CameraIntrinsics, rms_px: float, box_size_px: float,
                    log_scale_sigma: float, inflation: float = 1.0) -> np.ndarray:
    """(6, 6) covariance of a metric pose (module docstring).

    Args:
        R, t: the pose (object -> camera, metres).
        points_m: (M, 3) skeleton keypoints the fit used, object frame, metres (M >= 3;
            fewer, or a degenerate geometry, leaves only the scale term plus a wide
            isotropic rotation and lateral term).
        rms_px: RMS reprojection error of the fit (NaN: unknown, the floor is used).
        box_size_px: the detection's larger side (sets the noise floor).
        log_scale_sigma: standard deviation of the log metric scale.
        inflation: calibration factor on the whole covariance.
    """
    t = np.asarray(t, np.float64).reshape(3)
    pts = np.asarray(points_m, np.float64).reshape(-1, 3)
    m = len(pts)
    floor = MIN_SIGMA_BOX_FRACTION * max(float(box_size_px), 1.0)
    cov = np.zeros((6, 6))
    fit_ok = False
    if m >= 3:
        dof = max(2 * m - 6, 1)
        sigma = float(rms_px) * np.sqrt(2 * m / dof) / np.sqrt(2) if np.isfinite(rms_px) else 0.0
        sigma = max(sigma, floor)
        J = projection_jacobian(R, t, pts, intrinsics)
        info = J.T @ J
        if np.linalg.cond(info) < 1e12:
            cov += sigma ** 2 * np.linalg.inv(info)
            fit_ok = True
    if not fit_ok:  # no usable fit: a wide, uninformative rotation and lateral position
        z = max(t[2], 1e-3)
        lateral = z * floor / max(intrinsics.fx, 1e-6) * 10.0
        cov[:3, :3] += np.diag([lateral ** 2, lateral ** 2, 0.0])
        cov[3:, 3:] += np.eye(3) * np.radians(45.0) ** 2
    cov[:3, :3] += float(log_scale_sigma) ** 2 * np.outer(t, t)
    cov = 0.5 * (cov + cov.T) * float(inflation)
    return cov


def range_sigma(covariance: np.ndarray, t: np.ndarray) -> float:
    """Standard deviation of the distance |t| from a pose covariance (linearised)."""
    t = np.asarray(t, np.float64).reshape(3)
    u = t / max(np.linalg.norm(t), 1e-12)
    return float(np.sqrt(max(u @ np.asarray(covariance)[:3, :3] @ u, 0.0)))
