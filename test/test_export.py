"""Export (training.export): ONNX checked, dynamic batch, parity of every engine with eager torch.

One small random-weight checkpoint is exported once per module (about 15 s on 2 cores).
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from perception_3dinn.inference.engines import create_engine, OnnxRuntimeEngine, TorchEngine
from perception_3dinn.inference.manifest import load_manifest, sha256_file
from perception_3dinn.models import category_record, save_checkpoint
from perception_3dinn.skeleton import load_category
from training.export import export, PARITY_ATOL, PARITY_RTOL, random_model

# Engine outputs against eager torch, float32: |a - b| <= ATOL + RTOL * |b|.
ATOL, RTOL = PARITY_ATOL, PARITY_RTOL


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp('export')
    model, _ = random_model('chair', input_size=128, seed=3)
    ckpt = save_checkpoint(root / 'random.pt', model, category_record(load_category('chair')),
                           stage='test',
                           metrics={'note': 'random'})
    manifest_path = export(root / 'model', checkpoint=ckpt, size_model_instances=400)
    return model, ckpt, manifest_path


def _inputs(batch, seed=11):
    return np.random.default_rng(seed).normal(0, 1, (batch, 3, 128, 128)).astype(np.float32)


def _eager(model, x):
    with torch.no_grad():
        return dict(zip(('heatmaps', 'structure', 'rotation', 'translation', 'focal'),
                        (v.numpy() for v in model(torch.from_numpy(x)))))


def test_onnx_is_checker_clean_with_dynamic_batch(exported):
    _, _, manifest_path = exported
    manifest = load_manifest(manifest_path)
    model = onnx.load(str(manifest.onnx_file))
    onnx.checker.check_model(model, full_check=True)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 128, 128]
    assert [o.name for o in model.graph.output] == list(manifest.output_names)


def test_manifest_records_model(exported):
    _, ckpt, manifest_path = exported
    data = json.loads(manifest_path.read_text())
    manifest = load_manifest(manifest_path)
    assert data['trained'] is True and manifest.trained
    assert data['onnx']['sha256'] == sha256_file(manifest.onnx_file)
    assert data['source_checkpoint']['sha256'] == sha256_file(ckpt)
    assert data['source_checkpoint']['stage'] == 'test'
    assert (manifest_path.parent / data['source_checkpoint']['path']).resolve() == ckpt.resolve()
    assert data['metrics'] == {'note': 'random'}
    assert manifest.num_keypoints == 10 and manifest.input_size == 128
    assert data['export']['parity_atol'] == ATOL
    # without --shape: no shape graph, no shape section
    assert 'shape' not in data and manifest.shape is None
    assert not (manifest_path.parent / 'shape.onnx').exists()
    # the size-given-shape model predicts held-out instance sizes better than the prior
    size = data['size_model']
    assert manifest.size_model is not None and len(size['weights']) == manifest.num_bases
    assert (size['median_rel_scale_error_size_model']
            < size['median_rel_scale_error_size_prior'])


@pytest.mark.parametrize('batch', [1, 2, 5])
def test_onnxruntime_engine_matches_eager(exported, batch):
    model, _, manifest_path = exported
    engine = OnnxRuntimeEngine(load_manifest(manifest_path), num_threads=1)
    x = _inputs(batch, seed=batch)
    got, ref = engine.run(x), _eager(model, x)
    for name, value in ref.items():
        assert got[name].shape == value.shape
        np.testing.assert_allclose(got[name], value, atol=ATOL, rtol=RTOL, err_msg=name)


def test_torch_engine_matches_eager(exported):
    model, ckpt, manifest_path = exported
    manifest = load_manifest(manifest_path)
    engine = create_engine(manifest, backend='torch')  # checkpoint from the manifest
    assert isinstance(engine, TorchEngine)
    x = _inputs(3)
    got, ref = engine.run(x), _eager(model, x)
    for name, value in ref.items():
        np.testing.assert_allclose(got[name], value, atol=1e-6, rtol=1e-6, err_msg=name)
    with pytest.raises(ValueError, match='batch must be'):
        engine.run(x[:, :2])


@pytest.fixture(scope='module')
def exported_fp16(exported, tmp_path_factory):
    _, ckpt, _ = exported
    return export(tmp_path_factory.mktemp('export_fp16') / 'model', checkpoint=ckpt,
                  size_model_instances=0, weights='fp16')


def _rounded_reference(ckpt):
    """The checkpoint's model with every parameter rounded through numpy's float16."""
    from perception_3dinn.models import load_checkpoint

    model, _ = load_checkpoint(ckpt)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.from_numpy(p.numpy().astype(np.float16).astype(np.float32)))
    return model


def test_fp16_weights_halve_the_files(exported, exported_fp16):
    _, ckpt, manifest32 = exported
    m32, m16 = load_manifest(manifest32), load_manifest(exported_fp16)
    # the exporter folds BatchNorm into the convolutions: those weights are no longer float16
    # values and stay float32; the FC layers, most of the bytes, are converted
    assert m16.onnx_file.stat().st_size < 0.65 * m32.onnx_file.stat().st_size
    data = json.loads(exported_fp16.read_text())
    compact = exported_fp16.parent / 'model.pt'
    assert data['source_checkpoint']['path'] == 'model.pt'
    assert data['source_checkpoint']['sha256'] == sha256_file(compact)
    assert compact.stat().st_size < 0.55 * ckpt.stat().st_size
    assert data['export']['weights'] == 'fp16' and data['export']['fp16_initializers'] >= 3
    assert json.loads(manifest32.read_text())['export']['weights'] == 'fp32'
    # Every float16 initializer is cast back to float32 by exactly one node.
    graph = onnx.load(str(m16.onnx_file)).graph
    halves = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT16}
    assert len(halves) == data['export']['fp16_initializers']
    casts = [n for n in graph.node if n.op_type == 'Cast' and n.input[0] in halves]
    assert sorted(n.input[0] for n in casts) == sorted(halves)
    assert all(n.attribute[0].i == onnx.TensorProto.FLOAT for n in casts)


def test_fp16_engines_match_the_rounded_weights(exported, exported_fp16):
    model, ckpt, _ = exported
    reference = _rounded_reference(ckpt)
    x = _inputs(3, seed=5)
    ref, before = _eager(reference, x), _eager(model, x)
    manifest = load_manifest(exported_fp16)
    ort_out = OnnxRuntimeEngine(manifest, num_threads=1).run(x)
    torch_out = create_engine(manifest, backend='torch').run(x)  # the compact model.pt
    recorded = json.loads(exported_fp16.read_text())['export']['fp16_rounding_max_abs']
    moved = {}
    for name, value in ref.items():
        np.testing.assert_allclose(ort_out[name], value, atol=ATOL, rtol=RTOL, err_msg=name)
        np.testing.assert_allclose(torch_out[name], value, atol=1e-6, rtol=1e-6, err_msg=name)
        # rounding moves the outputs by about what the manifest records (on other inputs)
        moved[name] = float(np.abs(value - before[name]).max())
        assert moved[name] <= 10 * recorded[name] + 1e-6, name
    assert moved['heatmaps'] > 0 and recorded['heatmaps'] > 0


def test_store_initializers_fp16_converts_only_exact_values():
    from onnx import helper, numpy_helper
    import onnxruntime as ort

    from training.export import store_initializers_fp16

    rng = np.random.default_rng(0)
    exact = rng.normal(0, 1, (16, 8)).astype(np.float16).astype(np.float32)
    inexact = (exact + np.float32(1e-4)).astype(np.float32)  # not all float16 values
    graph = helper.make_graph(
        [helper.make_node('MatMul', ['x', 'w_exact'], ['y1']),
         helper.make_node('MatMul', ['x', 'w_inexact'], ['y2'])], 'g',
        [helper.make_tensor_value_info('x', onnx.TensorProto.FLOAT, [2, 16])],
        [helper.make_tensor_value_info('y1', onnx.TensorProto.FLOAT, [2, 8]),
         helper.make_tensor_value_info('y2', onnx.TensorProto.FLOAT, [2, 8])],
        [numpy_helper.from_array(exact, 'w_exact'),
         numpy_helper.from_array(inexact, 'w_inexact')])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 18)], ir_version=9)
    assert store_initializers_fp16(model) == (1, exact.nbytes // 2)
    onnx.checker.check_model(model, full_check=True)
    kinds = {i.name: i.data_type for i in model.graph.initializer}
    assert kinds == {'w_exact__fp16': onnx.TensorProto.FLOAT16,
                     'w_inexact': onnx.TensorProto.FLOAT}
    x = rng.normal(0, 1, (2, 16)).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=['CPUExecutionProvider'])
    y1, y2 = session.run(None, {'x': x})
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(y1, x64 @ exact.astype(np.float64), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y2, x64 @ inexact.astype(np.float64), rtol=1e-5, atol=1e-5)
