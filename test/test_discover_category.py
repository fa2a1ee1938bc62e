"""From keypoints to a category (issue 19, item 3), checked against independent references:
our hand-made chair category, OpenCV's projection, and a mesh whose surface path is known."""

import json

import cv2
import numpy as np
import pytest
import torch
import trimesh

from perception_3dinn.skeleton import load_category
from training import discover
from training.keypoint_category import (
    build_discovered_category,
    CategoryOptions,
    choose_num_bases,
    metres_per_unit,
    mirror_pairs,
    surface_edges,
    to_object_frame,
)
from training.keypointnet_eval import against_hand_made, hand_made_keypoints
from training.keypointnet_losses import KeypointNetLossWeights, supervised_loss
from training.synth.mesh_export import export_instances
from training.synth.meshes import load_mesh, load_mesh_folder


@pytest.fixture(scope='module')
def chair_meshes(tmp_path_factory):
    folder = tmp_path_factory.mktemp('chairs')
    export_instances('chair', 30, folder, seed=5, progress=False)
    meshes, report = load_mesh_folder(folder, up='z')
    assert len(meshes) == 30 and not report.skipped
    return folder, meshes


def test_exported_keypoints_follow_the_normalisation(chair_meshes):
    folder, meshes = chair_meshes
    hand = hand_made_keypoints(folder, meshes)
    seat = [load_category('chair').keypoint_names.index(n) for n in
            ('seat_front_left', 'seat_front_right', 'seat_back_left', 'seat_back_right')]
    for mesh, kp in zip(meshes[:5], hand):
        raw = trimesh.load(str(folder / mesh.name), force='mesh', process=False).vertices
        dist = np.linalg.norm(mesh.normalise(raw)[:, None] - mesh.vertices[None], axis=-1)
        assert dist.min(1).max() < 1e-9  # normalise() is the loader's own transform
        # seat corners are corners of the seat part: vertices of the normalised mesh
        d_seat = np.linalg.norm(kp[seat][:, None] - mesh.vertices[None], axis=-1).min(1)
        assert d_seat.max() < 1e-5


def test_category_from_hand_made_keypoints_reproduces_the_chair(chair_meshes, tmp_path):
    """Given the hand-made chair keypoints as if discovered, the builder finds the chair's
    own mirror pairs, edges that are chair edges, its size prior and its mean shape."""
    _, meshes = chair_meshes
    hand = hand_made_keypoints(chair_meshes[0], meshes)
    cat = build_discovered_category('chair_copy', hand, meshes, metres_per_unit(meshes, None))
    ref = load_category('chair')
    assert sorted(map(tuple, cat.symmetric_pairs.tolist())) == \
        sorted(map(tuple, ref.symmetric_pairs.tolist()))
    ref_edges = {tuple(sorted(e)) for e in ref.edges.tolist()}
    found = {tuple(e) for e in cat.edges.tolist()}
    assert len(found) >= ref.num_keypoints - 1 and found <= ref_edges
    assert cat.size_prior_m == pytest.approx(ref.size_prior_m, rel=0.05)
    assert np.abs(cat.mean_shape - ref.mean_shape).max() < 0.03
    assert cat.metadata['explained_variance_total'] >= 0.95
    assert cat.metadata['mirror_plane'] == 'y'
    assert cat.keypoint_names[0].endswith('_left') and cat.keypoint_names[1].endswith('_right')
    from perception_3dinn.skeleton import save_category
    back = load_category(save_category(cat, tmp_path / 'chair_copy.json'))
    np.testing.assert_allclose(back.bases, cat.bases, atol=1e-7)


def test_metric_size_scales_the_median_mesh(chair_meshes):
    _, meshes = chair_meshes
    per_unit = metres_per_unit(meshes, 2.0)
    longest = np.array([np.max(m.raw_extent) for m in meshes]) * per_unit * meshes[0].scale
    ratio = per_unit / metres_per_unit(meshes, None)
    np.testing.assert_allclose(ratio, ratio[0])  # one factor: relative sizes kept
    assert np.median(np.array([np.max(m.raw_extent) for m in meshes]) * ratio) == \
        pytest.approx(2.0)
    assert np.all(np.isfinite(longest))


def test_surface_edges_follow_a_u_shape(tmp_path):
    """The two tips of a U are close through the air; the tree goes down the arms instead."""
    parts = [trimesh.creation.box((0.2, 0.2, 2.0), trimesh.transformations.translation_matrix(
        (x, 0, 1.0))) for x in (-0.7, 0.7)]
    parts.append(trimesh.creation.box((1.6, 0.2, 0.2),
                                      trimesh.transformations.translation_matrix((0, 0, 0.1))))
    path = tmp_path / 'u.obj'
    trimesh.util.concatenate(parts).export(str(path))
    mesh = load_mesh(path, up='z')
    raw = np.array([[-0.7, 0.1, 2.0], [0.7, 0.1, 2.0], [-0.7, 0.1, 0.1], [0.7, 0.1, 0.1]])
    kp = mesh.normalise(raw)
    assert np.linalg.norm(kp[0] - kp[1]) < np.linalg.norm(kp[0] - kp[2])
    edges = surface_edges(kp, kp[None], [mesh], np.array([1, 0, 3, 2]), CategoryOptions(),
                          np.random.default_rng(0))
    assert {tuple(e) for e in edges.tolist()} == {(0, 2), (1, 3), (2, 3)}


def test_to_object_frame_inverts_opencv_projection():
    rng = np.random.default_rng(3)
    K = np.array([[80.0, 0, 31.5], [0, 82.0, 30.0], [0, 0, 1]])
    X = rng.uniform(-1, 1, (7, 3))
    uvs, zs, Rs, ts = [], [], [], []
    for _ in range(4):
        rvec = rng.normal(0, 0.6, 3)
        t = np.array([0.1, -0.2, 4.0]) + rng.normal(0, 0.1, 3)
        R = cv2.Rodrigues(rvec)[0]
        uv, _ = cv2.projectPoints(X, rvec, t, K, None)
        uvs.append(uv[:, 0])
        zs.append((X @ R.T + t)[:, 2])
        Rs.append(R)
        ts.append(t)
    back = to_object_frame(np.stack(uvs), np.stack(zs), K, np.stack(Rs), np.stack(ts))
    np.testing.assert_allclose(back, np.broadcast_to(X, back.shape), atol=1e-9)


def test_mirror_pairs_sides_and_unmatched():
    mean = np.array([[0.3, 0.2, 0.0], [0.3, -0.2, 0.0], [0.0, 0.0, 0.5], [-0.3, 0.25, 0.4]])
    pairs, side = mirror_pairs(mean, tol=0.05)
    assert pairs.tolist() == [[0, 1]]
    assert side.tolist() == [1, -1, 0, 2]


def test_choose_num_bases():
    ev = np.array([0.6, 0.25, 0.1, 0.04, 0.01])
    assert choose_num_bases(ev, 0.95) == 3
    assert choose_num_bases(ev, 0.999) == 5
    assert choose_num_bases(ev, 0.5) == 1


def test_supervised_loss_is_zero_at_the_labels():
    g = torch.Generator().manual_seed(0)
    uv, z = torch.rand(2, 3, 2, generator=g) * 64, 3 + torch.rand(2, 3, generator=g)
    fb = torch.rand(2, 2, 2, generator=g) * 64
    batch = {'label_uv_a': uv, 'label_z_a': z, 'label_uv_b': uv + 1, 'label_z_b': z,
             'front_back_a': fb, 'front_back_b': fb}
    out_a = {'uv': uv.clone(), 'z': z.clone(), 'orient_uv': fb.clone()}
    out_b = {'uv': uv + 1, 'z': z.clone(), 'orient_uv': fb.clone()}
    w = KeypointNetLossWeights()
    total, terms = supervised_loss(out_a, out_b, batch, w, 64)
    assert float(total) == pytest.approx(0.0, abs=1e-10)
    out_b['uv'] = uv + 1 + 32.0  # half the image side = one normalised unit
    _, terms = supervised_loss(out_a, out_b, batch, w, 64)
    assert terms['keypoints'] == pytest.approx(0.5 * 2.0)


def test_against_hand_made_constant_offset():
    rng = np.random.default_rng(1)
    hand = rng.uniform(-1, 1, (6, 4, 3))
    unit = np.linalg.norm(hand.max(1) - hand.min(1), axis=-1)[:, None, None]
    disc = hand[:, [2, 0]] + 0.02 * unit * np.array([1.0, 0, 0])
    rows = against_hand_made(disc, hand, ['a', 'b', 'c', 'd'])
    assert [r['nearest'] for r in rows] == ['c', 'a']
    assert rows[0]['mean_distance'] == pytest.approx(0.02)
    assert rows[0]['spread'] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize('supervised', [False, True])
def test_discover_writes_a_category_the_runtime_reads(tmp_path, supervised):
    torch.set_num_threads(1)
    folder = tmp_path / 'meshes'
    export_instances('chair', 4, folder, seed=9, progress=False)
    out = tmp_path / 'run'
    discover.main(['--meshes', str(folder), '--category', 'seat', '--out', str(out),
                   '--steps', '2', '--batch', '2', '--size', '32', '--keypoints', '4',
                   '--channels', '4', '--val-pairs', '2', '--eval-every', '2',
                   '--threads', '1', '--up', 'z', '--val-meshes', '1',
                   '--category-views', '2', '--pairs', '2', '--max-bases', '2']
                  + (['--supervised'] if supervised else []))
    cat = load_category(out / 'seat.json')
    assert cat.num_keypoints == (10 if supervised else 4)
    assert 1 <= cat.num_bases <= 2
    assert len(cat.edges) >= cat.num_keypoints - 1
    ev = json.loads((out / 'evaluation.json').read_text())
    assert ev['held_out']['pairs'] == 2 and ev['held_out']['meshes'] == 1
    assert 0.0 <= ev['held_out']['rot_err_median_deg'] <= 180.0
    assert len(ev['against_hand_made']) == cat.num_keypoints
    assert (out / 'pose_errors.png').is_file()
    kp = np.load(out / 'keypoints.npz')
    assert kp['keypoints_m'].shape == (3, cat.num_keypoints, 3)
    assert torch.load(out / 'model.pt', weights_only=False)['supervised'] is supervised
