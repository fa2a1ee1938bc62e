"""Pose covariance (inference.uncertainty) against OpenCV and a Monte-Carlo of PnP fits."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from perception_3dinn.camera import CameraIntrinsics
from perception_3dinn.inference.pose import border_keypoints, touched_edges
from perception_3dinn.inference.uncertainty import (
    pose_covariance,
    projection_jacobian,
    range_sigma,
)

INTR = CameraIntrinsics.from_matrix(np.array([[615.0, 0, 330.0], [0, 612.0, 230.0],
                                              [0, 0, 1]]), 640, 480)


def _scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    points = rng.uniform(-0.4, 0.4, (10, 3)) + [0, 0, 0.4]
    R = Rotation.from_euler('xyz', [-100, 10, 30], degrees=True).as_matrix()
    t = np.array([0.3, 0.2, 3.0])
    return points, R, t


def _project(points, R, t) -> np.ndarray:
    rvec, _ = cv2.Rodrigues(R)
    uv, _ = cv2.projectPoints(points, rvec, t, INTR.K, None)
    return uv.reshape(-1, 2)


def test_jacobian_matches_finite_differences_of_opencv_projection() -> None:
    points, R, t = _scene()
    J = projection_jacobian(R, t, points, INTR)
    eps = 1e-6
    num = np.zeros_like(J)
    for k in range(6):
        d = np.zeros(6)
        d[k] = eps
        Rp = Rotation.from_rotvec(d[3:]).as_matrix() @ R
        num[:, k] = ((_project(points, Rp, t + d[:3]) - _project(points, R, t)) / eps).ravel()
    np.testing.assert_allclose(J, num, rtol=1e-4, atol=1e-3)


def test_covariance_of_the_fit_matches_a_monte_carlo_of_pnp() -> None:
    points, R, t = _scene(1)
    clean = _project(points, R, t)
    sigma = 1.5
    rng = np.random.default_rng(2)
    samples = []
    for _ in range(400):
        noisy = clean + rng.normal(0, sigma, clean.shape)
        rvec0, _ = cv2.Rodrigues(R)
        ok, rvec, tvec = cv2.solvePnP(points, noisy, INTR.K, None, rvec0.copy(), t.copy(),
                                      useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
        assert ok
        Rf = cv2.Rodrigues(rvec)[0]
        dth = Rotation.from_matrix(Rf @ R.T).as_rotvec()  # left perturbation, camera axes
        samples.append(np.concatenate([tvec.ravel() - t, dth]))
    empirical = np.cov(np.array(samples).T)
    # rms of a fit with the true residual: sigma per coordinate -> rms = sigma * sqrt(2) * k
    m = len(points)
    rms = sigma * np.sqrt(2.0) * np.sqrt((2 * m - 6) / (2 * m))
    cov = pose_covariance(R, t, points, INTR, rms, box_size_px=10.0, log_scale_sigma=0.0)
    np.testing.assert_allclose(np.sqrt(np.diag(cov)), np.sqrt(np.diag(empirical)), rtol=0.15)
    assert np.all(np.linalg.eigvalsh(cov) > 0)


def test_scale_term_moves_the_range_only_and_inflation_scales_all() -> None:
    points, R, t = _scene()
    base = pose_covariance(R, t, points, INTR, 0.0, 100.0, 0.0)
    with_scale = pose_covariance(R, t, points, INTR, 0.0, 100.0, 0.1)
    extra = with_scale - base
    np.testing.assert_allclose(extra[:3, :3], 0.01 * np.outer(t, t), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(extra[3:], 0.0, atol=1e-15)
    # the range sigma is the scale term alone plus the fit's (small) share along the ray
    assert range_sigma(with_scale, t) >= 0.1 * np.linalg.norm(t) - 1e-12
    np.testing.assert_allclose(pose_covariance(R, t, points, INTR, 0.0, 100.0, 0.1, 4.0),
                               4.0 * with_scale)
    # the noise floor: an exact fit still has the decoder's resolution, 1 % of the box
    floor_only = pose_covariance(R, t, points, INTR, 0.0, 100.0, 0.0)
    J = projection_jacobian(R, t, points, INTR)
    np.testing.assert_allclose(floor_only, 1.0 ** 2 * np.linalg.inv(J.T @ J), rtol=1e-9)


def test_too_few_points_give_a_wide_but_finite_covariance() -> None:
    _, R, t = _scene()
    cov = pose_covariance(R, t, np.zeros((2, 3)), INTR, float('nan'), 100.0, 0.08)
    assert np.all(np.isfinite(cov)) and np.all(np.linalg.eigvalsh(cov) >= 0)
    assert np.sqrt(cov[3, 3]) > np.radians(30)


def test_border_keypoints_only_at_the_edges_the_box_touches() -> None:
    kp = np.array([[1.0, 200.0], [50.0, 200.0], [300.0, 478.0], [300.0, 2.0], [639.0, 10.0]])
    box = np.array([0.0, 100.0, 200.0, 479.0])  # touches the left and bottom edges
    assert touched_edges(box, 640, 480) == (True, False, False, True)
    got = border_keypoints(kp, box, 640, 480, 0.05)  # margin 0.05 * 379 = 19 px
    assert got.tolist() == [True, False, True, False, False]
    assert not border_keypoints(kp, box, 640, 480, 0.0).any()
    inner = np.array([10.0, 100.0, 200.0, 400.0])
    assert not border_keypoints(kp, inner, 640, 480, 0.05).any()


def test_calibration_recovers_a_known_inflation_and_truncation_term() -> None:
    from training.calibrate import calibrate

    rng = np.random.default_rng(3)
    n = 20000
    t_gt = np.column_stack([rng.uniform(-1, 1, n), np.zeros(n), rng.uniform(1, 6, n)])
    base_sigma = 0.02 * np.linalg.norm(t_gt, axis=1)  # what the fit claims
    border = rng.random(n) < 0.4
    # true range std: twice the claim, plus 20 % of the distance at the border
    true_sd = np.sqrt((2 * base_sigma) ** 2 + border * (0.2 * np.linalg.norm(t_gt, axis=1))
                      ** 2)
    rng_err = rng.normal(0, true_sd)
    t_pred = t_gt * (1 + rng_err / np.linalg.norm(t_gt, axis=1))[:, None]
    res = calibrate([{'t_pred': t_pred, 't_gt': t_gt, 'range_sigma': base_sigma,
                      'touches_border': border}])
    assert res['covariance_inflation'] == pytest.approx(4.0, rel=0.06)
    # sigma^2 = k (b^2 + s^2 d^2) = (2b)^2 + (0.2 d)^2  ->  s = 0.2 / sqrt(k) = 0.1
    assert res['truncation_sigma'] == pytest.approx(0.1, rel=0.1)
    assert res['coverage_calibrated_inner'] == pytest.approx(0.683, abs=0.01)
    assert res['coverage_calibrated_border'] == pytest.approx(0.683, abs=0.01)
