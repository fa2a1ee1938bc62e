"""Rotations, projection and viewpoints (numpy, float64).

Conventions (docs/interfaces.md): the object frame is x forward, y left, z up; the camera
frame is the optical frame (x right, y down, z forward); a pose (R, t) maps object points
into the camera, ``X_cam = R @ Y + t``. Differentiable torch versions of the pieces the
networks need live in ``perception_3dinn.models``.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


def _check_last(x: np.ndarray, shape: tuple[int, ...], name: str) -> None:
    if x.shape[x.ndim - len(shape):] != shape:
        raise ValueError(f'{name} must be (..., {", ".join(map(str, shape))}), got {x.shape}')


def project_points(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pinhole projection of camera-frame points.

    Args:
        points: (..., N, 3) points in the camera optical frame (z > 0 in front).
        K: (3, 3) or (..., 3, 3) camera matrices broadcastable against ``points``.

    Returns:
        (..., N, 2) pixel coordinates (u, v).
    """
    points = np.asarray(points, np.float64)
    K = np.asarray(K, np.float64)
    _check_last(points, (3,), 'points')
    _check_last(K, (3, 3), 'K')
    z = points[..., 2]
    x = points[..., 0] / z
    y = points[..., 1] / z
    fx = K[..., 0, 0, None]
    fy = K[..., 1, 1, None]
    s = K[..., 0, 1, None]
    cx = K[..., 0, 2, None]
    cy = K[..., 1, 2, None]
    return np.stack([fx * x + s * y + cx, fy * y + cy], axis=-1)


def transform_points(R: np.ndarray, t: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply poses: (..., 3, 3), (..., 3) to (..., N, 3) -> (..., N, 3)."""
    R = np.asarray(R, np.float64)
    t = np.asarray(t, np.float64)
    points = np.asarray(points, np.float64)
    _check_last(R, (3, 3), 'R')
    _check_last(t, (3,), 't')
    _check_last(points, (3,), 'points')
    return np.einsum('...ij,...nj->...ni', R, points) + t[..., None, :]


def rotation_from_6d(x: np.ndarray) -> np.ndarray:
    """Rotation from its continuous 6D representation (Zhou et al., CVPR 2019).

    Args:
        x: (..., 6), the first two columns of the rotation, ``[c0, c1]`` concatenated.

    Returns:
        (..., 3, 3) rotation matrices (Gram-Schmidt on the two columns).
    """
    x = np.asarray(x, np.float64)
    _check_last(x, (6,), 'x')
    a, b = x[..., :3], x[..., 3:]
    c0 = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b - np.sum(c0 * b, axis=-1, keepdims=True) * c0
    c1 = b / np.linalg.norm(b, axis=-1, keepdims=True)
    c2 = np.cross(c0, c1)
    return np.stack([c0, c1, c2], axis=-1)


def rotation_to_6d(R: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 6): the first two columns, inverse of :func:`rotation_from_6d`."""
    R = np.asarray(R, np.float64)
    _check_last(R, (3, 3), 'R')
    return np.concatenate([R[..., :, 0], R[..., :, 1]], axis=-1)


def geodesic_angle(R1: np.ndarray, R2: np.ndarray) -> np.ndarray:
    """Angle (radians) of ``R1^T R2``: (..., 3, 3), (..., 3, 3) -> (...)."""
    R1 = np.asarray(R1, np.float64)
    R2 = np.asarray(R2, np.float64)
    _check_last(R1, (3, 3), 'R1')
    _check_last(R2, (3, 3), 'R2')
    trace = np.einsum('...ij,...ij->...', R1, R2)
    return np.arccos(np.clip((trace - 1.0) / 2.0, -1.0, 1.0))


def axis_angle_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """(..., 3) rotation vectors (exponential coordinates) -> (..., 3, 3)."""
    rotvec = np.asarray(rotvec, np.float64)
    _check_last(rotvec, (3,), 'rotvec')
    flat = Rotation.from_rotvec(rotvec.reshape(-1, 3)).as_matrix()
    return flat.reshape(rotvec.shape[:-1] + (3, 3))


def matrix_to_axis_angle(R: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 3) rotation vectors with angle in [0, pi]."""
    R = np.asarray(R, np.float64)
    _check_last(R, (3, 3), 'R')
    flat = Rotation.from_matrix(R.reshape(-1, 3, 3)).as_rotvec()
    return flat.reshape(R.shape[:-2] + (3,))


def matrix_to_quaternion_xyzw(R: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 4) unit quaternions (x, y, z, w), the ROS message order."""
    R = np.asarray(R, np.float64)
    _check_last(R, (3, 3), 'R')
    flat = Rotation.from_matrix(R.reshape(-1, 3, 3)).as_quat()
    return flat.reshape(R.shape[:-2] + (4,))


def quaternion_xyzw_to_matrix(q: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions (x, y, z, w) -> (..., 3, 3); q need not be normalised."""
    q = np.asarray(q, np.float64)
    _check_last(q, (4,), 'q')
    flat = Rotation.from_quat(q.reshape(-1, 4)).as_matrix()
    return flat.reshape(q.shape[:-1] + (3, 3))


def rotation_about_z(angle: np.ndarray | float) -> np.ndarray:
    """(...) angles -> (..., 3, 3) rotations about the z axis."""
    angle = np.asarray(angle, np.float64)
    c, s = np.cos(angle), np.sin(angle)
    zero, one = np.zeros_like(angle), np.ones_like(angle)
    return np.stack([np.stack([c, -s, zero], -1), np.stack([s, c, zero], -1),
                     np.stack([zero, zero, one], -1)], -2)


def look_at(camera_position: np.ndarray, target: np.ndarray,
            in_plane: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Pose of an optical-frame camera at ``camera_position`` looking at ``target``.

    The object's z axis is up: with ``in_plane`` 0 the image 'up' is the projection of +z
    (the camera does not roll); ``in_plane`` then rolls the camera about its optical axis,
    ``R = Rz(in_plane) @ R_0``.

    Args:
        camera_position: (3,) camera centre in the object frame.
        target: (3,) point the optical axis passes through, object frame.
        in_plane: roll about the optical axis, radians.

    Returns:
        R (3, 3), t (3,): object -> camera.
    """
    c = np.asarray(camera_position, np.float64).reshape(3)
    target = np.asarray(target, np.float64).reshape(3)
    forward = target - c
    norm = np.linalg.norm(forward)
    if norm == 0.0:
        raise ValueError('camera_position and target coincide')
    forward /= norm
    right = np.cross(forward, [0.0, 0.0, 1.0])
    if np.linalg.norm(right) < 1e-9:  # looking straight up or down: pick x as reference
        right = np.cross(forward, [1.0, 0.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    R = np.stack([right, down, forward])  # rows: camera axes in the object frame
    R = rotation_about_z(in_plane) @ R
    return R, -R @ c


def pose_from_viewpoint(azimuth: float, elevation: float, distance: float,
                        in_plane: float = 0.0,
                        target: np.ndarray = (0.0, 0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """Camera on a sphere around ``target``: azimuth from object +x counter-clockwise seen
    from above, elevation above the horizontal plane (radians), distance in metres.

    Returns:
        R (3, 3), t (3,): object -> camera, optical axis through ``target``.
    """
    target = np.asarray(target, np.float64).reshape(3)
    direction = np.array([np.cos(elevation) * np.cos(azimuth),
                          np.cos(elevation) * np.sin(azimuth), np.sin(elevation)])
    return look_at(target + distance * direction, target, in_plane)


def camera_position(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Camera centre in the object frame: (..., 3, 3), (..., 3) -> (..., 3)."""
    R = np.asarray(R, np.float64)
    t = np.asarray(t, np.float64)
    return -np.einsum('...ji,...j->...i', R, t)


def viewpoint_from_rotation(R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Azimuth and elevation (radians) of the viewing direction, from the rotation alone.

    The camera looks along its optical axis; the viewpoint is the opposite of that axis
    expressed in the object frame, so (for a camera aimed at the object) this equals the
    camera's azimuth/elevation around the object whatever the translation.

    Args:
        R: (..., 3, 3) object -> camera rotations.

    Returns:
        azimuth (...) in (-pi, pi], elevation (...) in [-pi/2, pi/2].
    """
    R = np.asarray(R, np.float64)
    _check_last(R, (3, 3), 'R')
    back = -R[..., 2, :]  # optical axis in the object frame, reversed
    azimuth = np.arctan2(back[..., 1], back[..., 0])
    elevation = np.arctan2(back[..., 2], np.hypot(back[..., 0], back[..., 1]))
    return azimuth, elevation


def angle_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Absolute wrapped difference of angles (radians), in [0, pi]."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    return np.abs(np.arctan2(np.sin(d), np.cos(d)))


def ray_rotation(u: float, v: float, K: np.ndarray) -> np.ndarray:
    """Smallest rotation taking the optical axis (0, 0, 1) onto the ray through pixel (u, v).

    A crop of the image centred at (u, v) is seen by a virtual camera rotated by this
    matrix (camera frame -> camera frame): ``R_real = ray_rotation(...) @ R_crop``.
    """
    K = np.asarray(K, np.float64)
    ray = np.linalg.solve(K, np.array([u, v, 1.0]))
    ray /= np.linalg.norm(ray)
    z = np.array([0.0, 0.0, 1.0])
    axis = np.cross(z, ray)
    s = np.linalg.norm(axis)
    if s < 1e-12:
        return np.eye(3)
    angle = np.arctan2(s, float(z @ ray))
    return axis_angle_to_matrix(axis / s * angle)
