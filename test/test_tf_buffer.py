"""TransformBuffer against homogeneous 4x4 matrices composed in float64 with transforms3d."""

import numpy as np
import pytest
import transforms3d

from perception_3dinn.tf_buffer import TransformBuffer, TransformLookupError

S = 1_000_000_000  # ns per second


def random_pose(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(quaternion x, y, z, w; translation) of a random pose."""
    q_wxyz = rng.standard_normal(4)
    q_wxyz /= np.linalg.norm(q_wxyz)
    return np.r_[q_wxyz[1:], q_wxyz[0]], rng.uniform(-2, 2, 3)


def matrix(q_xyzw: np.ndarray, t: np.ndarray) -> np.ndarray:
    """4x4 child -> parent matrix built by transforms3d (w, x, y, z quaternions)."""
    q = np.r_[q_xyzw[3], q_xyzw[:3]]
    return transforms3d.affines.compose(t, transforms3d.quaternions.quat2mat(q), np.ones(3))


def test_lookup_through_common_ancestor_matches_matrix_chain():
    rng = np.random.default_rng(3)
    # map -> odom -> base_footprint -> base_link -> camera_link -> camera_optical_frame,
    # and map -> landmark: lookups across branches, up and down.
    tree = [('map', 'odom'), ('odom', 'base_footprint'), ('base_footprint', 'base_link'),
            ('base_link', 'camera_link'), ('camera_link', 'camera_optical_frame'),
            ('map', 'landmark')]
    buf = TransformBuffer()
    mats = {}
    for parent, child in tree:
        q, t = random_pose(rng)
        buf.set_transform(parent, child, 5 * S, q, t, static=child != 'odom')
        mats[child] = (parent, matrix(q, t))

    def in_root(frame: str) -> np.ndarray:
        M = np.eye(4)
        while frame in mats:
            parent, T = mats[frame]
            M = T @ M
            frame = parent
        return M

    pairs = [('camera_optical_frame', 'base_footprint'),
             ('base_footprint', 'camera_optical_frame'), ('landmark', 'camera_optical_frame'),
             ('map', 'base_link'), ('camera_link', 'odom')]
    for target, source in pairs:
        R, t = buf.lookup(target, source, 5 * S)
        want = np.linalg.inv(in_root(target)) @ in_root(source)
        np.testing.assert_allclose(R, want[:3, :3], atol=1e-12)
        np.testing.assert_allclose(t, want[:3, 3], atol=1e-12)
    R, t = buf.lookup('odom', 'odom', 5 * S)
    np.testing.assert_array_equal(R, np.eye(3))


def test_interpolation_between_samples():
    buf = TransformBuffer()
    z = np.array([0.0, 0.0, 1.0])
    for stamp, angle, x in ((10 * S, 10.0, 0.0), (14 * S, 50.0, 2.0)):
        q = transforms3d.quaternions.axangle2quat(z, np.radians(angle))
        buf.set_transform('odom', 'base', stamp, np.r_[q[1:], q[0]], [x, 0.0, 1.0])
    R, t = buf.lookup('odom', 'base', 11 * S)  # a quarter of the way
    np.testing.assert_allclose(R, transforms3d.axangles.axangle2mat(z, np.radians(20.0)),
                               atol=1e-12)
    np.testing.assert_allclose(t, [0.5, 0.0, 1.0], atol=1e-12)
    # 0 = latest; a sample exactly at a stamp is returned as stored
    R, t = buf.lookup('odom', 'base', 0)
    np.testing.assert_allclose(t, [2.0, 0.0, 1.0])


def test_extrapolation_is_refused_beyond_tolerance():
    buf = TransformBuffer()
    buf.set_transform('odom', 'base', 10 * S, [0, 0, 0, 1], [1, 0, 0])
    buf.set_transform('odom', 'base', 11 * S, [0, 0, 0, 1], [2, 0, 0])
    with pytest.raises(TransformLookupError, match='after the newest'):
        buf.lookup('odom', 'base', 12 * S)
    _, t = buf.lookup('odom', 'base', 11 * S + S // 20, tolerance_ns=S // 10)
    np.testing.assert_allclose(t, [2, 0, 0])
    with pytest.raises(TransformLookupError, match='before the oldest'):
        buf.lookup('odom', 'base', 9 * S)


def test_unknown_frames_and_separate_trees_are_explained():
    buf = TransformBuffer()
    buf.set_transform('map', 'odom', 0, [0, 0, 0, 1], [0, 0, 0], static=True)
    buf.set_transform('world', 'camera', 0, [0, 0, 0, 1], [0, 0, 0], static=True)
    with pytest.raises(TransformLookupError, match="'floor' is not in the tree"):
        buf.lookup('camera', 'floor')
    with pytest.raises(TransformLookupError, match="root 'map'.*root 'world'"):
        buf.lookup('camera', 'odom')


def test_cache_window_clear_and_bad_input():
    buf = TransformBuffer(cache_ns=2 * S)
    for k in range(10):
        buf.set_transform('odom', 'base', k * S, [0, 0, 0, 1], [k, 0, 0])
    buf.set_transform('base', 'camera', 0, [0, 0, 0, 1], [0, 0, 1], static=True)
    with pytest.raises(TransformLookupError, match='before the oldest'):
        buf.lookup('odom', 'base', 6 * S)
    _, t = buf.lookup('odom', 'camera', 8 * S)
    np.testing.assert_allclose(t, [8, 0, 1])
    buf.clear()
    assert buf.frames() == {'base', 'camera'}
    for bad in ([np.nan, 0, 0, 1], [0, 0, 0, 0]):
        with pytest.raises(ValueError, match='non-finite'):
            buf.set_transform('a', 'b', 0, bad, [0, 0, 0])
    with pytest.raises(ValueError, match='two different'):
        buf.set_transform('a', 'a', 0, [0, 0, 0, 1], [0, 0, 0])


def test_time_going_back_beyond_the_window_restarts_the_edge():
    buf = TransformBuffer(cache_ns=2 * S)
    for k in range(5):
        buf.set_transform('odom', 'base', (100 + k) * S, [0, 0, 0, 1], [k, 0, 0])
    buf.set_transform('odom', 'base', 1 * S, [0, 0, 0, 1], [7, 0, 0])  # bag looped
    _, t = buf.lookup('odom', 'base', 0)
    np.testing.assert_allclose(t, [7, 0, 0])
    with pytest.raises(TransformLookupError, match='after the newest'):
        buf.lookup('odom', 'base', 104 * S)
