"""Categories as data: loading, validation, base shapes learned from generated instances."""

import json

import numpy as np
import pytest
import scipy.linalg

from perception_3dinn.skeleton import (
    available_categories,
    Category,
    category_from_dict,
    load_category,
    save_category,
)
from training.synth.bases import build_category, learn_bases, sample_instances
from training.synth.procedural import keypoint_diagonal

# Held-out reconstruction error we state in docs/synthetic.md (normalised units, per-keypoint
# RMS; the bounding-box diagonal of each instance is 1).
HELDOUT_RMSE = {'chair': (0.015, 0.03), 'table': (1e-3, 1e-3)}


@pytest.fixture(scope='module', params=['chair', 'table'])
def cat(request):
    return load_category(request.param)


def test_shipped_categories():
    assert {'chair', 'table'} <= set(available_categories())
    chair = load_category('chair')
    assert chair.num_keypoints == 10 and len(chair.edges) == 11
    assert chair.num_bases in (4, 5)
    table = load_category('table')
    assert table.num_keypoints == 8
    # Every keypoint is on the skeleton.
    for c in (chair, table):
        assert set(np.unique(c.edges)) == set(range(c.num_keypoints))


def test_mirror_symmetry(cat):
    """A y-mirror with the symmetric pairs swapped maps each base onto itself."""
    perm = cat.flip_permutation
    assert sorted(perm) == list(range(cat.num_keypoints))
    mirror = np.diag([1.0, -1.0, 1.0])
    for b in cat.bases:
        np.testing.assert_allclose((b @ mirror)[perm], b, atol=1e-6)
    names = cat.keypoint_names
    for a, b in cat.symmetric_pairs:
        assert names[a].replace('left', 'right') == names[b]


def test_bases_orthonormal_and_frame(cat):
    b = cat.bases[1:].reshape(cat.num_bases, -1)
    np.testing.assert_allclose(b @ b.T, np.eye(cat.num_bases), atol=1e-6)
    mean = cat.mean_shape
    # Canonical frame: floor at z = 0, centred in x and y, normalised scale.
    assert abs(mean[:, 2].min()) < 1e-6
    lo, hi = mean.min(0), mean.max(0)
    np.testing.assert_allclose((lo + hi)[:2] / 2, 0.0, atol=0.02)
    assert 0.9 < keypoint_diagonal(mean) < 1.1
    assert np.all(cat.alpha_std > 0) and np.all(np.diff(cat.explained_variance) <= 0)
    assert cat.size_prior_m > 0.3


def test_structure_and_fit_against_lstsq(cat):
    rng = np.random.default_rng(3)
    alpha = rng.normal(size=(7, cat.num_bases)) * cat.alpha_std
    y = cat.structure(alpha)
    assert y.shape == (7, cat.num_keypoints, 3)
    ref = cat.bases[0] + np.einsum('bk,knd->bnd', alpha, cat.bases[1:])
    np.testing.assert_allclose(y, ref, atol=1e-12)
    np.testing.assert_allclose(cat.metric_structure(alpha), ref * cat.size_prior_m)
    noisy = y + rng.normal(scale=0.01, size=y.shape)
    a_fit = cat.fit_structure(noisy)
    A = cat.bases[1:].reshape(cat.num_bases, -1).T
    for i in range(len(y)):
        ref_a = scipy.linalg.lstsq(A, (noisy[i] - cat.bases[0]).ravel())[0]
        np.testing.assert_allclose(a_fit[i], ref_a, atol=1e-9)
    with pytest.raises(ValueError):
        cat.structure(np.zeros(cat.num_bases + 1))
    with pytest.raises(ValueError):
        cat.fit_structure(np.zeros((cat.num_keypoints + 1, 3)))


def test_heldout_reconstruction(cat):
    """Bases reconstruct generated skeletons they were not learned from."""
    kps, _, _ = sample_instances(cat.name, 300, seed=424242)
    y = kps / keypoint_diagonal(kps)[:, None, None]
    rec = cat.structure(cat.fit_structure(y))
    rmse = np.sqrt(((rec - y) ** 2).sum(-1).mean(-1))
    mean_max, p95_max = HELDOUT_RMSE[cat.name]
    assert rmse.mean() < mean_max
    assert np.percentile(rmse, 95) < p95_max
    # Fraction of held-out variance explained agrees with what the file states.
    centred = (y - y.mean(0)).reshape(len(y), -1)
    b = cat.bases[1:].reshape(cat.num_bases, -1)
    frac = np.sum((centred @ b.T) ** 2) / np.sum(centred ** 2)
    assert frac > cat.explained_variance.sum() - 0.03


def test_sampled_structures_plausible():
    """Y = sum a_k B_k with a within 2.5 std stays chair-like."""
    cat = load_category('chair')
    rng = np.random.default_rng(7)
    alpha = np.clip(rng.normal(size=(2000, cat.num_bases)), -2.5, 2.5) * cat.alpha_std
    y = cat.structure(alpha)
    legs, seat, back = y[:, 0:4], y[:, 4:8], y[:, 8:10]
    np.testing.assert_allclose(legs[..., 2], 0.0, atol=1e-6)
    assert np.all(seat[..., 2].min(1) > legs[..., 2].max(1) + 0.15)
    assert np.all(back[..., 2].min(1) > seat[..., 2].max(1) + 0.05)
    # Front in front of back, left on the left.
    assert np.all(seat[:, [0, 1], 0].min(1) > seat[:, [2, 3], 0].max(1) + 0.1)
    assert np.all(y[:, [0, 2, 4, 6, 8], 1] > 0.03)
    assert np.all(keypoint_diagonal(y) > 0.7) and np.all(keypoint_diagonal(y) < 1.3)


def test_learn_bases_against_numpy_pca():
    kps, _, _ = sample_instances('chair', 200, seed=11)
    learned = learn_bases(kps, 3)
    y = kps / keypoint_diagonal(kps)[:, None, None]
    cov = np.cov(y.reshape(len(y), -1), rowvar=False)
    evals, evecs = np.linalg.eigh(cov)
    order = np.argsort(evals)[::-1]
    np.testing.assert_allclose(learned['alpha_std'] ** 2, evals[order[:3]], rtol=1e-6)
    for k in range(3):
        v = evecs[:, order[k]]
        assert abs(abs(v @ learned['bases'][k + 1].ravel()) - 1) < 1e-6
    np.testing.assert_allclose(learned['explained_variance'],
                               evals[order[:3]] / evals.sum(), rtol=1e-6)


def test_build_deterministic_and_roundtrip(tmp_path):
    a = build_category('table', count=200, seed=5, heldout=20)
    b = build_category('table', count=200, seed=5, heldout=20)
    np.testing.assert_array_equal(a.bases, b.bases)
    path = save_category(a, tmp_path / 'table_small.json')
    c = load_category(path)
    np.testing.assert_allclose(c.bases, a.bases, atol=1e-8)
    assert c.keypoint_names == a.keypoint_names
    np.testing.assert_array_equal(c.edges, a.edges)
    assert c.metadata['instances'] == 200


def test_validation_errors(tmp_path):
    data = json.loads(json.dumps(load_category('chair').to_dict()))
    bad = dict(data, bases=np.zeros((3, 9, 3)).tolist())
    with pytest.raises(ValueError, match='bases'):
        category_from_dict(bad)
    bad = dict(data, edges=[[0, 10]])
    with pytest.raises(ValueError, match='edges'):
        category_from_dict(bad)
    bad = dict(data, format_version=99)
    with pytest.raises(ValueError, match='newer'):
        category_from_dict(bad)
    with pytest.raises(FileNotFoundError, match='chair'):
        load_category('no_such_category')
    assert isinstance(category_from_dict(data), Category)


def test_new_category_is_data_only(tmp_path):
    """A category without a generator (e.g. bed, 10 keypoints) is just a JSON file."""
    rng = np.random.default_rng(1)
    names = [f'{side}_{i}' for i in range(5) for side in ('left', 'right')]
    mean = rng.uniform(-0.5, 0.5, (10, 3))
    mean[1::2] = mean[0::2] * [1, -1, 1]
    q, _ = np.linalg.qr(rng.normal(size=(30, 4)))
    data = {'name': 'bed', 'keypoint_names': names, 'edges': [[i, i + 1] for i in range(9)],
            'symmetric_pairs': [[2 * i, 2 * i + 1] for i in range(5)],
            'bases': np.concatenate([mean[None], q.T.reshape(4, 10, 3)]).tolist(),
            'alpha_std': [0.1] * 4, 'size_prior_m': 2.2, 'dimensions_m': [2.1, 1.6, 1.0]}
    path = tmp_path / 'bed.json'
    path.write_text(json.dumps(data))
    bed = load_category(path)
    assert bed.num_keypoints == 10 and bed.num_bases == 4
    np.testing.assert_array_equal(bed.flip_permutation, [1, 0, 3, 2, 5, 4, 7, 6, 9, 8])
    alpha = rng.normal(size=4)
    np.testing.assert_allclose(bed.fit_structure(bed.structure(alpha)), alpha, atol=1e-9)
    assert np.all(np.isnan(bed.explained_variance))
