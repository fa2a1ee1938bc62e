"""The engines on a CUDA GPU against the CPU engine (ONNX Runtime, float32).

These run where a GPU and a CUDA build are present (the lent device: see docs/inference.md,
'Running on a GPU') and are skipped elsewhere, CI included, with the reason in the report.
Tolerances: torch and ONNX Runtime on CUDA may run convolutions in TF32 (10-bit mantissa),
so outputs are compared by relative norm error, ||gpu - cpu|| / ||cpu|| <= 1e-2, and decoded
keypoints of rendered chairs within 0.5 pixels of the CPU result.
"""

from __future__ import annotations

import numpy as np
import pytest

from perception_3dinn.camera import CameraIntrinsics
from perception_3dinn.inference import Box2D, Pipeline, PipelineConfig
from perception_3dinn.inference.engines import create_engine
from perception_3dinn.inference.manifest import default_model_dir, load_manifest

SHIPPED = default_model_dir('chair')
REL_TOL = 1e-2


def _torch_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _ort_cuda() -> bool:
    import onnxruntime as ort

    return 'CUDAExecutionProvider' in ort.get_available_providers() and _torch_cuda()


needs_torch_cuda = pytest.mark.skipif(not _torch_cuda(), reason='no CUDA device for torch')
needs_ort_cuda = pytest.mark.skipif(not _ort_cuda(),
                                    reason='no onnxruntime CUDAExecutionProvider / CUDA device')


def _batch(manifest, n: int, seed: int) -> np.ndarray:
    """Normalised crops of rendered chairs (so heatmaps have real peaks), made the way the
    pipeline makes them."""
    from perception_3dinn.crops import Crop
    from perception_3dinn.inference.pipeline import crop_roi
    from perception_3dinn.skeleton import load_category
    from training.synth.images import render_sample

    category = load_category(manifest.category)
    rng = np.random.default_rng(seed)
    patches = []
    for _ in range(n):
        sample = render_sample(category, rng)
        crop = Crop.from_box(sample['box'], manifest.input_size, pad=0.15)
        patches.append(crop_roi(sample['image'], crop))
    mean = np.asarray(manifest.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(manifest.std, np.float32).reshape(1, 3, 1, 1)
    batch = np.stack(patches).astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    return ((batch - mean) / std).astype(np.float32)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def _compare(engine, reference, batch) -> dict[str, float]:
    got, ref = engine.run(batch), reference.run(batch)
    errors = {name: _rel(got[name], ref[name]) for name in ref}
    for name, err in errors.items():
        assert np.isfinite(got[name]).all(), name
        assert err <= REL_TOL, f'{name}: relative error {err:.2e} > {REL_TOL}'
    return errors


@needs_torch_cuda
def test_torch_engine_on_cuda_matches_cpu_onnxruntime():
    manifest = load_manifest(SHIPPED)
    batch = _batch(manifest, 8, seed=11)
    with create_engine(manifest, 'onnxruntime') as cpu, \
            create_engine(manifest, 'torch', device='cuda') as gpu:
        assert gpu.device.type == 'cuda'
        errors = _compare(gpu, cpu, batch)
        assert errors['heatmaps'] > 0.0  # a different engine really ran
        _compare(gpu, cpu, batch[:1])    # batch 1 as well as 8


@needs_ort_cuda
def test_onnxruntime_cuda_provider_matches_cpu():
    manifest = load_manifest(SHIPPED)
    batch = _batch(manifest, 8, seed=12)
    with create_engine(manifest, 'onnxruntime') as cpu, \
            create_engine(manifest, 'onnxruntime', device='cuda') as gpu:
        assert gpu.providers[0] == 'CUDAExecutionProvider'
        _compare(gpu, cpu, batch)
        _compare(gpu, cpu, batch[:3])


@pytest.mark.parametrize('backend', [
    pytest.param('torch', marks=needs_torch_cuda),
    pytest.param('onnxruntime', marks=needs_ort_cuda),
])
def test_pipeline_on_cuda_gives_the_cpu_keypoints_and_pose(backend):
    from perception_3dinn.geometry import geodesic_angle
    from perception_3dinn.skeleton import load_category
    from training.synth.images import ImageConfig, render_sample

    category = load_category('chair')
    rng = np.random.default_rng(5)
    cpu = Pipeline.from_manifest(None, 'onnxruntime', PipelineConfig(smoothing=False))
    gpu = Pipeline.from_manifest(None, backend, PipelineConfig(smoothing=False, device='cuda'))
    compared = 0
    for i in range(4):
        sample = render_sample(category, rng, ImageConfig(size=256))
        cam = CameraIntrinsics.from_matrix(sample['K'], 256, 256)
        boxes = [Box2D(*sample['box'], 'chair', 0.9)]
        a = cpu.process(sample['image'], cam, boxes, float(i))
        b = gpu.process(sample['image'], cam, boxes, float(i))
        assert len(a.objects) == len(b.objects) == 1
        oa, ob = a.objects[0], b.objects[0]
        confident = (oa.confidences > 0.3) & (ob.confidences > 0.3)
        np.testing.assert_allclose(ob.keypoints_2d[confident], oa.keypoints_2d[confident],
                                   atol=0.5)
        assert np.degrees(geodesic_angle(ob.R, oa.R)) < 1.0
        np.testing.assert_allclose(ob.t, oa.t, rtol=0.02)
        compared += int(confident.sum())
    assert compared >= 20
    cpu.close()
    gpu.close()
