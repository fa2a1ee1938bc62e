"""Voxels from structure (perception_3dinn.inference.shape) against exact float64 distances."""

from __future__ import annotations

from inference_helpers import toy_chair
import numpy as np
import pytest

from perception_3dinn.inference.shape import skeleton_quads, StructureVoxelizer
from perception_3dinn.voxels import grid_for_dimensions


def _segment_distance(p, a, b):
    """(M,) distance of points (M, 3) to the segment a-b, float64."""
    ab = b - a
    s = np.clip((p - a) @ ab / (ab @ ab), 0.0, 1.0)
    return np.linalg.norm(p - (a + s[:, None] * ab), axis=1)


def _triangle_distance(p, a, b, c):
    """(M,) distance of points to the filled triangle abc, float64."""
    n = np.cross(b - a, c - a)
    n = n / np.linalg.norm(n)
    h = (p - a) @ n
    q = p - h[:, None] * n  # projection onto the plane
    # barycentric coordinates of q
    v0, v1, v2 = b - a, c - a, q - a
    d00, d01, d11 = v0 @ v0, v0 @ v1, v1 @ v1
    d20, d21 = v2 @ v0, v2 @ v1
    den = d00 * d11 - d01 * d01
    v = (d11 * d20 - d01 * d21) / den
    w = (d00 * d21 - d01 * d20) / den
    inside = (v >= 0) & (w >= 0) & (v + w <= 1)
    edges = np.min([_segment_distance(p, a, b), _segment_distance(p, b, c),
                    _segment_distance(p, c, a)], axis=0)
    return np.where(inside, np.abs(h), edges)


def test_quads_of_the_chair_are_seat_and_back():
    cat = toy_chair()
    quads = skeleton_quads(cat.edges, cat.num_keypoints)
    assert sorted(map(sorted, quads.tolist())) == [[4, 5, 6, 7], [6, 7, 8, 9]]


@pytest.mark.parametrize('seed', range(3))
def test_occupancy_within_exact_distance_bounds(seed):
    cat = toy_chair()
    res, origin = grid_for_dimensions(cat.dimensions_m, 32)
    radius = 3.0 * res
    vox = StructureVoxelizer(cat, size=32, radius_m=radius)
    alpha = np.random.default_rng(seed).normal(0, 0.2, cat.num_bases)
    grid = vox(alpha)
    assert grid.shape == (32, 32, 32) and grid.resolution == pytest.approx(res)
    np.testing.assert_allclose(grid.origin, origin)
    Y = cat.metric_structure(alpha)
    centres = grid.centers().reshape(-1, 3)
    dist = np.min([_segment_distance(centres, Y[i], Y[j]) for i, j in cat.edges], axis=0)
    for q in skeleton_quads(cat.edges, cat.num_keypoints):
        for tri in ((q[0], q[1], q[2]), (q[0], q[2], q[3])):
            dist = np.minimum(dist, _triangle_distance(centres, *Y[list(tri)]))
    occupied = grid.occupancy.reshape(-1) == 255
    assert set(np.unique(grid.occupancy)) <= {0, 255}
    half_diag = 0.5 * np.sqrt(3.0) * res
    slack = half_diag + 0.375 * res  # seed voxel centre + structure and scale quantisation
    # every occupied voxel is near the skeleton, every voxel well inside the tubes is occupied
    assert dist[occupied].max() <= radius + slack + 1e-9
    must = dist <= radius - slack - res
    assert must.sum() > 100 and occupied[must].all()
    # and the shape is not wildly larger than the ideal one
    ideal = dist <= radius
    assert occupied.sum() < 1.6 * ideal.sum()


def test_keypoint_voxels_occupied_and_cache():
    cat = toy_chair()
    vox = StructureVoxelizer(cat)
    alpha = np.array([0.1, -0.2, 0.05])
    grid = vox(alpha)
    idx, inside = grid.index_of(cat.metric_structure(alpha))
    assert inside.all()
    assert (grid.occupancy[idx[:, 0], idx[:, 1], idx[:, 2]] == 255).all()
    again = vox(alpha + 1e-5)  # rounds to the same cache entry
    np.testing.assert_array_equal(again.occupancy, grid.occupancy)
    with pytest.raises(ValueError, match='non-finite'):
        vox(np.array([np.nan, 0.0, 0.0]))
    with pytest.raises(ValueError, match='structure must be'):
        vox(np.zeros(2))
