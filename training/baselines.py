"""Baselines of the evaluation protocol: the optimisation method and PnP on the mean shape.

Both take decoded 2D keypoints (crop pixels), their confidences and the crop camera (focal,
principal point) and return structure, rotation and translation in the crop camera:

* :func:`pnp_mean_shape`: OpenCV ``solvePnP`` (SQPnP, then Levenberg-Marquardt refinement)
  of the category's mean shape on the confident keypoints; the structure is the mean shape.
* :func:`fit_optimisation`: the optimisation-based method 3D-INN compares against (seed 000,
  sec. 4.2): minimise the reprojection error of Eq. 1 over (alpha, R, T, f) with
  ``scipy.optimize.least_squares`` (robust soft-L1 loss, a Gaussian prior on alpha), from
  the PnP pose of the mean shape with the given focal as a good initialisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from perception_3dinn.skeleton import Category


@dataclass
class BaselineResult:
    """Per-sample estimates: ``alpha (B, K)``, ``rotation (B, 3, 3)``, ``translation (B, 3)``,
    ``focal (B,)``, ``ok (B,)`` (False when too few keypoints were confident)."""

    alpha: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    focal: np.ndarray
    ok: np.ndarray


def _inputs(keypoints: np.ndarray, confidence: np.ndarray, focal: np.ndarray,
            n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    keypoints = np.asarray(keypoints, np.float64)
    if keypoints.ndim != 3 or keypoints.shape[1:] != (n, 2):
        raise ValueError(f'keypoints must be (B, {n}, 2), got {keypoints.shape}')
    b = keypoints.shape[0]
    confidence = np.asarray(confidence, np.float64)
    if confidence.shape != (b, n):
        raise ValueError(f'confidence must be ({b}, {n}), got {confidence.shape}')
    focal = np.broadcast_to(np.asarray(focal, np.float64), (b,))
    return keypoints, confidence, focal


def _pnp(obj: np.ndarray, img: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One solvePnP (SQPnP + LM refinement); returns R (3, 3), t (3,) or raises cv2.error."""
    ok, rvec, tvec = cv2.solvePnP(obj, img, K, None, flags=cv2.SOLVEPNP_SQPNP)
    if not ok:
        raise cv2.error('solvePnP failed')
    rvec, tvec = cv2.solvePnPRefineLM(obj, img, K, None, rvec, tvec)
    R = cv2.Rodrigues(rvec)[0]
    return R, tvec.reshape(3)


def pnp_mean_shape(category: Category, keypoints: np.ndarray, confidence: np.ndarray,
                   focal: np.ndarray, principal: float, min_confidence: float = 0.2,
                   min_points: int = 4) -> BaselineResult:
    """OpenCV solvePnP of the mean shape.

    Args:
        keypoints: (B, N, 2) crop pixels.
        confidence: (B, N) in [0, 1]; keypoints below ``min_confidence`` are ignored.
        focal: (B,) or scalar crop focal, pixels.
        principal: principal point coordinate (same for u and v), crop pixels.
    """
    n = category.num_keypoints
    keypoints, confidence, focal = _inputs(keypoints, confidence, focal, n)
    b = keypoints.shape[0]
    mean = category.bases[0]
    R = np.tile(np.eye(3), (b, 1, 1))
    t = np.tile([0.0, 0.0, 3.0], (b, 1))
    ok = np.zeros(b, bool)
    for i in range(b):
        use = confidence[i] >= min_confidence
        if use.sum() < min_points:
            continue
        K = np.array([[focal[i], 0, principal], [0, focal[i], principal], [0, 0, 1.0]])
        try:
            R[i], t[i] = _pnp(mean[use], keypoints[i, use], K)
            ok[i] = t[i, 2] > 0
        except cv2.error:
            continue
    return BaselineResult(np.zeros((b, category.num_bases)), R, t, focal.copy(), ok)


def _residuals(x: np.ndarray, category: Category, uv: np.ndarray, w: np.ndarray,
               principal: float, prior: float) -> np.ndarray:
    k = category.num_bases
    alpha, rvec, t, log_f = x[:k], x[k:k + 3], x[k + 3:k + 6], x[k + 6]
    y = category.structure(alpha)
    cam = Rotation.from_rotvec(rvec).apply(y) + t
    z = np.maximum(cam[:, 2:3], 1e-3)
    proj = np.exp(log_f) * cam[:, :2] / z + principal
    r = ((proj - uv) * w[:, None]).reshape(-1)
    return np.concatenate([r, prior * alpha / category.alpha_std])


def fit_optimisation(category: Category, keypoints: np.ndarray, confidence: np.ndarray,
                     focal: np.ndarray, principal: float, fit_focal: bool = True,
                     prior: float = 1.0, min_confidence: float = 0.2,
                     min_points: int = 4) -> BaselineResult:
    """Least-squares fit of (alpha, R, T, f) to 2D keypoints, from PnP of the mean shape.

    Args:
        keypoints: (B, N, 2) crop pixels; confidence: (B, N) weights (keypoints under
            ``min_confidence`` get weight 0).
        focal: (B,) or scalar initial (or fixed, when ``fit_focal`` is False) crop focal.
        principal: principal point coordinate, crop pixels.
        prior: weight (pixels per alpha standard deviation) of the Gaussian prior on alpha.
    """
    n, k = category.num_keypoints, category.num_bases
    keypoints, confidence, focal = _inputs(keypoints, confidence, focal, n)
    init = pnp_mean_shape(category, keypoints, confidence, focal, principal, min_confidence,
                          min_points)
    b = keypoints.shape[0]
    alpha = np.zeros((b, k))
    R, t, f = init.rotation.copy(), init.translation.copy(), focal.copy()
    for i in np.flatnonzero(init.ok):
        w = np.where(confidence[i] >= min_confidence, np.sqrt(confidence[i]), 0.0)
        x0 = np.concatenate([np.zeros(k), Rotation.from_matrix(R[i]).as_rotvec(), t[i],
                             [np.log(focal[i])]])
        lo = np.full(x0.shape, -np.inf)
        hi = np.full(x0.shape, np.inf)
        if not fit_focal:
            lo[-1], hi[-1] = x0[-1] - 1e-9, x0[-1] + 1e-9
        try:
            sol = least_squares(_residuals, x0, bounds=(lo, hi), loss='soft_l1', f_scale=3.0,
                                args=(category, keypoints[i], w, principal, prior),
                                max_nfev=200)
        except ValueError:
            continue
        x = sol.x
        alpha[i] = x[:k]
        R[i] = Rotation.from_rotvec(x[k:k + 3]).as_matrix()
        t[i] = x[k + 3:k + 6]
        f[i] = np.exp(x[k + 6])
    return BaselineResult(alpha, R, t, f, init.ok)
