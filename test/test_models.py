"""Tests of perception_3dinn.models: shapes, projection layer, rotations, checkpoints, ONNX."""

import cv2
import numpy as np
import pytest
import torch

from perception_3dinn import geometry
from perception_3dinn.models import (
    INN3D,
    INNConfig,
    load_checkpoint,
    make_config,
    OUTPUT_NAMES,
    project_points,
    ProjectionLayer,
    rotation_from_6d,
    rotation_to_6d,
    save_checkpoint,
    structure_from_alpha,
)
from perception_3dinn.models.interpreter import normalised_coordinates

N, K = 10, 4


def _bases(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(K + 1, N, 3, generator=g, dtype=torch.float64) * 0.3


def _poses(b: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    R = geometry.axis_angle_to_matrix(rng.normal(size=(b, 3)))
    t = np.column_stack([rng.normal(0, 0.3, (b, 2)), rng.uniform(3, 6, b)])
    return R, t


@pytest.fixture(scope='module')
def model() -> INN3D:
    torch.manual_seed(0)
    cfg = make_config('chair', N, [0.1, 0.2, 0.05, 0.07], input_size=64)
    return INN3D(cfg, _bases().float()).eval()


def test_projection_matches_opencv():
    rng = np.random.default_rng(1)
    bases = _bases()
    alpha = rng.normal(size=(5, K))
    R, t = _poses(5, rng)
    f = rng.uniform(100, 400, 5)
    c = np.array([31.5, 40.0])
    uv = project_points(structure_from_alpha(torch.tensor(alpha), bases), torch.tensor(R),
                        torch.tensor(t), torch.tensor(f), torch.tensor(c)).numpy()
    y = bases[0].numpy() + np.einsum('bk,knd->bnd', alpha, bases[1:].numpy())
    for i in range(5):
        Kmat = np.array([[f[i], 0, c[0]], [0, f[i], c[1]], [0, 0, 1.0]])
        ref, _ = cv2.projectPoints(y[i], cv2.Rodrigues(R[i])[0], t[i], Kmat, None)
        np.testing.assert_allclose(uv[i], ref.reshape(-1, 2), atol=1e-9)


def test_projection_layer_gradcheck():
    rng = np.random.default_rng(2)
    layer = ProjectionLayer(_bases())
    R, t = _poses(2, rng)
    args = (torch.tensor(rng.normal(size=(2, K)), requires_grad=True),
            torch.tensor(R, requires_grad=True), torch.tensor(t, requires_grad=True),
            torch.tensor(rng.uniform(100, 300, 2), requires_grad=True),
            torch.tensor([31.5, 31.5], dtype=torch.float64, requires_grad=True))
    assert torch.autograd.gradcheck(layer, args)


def test_rotation_6d_against_numpy_and_gradcheck():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 6))
    ours = rotation_from_6d(torch.tensor(x)).numpy()
    np.testing.assert_allclose(ours, geometry.rotation_from_6d(x), atol=1e-10)
    np.testing.assert_allclose(ours @ ours.transpose(0, 2, 1), np.tile(np.eye(3), (6, 1, 1)),
                               atol=1e-10)
    np.testing.assert_allclose(np.linalg.det(ours), 1.0, atol=1e-10)
    R, _ = _poses(4, rng)
    np.testing.assert_allclose(rotation_from_6d(rotation_to_6d(torch.tensor(R))).numpy(), R,
                               atol=1e-10)
    assert torch.autograd.gradcheck(rotation_from_6d, (torch.tensor(x, requires_grad=True),))


def test_shape_checks():
    with pytest.raises(ValueError):
        structure_from_alpha(torch.zeros(2, K + 1), _bases())
    with pytest.raises(ValueError):
        project_points(torch.zeros(2, N, 3), torch.zeros(3, 3, 3), torch.zeros(2, 3),
                       torch.ones(2), torch.zeros(2))


def test_forward_contract(model):
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        hm, structure, rotation, translation, focal = model(x)
    assert hm.shape == (3, N, 16, 16)
    assert structure.shape == (3, K) and rotation.shape == (3, 3, 3)
    assert translation.shape == (3, 3) and focal.shape == (3,)
    eye = rotation @ rotation.transpose(1, 2)
    torch.testing.assert_close(eye, torch.eye(3).expand(3, 3, 3), atol=1e-5, rtol=0)
    assert torch.all(focal > 0) and torch.all(translation[:, 2] > 0)
    with pytest.raises(ValueError):
        model(torch.randn(1, 3, 32, 32))


def test_interpreter_decode_is_consistent(model):
    """The decoded translation projects the object origin at the predicted (u0, v0)."""
    torch.manual_seed(4)
    raw = torch.randn(5, model.interpreter.num_raw, dtype=torch.float32)
    structure, rotation, translation, focal = model.interpreter.decode(raw)
    cfg = model.config.interpreter
    k, c, half = cfg.num_bases, 0.5 * (cfg.input_size - 1), 0.5 * cfg.input_size
    u0 = focal * translation[:, 0] / translation[:, 2] + c
    torch.testing.assert_close(u0, c + half * raw[:, 6 + k], atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(focal / translation[:, 2],
                               torch.exp(cfg.log_scale_mean + cfg.log_scale_std * raw[:, 8 + k]))
    torch.testing.assert_close(structure, raw[:, 6:6 + k] * torch.tensor(cfg.alpha_std))


def test_config_roundtrip():
    cfg = make_config('chair', N, [0.1] * K, input_size=96, refine=True)
    assert INNConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        make_config('chair', N, [0.1] * K, input_size=100)


def test_checkpoint_roundtrip(tmp_path, model):
    category = {'name': 'chair', 'keypoint_names': [f'k{i}' for i in range(N)],
                'edges': [[0, 1]], 'bases': model.projection.bases.double().tolist(),
                'alpha_std': list(model.config.interpreter.alpha_std), 'size_prior_m': 1.0}
    path = save_checkpoint(tmp_path / 'm.pt', model, category, stage='test', step=7)
    loaded, payload = load_checkpoint(path)
    assert payload['stage'] == 'test' and payload['step'] == 7
    assert payload['normalisation']['mean'] == list(model.config.mean)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(model(x), loaded(x)):
            torch.testing.assert_close(a, b)


def test_refine_model_runs():
    cfg = make_config('chair', N, [0.1] * K, input_size=64, refine=True)
    m = INN3D(cfg, _bases().float()).eval()
    with torch.no_grad():
        assert m(torch.randn(2, 3, 64, 64))[0].shape == (2, N, 16, 16)


def test_add_refine_starts_as_the_identity_and_trains(tmp_path):
    torch.manual_seed(1)
    cfg = make_config('chair', N, [0.1] * K, input_size=64)
    m = INN3D(cfg, _bases().float()).eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        before = m.heatmaps(x)
        m.add_refine()
        after = m.heatmaps(x)
    assert m.config.refine is not None and m.config.refine.heatmap_size == 16
    assert torch.equal(before, after)  # exactly the trained net's heatmaps at first
    with pytest.raises(ValueError, match='already'):
        m.add_refine()
    # one optimiser step moves the (zero) last layer: the bottleneck is trainable
    m.train()
    opt = torch.optim.SGD(m.refine.parameters(), lr=0.1)
    loss = (m.heatmaps(x) - 1.0).pow(2).mean()
    loss.backward()
    opt.step()
    assert m.refine.decoder[-1].weight.abs().sum() > 0
    # the config round-trips through a checkpoint with the bottleneck in it
    category = {'name': 'chair', 'keypoint_names': [f'k{i}' for i in range(N)],
                'edges': [[0, 1]], 'bases': m.projection.bases.double().tolist(),
                'alpha_std': list(m.config.interpreter.alpha_std), 'size_prior_m': 1.0}
    loaded, _ = load_checkpoint(save_checkpoint(tmp_path / 'r.pt', m.eval(), category))
    with torch.no_grad():
        torch.testing.assert_close(loaded.heatmaps(x), m.heatmaps(x))


def _onnx_parity(tmp_path, model):
    """Export ``model`` (64 px input) to ONNX and compare ONNX Runtime with eager torch."""
    ort = pytest.importorskip('onnxruntime')
    path = tmp_path / 'm.onnx'
    x = torch.randn(2, 3, 64, 64)
    torch.onnx.export(model, (x,), str(path), input_names=['image'],
                      output_names=list(OUTPUT_NAMES), opset_version=17,
                      dynamic_axes={n: {0: 'batch'} for n in ('image',) + OUTPUT_NAMES},
                      dynamo=False)
    sess = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    x3 = torch.randn(3, 3, 64, 64)
    outs = sess.run(None, {'image': x3.numpy()})
    with torch.no_grad():
        ref = model(x3)
    assert [o.name for o in sess.get_outputs()] == list(OUTPUT_NAMES)
    for o, r in zip(outs, ref):
        np.testing.assert_allclose(o, r.numpy(), rtol=1e-4, atol=1e-4)


def test_onnx_export_parity(tmp_path, model):
    _onnx_parity(tmp_path, model)


def test_normalised_coordinates_against_numpy():
    rng = np.random.default_rng(5)
    coords = rng.uniform(-1, 1, (4, N, 3))
    coords[..., 2] = rng.uniform(-0.1, 1.0, (4, N))     # peaks, some below zero
    out = normalised_coordinates(torch.from_numpy(coords)).numpy()
    xy, peak = coords[..., :2], coords[..., 2]
    for b in range(4):
        w = np.maximum(peak[b], 0.0) + 1e-3
        centre = (w[:, None] * xy[b]).sum(0) / w.sum()
        spread = np.sqrt((w * ((xy[b] - centre) ** 2).sum(1)).sum() / w.sum() + 1e-6)
        ref = np.concatenate([((xy[b] - centre) / spread).ravel(), peak[b], centre,
                              [np.log(spread)]])
        np.testing.assert_allclose(out[b], ref, rtol=1e-10, atol=1e-12)
    # moving and scaling the keypoints leaves the normalised shape as it was
    moved = coords.copy()
    moved[..., :2] = 0.5 * moved[..., :2] + np.array([0.2, -0.3])
    out2 = normalised_coordinates(torch.from_numpy(moved)).numpy()
    np.testing.assert_allclose(out2[:, :2 * N], out[:, :2 * N], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out2[:, -1], out[:, -1] + np.log(0.5), rtol=0, atol=1e-5)


def test_coordinate_branch_roundtrips_and_exports(tmp_path):
    torch.manual_seed(2)
    cfg = make_config('chair', N, [0.1] * K, input_size=64, hidden=(64,),
                      coord_hidden=(32, 16))
    assert INNConfig.from_dict(cfg.to_dict()) == cfg
    m = INN3D(cfg, _bases().float()).eval()
    assert m.interpreter.coord is not None
    assert m.interpreter.fc[0].in_features == 64 * 4 * 4 + 3 * N + 16
    # configs written before the branch existed load as models without it
    old = cfg.to_dict()
    del old['interpreter']['coord_hidden']
    assert INNConfig.from_dict(old).interpreter.coord_hidden == ()
    category = {'name': 'chair', 'keypoint_names': [f'k{i}' for i in range(N)],
                'edges': [[0, 1]], 'bases': m.projection.bases.double().tolist(),
                'alpha_std': [0.1] * K, 'size_prior_m': 1.0}
    loaded, _ = load_checkpoint(save_checkpoint(tmp_path / 'c.pt', m, category))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(m(x), loaded(x)):
            torch.testing.assert_close(a, b)
    _onnx_parity(tmp_path, m)
