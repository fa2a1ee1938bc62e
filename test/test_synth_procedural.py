"""Procedural objects: closed convex parts, exact keypoints on their surfaces, variation."""

import numpy as np
import pytest
from scipy.spatial import ConvexHull

from training.synth.procedural import generate, GENERATORS, keypoint_diagonal, SKELETONS


@pytest.fixture(scope='module', params=sorted(GENERATORS))
def meshes(request):
    rng = np.random.default_rng(12)
    return [generate(request.param, rng) for _ in range(150)]


def test_parts_are_closed_convex_polyhedra(meshes):
    for mesh in meshes[:60]:
        for part in mesh.parts:
            hs = part.halfspaces()
            v = part.vertices
            # Every vertex inside every face's half-space; each face lies in its plane.
            assert np.all(v @ hs[:, :3].T - hs[:, 3] <= 1e-9)
            for f, h in zip(part.faces, hs):
                np.testing.assert_allclose(v[f] @ h[:3], h[3], atol=1e-9)
            # Same volume as scipy's convex hull of the vertices (closed, outward faces).
            vol = sum(np.dot(v[f[0]], np.cross(v[f[i]], v[f[i + 1]])) / 6.0
                      for f in part.faces for i in range(1, len(f) - 1))
            np.testing.assert_allclose(vol, ConvexHull(v).volume, rtol=1e-6)


def test_keypoints_on_owner_part_surfaces(meshes):
    for mesh in meshes:
        names = SKELETONS[mesh.category][0]
        assert mesh.keypoints.shape == (len(names), 3)
        for k, p in zip(mesh.keypoints, mesh.keypoint_parts):
            hs = mesh.parts[p].halfspaces()
            s = hs[:, :3] @ k - hs[:, 3]
            assert s.max() <= 1e-9, 'keypoint outside its part'
            assert s.max() >= -1e-9, 'keypoint inside its part, not on the surface'


def test_canonical_frame_and_symmetry(meshes):
    for mesh in meshes:
        kp = mesh.keypoints
        np.testing.assert_allclose(kp[:4, 2], 0.0, atol=1e-12)  # leg tips on the floor
        lo, hi = kp.min(0), kp.max(0)
        np.testing.assert_allclose((lo + hi)[:2] / 2, 0.0, atol=1e-12)
        _, _, pairs = SKELETONS[mesh.category]
        for a, b in pairs:
            np.testing.assert_allclose(kp[a] * [1, -1, 1], kp[b], atol=1e-9)
        assert np.all(kp[4:8, 2] > 0.3)  # seat / top corners well above the floor
        if mesh.category == 'chair':
            assert np.all(kp[8:, 2] > kp[4:8, 2].max() + 0.1)
            assert kp[4, 0] > kp[6, 0]  # front ahead of back


def test_wide_variation(meshes):
    cat = meshes[0].category
    diag = keypoint_diagonal(np.stack([m.keypoints for m in meshes]))
    assert diag.max() / diag.min() > 1.4
    params = [m.params for m in meshes]
    bases = {p['base'] for p in params}
    if cat == 'chair':
        assert bases == {'legs', 'sled', 'pedestal', 'panels'}
        assert {p['back_style'] for p in params} == {'solid', 'vertical_slats', 'rails',
                                                     'frame'}
        assert any(p['arms'] for p in params) and not all(p['arms'] for p in params)
        tilts = [p['back_tilt'] for p in params]
        assert max(tilts) - min(tilts) > 0.25
    else:
        assert bases == {'legs', 'pedestal', 'trestle'}
        assert {p['shape'] for p in params} == {'rect', 'round', 'oval'}
        heights = [p['height'] for p in params]
        assert max(heights) - min(heights) > 0.3


def test_generator_deterministic():
    for cat in GENERATORS:
        a = generate(cat, np.random.default_rng(5))
        b = generate(cat, np.random.default_rng(5))
        np.testing.assert_array_equal(a.keypoints, b.keypoints)
        assert len(a.parts) == len(b.parts)
    with pytest.raises(KeyError, match='available'):
        generate('sofa_that_does_not_exist', np.random.default_rng(0))
