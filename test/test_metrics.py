"""Tests of perception_3dinn.metrics against direct float64 computations and scipy."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from perception_3dinn import geometry, metrics


def _offsets(rng, b, n, lengths):
    """2D offsets with exactly the given lengths (B, N)."""
    angle = rng.uniform(0, 2 * np.pi, (b, n))
    return np.stack([np.cos(angle), np.sin(angle)], -1) * lengths[..., None]


def test_pck_counts_known_distances():
    rng = np.random.default_rng(0)
    b, n = 50, 10
    gt = rng.uniform(0, 200, (b, n, 2))
    box = rng.uniform(50, 150, b)
    frac = rng.uniform(0, 0.2, (b, n))  # error as a fraction of the box size
    pred = gt + _offsets(rng, b, n, frac * box[:, None])
    vis = rng.random((b, n)) > 0.2
    for a in (0.05, 0.1):
        expect = np.mean((frac < a)[vis])
        assert metrics.pck(pred, gt, box, a, vis) == pytest.approx(expect)
        per = metrics.pck_per_keypoint(pred, gt, box, a, vis)
        for j in range(n):
            assert per[j] == pytest.approx(np.mean((frac[:, j] < a)[vis[:, j]]))


def test_average_error_bounded():
    rng = np.random.default_rng(1)
    gt = rng.uniform(0, 100, (20, 5, 2))
    box = np.full(20, 100.0)
    d = rng.uniform(0, 40, (20, 5))
    pred = gt + _offsets(rng, 20, 5, d)
    expect = np.minimum(d / 5.0, 5.0).mean()
    assert metrics.average_error(pred, gt, box) == pytest.approx(expect)


def test_pcp_loop_reference():
    rng = np.random.default_rng(2)
    gt = rng.uniform(0, 100, (30, 4, 2))
    pred = gt + rng.normal(0, 8, gt.shape)
    edges = np.array([[0, 1], [1, 2], [2, 3]])
    good = total = 0
    for i in range(30):
        for a, b in edges:
            length = np.linalg.norm(gt[i, a] - gt[i, b])
            total += 1
            good += (np.linalg.norm(pred[i, a] - gt[i, a]) <= 0.5 * length and
                     np.linalg.norm(pred[i, b] - gt[i, b]) <= 0.5 * length)
    assert metrics.pcp(pred, gt, edges) == pytest.approx(good / total)


def test_structure_rmse_invariances_and_reference():
    rng = np.random.default_rng(3)
    gt = rng.normal(size=(8, 10, 3))
    pred = gt + rng.normal(0, 0.05, gt.shape)
    # Centring and scale do not matter.
    moved = pred * rng.uniform(0.5, 3, (8, 1, 1)) + rng.normal(size=(8, 1, 3))
    np.testing.assert_allclose(metrics.structure_rmse(moved, gt),
                               metrics.structure_rmse(pred, gt), atol=1e-12)
    # Reference: explicit loops in float64.
    for i in range(8):
        p = pred[i] - pred[i].mean(0)
        g = gt[i] - gt[i].mean(0)
        p /= np.sqrt(np.mean(np.sum(p ** 2, 1)))
        g /= np.sqrt(np.mean(np.sum(g ** 2, 1)))
        ref = np.sqrt(np.mean(np.sum((p - g) ** 2, 1)))
        assert metrics.structure_rmse(pred[i:i + 1], gt[i:i + 1])[0] == pytest.approx(ref)
    assert np.all(metrics.structure_rmse(gt, gt) < 1e-12)


def test_recall_curve():
    rng = np.random.default_rng(4)
    err = rng.uniform(0, 0.4, 300)
    th = np.array([0.05, 0.1, 0.3])
    curve = metrics.recall_curve(err, th)
    np.testing.assert_allclose(curve, [np.mean(err <= t) for t in th])
    assert metrics.average_recall(err, th) == pytest.approx(curve.mean())
    assert np.all(np.diff(metrics.recall_curve(err)) >= 0)


def test_rotation_errors():
    rng = np.random.default_rng(5)
    b = 40
    az = rng.uniform(-np.pi, np.pi, b)
    el = rng.uniform(0, 0.8, b)
    daz = rng.uniform(-2.5, 2.5, b)
    R1 = np.stack([geometry.pose_from_viewpoint(a, e, 3.0)[0] for a, e in zip(az, el)])
    R2 = np.stack([geometry.pose_from_viewpoint(a + d, e, 3.0, in_plane=0.3)[0]
                   for a, e, d in zip(az, el, daz)])
    np.testing.assert_allclose(metrics.azimuth_error(R2, R1), np.abs(daz), atol=1e-9)
    np.testing.assert_allclose(metrics.elevation_error(R2, R1), 0.0, atol=1e-9)
    ref = Rotation.from_matrix(np.einsum('bji,bjk->bik', R1, R2)).magnitude()
    np.testing.assert_allclose(metrics.geodesic_error(R1, R2), ref, atol=1e-7)
    t1, t2 = rng.normal(size=(b, 3)), rng.normal(size=(b, 3))
    np.testing.assert_allclose(metrics.translation_error(t1, t2),
                               [np.sqrt(np.sum((a - c) ** 2)) for a, c in zip(t1, t2)])


def test_shape_errors():
    with pytest.raises(ValueError):
        metrics.pck(np.zeros((2, 3, 2)), np.zeros((2, 4, 2)), np.ones(2))
    with pytest.raises(ValueError):
        metrics.pck(np.zeros((2, 3, 2)), np.zeros((2, 3, 2)), np.ones(3))
    with pytest.raises(ValueError):
        metrics.geodesic_error(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError):
        metrics.structure_rmse(np.zeros((1, 4, 3)), np.ones((1, 4, 3)))
