"""perception_3dinn.geometry, camera and crops against OpenCV, scipy and float64 references."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from perception_3dinn import geometry as g
from perception_3dinn.camera import CameraIntrinsics
from perception_3dinn.crops import Crop, crop_image


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def test_project_points_matches_opencv(rng: np.random.Generator) -> None:
    K = np.array([[520.0, 0.0, 318.5], [0.0, 515.0, 241.0], [0.0, 0.0, 1.0]])
    R = Rotation.random(random_state=3).as_matrix()
    t = np.array([0.1, -0.2, 3.0])
    Y = rng.uniform(-0.5, 0.5, (20, 3))
    ours = g.project_points(g.transform_points(R, t, Y), K)
    ref, _ = cv2.projectPoints(Y, cv2.Rodrigues(R)[0], t, K, np.zeros(4))
    np.testing.assert_allclose(ours, ref.reshape(-1, 2), atol=1e-9)


def test_6d_round_trip_and_gram_schmidt(rng: np.random.Generator) -> None:
    R = Rotation.random(50, random_state=4).as_matrix()
    np.testing.assert_allclose(g.rotation_from_6d(g.rotation_to_6d(R)), R, atol=1e-12)
    noisy = g.rotation_to_6d(R) * 3.0 + rng.normal(0, 0.01, (50, 6))
    out = g.rotation_from_6d(noisy)
    np.testing.assert_allclose(out @ np.swapaxes(out, -1, -2), np.broadcast_to(np.eye(3),
                               (50, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(out), 1.0, atol=1e-12)


def test_geodesic_axis_angle_quaternion_against_scipy(rng: np.random.Generator) -> None:
    a = Rotation.random(30, random_state=5)
    b = Rotation.random(30, random_state=6)
    ref = (a.inv() * b).magnitude()
    np.testing.assert_allclose(g.geodesic_angle(a.as_matrix(), b.as_matrix()), ref, atol=1e-7)
    rv = rng.normal(0, 1, (30, 3))
    np.testing.assert_allclose(g.axis_angle_to_matrix(rv), Rotation.from_rotvec(rv).as_matrix(),
                               atol=1e-12)
    np.testing.assert_allclose(g.axis_angle_to_matrix(g.matrix_to_axis_angle(a.as_matrix())),
                               a.as_matrix(), atol=1e-10)
    q = g.matrix_to_quaternion_xyzw(a.as_matrix())
    np.testing.assert_allclose(np.abs(np.sum(q * a.as_quat(), -1)), 1.0, atol=1e-12)
    np.testing.assert_allclose(g.quaternion_xyzw_to_matrix(q), a.as_matrix(), atol=1e-12)


@pytest.mark.parametrize('azimuth', [-2.5, -0.3, 0.0, 1.0, 3.0])
@pytest.mark.parametrize('elevation', [0.0, 0.25, 0.45])
def test_viewpoint_pose_round_trip(azimuth: float, elevation: float) -> None:
    target = np.array([0.0, 0.0, 0.4])
    R, t = g.pose_from_viewpoint(azimuth, elevation, 3.0, target=target)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    # The target projects to the principal point and lies in front of the camera.
    cam = R @ target + t
    assert cam[2] == pytest.approx(3.0)
    np.testing.assert_allclose(cam[:2], 0.0, atol=1e-12)
    # Object 'up' points to image 'up' (negative v) with no in-plane roll.
    up = R @ np.array([0.0, 0.0, 1.0])
    assert up[1] < 0 and abs(up[0]) < 1e-12
    az, el = g.viewpoint_from_rotation(R)
    assert g.angle_difference(az, azimuth) < 1e-9
    assert el == pytest.approx(elevation, abs=1e-9)
    c = g.camera_position(R, t)
    np.testing.assert_allclose(np.arctan2(c[1], c[0]), np.arctan2(np.sin(azimuth),
                               np.cos(azimuth)), atol=1e-9)


def test_front_view_sees_object_left_on_image_right() -> None:
    """A camera in front of the object (azimuth 0) sees the object's +y (its left) at image
    right, as one sees a person's left hand on one's right."""
    R, t = g.pose_from_viewpoint(0.0, 0.0, 2.0)
    K = np.array([[100.0, 0, 50], [0, 100.0, 50], [0, 0, 1]])
    uv = g.project_points(g.transform_points(R, t, np.array([[0.0, 0.3, 0.0]])), K)
    assert uv[0, 0] > 50


def test_ray_rotation_maps_axis_to_pixel_ray() -> None:
    K = np.array([[400.0, 0, 320], [0, 400.0, 240], [0, 0, 1]])
    Rr = g.ray_rotation(500.0, 100.0, K)
    ray = Rr @ np.array([0.0, 0.0, 1.0])
    uv = g.project_points(ray[None], K)[0]
    np.testing.assert_allclose(uv, [500.0, 100.0], atol=1e-9)
    np.testing.assert_allclose(g.ray_rotation(320.0, 240.0, K), np.eye(3))


def test_camera_intrinsics_validation_and_undistort() -> None:
    cam = CameraIntrinsics(500.0, 500.0, 320.0, 240.0, 640, 480, (0.1, -0.05, 0.001, 0.0, 0.0))
    assert cam.validate() is cam
    for bad in (CameraIntrinsics(float('nan'), 1.0, 0.0, 0.0, 10, 10),
                CameraIntrinsics(-1.0, 1.0, 0.0, 0.0, 10, 10),
                CameraIntrinsics(1.0, 1.0, 0.0, 0.0, 0, 10)):
        with pytest.raises(ValueError):
            bad.validate()
    ideal = np.array([[100.0, 50.0], [600.0, 400.0], [320.0, 240.0]])
    rays = np.linalg.solve(cam.K, np.c_[ideal, np.ones(3)].T).T
    distorted, _ = cv2.projectPoints(rays, np.zeros(3), np.zeros(3), cam.K, cam.dist_coeffs)
    np.testing.assert_allclose(cam.undistort_points(distorted.reshape(-1, 2)), ideal, atol=1e-3)


def test_crop_maps_and_samples_like_opencv(rng: np.random.Generator) -> None:
    image = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    crop = Crop.from_box(np.array([40.0, 30.0, 100.0, 70.0]), size=64, pad=0.2)
    assert crop.side == pytest.approx(72.0)
    pts = rng.uniform(0, 100, (10, 2))
    np.testing.assert_allclose(crop.from_crop(crop.to_crop(pts)), pts, atol=1e-12)
    np.testing.assert_allclose(crop.to_crop(np.array([crop.cx, crop.cy])), [31.5, 31.5])
    out = crop_image(image, crop)
    # The crop pixel (i, j) samples the image at from_crop((i, j)) (nearest check at
    # a pixel whose source lands on an integer position).
    M = crop.matrix
    ref = cv2.warpAffine(image, M, (64, 64), flags=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(out, ref)
    # The crop camera: projecting with crop_K equals mapping the image projection.
    K = np.array([[300.0, 0, 80], [0, 300.0, 60], [0, 0, 1]])
    X = np.c_[rng.uniform(-0.3, 0.3, (5, 2)), rng.uniform(2, 3, 5)]
    np.testing.assert_allclose(g.project_points(X, crop.crop_K(K)),
                               crop.to_crop(g.project_points(X, K)), atol=1e-9)


@pytest.mark.parametrize('box', [[0, 0, 0, 10], [5, 5, 4, 9], [np.nan, 0, 1, 1]])
def test_crop_rejects_bad_boxes(box: list[float]) -> None:
    with pytest.raises(ValueError):
        Crop.from_box(np.array(box, float), size=64)
