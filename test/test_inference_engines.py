"""Manifest validation, the TensorRT engine cache, backend selection, no torch at runtime."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
import shutil
import subprocess
import sys

import numpy as np
import pytest

from perception_3dinn.inference.engine_cache import (
    check_engine,
    EngineCache,
    EngineCacheError,
    EngineKey,
    write_engine,
)
from perception_3dinn.inference.engines import create_engine, OnnxRuntimeEngine
from perception_3dinn.inference.manifest import (
    default_model_dir,
    load_manifest,
    ManifestError,
    sha256_file,
)

REPO = Path(__file__).resolve().parents[1]
SHIPPED = default_model_dir('chair')


@pytest.fixture
def model_copy(tmp_path):
    dst = tmp_path / 'model'
    shutil.copytree(SHIPPED, dst, ignore=shutil.ignore_patterns('engines'))
    return dst


def _edit(manifest_dir, **changes):
    path = manifest_dir / 'manifest.json'
    data = json.loads(path.read_text())
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split('__')
        for p in parents:
            node = node[p]
        node[leaf] = value
    path.write_text(json.dumps(data))
    return path


def test_shipped_manifest_loads_and_verifies():
    manifest = load_manifest(SHIPPED)
    assert manifest.category == 'chair'
    assert manifest.onnx_sha256 == sha256_file(manifest.onnx_file)
    assert manifest.output_shapes['heatmaps'] == (manifest.num_keypoints,
                                                 manifest.heatmap_size, manifest.heatmap_size)
    assert hashlib.sha256(manifest.onnx_file.read_bytes()).hexdigest() == manifest.onnx_sha256


def test_modified_onnx_is_refused(model_copy):
    with open(model_copy / 'model.onnx', 'ab') as f:
        f.write(b'\0')
    with pytest.raises(ManifestError, match='sha256'):
        load_manifest(model_copy)
    load_manifest(model_copy, verify=False)  # the document itself is fine
    (model_copy / 'model.onnx').unlink()
    with pytest.raises(ManifestError, match='does not exist'):
        load_manifest(model_copy)


@pytest.mark.parametrize('change, message', [
    ({'format_version': 99}, 'format_version'),
    ({'input__shape': ['B', 3, 128, 64]}, 'input shape'),
    ({'outputs__heatmaps': ['B', 9, 32, 32]}, 'heatmaps'),
    ({'num_bases': 'four'}, 'num_bases'),
    ({'input__colour_order': 'BGR'}, 'colour_order'),
    ({'input__std': [0.2, 0.0, 0.2]}, 'std'),
    ({'size_model__weights': [0.1]}, 'size_model'),
    ({'size_model__bias': 'big'}, 'size_model'),
])
def test_bad_manifest_fields_are_refused(model_copy, change, message):
    _edit(model_copy, **change)
    with pytest.raises(ManifestError, match=message):
        load_manifest(model_copy)


def test_missing_or_garbled_manifest(tmp_path):
    with pytest.raises(ManifestError, match='not found'):
        load_manifest(tmp_path)
    (tmp_path / 'manifest.json').write_text('{not json')
    with pytest.raises(ManifestError, match='cannot read'):
        load_manifest(tmp_path)
    (tmp_path / 'manifest.json').write_text('{"format_version": 1}')
    with pytest.raises(ManifestError, match='missing field'):
        load_manifest(tmp_path)


def test_onnxruntime_engine_runs_shipped_model():
    manifest = load_manifest(SHIPPED)
    engine = create_engine(manifest, 'onnxruntime', num_threads=1)
    assert isinstance(engine, OnnxRuntimeEngine)
    assert engine.providers[0] == 'CPUExecutionProvider'
    s = manifest.input_size
    out = engine.run(np.zeros((2, 3, s, s), np.float32))
    assert out['rotation'].shape == (2, 3, 3) and out['focal'].shape == (2,)
    np.testing.assert_allclose(out['rotation'] @ out['rotation'].transpose(0, 2, 1),
                               np.broadcast_to(np.eye(3), (2, 3, 3)), atol=1e-5)
    with pytest.raises(ValueError, match='batch must be'):
        engine.run(np.zeros((0, 3, s, s), np.float32))
    with pytest.raises(ValueError, match='unknown backend'):
        create_engine(manifest, 'openvino')


def test_cuda_request_without_provider_is_explained():
    import onnxruntime as ort

    if 'CUDAExecutionProvider' in ort.get_available_providers():
        pytest.skip('this onnxruntime has CUDA')
    with pytest.raises(RuntimeError, match='CUDAExecutionProvider'):
        OnnxRuntimeEngine(load_manifest(SHIPPED), device='cuda')


# --- TensorRT engine cache (no TensorRT needed) ---------------------------------------------

def _key(**kw):
    base = dict(onnx_sha256='a' * 64, tensorrt_version='10.3.0', compute_capability='8.7',
                precision='fp16', max_batch=16)
    base.update(kw)
    return EngineKey(**base)


def test_engine_key_names_and_digests():
    key = _key()
    assert key.filename().startswith('model_fp16_sm87_trt10.3.0_b16_')
    assert key.digest() == _key().digest()
    others = [_key(onnx_sha256='b' * 64), _key(tensorrt_version='10.4.0'),
              _key(compute_capability='9.0'), _key(precision='int8'), _key(max_batch=8)]
    assert len({k.digest() for k in others} | {key.digest()}) == 6
    with pytest.raises(ValueError, match='precision'):
        _key(precision='fp8')
    with pytest.raises(ValueError, match='sha256'):
        _key(onnx_sha256='abc')


def test_engine_cache_detects_stale_foreign_corrupt(tmp_path):
    cache = EngineCache(tmp_path)
    key = _key()
    path, status, _ = cache.lookup(key)
    assert status == 'missing'
    blob = np.random.default_rng(0).bytes(4096)
    assert cache.store(key, blob) == path
    assert cache.lookup(key)[1] == 'ok'
    status, message = check_engine(path, _key(onnx_sha256='b' * 64))
    assert status == 'stale' and 'ONNX' in message
    for other in (_key(tensorrt_version='10.4.0'), _key(compute_capability='7.2'),
                  _key(precision='fp32'), _key(max_batch=4)):
        status, message = check_engine(path, other)
        assert status == 'foreign', message
    # flipped byte in the engine
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    assert check_engine(path, key)[0] == 'corrupt'
    # garbled sidecar
    write_engine(path, key, blob)
    sidecar = path.with_name(path.name + '.json')
    sidecar.write_text('{"key": {"onnx_sha256": 3}}')
    assert check_engine(path, key)[0] == 'corrupt'
    # engine without sidecar: origin unknown, never loaded
    sidecar.unlink()
    assert check_engine(path, key)[0] == 'missing'


def test_cache_resolve_rebuilds_or_refuses(tmp_path):
    cache = EngineCache(tmp_path)
    key = _key()
    path, needs_build = cache.resolve(key)
    assert needs_build and not path.exists()
    with pytest.raises(EngineCacheError, match='missing'):
        cache.resolve(key, rebuild=False)
    cache.store(key, b'engine bytes')
    assert cache.resolve(key, rebuild=False) == (path, False)
    path.write_bytes(b'engine bytez')  # same size, other bytes
    with pytest.raises(EngineCacheError, match='corrupt'):
        cache.resolve(key, rebuild=False)
    assert cache.resolve(key) == (path, True)


@pytest.mark.parametrize('version', ['10.0.1', '10.3.0', '10.13.2.6'])
def test_precision_plan_tensorrt_10_uses_the_builder_flags(version):
    from perception_3dinn.inference.tensorrt_engine import precision_plan

    assert precision_plan('fp32', version) == ('fp32', (), '')
    assert precision_plan('fp16', version) == ('fp16', ('FP16',), '')
    # INT8 keeps FP16 for the layers without INT8 kernels
    assert precision_plan('int8', version) == ('int8', ('FP16', 'INT8'), '')


@pytest.mark.parametrize('version', ['11.0.0', '11.4.0.106', '12.1'])
def test_precision_plan_tensorrt_11_is_strongly_typed(version):
    """TensorRT 11 removed BuilderFlag.FP16/INT8 and the calibrators (its 10.x -> 11.x
    migration guide): no flags; the float32 graph builds FP32, INT8 is refused with why."""
    from perception_3dinn.inference.tensorrt_engine import precision_plan

    assert precision_plan('fp32', version) == ('fp32', (), '')
    built, flags, note = precision_plan('fp16', version)
    assert (built, flags) == ('fp32', ()) and 'FP32' in note and version in note
    with pytest.raises(RuntimeError, match='Q/DQ'):
        precision_plan('int8', version)
    with pytest.raises(ValueError, match='precision'):
        precision_plan('bf16', version)
    with pytest.raises(RuntimeError, match='version'):
        precision_plan('fp16', 'eleven')


def test_int8_calibration_batches_are_normalised_synthetic_crops():
    from training.build_engine import synthetic_calibration_batches

    manifest = load_manifest(SHIPPED)
    batches = list(synthetic_calibration_batches(manifest, num_batches=1, batch_size=2))
    s = manifest.input_size
    assert len(batches) == 1 and batches[0].shape == (2, 3, s, s)
    x = batches[0]
    assert x.dtype == np.float32 and np.all(np.isfinite(x))
    # undo the normalisation: pixels in [0, 255], not a constant image
    pixels = x * (np.array(manifest.std)[:, None, None] * 255) + np.array(
        manifest.mean)[:, None, None] * 255
    assert pixels.min() >= -1e-3 and pixels.max() <= 255 + 1e-3 and pixels.std() > 5


def test_tensorrt_absent_gives_clear_errors():
    try:
        import tensorrt  # noqa: F401
        pytest.skip('TensorRT is installed here')
    except ImportError:
        pass
    with pytest.raises(RuntimeError, match='TensorRT is not installed'):
        create_engine(load_manifest(SHIPPED), 'tensorrt')
    proc = subprocess.run([sys.executable, '-m', 'training.build_engine', '--manifest',
                           str(SHIPPED)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert 'TensorRT is not installed' in proc.stderr and 'Traceback' not in proc.stderr


def test_runtime_does_not_import_torch():
    code = (
        'import sys\n'
        'import numpy as np\n'
        'from perception_3dinn.camera import CameraIntrinsics\n'
        'from perception_3dinn.inference import Box2D, Pipeline, PipelineConfig\n'
        'pipe = Pipeline.from_manifest(None, backend="onnxruntime")\n'
        'img = np.zeros((240, 320, 3), np.uint8)\n'
        'res = pipe.process(img, CameraIntrinsics.from_fov(320, 240, 60), '
        '[Box2D(50, 40, 200, 220, "chair", 0.9)], 0.0)\n'
        'assert len(res.objects) + len(res.skipped) == 1\n'
        'print("torch" in sys.modules, sorted(m for m in sys.modules if m.startswith("tensorrt")))'
    )
    proc = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == 'False []'
