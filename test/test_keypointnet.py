"""KeypointNet (seed 003): Procrustes against scipy, heads against numpy, losses on known cases."""

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
import torch

from perception_3dinn.models.keypointnet import (
    expected_depth,
    KeypointNetConfig,
    KeypointNetModel,
    lift,
    project,
    spatial_softmax,
)
from training import keypointnet_losses as kl
from training.synth.meshes import look_at, ViewConfig


def _t(x):
    return torch.from_numpy(np.asarray(x, np.float64))


def _scipy_fit(a, b, w):
    """Reference: scipy's rotation C minimising sum w |b~ - C a~|^2 (weighted centring)."""
    wn = w / w.sum()
    a0, b0 = a - wn @ a, b - wn @ b
    return Rotation.align_vectors(b0, a0, weights=w)[0].as_matrix()


@pytest.mark.parametrize('weighted', [False, True])
def test_procrustes_matches_scipy_float64(weighted):
    rng = np.random.default_rng(3)
    for _ in range(5):
        a = rng.normal(size=(10, 3))
        R = Rotation.random(random_state=rng.integers(1 << 31)).as_matrix()
        b = a @ R.T + rng.normal(size=3) + rng.normal(0, 0.05, (10, 3))
        w = rng.uniform(0.1, 2.0, 10) if weighted else np.ones(10)
        ours = kl.procrustes(_t(a), _t(b), _t(w) if weighted else None).numpy()
        np.testing.assert_allclose(ours, _scipy_fit(a, b, w), atol=1e-10)
        np.testing.assert_allclose(np.linalg.det(ours), 1.0, atol=1e-12)
        assert np.abs(ours - R).max() < 0.1  # close to the truth at this noise


def test_procrustes_reflection_case_gives_a_rotation():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(8, 3))
    M = np.diag([1.0, 1.0, -1.0]) @ Rotation.random(random_state=5).as_matrix()
    b = a @ M.T + rng.normal(0, 0.01, (8, 3))
    a0, b0 = a - a.mean(0), b - b.mean(0)
    U, _, Vt = np.linalg.svd(a0.T @ b0)
    assert np.linalg.det(Vt.T @ U.T) < 0  # the plain SVD solution is a reflection here
    ours = kl.procrustes(_t(a), _t(b)).numpy()
    np.testing.assert_allclose(np.linalg.det(ours), 1.0, atol=1e-12)
    np.testing.assert_allclose(ours, _scipy_fit(a, b, np.ones(8)), atol=1e-10)


def test_procrustes_batched_and_gradcheck():
    rng = np.random.default_rng(6)
    a = _t(rng.normal(size=(2, 6, 3))).requires_grad_()
    b = _t(rng.normal(size=(2, 6, 3))).requires_grad_()
    w = _t(rng.uniform(0.5, 1.5, (2, 6))).requires_grad_()
    R = kl.procrustes(a, b, w)
    for i in range(2):
        np.testing.assert_allclose(R[i].detach().numpy(), kl.procrustes(a[i], b[i], w[i])
                                   .detach().numpy(), atol=1e-12)
    assert torch.autograd.gradcheck(lambda x, y, z: kl.procrustes(x, y, z), (a, b, w))


def test_spatial_softmax_against_numpy():
    rng = np.random.default_rng(7)
    logits = rng.normal(0, 2, (2, 3, 5, 7))
    prob, uv = spatial_softmax(_t(logits))
    e = np.exp(logits - logits.max((2, 3), keepdims=True))
    p = e / e.sum((2, 3), keepdims=True)
    rows, cols = np.mgrid[0:5, 0:7]
    np.testing.assert_allclose(prob.numpy(), p, atol=1e-12)
    np.testing.assert_allclose(uv[..., 0].numpy(), (p * cols).sum((2, 3)), atol=1e-12)
    np.testing.assert_allclose(uv[..., 1].numpy(), (p * rows).sum((2, 3)), atol=1e-12)
    peak = torch.zeros(1, 1, 5, 7, dtype=torch.float64)
    peak[0, 0, 2, 4] = 60.0  # all mass on row 2, column 4
    np.testing.assert_allclose(spatial_softmax(peak)[1][0, 0].numpy(), [4.0, 2.0], atol=1e-9)


def test_expected_depth_weights_the_depth_maps():
    rng = np.random.default_rng(8)
    prob, _ = spatial_softmax(_t(rng.normal(size=(2, 4, 6, 6))))
    depth = rng.uniform(1, 5, (2, 4, 6, 6))
    z = expected_depth(prob, _t(depth)).numpy()
    np.testing.assert_allclose(z, (prob.numpy() * depth).sum((2, 3)), atol=1e-12)
    const = expected_depth(prob, torch.full((2, 4, 6, 6), 3.5, dtype=torch.float64))
    np.testing.assert_allclose(const.numpy(), 3.5, atol=1e-12)


def test_lift_and_project_against_numpy():
    K = ViewConfig(size=64).intrinsics()
    rng = np.random.default_rng(9)
    uv = rng.uniform(0, 63, (2, 5, 2))
    z = rng.uniform(2, 6, (2, 5))
    X = lift(_t(uv), _t(z), _t(K)).numpy()
    ref = np.einsum('ij,bnj->bni', np.linalg.inv(K), np.concatenate(
        [uv, np.ones((2, 5, 1))], -1)) * z[..., None]
    np.testing.assert_allclose(X, ref, atol=1e-12)
    uv2, z2 = project(_t(X), _t(K))
    np.testing.assert_allclose(uv2.numpy(), uv, atol=1e-9)
    np.testing.assert_allclose(z2.numpy(), z, atol=1e-12)


def _pair_geometry(rng, n=6):
    """Keypoints that are exact projections of the same object points in two views."""
    cfg = ViewConfig(size=64)
    K = cfg.intrinsics()
    R_a, t_a = look_at([3.0, 1.0, 2.0], [0.0, 0.0, 0.0])
    R_b, t_b = look_at([-1.0, 3.5, 1.5], [0.1, 0.0, 0.0])
    P = rng.uniform(-0.8, 0.8, (n, 3))
    X_a, X_b = P @ R_a.T + t_a, P @ R_b.T + t_b
    R_ab = R_b @ R_a.T
    t_ab = t_b - R_ab @ t_a
    return K, X_a, X_b, R_ab, t_ab


def test_consistency_zero_for_true_projections_and_known_otherwise():
    K, X_a, X_b, R_ab, t_ab = _pair_geometry(np.random.default_rng(10))
    uv_a, z_a = project(_t(X_a)[None], _t(K))
    uv_b, z_b = project(_t(X_b)[None], _t(K))
    zero = kl.consistency_loss(uv_a, z_a, uv_b, z_b, _t(K), _t(R_ab)[None], _t(t_ab)[None], 64)
    assert float(zero) < 1e-20
    bad = kl.consistency_loss(uv_a, z_a, uv_b + 1.0, z_b, _t(K), _t(R_ab)[None],
                              _t(t_ab)[None], 64)
    assert float(bad) > 1e-4
    # Identity pose: each view's keypoints project onto themselves, so the loss is
    # 1 / (2N) * sum 2 |uv_a - uv_b|^2 in units of half the image (32 px).
    off = np.random.default_rng(11).normal(0, 3, (1, 6, 2))
    eye = kl.consistency_loss(uv_a, z_a, uv_a + _t(off), z_a, _t(K), torch.eye(
        3, dtype=torch.float64)[None], torch.zeros(1, 3, dtype=torch.float64), 64)
    np.testing.assert_allclose(float(eye), (off ** 2).sum(-1).mean() / 32 ** 2, rtol=1e-10)


def test_pose_loss_zero_for_truth_and_the_angle_otherwise():
    K, X_a, X_b, R_ab, t_ab = _pair_geometry(np.random.default_rng(12))
    loss = kl.pose_loss(_t(X_a)[None], _t(X_b)[None], _t(R_ab)[None], noise=0.0)
    assert float(loss) < 1e-5
    off = Rotation.from_euler('z', 30, degrees=True).as_matrix()
    wrong = kl.pose_loss(_t(X_a)[None], _t(X_b)[None], _t(off @ R_ab)[None], noise=0.0)
    np.testing.assert_allclose(float(wrong), math.radians(30), atol=1e-6)
    noisy = kl.pose_loss(_t(X_a)[None], _t(X_b)[None], _t(R_ab)[None], noise=0.1,
                         generator=torch.Generator().manual_seed(0))
    assert 1e-4 < float(noisy) < math.radians(20)
    R1 = Rotation.random(random_state=1)
    R2 = Rotation.random(random_state=2)
    angle = kl.rotation_angle(_t(R1.as_matrix()), _t(R2.as_matrix()))
    np.testing.assert_allclose(float(angle), (R1.inv() * R2).magnitude(), atol=1e-6)


def test_separation_hand_computed():
    X = _t([[[0.0, 0, 0], [0.1, 0, 0], [1.0, 0, 0]]])
    # Only the pair (0, 1) is closer than delta = 0.2: 0.2^2 - 0.1^2 = 0.03, counted as
    # (0, 1) and (1, 0), over N^2 = 9.
    np.testing.assert_allclose(float(kl.separation_loss(X, 0.2)), 0.06 / 9, rtol=1e-12)
    assert float(kl.separation_loss(X, 0.05)) == 0.0
    # The default delta equals the published code's 0.05 on the squared distance.
    d2 = 0.1 ** 2
    np.testing.assert_allclose(float(kl.separation_loss(X, kl.KeypointNetLossWeights().delta)),
                               2 * (0.05 - d2) / 9, rtol=1e-12)


def test_silhouette_and_variance_known_values():
    prob = torch.full((1, 2, 8, 8), 1.0 / 64, dtype=torch.float64)
    mask = torch.zeros(1, 8, 8, dtype=torch.float64)
    mask[0, :4, :4] = 1.0
    np.testing.assert_allclose(float(kl.silhouette_loss(prob, mask)), math.log(4), rtol=1e-9)
    assert float(kl.silhouette_loss(prob, torch.ones(1, 8, 8))) < 1e-9
    two = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    two[0, 0, 3, 1] = two[0, 0, 3, 3] = 0.5  # mean (2, 3), one pixel each side
    _, uv = spatial_softmax(torch.log(two + 1e-300))
    np.testing.assert_allclose(uv[0, 0].numpy(), [2.0, 3.0], atol=1e-9)
    np.testing.assert_allclose(float(kl.variance_loss(two, uv, 8)), 1.0 / 4 ** 2, rtol=1e-6)


def test_orientation_targets_and_flag():
    K = _t(ViewConfig(size=64).intrinsics())
    for azimuth, flag in ((90, 0), (-90, 1)):
        c = 4.0 * np.array([0.0, math.sin(math.radians(azimuth)), 0.5])
        R, t = look_at(c, [0.0, 0.0, 0.0])
        uv = kl.front_back_pixels(K, _t(R)[None], _t(t)[None])[0].numpy()
        for p, q in zip(([1.0, 0, 0], [-1.0, 0, 0]), uv):
            x = R @ p + t
            np.testing.assert_allclose(q, (K.numpy() @ x)[:2] / x[2], atol=1e-9)
        assert int(kl.orientation_flag(K, _t(R)[None], _t(t)[None])[0]) == flag


def test_model_shapes_and_gradients_flow():
    torch.manual_seed(0)
    cfg = KeypointNetConfig(num_keypoints=4, image_size=16, channels=8, orientation_channels=4,
                            dilations=(1, 2, 1))
    model = KeypointNetModel(cfg)
    rng = np.random.default_rng(13)
    K, _, _, R_ab, t_ab = _pair_geometry(rng)
    K = torch.tensor(ViewConfig(size=16).intrinsics(), dtype=torch.float32)
    img = torch.rand(2, 2, 3, 16, 16)
    out_a = model(img[0], torch.tensor([0, 1]))
    out_b = model(img[1], torch.tensor([0, 1]))
    assert out_a['uv'].shape == (2, 4, 2) and out_a['z'].shape == (2, 4)
    assert out_a['prob'].shape == (2, 4, 16, 16) and out_a['orient_uv'].shape == (2, 2, 2)
    np.testing.assert_allclose(out_a['prob'].sum((2, 3)).detach().numpy(), 1.0, atol=1e-5)
    mask = torch.zeros(2, 16, 16)
    mask[:, 4:12, 4:12] = 1.0
    batch = {'K': K.expand(2, 3, 3), 'R_ab': torch.tensor(R_ab, dtype=torch.float32)
             .expand(2, 3, 3), 't_ab': torch.tensor(t_ab, dtype=torch.float32).expand(2, 3),
             'mask_a': mask, 'mask_b': mask, 'front_back_a': torch.rand(2, 2, 2) * 16,
             'front_back_b': torch.rand(2, 2, 2) * 16}
    total, terms = kl.keypointnet_loss(out_a, out_b, batch, kl.KeypointNetLossWeights(), 16,
                                       torch.Generator().manual_seed(1))
    assert set(terms) == {'consistency', 'pose', 'separation', 'silhouette', 'variance',
                          'orientation'}
    assert all(math.isfinite(v) for v in terms.values())
    total.backward()
    for name, net in (('keypoints', model.keypoints), ('orientation', model.orientation)):
        grads = [p.grad for p in net.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), name
        assert sum(float(g.abs().sum()) for g in grads) > 0, name
    flagless = model.eval()(img[0])
    assert flagless['flag'].shape == (2,) and set(flagless['flag'].tolist()) <= {0, 1}


def test_losses_vanish_on_rendered_pair_geometry(tmp_path):
    """Conventions agree end to end: keypoints at the projections of mesh corners in a
    rendered pair are consistent and give the pair's rotation."""
    import trimesh

    from training.synth.meshes import load_mesh, render_pair

    trimesh.creation.box((2.0, 1.0, 0.7)).export(str(tmp_path / 'box.obj'))
    mesh = load_mesh(tmp_path / 'box.obj', up='z')
    cfg = ViewConfig(size=32)
    pair = render_pair(mesh, np.random.default_rng(14), cfg)
    K = _t(cfg.intrinsics())
    P = mesh.vertices[:8]
    uv_a, z_a = project(_t(P @ pair.a.R.T + pair.a.t)[None], K)
    uv_b, z_b = project(_t(P @ pair.b.R.T + pair.b.t)[None], K)
    R_ab, t_ab = _t(pair.R_ab)[None], _t(pair.t_ab)[None]
    assert float(kl.consistency_loss(uv_a, z_a, uv_b, z_b, K, R_ab, t_ab, 32)) < 1e-20
    X_a, X_b = lift(uv_a, z_a, K), lift(uv_b, z_b, K)
    assert float(kl.pose_loss(X_a, X_b, R_ab, noise=0.0)) < 1e-5
    swapped = kl.consistency_loss(uv_b, z_b, uv_a, z_a, K, R_ab, t_ab, 32)
    assert float(swapped) > 1e-3  # the direction of the relative pose matters
