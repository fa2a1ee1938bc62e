"""Metric object pose in the camera optical frame (DESIGN.md step 5).

The interpreter gives a pose in its crop camera (principal point at the crop centre, axes of
the real camera turned onto the ray through the crop centre) in normalised shape units; the
category's size prior turns it into metres (`interpreter_pose`). With enough confident
keypoints, `solve_pnp` refines it with `cv2.solvePnP` on the real intrinsics, started from the
interpreter's pose (`useExtrinsicGuess`). Plain numpy + OpenCV, float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from perception_3dinn.camera import CameraIntrinsics
from perception_3dinn.crops import Crop
from perception_3dinn.geometry import ray_rotation


@dataclass
class PoseResult:
    """A metric pose and how it was found.

    Attributes:
        R: `(3, 3)` rotation object -> camera.
        t: `(3,)` translation in metres.
        source: 'pnp' or 'interpreter'.
        reproj_error_px: RMS reprojection error over the keypoints used (image px).
        num_keypoints: keypoints PnP used (0 for the interpreter pose).
    """

    R: np.ndarray
    t: np.ndarray
    source: str
    reproj_error_px: float
    num_keypoints: int = 0


def interpreter_pose(R_crop: np.ndarray, t_crop: np.ndarray, focal_crop: float, crop: Crop,
                     intrinsics: CameraIntrinsics,
                     size_prior_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Turn the interpreter's crop-space pose into a metric pose in the real camera.

    The crop camera is the real camera turned onto the ray through the crop centre
    (`R_ray = geometry.ray_rotation(crop.cx, crop.cy, K)`), principal point at the crop
    centre. It sees the object with focal `focal_crop` crop pixels, i.e. `focal_crop / scale`
    image pixels, where the real camera has f = sqrt(fx * fy): the object keeps its metric
    lateral offset and its depth is scaled by `f / (focal_crop / scale)`. Inverse of
    `crop_camera_pose` (exactly, when `focal_crop == crop.scale * f`).

    Args:
        R_crop: `(3, 3)` rotation in the crop camera.
        t_crop: `(3,)` translation in the crop camera, normalised shape units (z > 0).
        focal_crop: focal length in crop pixels (> 0).
        crop: the crop the network saw.
        intrinsics: the real camera.
        size_prior_m: metres per normalised unit.

    Returns:
        R `(3, 3)`, t `(3,)` metres, object -> real camera.
    """
    R_crop = np.asarray(R_crop, np.float64)
    t_crop = np.asarray(t_crop, np.float64)
    if R_crop.shape != (3, 3) or t_crop.shape != (3,):
        raise ValueError(f'R_crop must be (3, 3) and t_crop (3,), got {R_crop.shape}, '
                         f'{t_crop.shape}')
    R_ray = ray_rotation(crop.cx, crop.cy, intrinsics.K)
    f_real = float(np.sqrt(intrinsics.fx * intrinsics.fy))
    f_img = max(float(focal_crop) / crop.scale, 1e-6)
    z = max(float(t_crop[2]), 1e-6)
    t_virtual = np.array([t_crop[0], t_crop[1], z * f_real / f_img]) * size_prior_m
    return _orthonormalise(R_ray @ R_crop), R_ray @ t_virtual


def crop_camera_pose(R: np.ndarray, t: np.ndarray, crop: Crop, intrinsics: CameraIntrinsics,
                     size_prior_m: float) -> tuple[np.ndarray, np.ndarray, float]:
    """The interpreter's targets for a metric pose: inverse of `interpreter_pose`.

    Args:
        R: `(3, 3)` rotation object -> real camera.
        t: `(3,)` translation in metres.
        crop: the crop around the object.
        intrinsics: the real camera.
        size_prior_m: metres per normalised unit.

    Returns:
        R_crop `(3, 3)`, t_crop `(3,)` normalised units, focal_crop (crop pixels).
    """
    R = np.asarray(R, np.float64)
    t = np.asarray(t, np.float64)
    if R.shape != (3, 3) or t.shape != (3,):
        raise ValueError(f'R must be (3, 3) and t (3,), got {R.shape}, {t.shape}')
    R_ray = ray_rotation(crop.cx, crop.cy, intrinsics.K)
    f_real = float(np.sqrt(intrinsics.fx * intrinsics.fy))
    return R_ray.T @ R, R_ray.T @ t / size_prior_m, f_real * crop.scale


def reprojection_rms(R: np.ndarray, t: np.ndarray, points_3d: np.ndarray,
                     points_2d: np.ndarray, intrinsics: CameraIntrinsics) -> float:
    """RMS reprojection error (px) of `points_3d` `(M, 3)` against `points_2d` `(M, 2)`."""
    points_3d = np.asarray(points_3d, np.float64).reshape(-1, 3)
    points_2d = np.asarray(points_2d, np.float64).reshape(-1, 2)
    if len(points_3d) != len(points_2d):
        raise ValueError('points_3d and points_2d must have the same length')
    if len(points_3d) == 0:
        return float('nan')
    rvec, _ = cv2.Rodrigues(np.asarray(R, np.float64))
    proj, _ = cv2.projectPoints(points_3d, rvec, np.asarray(t, np.float64).reshape(3, 1),
                                intrinsics.K, intrinsics.dist_coeffs)
    err = proj.reshape(-1, 2) - points_2d
    return float(np.sqrt(np.mean(np.sum(err * err, axis=1))))


def solve_pnp(points_3d: np.ndarray, points_2d: np.ndarray, intrinsics: CameraIntrinsics,
              R_init: np.ndarray, t_init: np.ndarray, refine: bool = True) -> PoseResult | None:
    """PnP started from an initial pose (`cv2.solvePnP`, SOLVEPNP_ITERATIVE, useExtrinsicGuess).

    Args:
        points_3d: `(M, 3)` object points in metres, M >= 4.
        points_2d: `(M, 2)` their image pixels (distorted, as decoded).
        intrinsics: the real camera.
        R_init: `(3, 3)` initial rotation.
        t_init: `(3,)` initial translation, metres.
        refine: polish with `cv2.solvePnPRefineLM`.

    Returns:
        the PoseResult, or None when OpenCV fails, the result is not finite, or any point
        lands behind the camera.
    """
    points_3d = np.ascontiguousarray(points_3d, np.float64)
    points_2d = np.ascontiguousarray(points_2d, np.float64)
    if points_3d.ndim != 2 or points_3d.shape[1] != 3:
        raise ValueError(f'points_3d must be (M, 3), got {points_3d.shape}')
    if points_2d.shape != (len(points_3d), 2):
        raise ValueError(f'points_2d must be ({len(points_3d)}, 2), got {points_2d.shape}')
    if len(points_3d) < 4:
        raise ValueError(f'PnP needs at least 4 points, got {len(points_3d)}')
    K = intrinsics.K
    dist = intrinsics.dist_coeffs
    rvec, _ = cv2.Rodrigues(np.asarray(R_init, np.float64))
    tvec = np.asarray(t_init, np.float64).reshape(3, 1).copy()
    try:
        ok, rvec, tvec = cv2.solvePnP(points_3d, points_2d, K, dist, rvec=rvec, tvec=tvec,
                                      useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
        if ok and refine:
            rvec, tvec = cv2.solvePnPRefineLM(points_3d, points_2d, K, dist, rvec, tvec)
    except cv2.error:
        return None
    if not ok or not (np.all(np.isfinite(rvec)) and np.all(np.isfinite(tvec))):
        return None
    R, _ = cv2.Rodrigues(rvec)
    t = tvec.reshape(3)
    if np.any(points_3d @ R[2] + t[2] <= 0):
        return None
    err = reprojection_rms(R, t, points_3d, points_2d, intrinsics)
    return PoseResult(R=R, t=t, source='pnp', reproj_error_px=err,
                      num_keypoints=len(points_3d))


def touched_edges(box: np.ndarray, width: int, height: int,
                  touch_px: float = 1.5) -> tuple[bool, bool, bool, bool]:
    """Which image edges (left, top, right, bottom) a clipped box reaches, within `touch_px`:
    the object may continue beyond them."""
    x0, y0, x1, y1 = (float(v) for v in np.asarray(box, np.float64).reshape(4))
    return (x0 <= touch_px, y0 <= touch_px, x1 >= width - 1 - touch_px,
            y1 >= height - 1 - touch_px)


def border_keypoints(keypoints_2d: np.ndarray, box: np.ndarray, width: int, height: int,
                     margin: float) -> np.ndarray:
    """Keypoints that may have been pulled onto the border of a truncated object.

    For every image edge the box touches (`touched_edges`), the keypoints decoded within
    `margin * max(box width, box height)` pixels of that edge, or beyond it.

    Args:
        keypoints_2d: `(N, 2)` image pixels; box: `(4,)` x0, y0, x1, y1.
        width, height: image size; margin: fraction of the box size (0: none).

    Returns:
        `(N,)` bool, True for the suspect keypoints.
    """
    kp = np.asarray(keypoints_2d, np.float64).reshape(-1, 2)
    out = np.zeros(len(kp), bool)
    if margin <= 0:
        return out
    x0, y0, x1, y1 = (float(v) for v in np.asarray(box, np.float64).reshape(4))
    m = margin * max(x1 - x0, y1 - y0)
    left, top, right, bottom = touched_edges(box, width, height)
    if left:
        out |= kp[:, 0] <= m
    if top:
        out |= kp[:, 1] <= m
    if right:
        out |= kp[:, 0] >= width - 1 - m
    if bottom:
        out |= kp[:, 1] >= height - 1 - m
    return out


def metric_pose(keypoints_2d: np.ndarray, confidences: np.ndarray, skeleton_m: np.ndarray,
                R_interp: np.ndarray, t_interp: np.ndarray, intrinsics: CameraIntrinsics,
                min_confidence: float, min_keypoints: int, max_reproj_px: float,
                refine: bool = True) -> PoseResult:
    """The object's metric pose: PnP on confident keypoints, else the interpreter's pose.

    Args:
        keypoints_2d: `(N, 2)` decoded keypoints, image pixels.
        confidences: `(N,)` their confidences.
        skeleton_m: `(N, 3)` skeleton in the object frame, metres.
        R_interp: `(3, 3)` interpreter rotation (real camera).
        t_interp: `(3,)` interpreter translation, metres.
        intrinsics: the real camera.
        min_confidence: keypoints at or above it take part in PnP.
        min_keypoints: fewer confident keypoints -> interpreter pose.
        max_reproj_px: PnP with a larger RMS error -> interpreter pose.
        refine: polish PnP with Levenberg-Marquardt.

    Returns:
        PoseResult ('pnp' or 'interpreter'); the reprojection error is over the confident
        keypoints (all keypoints when none is confident).
    """
    keypoints_2d = np.asarray(keypoints_2d, np.float64)
    confidences = np.asarray(confidences, np.float64)
    skeleton_m = np.asarray(skeleton_m, np.float64)
    n = len(skeleton_m)
    if keypoints_2d.shape != (n, 2) or confidences.shape != (n,) or skeleton_m.shape != (n, 3):
        raise ValueError(f'keypoints_2d (N, 2), confidences (N,), skeleton_m (N, 3) with the '
                         f'same N, got {keypoints_2d.shape}, {confidences.shape}, '
                         f'{skeleton_m.shape}')
    mask = (confidences >= min_confidence) & np.all(np.isfinite(keypoints_2d), axis=1)
    if int(mask.sum()) >= max(int(min_keypoints), 4):
        result = solve_pnp(skeleton_m[mask], keypoints_2d[mask], intrinsics, R_interp,
                           t_interp, refine=refine)
        if result is not None and result.reproj_error_px <= max_reproj_px:
            return result
    used = mask if mask.any() else np.all(np.isfinite(keypoints_2d), axis=1)
    err = (reprojection_rms(R_interp, t_interp, skeleton_m[used], keypoints_2d[used],
                            intrinsics)
           if used.any() and _in_front(R_interp, t_interp, skeleton_m) else float('nan'))
    return PoseResult(R=np.asarray(R_interp, np.float64), t=np.asarray(t_interp, np.float64),
                      source='interpreter', reproj_error_px=err, num_keypoints=0)


@dataclass(frozen=True)
class FloorPlane:
    """The floor the objects stand on, in the camera optical frame.

    Points x of the floor satisfy `normal . x + offset = 0`; `normal` is the unit up vector
    (from the floor towards the camera) and `offset` the camera's height above the floor in
    metres. A robot knows it from its camera mount (TF base_footprint -> camera optical frame).
    """

    normal: np.ndarray
    offset: float

    @classmethod
    def from_coefficients(cls, coefficients) -> FloorPlane:
        """`[a, b, c, d]` with `a x + b y + c z + d = 0`, any scale; d > 0 (camera above)."""
        c = np.asarray(coefficients, np.float64).reshape(-1)
        if c.shape != (4,) or not np.all(np.isfinite(c)):
            raise ValueError(f'floor plane must be 4 finite numbers [a, b, c, d], got '
                             f'{np.asarray(coefficients).tolist()}')
        norm = float(np.linalg.norm(c[:3]))
        if norm < 1e-9:
            raise ValueError('floor plane normal (a, b, c) must not be zero')
        plane = cls(normal=c[:3] / norm, offset=float(c[3]) / norm)
        if plane.offset <= 0.0:
            raise ValueError(f'floor plane: the camera must be above the floor (d > 0 with the '
                             f'normal pointing up, got height {plane.offset:.3f} m); flip the '
                             f'sign of all four numbers if the normal points down')
        return plane

    @classmethod
    def from_object_pose(cls, R: np.ndarray, t: np.ndarray) -> FloorPlane:
        """The floor under an upright object whose frame has its origin on the floor, z up
        (the category frames of docs/interfaces.md), given its pose object -> camera."""
        n = np.asarray(R, np.float64)[:, 2]
        return cls.from_coefficients([*n, -float(n @ np.asarray(t, np.float64))])


def floor_log_scale(R: np.ndarray, t_unit: np.ndarray, floor: FloorPlane, focal_px: float,
                    angle_noise_px: float, max_tilt_rad: float,
                    min_depression_rad: float) -> tuple[float, float] | None:
    """Metric scale of an object from the floor it stands on.

    A pose found with the skeleton at scale 1 puts the object's origin (on its floor, in the
    category frame) at `t_unit`; at scale s it is at `s * t_unit`, which must lie on the
    floor: `s = -offset / (normal . t_unit)`. Only the direction of the ray to the object's
    foot matters, so the error grows as the ray grazes the floor.

    Args:
        R: `(3, 3)` object -> camera rotation (from PnP or the interpreter).
        t_unit: `(3,)` translation for the skeleton at unit scale.
        floor: the floor in the camera optical frame.
        focal_px: camera focal length in pixels (angle of one pixel).
        angle_noise_px: image noise of the foot point, pixels (e.g. the PnP reprojection RMS).
        max_tilt_rad: objects whose up axis leans more than this from the floor normal (tipped
            over, or on another surface) get no floor scale.
        min_depression_rad: rays closer than this to the horizon get no floor scale.

    Returns:
        (log s, its standard deviation) or None when the floor cannot tell the scale.
    """
    R = np.asarray(R, np.float64)
    t_unit = np.asarray(t_unit, np.float64)
    n = floor.normal
    if float(R[:, 2] @ n) < np.cos(max_tilt_rad):
        return None
    dist = float(np.linalg.norm(t_unit))
    height = -float(n @ t_unit)  # object origin below the camera, in unit-scale lengths
    if not (np.isfinite(dist) and dist > 0.0) or height <= dist * np.sin(min_depression_rad):
        return None
    sin_dep = height / dist
    sigma = max(float(angle_noise_px), 0.5) / max(float(focal_px), 1e-6) / sin_dep
    return float(np.log(floor.offset / height)), float(sigma)


def fuse_log_scales(estimates: list[tuple[float, float]]) -> tuple[float, float]:
    """Inverse-variance mean of independent (log scale, std) estimates -> (log s, std)."""
    if not estimates:
        raise ValueError('fuse_log_scales needs at least one estimate')
    w = np.array([1.0 / max(sd, 1e-9) ** 2 for _, sd in estimates])
    mu = np.array([m for m, _ in estimates])
    return float(w @ mu / w.sum()), float(1.0 / np.sqrt(w.sum()))


def object_score(confidences: np.ndarray, reproj_error_px: float, box_size_px: float,
                 box_score: float = 1.0, error_scale: float = 0.05) -> float:
    """Object score in [0, 1]: mean keypoint confidence x reprojection agreement x box score.

    The agreement is `1 / (1 + (e / (error_scale * box_size))^2)`: 0.5 when the RMS error is
    5 % of the box size; a NaN error (no usable keypoints) gives 0.
    """
    confidences = np.asarray(confidences, np.float64)
    if confidences.ndim != 1:
        raise ValueError(f'confidences must be (N,), got {confidences.shape}')
    conf = float(np.clip(np.mean(confidences), 0.0, 1.0)) if confidences.size else 0.0
    if not np.isfinite(reproj_error_px):
        return 0.0
    ratio = float(reproj_error_px) / max(error_scale * float(box_size_px), 1e-6)
    agreement = 1.0 / (1.0 + ratio * ratio)
    return float(np.clip(conf * agreement * float(box_score), 0.0, 1.0))


def _in_front(R: np.ndarray, t: np.ndarray, points: np.ndarray) -> bool:
    return bool(np.all(points @ np.asarray(R)[2] + np.asarray(t)[2] > 0))


def _orthonormalise(R: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(R)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt
