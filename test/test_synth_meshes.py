"""User meshes: checks, normalisation, up axis, and view pairs with exact relative poses."""

import numpy as np
import pytest
import trimesh

from training.synth import meshes


def _box(path, extents, offset=(0.0, 0.0, 0.0)):
    m = trimesh.creation.box(extents)
    m.apply_translation(offset)
    m.export(str(path))
    return m


def _cone_along(axis, path):
    """A cone whose apex points along ``axis`` (a unit vector), base disc opposite."""
    m = trimesh.creation.cone(0.5, 1.5, sections=24)  # base at z = 0, apex at z = 1.5
    m.apply_transform(trimesh.geometry.align_vectors([0, 0, 1], axis))
    m.export(str(path))
    return m


def test_box_is_normalised_to_unit_longest_side(tmp_path):
    _box(tmp_path / 'box.obj', (4.0, 2.0, 1.0), (10.0, 5.0, 3.0))
    m = meshes.load_mesh(tmp_path / 'box.obj', up='z')
    np.testing.assert_allclose(m.vertices.min(0), [-1.0, -0.5, -0.25], atol=1e-12)
    np.testing.assert_allclose(m.vertices.max(0), [1.0, 0.5, 0.25], atol=1e-12)
    np.testing.assert_allclose(m.raw_extent, [4.0, 2.0, 1.0], atol=1e-9)
    assert m.scale == pytest.approx(0.5) and m.up == 'z' and m.warnings == []
    assert len(m.faces) == 12 and np.allclose(np.linalg.norm(m.normals, axis=1), 1.0)


@pytest.mark.parametrize('axis, name', [((0, 1, 0), 'y'), ((-1, 0, 0), '-x'),
                                        ((0, 0, 1), 'z')])
def test_up_axis_detected_and_given(tmp_path, axis, name):
    _cone_along(axis, tmp_path / 'cone.stl')
    for up in ('auto', name):
        m = meshes.load_mesh(tmp_path / 'cone.stl', up=up)
        assert m.up == name
        # Our object frame is z up: the apex is on top, at z = +1 (the cone's height 1.5 is
        # its longest side), above the centre of the base disc.
        np.testing.assert_allclose(m.vertices[np.argmax(m.vertices[:, 2])], [0, 0, 1.0],
                                   atol=1e-9)
        np.testing.assert_allclose(np.ptp(m.vertices, axis=0), [4 / 3, 4 / 3, 2.0],
                                   atol=1e-9)
    opposite = name[1:] if name.startswith('-') else '-' + name
    upside_down = meshes.load_mesh(tmp_path / 'cone.stl', up=opposite)
    np.testing.assert_allclose(upside_down.vertices[np.argmin(upside_down.vertices[:, 2])],
                               [0, 0, -1.0], atol=1e-9)


def test_non_manifold_is_a_warning(tmp_path):
    (tmp_path / 'fan.obj').write_text('v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nv 0 -1 0\n'
                                      'f 1 2 3\nf 1 2 4\nf 1 2 5\n')  # edge 1-2 in 3 faces
    m = meshes.load_mesh(tmp_path / 'fan.obj', up='z')
    assert any('1 non-manifold edges' in w for w in m.warnings)
    assert any('watertight' in w for w in m.warnings) and len(m.faces) == 3
    _box(tmp_path / 'box.stl', (1.0, 1.0, 1.0))
    box = meshes.load_mesh(tmp_path / 'box.stl', up='z')
    assert box.warnings == []  # an STL box is watertight once its vertices are merged


def test_units_warning_and_skip(tmp_path):
    _box(tmp_path / 'mm.ply', (900.0, 500.0, 450.0))  # a chair in millimetres
    m = meshes.load_mesh(tmp_path / 'mm.ply', up='z', metric_size=0.9)
    assert len(m.warnings) == 1 and 'units' in m.warnings[0]
    np.testing.assert_allclose(m.vertices.max(0)[0], 1.0, atol=1e-12)  # normalised anyway
    assert meshes.load_mesh(tmp_path / 'mm.ply', up='z', metric_size=900.0).warnings == []
    with pytest.raises(meshes.MeshError, match='units'):
        meshes.load_mesh(tmp_path / 'mm.ply', up='z', metric_size=0.9, units='skip')
    _box(tmp_path / 'tiny.stl', (1e-4, 1e-4, 1e-4))
    assert 'units' in meshes.load_mesh(tmp_path / 'tiny.stl', metric_size=0.9).warnings[0]


def test_bad_files_are_skipped_with_reasons_and_counted(tmp_path):
    _box(tmp_path / 'good.obj', (1.0, 1.0, 2.0))
    _box(tmp_path / 'sub_good.glb', (3.0, 1.0, 1.0))
    (tmp_path / 'empty.stl').write_bytes(b'')
    (tmp_path / 'corrupt.glb').write_bytes(np.random.default_rng(0).bytes(300))
    (tmp_path / 'nan.obj').write_text('v nan 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\n'
                                      'f 1 2 3\nf 1 3 4\nf 2 3 4\n')
    (tmp_path / 'flat.obj').write_text('v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n')
    (tmp_path / 'notes.txt').write_text('not a mesh suffix: ignored')
    open_box = trimesh.creation.box((1.0, 1.0, 1.0))
    open_box.update_faces(np.arange(len(open_box.faces)) > 0)  # one triangle missing
    open_box.export(str(tmp_path / 'open.off'))
    found, report = meshes.load_mesh_folder(tmp_path, up='z', max_faces=12)
    assert sorted(m.name for m in found) == ['good.obj', 'open.off', 'sub_good.glb']
    assert report.loaded == ['good.obj', 'open.off', 'sub_good.glb']
    reasons = dict(report.skipped)
    assert set(reasons) == {'corrupt.glb', 'empty.stl', 'flat.obj', 'nan.obj'}
    assert 'empty' in reasons['empty.stl'] and 'cannot be read' in reasons['corrupt.glb']
    assert 'NaN' in reasons['nan.obj'] and 'zero surface area' in reasons['flat.obj']
    assert report.warnings == [('open.off', report.warnings[0][1])]
    assert 'watertight' in report.warnings[0][1]
    assert '3 meshes loaded, 4 skipped, 1 warnings' in report.summary()
    _, strict = meshes.load_mesh_folder(tmp_path, up='z', max_faces=11)
    assert 'max_faces=11' in dict(strict.skipped)['good.obj'] and len(strict.loaded) == 1


def _project(K, X):
    return (X @ K.T)[:, :2] / X[:, 2:]


def test_view_pair_relative_pose_and_masks(tmp_path):
    _box(tmp_path / 'box.obj', (2.0, 1.2, 0.8))
    m = meshes.load_mesh(tmp_path / 'box.obj', up='z')
    cfg = meshes.ViewConfig(size=48)
    pair = meshes.render_pair(m, np.random.default_rng(1), cfg)
    K = cfg.intrinsics()
    V = m.vertices
    X_a = V @ pair.a.R.T + pair.a.t
    X_b = V @ pair.b.R.T + pair.b.t
    via_a = X_a @ pair.R_ab.T + pair.t_ab
    np.testing.assert_allclose(via_a, X_b, atol=1e-12)
    np.testing.assert_allclose(_project(K, via_a), _project(K, X_b), atol=1e-9)
    for view in (pair.a, pair.b):
        assert view.image.shape == (48, 48, 3) and view.image.dtype == np.uint8
        assert view.mask.sum() > 50
        np.testing.assert_array_equal(view.mask, view.depth > 0)
        np.testing.assert_allclose(view.K, K)
        centre = -view.R.T @ view.t
        assert centre[2] > 0  # upper hemisphere
        assert np.allclose(view.R @ view.R.T, np.eye(3)) and np.linalg.det(view.R) > 0
        assert view.R[0, 2] == pytest.approx(0.0, abs=1e-12)  # zero roll: x axis horizontal
        # The box's depth range seen from the camera bounds the rendered depths.
        z = (V @ view.R.T + view.t)[:, 2]
        d = view.depth[view.mask]
        assert z.min() - 1e-4 <= d.min() and d.max() <= z.max() + 1e-4
        # A visible vertex projects inside the mask (within a pixel).
        uv = _project(K, V @ view.R.T + view.t)
        inside = (uv >= 1) & (uv <= 46)
        assert inside.all(axis=1).any()
    # Two-sided faces: flipping the winding of every face renders the same silhouette.
    flipped = meshes.UserMesh('f', V, m.faces[:, ::-1].copy(), -m.normals, 'z', 1.0,
                              m.raw_extent)
    again = meshes.render_view(flipped, pair.a.R, pair.a.t, K, 48, np.random.default_rng(2))
    np.testing.assert_array_equal(again.mask, pair.a.mask)
    np.testing.assert_allclose(again.depth, pair.a.depth, atol=1e-5)
