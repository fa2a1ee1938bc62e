"""Metric pose: PnP against a float64 reference, the interpreter's crop-camera pose."""

from __future__ import annotations

from inference_helpers import toy_chair
import numpy as np
import pytest
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from perception_3dinn.camera import CameraIntrinsics
from perception_3dinn.crops import Crop
from perception_3dinn.geometry import pose_from_viewpoint
from perception_3dinn.inference.pose import (
    crop_camera_pose,
    floor_log_scale,
    FloorPlane,
    fuse_log_scales,
    interpreter_pose,
    metric_pose,
    object_score,
    reprojection_rms,
    solve_pnp,
)

CAMERA = CameraIntrinsics(fx=610.0, fy=605.0, cx=322.0, cy=236.0, width=640, height=480)


def _project(R, t, Y, cam=CAMERA):
    """Independent float64 pinhole projection (no distortion)."""
    X = Y @ R.T + t
    return np.stack([cam.fx * X[:, 0] / X[:, 2] + cam.cx,
                     cam.fy * X[:, 1] / X[:, 2] + cam.cy], axis=1)


def _reference_pnp(Y, uv, R0, t0, cam=CAMERA):
    """Least-squares reprojection error over (rotation vector, t), float64 scipy."""
    def residual(p):
        return (_project(Rotation.from_rotvec(p[:3]).as_matrix(), p[3:], Y, cam) - uv).ravel()
    x0 = np.concatenate([Rotation.from_matrix(R0).as_rotvec(), t0])
    sol = least_squares(residual, x0, method='lm', xtol=1e-15, ftol=1e-15, gtol=1e-15)
    return Rotation.from_rotvec(sol.x[:3]).as_matrix(), sol.x[3:]


def _random_pose(rng):
    az, el = rng.uniform(-np.pi, np.pi), rng.uniform(0.0, 0.5)
    R, t = pose_from_viewpoint(az, el, rng.uniform(2.0, 5.0), target=(0.0, 0.0, 0.45))
    return R, t + np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.3, 0.3), 0.0])


@pytest.mark.parametrize('seed', range(5))
def test_pnp_matches_float64_reference(seed):
    rng = np.random.default_rng(seed)
    Y = toy_chair().metric_structure(rng.normal(0, 0.2, 3))
    R, t = _random_pose(rng)
    uv = _project(R, t, Y) + rng.normal(0, 1.0, (len(Y), 2))
    R0 = Rotation.from_rotvec(rng.normal(0, 0.1, 3)).as_matrix() @ R
    t0 = t * 1.1
    got = solve_pnp(Y, uv, CAMERA, R0, t0)
    R_ref, t_ref = _reference_pnp(Y, uv, R0, t0)
    assert got is not None and got.source == 'pnp' and got.num_keypoints == len(Y)
    np.testing.assert_allclose(got.R, R_ref, atol=1e-6)
    np.testing.assert_allclose(got.t, t_ref, atol=1e-6)
    rms_ref = np.sqrt(np.mean(np.sum((_project(R_ref, t_ref, Y) - uv) ** 2, axis=1)))
    assert got.reproj_error_px == pytest.approx(rms_ref, rel=1e-6)


def test_pnp_exact_with_distortion():
    rng = np.random.default_rng(7)
    import cv2

    cam = CameraIntrinsics(600.0, 600.0, 320.0, 240.0, 640, 480, (-0.2, 0.05, 0.001, -0.001))
    Y = toy_chair().metric_structure(np.zeros(3))
    R, t = _random_pose(rng)
    uv, _ = cv2.projectPoints(Y, cv2.Rodrigues(R)[0], t, cam.K, cam.dist_coeffs)
    got = solve_pnp(Y, uv.reshape(-1, 2), cam, R @ Rotation.from_rotvec([0.05, 0, 0])
                    .as_matrix(), t + 0.1)
    np.testing.assert_allclose(got.R, R, atol=1e-8)
    np.testing.assert_allclose(got.t, t, atol=1e-8)
    assert got.reproj_error_px < 1e-6


def test_metric_pose_falls_back_to_interpreter():
    rng = np.random.default_rng(1)
    Y = toy_chair().metric_structure(np.zeros(3))
    R, t = _random_pose(rng)
    uv = _project(R, t, Y)
    conf = np.full(len(Y), 0.9)
    kwargs = dict(min_confidence=0.5, min_keypoints=6, max_reproj_px=10.0)
    R_i = Rotation.from_rotvec([0.1, 0.0, 0.0]).as_matrix() @ R
    pnp = metric_pose(uv, conf, Y, R_i, t * 1.05, CAMERA, **kwargs)
    assert pnp.source == 'pnp' and pnp.num_keypoints == len(Y)
    np.testing.assert_allclose(pnp.t, t, atol=1e-6)
    conf[:5] = 0.1  # only 5 confident keypoints left
    fallback = metric_pose(uv, conf, Y, R_i, t * 1.05, CAMERA, **kwargs)
    assert fallback.source == 'interpreter' and fallback.num_keypoints == 0
    np.testing.assert_array_equal(fallback.t, t * 1.05)
    expected = reprojection_rms(R_i, t * 1.05, Y[5:], uv[5:], CAMERA)
    assert fallback.reproj_error_px == pytest.approx(expected)
    # garbage keypoints: PnP error too large -> interpreter pose
    noisy = uv + rng.normal(0, 80.0, uv.shape)
    bad = metric_pose(noisy, np.ones(len(Y)), Y, R_i, t, CAMERA, **kwargs)
    assert bad.source == 'interpreter'
    with pytest.raises(ValueError, match='same N'):
        metric_pose(uv[:3], conf, Y, R_i, t, CAMERA, **kwargs)


def test_interpreter_pose_inverts_crop_camera_pose():
    rng = np.random.default_rng(2)
    for _ in range(10):
        R, t = _random_pose(rng)
        crop = Crop(rng.uniform(100, 540), rng.uniform(100, 380), rng.uniform(80, 300), 128)
        R_c, t_c, f_c = crop_camera_pose(R, t, crop, CAMERA, size_prior_m=0.9)
        R2, t2 = interpreter_pose(R_c, t_c, f_c, crop, CAMERA, size_prior_m=0.9)
        np.testing.assert_allclose(R2, R, atol=1e-9)
        np.testing.assert_allclose(t2, t, atol=1e-9)
        # a crop camera with twice the focal sees the object twice as far in its own units
        _, t3 = interpreter_pose(R_c, t_c * [1, 1, 2], 2 * f_c, crop, CAMERA, 0.9)
        np.testing.assert_allclose(t3, t, atol=1e-9)


def test_crop_camera_looks_through_crop_centre():
    # An object origin on the ray through the crop centre projects onto the crop centre of
    # the crop camera: t_crop has no lateral offset. Checked with an independent ray.
    crop = Crop(500.0, 100.0, 150.0, 128)
    ray = np.linalg.solve(CAMERA.K, [crop.cx, crop.cy, 1.0])
    t = 3.0 * ray / np.linalg.norm(ray)
    _, t_c, f_c = crop_camera_pose(np.eye(3), t, crop, CAMERA, size_prior_m=1.0)
    np.testing.assert_allclose(t_c[:2], 0.0, atol=1e-12)
    assert t_c[2] == pytest.approx(3.0)
    assert f_c == pytest.approx(np.sqrt(CAMERA.fx * CAMERA.fy) * 128 / 150.0)


def test_object_score():
    conf = np.array([0.8, 0.6, 1.0, 0.6])
    assert object_score(conf, 0.0, 100.0) == pytest.approx(0.75)
    assert object_score(conf, 5.0, 100.0) == pytest.approx(0.375)  # 5 % of the box: half
    assert object_score(conf, float('nan'), 100.0) == 0.0
    assert 0.0 <= object_score(conf, 1e9, 1.0, box_score=0.5) <= 1e-6


@pytest.mark.parametrize('seed', range(4))
def test_floor_scale_matches_the_ray_floor_intersection(seed):
    """The floor scale against an independent construction: project the object's floor point
    with cv2.projectPoints, back-project that pixel and intersect the ray with the plane."""
    import cv2

    rng = np.random.default_rng(seed)
    R, t = pose_from_viewpoint(rng.uniform(-np.pi, np.pi), rng.uniform(0.15, 0.6),
                               rng.uniform(2.0, 6.0), target=(0.0, 0.0, 0.4))
    floor = FloorPlane.from_object_pose(R, t)
    true_scale = rng.uniform(0.8, 1.5)
    t_unit = t / true_scale  # what PnP with a unit-size skeleton finds
    log_s, sigma = floor_log_scale(R, t_unit, floor, CAMERA.fy, 1.0, np.radians(20),
                                   np.radians(3))
    uv, _ = cv2.projectPoints(np.zeros((1, 3)), cv2.Rodrigues(R)[0], t, CAMERA.K, None)
    ray = np.linalg.solve(CAMERA.K, [*uv.ravel(), 1.0])
    foot = ray * (-floor.offset / (floor.normal @ ray))
    assert np.exp(log_s) * t_unit == pytest.approx(foot, rel=1e-9)
    assert np.exp(log_s) == pytest.approx(true_scale, rel=1e-9)
    # one pixel moves the ray by 1/f rad: relative error 1/(f sin(depression))
    depression = np.arcsin(floor.offset / np.linalg.norm(t))
    assert sigma == pytest.approx(1.0 / CAMERA.fy / np.sin(depression), rel=1e-9)


def test_floor_scale_refuses_ill_posed_cases():
    R, t = pose_from_viewpoint(0.3, 0.4, 3.0, target=(0.0, 0.0, 0.4))
    floor = FloorPlane.from_object_pose(R, t)
    args = (CAMERA.fy, 1.0, np.radians(20), np.radians(3))
    assert floor_log_scale(R, t, floor, *args) is not None
    tipped = R @ Rotation.from_rotvec([0.0, np.radians(30), 0.0]).as_matrix()
    assert floor_log_scale(tipped, t, floor, *args) is None
    n = floor.normal
    level = t - (n @ t) * n + 0.02 * n  # the foot almost at the camera's height: grazing ray
    assert floor_log_scale(R, level, floor, *args) is None
    assert floor_log_scale(R, t - (n @ t) * n - 0.3 * n, floor, *args) is not None
    with pytest.raises(ValueError, match='above the floor'):
        FloorPlane.from_coefficients([0.0, -1.0, 0.0, -1.2])
    with pytest.raises(ValueError, match='zero'):
        FloorPlane.from_coefficients([0.0, 0.0, 0.0, 1.0])
    with pytest.raises(ValueError, match='finite'):
        FloorPlane.from_coefficients([0.0, np.nan, 0.0, 1.0])
    scaled = FloorPlane.from_coefficients([0.0, -2.0, 0.0, 2.4])
    assert scaled.normal == pytest.approx([0.0, -1.0, 0.0]) and scaled.offset == 1.2


def test_fused_scale_is_the_inverse_variance_mean():
    estimates = [(0.1, 0.08), (-0.05, 0.02), (0.02, 0.04)]
    w = np.array([1 / s ** 2 for _, s in estimates])
    mean = sum(wi * m for wi, (m, _) in zip(w, estimates)) / w.sum()
    assert fuse_log_scales(estimates) == pytest.approx((mean, w.sum() ** -0.5), rel=1e-12)
    assert fuse_log_scales([(0.3, 0.1)]) == pytest.approx((0.3, 0.1))
    with pytest.raises(ValueError):
        fuse_log_scales([])
