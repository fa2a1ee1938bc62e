"""Procedural objects: closed convex parts, exact keypoints on their surfaces, variation."""

import numpy as np
import pytest
from scipy.spatial import ConvexHull

from training.synth.procedural import (
    FLOOR_KEYPOINTS,
    generate,
    GENERATORS,
    keypoint_diagonal,
    SKELETONS,
)


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


# Keypoint name fragments: the first is ahead of (larger x than) the second.
AHEAD = (('front', 'back'), ('foot', 'head'))
# Smallest max / min keypoint-box diagonal over 150 samples.
DIAGONAL_SPREAD = {'bed': 1.25, 'swivel_chair': 1.3}


def test_canonical_frame_and_symmetry(meshes):
    cat = meshes[0].category
    names, _, pairs = SKELETONS[cat]
    floor = list(FLOOR_KEYPOINTS[cat])
    above = [i for i in range(len(names)) if i not in floor]
    assert floor and above
    ahead = [(i, names.index(n.replace(f, b))) for i, n in enumerate(names)
             for f, b in AHEAD if f in n and n.replace(f, b) in names]
    seat = [i for i, n in enumerate(names) if n.startswith('seat_')]
    back_top = [i for i, n in enumerate(names) if n.startswith('back_top_')]
    for mesh in meshes:
        kp = mesh.keypoints
        np.testing.assert_allclose(kp[floor, 2], 0.0, atol=1e-12)  # on the floor
        assert np.all(kp[above, 2] > 0.02)
        assert mesh.bounds()[0][2] >= -1e-12  # nothing below the floor
        lo, hi = kp.min(0), kp.max(0)
        np.testing.assert_allclose((lo + hi)[:2] / 2, 0.0, atol=1e-12)
        if mesh.params.get('chaise') is None:  # a chaise sofa is deliberately asymmetric
            for a, b in pairs:
                np.testing.assert_allclose(kp[a] * [1, -1, 1], kp[b], atol=1e-9)
        for a, b in ahead:
            assert kp[a, 0] > kp[b, 0] + 0.05, (names[a], names[b])
        if seat:
            assert np.all(kp[seat, 2] > 0.3)  # seat / top corners well above the floor
        if seat and back_top:
            assert np.all(kp[back_top, 2] > kp[seat, 2].max() + 0.1)


def test_parts_connected(meshes):
    """No floating parts: the parts' bounding boxes (grown by 1 mm) overlap in one connected
    graph. A coarse test (boxes of slanted parts are large) that catches detached parts."""
    for mesh in meshes[:60]:
        lo = np.stack([p.vertices.min(0) for p in mesh.parts]) - 1e-3
        hi = np.stack([p.vertices.max(0) for p in mesh.parts]) + 1e-3
        touch = np.all((lo[:, None] <= hi[None]) & (lo[None] <= hi[:, None]), -1)
        reached, frontier = {0}, [0]
        while frontier:
            new = set(np.flatnonzero(touch[frontier].any(0))) - reached
            reached |= new
            frontier = list(new)
        assert len(reached) == len(mesh.parts), mesh.params


def _both(values) -> bool:
    values = list(values)
    return any(values) and not all(values)


def _spread(values) -> float:
    values = list(values)
    return max(values) - min(values)


def test_wide_variation(meshes):
    cat = meshes[0].category
    diag = keypoint_diagonal(np.stack([m.keypoints for m in meshes]))
    assert diag.max() / diag.min() > DIAGONAL_SPREAD.get(cat, 1.4)
    params = [m.params for m in meshes]
    bases = {p.get('base') for p in params}
    if cat == 'chair':
        assert bases == {'legs', 'sled', 'pedestal', 'panels'}
        assert {p['back_style'] for p in params} == {'solid', 'vertical_slats', 'rails',
                                                     'frame'}
        assert _both(p['arms'] for p in params)
        assert _spread(p['back_tilt'] for p in params) > 0.25
    elif cat == 'table':
        assert bases == {'legs', 'pedestal', 'trestle'}
        assert {p['shape'] for p in params} == {'rect', 'square', 'round', 'oval'}
        assert all(p['length'] == p['width'] for p in params if p['shape'] == 'square')
        assert any(p['length'] != p['width'] for p in params if p['shape'] == 'rect')
        assert _spread(p['height'] for p in params) > 0.3
    elif cat == 'swivel_chair':
        assert all(p['star_phase'] == 0.0 for p in params)
        assert _both(p['arms'] for p in params)
        assert _both(p['headrest'] for p in params)
        assert {p['back_style'] for p in params} == {'solid', 'framed'}
        assert _spread(p['back_tilt'] for p in params) > 0.25
        assert _spread(p['seat_height'] for p in params) > 0.12
        assert max(p['back_height'] for p in params) > 0.7  # high backs
    elif cat == 'sofa':
        assert {p['seats'] for p in params} == {1, 2, 3}
        assert _both(p['arms'] for p in params)
        assert {p['chaise'] for p in params} == {None, 'left', 'right'}
        assert _both(p['cushions'] for p in params)
        assert bases == {'feet', 'plinth'}
        assert all(p['chaise'] is None for p in params if p['seats'] == 1)
    elif cat == 'bed':
        assert _both(p['headboard'] for p in params)
        assert _both(p['footboard'] for p in params)
        assert bases == {'legs', 'platform'}
        assert _spread(p['width'] for p in params) > 0.8
    else:
        pytest.fail(f'no variation test for {cat}')


def test_generator_deterministic():
    for cat in GENERATORS:
        a = generate(cat, np.random.default_rng(5))
        b = generate(cat, np.random.default_rng(5))
        np.testing.assert_array_equal(a.keypoints, b.keypoints)
        assert len(a.parts) == len(b.parts)
    with pytest.raises(KeyError, match='available'):
        generate('sofa_that_does_not_exist', np.random.default_rng(0))
