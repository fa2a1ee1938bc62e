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
