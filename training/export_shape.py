"""Export the learned shape graph (seed 004) beside the INN: ``training.export --shape``.

    python -m training.export --checkpoint runs/chair/e2e.pt --shape runs/shape/model.pt --out DIR

Writes DIR/shape.onnx: :class:`perception_3dinn.models.style_encoder.ShapeModel`, inputs
``image (B, 3, S, S)`` (the INN's normalised crop) and ``structure (B, K)``, output
``occupancy (B, V, V, V)`` probabilities in the category's canonical grid, dynamic batch,
checked with onnx.checker and against eager torch with ONNX Runtime on random inputs
(batch 1 and 3) with the INN's tolerance (`atol + rtol * |eager|`). The manifest's ``shape``
section (`perception_3dinn.inference.manifest`) records file, sha256, shapes, the grid and
the probability threshold chosen on the validation split.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import torch

from perception_3dinn.inference.manifest import sha256_file, SHAPE_INPUTS, SHAPE_OUTPUT
from perception_3dinn.models.checkpoint import load_shape_checkpoint
from perception_3dinn.models.style_encoder import ShapeModel

SHAPE_FILE = 'shape.onnx'


def export_shape_onnx(model: ShapeModel, path: str | Path, opset: int, max_batch: int,
                      legacy: bool = False) -> Path:
    """Export `model` with a dynamic batch axis 'B' on both inputs; onnx.checker-clean."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    s, k = model.config.style.input_size, model.config.decoder.num_bases
    dummy = (torch.zeros(2, 3, s, s), torch.zeros(2, k))
    with torch.no_grad():
        if legacy:
            dynamic = {name: {0: 'B'} for name in (*SHAPE_INPUTS, SHAPE_OUTPUT)}
            torch.onnx.export(model, dummy, str(path), input_names=list(SHAPE_INPUTS),
                              output_names=[SHAPE_OUTPUT], dynamic_axes=dynamic,
                              opset_version=opset, do_constant_folding=True, dynamo=False)
        else:
            batch = torch.export.Dim('B', min=1, max=max_batch)
            torch.onnx.export(model, dummy, str(path), input_names=list(SHAPE_INPUTS),
                              output_names=[SHAPE_OUTPUT],
                              dynamic_shapes={name: {0: batch} for name in SHAPE_INPUTS},
                              opset_version=opset, dynamo=True, external_data=False)
    onnx.checker.check_model(str(path), full_check=True)
    return path


def shape_parity(model: ShapeModel, onnx_path: str | Path, atol: float, rtol: float,
                 batches: tuple[int, ...] = (1, 3), seed: int = 0) -> dict[str, float]:
    """Max |ONNX Runtime - eager torch| of the occupancy and its worst excess over
    `atol + rtol * |eager|`, on seeded normal crops and structures (alpha_std wide)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=['CPUExecutionProvider'])
    rng = np.random.default_rng(seed)
    s, k = model.config.style.input_size, model.config.decoder.num_bases
    std = np.asarray(model.config.decoder.alpha_std, np.float32)
    worst, excess = 0.0, -np.inf
    for b in batches:
        image = rng.normal(0.0, 1.0, (b, 3, s, s)).astype(np.float32)
        structure = (rng.normal(0.0, 1.0, (b, k)) * std).astype(np.float32)
        with torch.no_grad():
            eager = model(torch.from_numpy(image), torch.from_numpy(structure)).numpy()
        got, = session.run([SHAPE_OUTPUT], dict(zip(SHAPE_INPUTS, (image, structure))))
        if got.shape != eager.shape:
            raise RuntimeError(f'shape parity: occupancy shape {got.shape} != eager '
                               f'{eager.shape}')
        diff = np.abs(got.astype(np.float64) - eager)
        worst = max(worst, float(diff.max()))
        excess = max(excess, float((diff - atol - rtol * np.abs(eager)).max()))
    return {'max_abs': worst, 'max_excess_over_tolerance': excess}


def export_shape(checkpoint: str | Path, out_dir: Path, tmp_dir: Path, category: str,
                 input_size: int, num_bases: int, opset: int, max_batch: int, atol: float,
                 rtol: float, seed: int = 0, legacy: bool = False) -> dict:
    """Export the shape checkpoint to out_dir/shape.onnx; returns the manifest section.

    Raises:
        ValueError: the shape model is for another category, crop size or K than the INN.
        RuntimeError: ONNX and eager torch disagree beyond the tolerance.
    """
    checkpoint = Path(checkpoint).resolve()
    model, payload = load_shape_checkpoint(checkpoint)
    model = model.float().eval()
    cfg = model.config
    got = (cfg.category, cfg.style.input_size, cfg.decoder.num_bases)
    if got != (category, input_size, num_bases):
        raise ValueError(f'{checkpoint}: shape model for (category, input size, K) {got}, the '
                         f'INN has {(category, input_size, num_bases)}')
    tmp = export_shape_onnx(model, tmp_dir / SHAPE_FILE, opset, max_batch, legacy=legacy)
    report = shape_parity(model, tmp, atol, rtol, seed=seed)
    if report['max_excess_over_tolerance'] > 0:
        raise RuntimeError(f'shape ONNX and eager torch disagree beyond atol {atol} + rtol '
                           f'{rtol}: max |diff| {report["max_abs"]:.3g}')
    onnx_path = out_dir / SHAPE_FILE
    tmp.replace(onnx_path)
    size = int(cfg.decoder.size)
    grid = payload['grid']
    if int(grid['size']) != size:
        raise ValueError(f'{checkpoint}: grid size {grid["size"]} != decoder size {size}')
    metrics = payload.get('metrics') or {}
    threshold = metrics.get('threshold')
    return {
        'file': onnx_path.name, 'sha256': sha256_file(onnx_path), 'opset': opset,
        'inputs': {'image': ['B', 3, input_size, input_size], 'structure': ['B', num_bases]},
        'outputs': {SHAPE_OUTPUT: ['B', size, size, size]},
        'grid': {'size': size, 'resolution': float(grid['resolution']),
                 'origin': [float(v) for v in grid['origin']]},
        'threshold': None if threshold is None else float(threshold),
        'trained': payload.get('stage') != 'random-init',
        'source_checkpoint': {
            'path': os.path.relpath(checkpoint, out_dir.resolve()),
            'sha256': sha256_file(checkpoint), 'stage': payload.get('stage', ''),
            'step': int(payload.get('step', 0))},
        'metrics': {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))},
        'parity_max_abs': report['max_abs'],
    }
