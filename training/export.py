"""Export a checkpoint to ONNX + manifest.json for the runtime (issue 5, item 1).

    python -m training.export --checkpoint runs/chair/e2e.pt --out DIR
    python -m training.export --random-init --category chair --out DIR   # plumbing model
    python -m training.export --checkpoint CKPT --shape runs/shape/model.pt --out DIR

`--shape` also exports the learned shape graph, DIR/shape.onnx, parity-checked the same way
and named in the manifest's `shape` section (training/export_shape.py).

Writes DIR/model.onnx (opset 18, dynamic batch, checked with onnx.checker) and
DIR/manifest.json (docs/interfaces.md, Model contract), after checking the ONNX model against
the eager torch model with ONNX Runtime on random inputs (batch 1 and 3): every output must
agree within `atol + rtol * |eager|` (defaults 1e-4 and 1e-3, float32).

`--weights fp16` halves the files: the weights are rounded to the nearest float16 and stored
so, in the ONNX model (float16 initializers, each followed by a Cast to float32 that ONNX
Runtime folds away at load; the graph still computes in float32) and in a compact copy of the
checkpoint, DIR/model.pt (no optimizer state), which the torch engine loads. ONNX and torch
then hold the same numbers; what the rounding changed is measured and recorded in the
manifest (`export.fp16_rounding_max_abs`).
"""

from __future__ import annotations

import argparse
import copy
from datetime import datetime, timezone
import json
import os
from pathlib import Path
import sys
import tempfile

import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto
import torch

from perception_3dinn.inference.manifest import (
    FORMAT_VERSION,
    load_manifest,
    OUTPUT_NAMES,
    sha256_file,
)
from perception_3dinn.inference.pipeline import bases_sha256
from perception_3dinn.models import INN3D, INPUT_NAMES, load_checkpoint, make_config
from perception_3dinn.models.checkpoint import read_checkpoint, write_checkpoint
from perception_3dinn.skeleton import load_category

OPSET = 18
MAX_BATCH = 64
PARITY_ATOL = 1e-4
PARITY_RTOL = 1e-3
WEIGHTS = ('fp32', 'fp16')
FP16_MIN_ELEMENTS = 64  # smaller tensors stay float32 (a Cast node would cost more than it saves)


def random_model(category_name: str = 'chair', input_size: int = 128,
                 seed: int = 0) -> tuple[INN3D, dict]:
    """A randomly initialised INN3D of the category (plumbing only: untrained)."""
    category = load_category(category_name)
    torch.manual_seed(seed)
    cfg = make_config(category.name, category.num_keypoints, category.alpha_std,
                      input_size=input_size)
    model = INN3D(cfg, torch.tensor(category.bases, dtype=torch.float32)).eval()
    payload = {'stage': 'random-init', 'step': 0, 'metrics': {}, 'seed': seed}
    return model, payload


def fit_size_model(category_name: str, instances: int = 2000, seed: int = 12345) -> dict:
    """Instance size given shape: log(scale / size_prior) ~ bias + weights . alpha.

    A single image fixes the shape but not the size; the procedural generator that defines
    the category makes some shapes systematically bigger than others (a high backrest, long
    legs), so the expected size given the structure beats the single size prior. Fitted by
    least squares on `instances` generated instances (3/4 fit, 1/4 held out for the report).
    """
    from training.synth.bases import sample_instances
    from training.synth.procedural import keypoint_diagonal

    category = load_category(category_name)
    keypoints, _, _ = sample_instances(category.name, instances, seed)
    scale = np.array([keypoint_diagonal(k) for k in keypoints])
    alpha = category.fit_structure(keypoints / scale[:, None, None])
    y = np.log(scale / category.size_prior_m)
    design = np.concatenate([np.ones((len(y), 1)), alpha], axis=1)
    cut = len(y) * 3 // 4
    w, *_ = np.linalg.lstsq(design[:cut], y[:cut], rcond=None)
    held = slice(cut, None)
    before = float(np.median(np.abs(np.expm1(y[held]))))
    after = float(np.median(np.abs(np.expm1(y[held] - design[held] @ w))))
    return {'kind': 'log_linear', 'bias': float(w[0]), 'weights': [float(v) for v in w[1:]],
            'instances': int(instances), 'seed': int(seed),
            'median_rel_scale_error_size_prior': round(before, 4),
            'median_rel_scale_error_size_model': round(after, 4)}


def export_onnx(model: torch.nn.Module, path: str | Path, input_size: int,
                legacy: bool = False) -> Path:
    """Export `model` to ONNX with a dynamic batch axis 'B' and check it with onnx.checker.

    Uses the torch.export-based exporter (torch's default since 2.9); `legacy` selects the
    TorchScript tracer instead.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    dummy = torch.zeros(2, 3, input_size, input_size)
    with torch.no_grad():
        if legacy:
            dynamic = {name: {0: 'B'} for name in (*INPUT_NAMES, *OUTPUT_NAMES)}
            torch.onnx.export(model, (dummy,), str(path), input_names=list(INPUT_NAMES),
                              output_names=list(OUTPUT_NAMES), dynamic_axes=dynamic,
                              opset_version=OPSET, do_constant_folding=True, dynamo=False)
        else:
            batch = torch.export.Dim('B', min=1, max=MAX_BATCH)
            torch.onnx.export(model, (dummy,), str(path), input_names=list(INPUT_NAMES),
                              output_names=list(OUTPUT_NAMES),
                              dynamic_shapes={INPUT_NAMES[0]: {0: batch}},
                              opset_version=OPSET, dynamo=True, external_data=False)
    onnx.checker.check_model(str(path), full_check=True)
    return path


def _rounded_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state entries stored as float16: floating parameters and BatchNorm statistics
    (the category bases and other fixed buffers keep their float32 values)."""
    params = dict(model.named_parameters())
    return {name: t for name, t in model.state_dict().items()
            if t.is_floating_point() and (name in params or '.running_' in f'.{name}')}


def round_weights_fp16(model: torch.nn.Module) -> None:
    """Round the weights (`_rounded_tensors`) to the nearest float16 value, in place (they
    stay float32 tensors).

    Raises:
        ValueError: a weight outside float16's range.
    """
    with torch.no_grad():
        for name, t in _rounded_tensors(model).items():
            half = t.half()
            if not torch.isfinite(half).all() and torch.isfinite(t).all():
                raise ValueError(f'weight {name} does not fit float16 (max |w| '
                                 f'{float(t.abs().max()):.3g} > 65504)')
            t.copy_(half.float())


def store_initializers_fp16(model: onnx.ModelProto,
                            min_elements: int = FP16_MIN_ELEMENTS) -> tuple[int, int]:
    """Store float32 initializers whose values float16 holds exactly as float16 + Cast.

    Only exact ones are converted, so the graph computes the same numbers (round the weights
    first, `round_weights_fp16`); weights the exporter computed (BatchNorm folded into a
    convolution) stay float32. Returns (initializers converted, bytes saved).
    """
    graph = model.graph
    keep, casts, converted, saved = [], [], 0, 0
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or not init.dims:
            keep.append(init)
            continue
        values = numpy_helper.to_array(init)
        half = values.astype(np.float16)
        if values.size < min_elements or not np.array_equal(half.astype(np.float32), values):
            keep.append(init)
            continue
        stored = numpy_helper.from_array(half, f'{init.name}__fp16')
        keep.append(stored)
        casts.append(helper.make_node('Cast', [stored.name], [init.name],
                                      name=f'{init.name}__to_fp32', to=TensorProto.FLOAT))
        converted += 1
        saved += values.nbytes - half.nbytes
    del graph.initializer[:]
    graph.initializer.extend(keep)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)  # casts first: the graph stays topologically sorted
    return converted, saved


def compact_checkpoint(source: str | Path, target: str | Path, model: torch.nn.Module) -> Path:
    """Write `source`'s checkpoint to `target` with `model`'s (rounded) weights as float16 and
    without optimizer state; `load_checkpoint` reads it back as float32."""
    payload = read_checkpoint(source)
    payload.pop('optimizer', None)
    rounded = _rounded_tensors(model)
    payload['state_dict'] = {
        name: (rounded[name].detach().cpu().half() if name in rounded else t.detach().cpu())
        for name, t in model.state_dict().items()}
    payload['weights'] = 'fp16'
    return write_checkpoint(target, payload)


def _outputs(model: torch.nn.Module, x: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        return [v.numpy() for v in model(torch.from_numpy(x))]


def rounding_effect(before: torch.nn.Module, after: torch.nn.Module, input_size: int,
                    seed: int = 0) -> dict[str, float]:
    """Max |after - before| per output on the parity inputs (batch 3)."""
    x = np.random.default_rng(seed).normal(0.0, 1.0, (3, 3, input_size, input_size))
    x = x.astype(np.float32)
    return {name: float(np.abs(a.astype(np.float64) - b).max()) for name, a, b in
            zip(OUTPUT_NAMES, _outputs(after, x), _outputs(before, x))}


def parity(model: torch.nn.Module, onnx_path: str | Path, input_size: int,
           batches: tuple[int, ...] = (1, 3), seed: int = 0) -> dict[str, float]:
    """Max absolute difference per output between ONNX Runtime and eager torch.

    Inputs are seeded normal noise plus a smooth pattern (normalised-image statistics).
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=['CPUExecutionProvider'])
    rng = np.random.default_rng(seed)
    worst = {name: 0.0 for name in OUTPUT_NAMES}
    worst_rel = {name: -np.inf for name in OUTPUT_NAMES}
    for b in batches:
        x = rng.normal(0.0, 1.0, (b, 3, input_size, input_size)).astype(np.float32)
        eager = _outputs(model, x)
        got = session.run(list(OUTPUT_NAMES), {INPUT_NAMES[0]: x})
        for name, e, g in zip(OUTPUT_NAMES, eager, got):
            if e.shape != g.shape:
                raise RuntimeError(f'parity: {name} shape {g.shape} != eager {e.shape}')
            diff = np.abs(e.astype(np.float64) - g.astype(np.float64))
            worst[name] = max(worst[name], float(diff.max()))
            excess = diff - PARITY_ATOL - PARITY_RTOL * np.abs(e.astype(np.float64))
            worst_rel[name] = max(worst_rel[name], float(excess.max()))
    return {'max_abs': worst, 'max_excess_over_tolerance': worst_rel}


def build_manifest(model: INN3D, onnx_path: Path, payload: dict, checkpoint: Path | None,
                   parity_report: dict, trained: bool, size_model: dict | None = None,
                   weights: dict | None = None) -> dict:
    """The manifest document (see perception_3dinn.inference.manifest)."""
    cfg = model.config
    category = load_category(cfg.category)
    s, n, k = cfg.input_size, cfg.keypoint.num_keypoints, cfg.interpreter.num_bases
    h = s // cfg.stride
    source = None
    if checkpoint is not None:
        # relative to the manifest's folder (the torch engine resolves it from there)
        rel = os.path.relpath(Path(checkpoint).resolve(), onnx_path.parent.resolve())
        source = {'path': rel, 'sha256': sha256_file(checkpoint),
                  'stage': payload.get('stage', ''), 'step': int(payload.get('step', 0))}
    description = (f'trained model (training stage {payload.get("stage", "?")!r}, step '
                   f'{payload.get("step", "?")})' if trained else
                   'UNTRAINED: randomly initialised weights for plumbing and latency tests '
                   'only; outputs are meaningless')
    return {
        'format_version': FORMAT_VERSION,
        'category': cfg.category,
        'category_bases_sha256': bases_sha256(category),
        'trained': trained,
        'description': description,
        'created_utc': datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ'),
        'onnx': {'file': onnx_path.name, 'sha256': sha256_file(onnx_path), 'opset': OPSET},
        'input': {'name': INPUT_NAMES[0], 'shape': ['B', 3, s, s], 'dtype': 'float32',
                  'mean': [float(v) for v in cfg.mean], 'std': [float(v) for v in cfg.std],
                  'colour_order': 'RGB',
                  'normalisation': '(pixel / 255 - mean) / std, NCHW'},
        'stride': cfg.stride,
        'sigma': float(cfg.sigma),
        'crop_pad': 0.15,
        'outputs': {'heatmaps': ['B', n, h, h], 'structure': ['B', k],
                    'rotation': ['B', 3, 3], 'translation': ['B', 3], 'focal': ['B']},
        'num_keypoints': n,
        'num_bases': k,
        'source_checkpoint': source,
        'size_model': size_model,
        'metrics': payload.get('metrics', {}) or {},
        'export': {'torch_version': torch.__version__, 'onnx_version': onnx.__version__,
                   'parity_atol': PARITY_ATOL, 'parity_rtol': PARITY_RTOL,
                   'parity_max_abs': parity_report['max_abs'],
                   **(weights or {'weights': 'fp32'})},
    }


def benchmark_summary(evaluation: dict) -> dict:
    """Headline numbers of a `training.evaluate` metrics.json, for the manifest."""
    ours = evaluation['methods']['3d-inn']
    keys = ('structure_average_recall', 'azimuth_median_deg', 'azimuth_acc_pi6',
            'geodesic_median_deg', 'translation_relative_median')
    summary = {'benchmark': evaluation.get('data'), 'count': evaluation.get('count')}
    summary.update({k: evaluation['keypoints_2d'][k] for k in ('pck05', 'pck10', 'pcp', 'ae')})
    summary.update({k: ours[k] for k in keys if k in ours})
    return summary


def export(out_dir: str | Path, checkpoint: str | Path | None = None,
           category: str = 'chair', input_size: int = 128, seed: int = 0,
           legacy: bool = False, size_model_instances: int = 2000,
           metrics: str | Path | None = None, weights: str = 'fp32',
           shape: str | Path | None = None) -> Path:
    """Export a checkpoint (or, with checkpoint None, a random plumbing model) to `out_dir`.

    `size_model_instances` > 0 adds a size model fitted on that many generated instances
    (`fit_size_model`); 0 leaves the runtime on the category's single size prior.
    `metrics` names a `training.evaluate` metrics.json whose headline numbers go into the
    manifest (otherwise the checkpoint's own metrics, if any). `weights` 'fp16' stores the
    weights as float16 (module docstring); with a checkpoint it also writes the compact
    `out_dir/model.pt`, which the manifest then names. `shape` names a shape-model
    checkpoint to export beside it (`training.export_shape`); None: no shape section.

    Returns:
        the manifest path. Raises RuntimeError when ONNX and eager torch disagree.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if checkpoint is not None:
        checkpoint = Path(checkpoint).resolve()
        model, payload = load_checkpoint(checkpoint)
    else:
        model, payload = random_model(category, input_size, seed)
    if weights not in WEIGHTS:
        raise ValueError(f'weights must be one of {", ".join(WEIGHTS)}, got {weights!r}')
    model = model.float().eval()
    info = {'weights': weights}
    if weights == 'fp16':
        original = copy.deepcopy(model)
        round_weights_fp16(model)
        info['fp16_rounding_max_abs'] = rounding_effect(original, model,
                                                        model.config.input_size, seed)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        tmp_onnx = export_onnx(model, Path(tmp) / 'model.onnx', model.config.input_size,
                               legacy=legacy)
        if weights == 'fp16':
            proto = onnx.load(str(tmp_onnx))
            info['fp16_initializers'], _ = store_initializers_fp16(proto)
            onnx.save(proto, str(tmp_onnx))
            onnx.checker.check_model(str(tmp_onnx), full_check=True)
        report = parity(model, tmp_onnx, model.config.input_size, seed=seed)
        bad = {k: v for k, v in report['max_excess_over_tolerance'].items() if v > 0}
        if bad:
            raise RuntimeError(f'ONNX and eager torch disagree beyond atol {PARITY_ATOL} + '
                               f'rtol {PARITY_RTOL}: {report["max_abs"]}')
        onnx_path = out_dir / 'model.onnx'
        tmp_onnx.replace(onnx_path)
        if shape is not None:
            from training.export_shape import export_shape

            cfg = model.config
            shape_section = export_shape(shape, out_dir, Path(tmp), cfg.category,
                                         cfg.input_size, cfg.interpreter.num_bases, OPSET,
                                         MAX_BATCH, PARITY_ATOL, PARITY_RTOL, seed, legacy)
    if weights == 'fp16' and checkpoint is not None:
        checkpoint = compact_checkpoint(checkpoint, out_dir / 'model.pt', model)
    size_model = (fit_size_model(model.config.category, size_model_instances)
                  if size_model_instances > 0 else None)
    manifest = build_manifest(model, onnx_path, payload, checkpoint, report,
                              trained=checkpoint is not None, size_model=size_model,
                              weights=info)
    if metrics is not None:
        manifest['metrics'] = benchmark_summary(json.loads(Path(metrics).read_text()))
    if shape is not None:
        manifest['shape'] = shape_section
    manifest_path = out_dir / 'manifest.json'
    manifest_path.write_text(json.dumps(manifest, indent=1) + '\n', encoding='utf-8')
    written = load_manifest(manifest_path)  # the runtime must accept what we wrote
    if written.shape is not None:
        written.shape.verify()
    return manifest_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument('--checkpoint', type=Path, help='INN3D checkpoint (.pt) to export')
    src.add_argument('--random-init', action='store_true',
                     help='export a randomly initialised (untrained) model for plumbing')
    parser.add_argument('--out', type=Path, required=True, help='output directory')
    parser.add_argument('--category', default='chair', help='category for --random-init')
    parser.add_argument('--input-size', type=int, default=128, help='S for --random-init')
    parser.add_argument('--seed', type=int, default=0, help='seed (weights, parity inputs)')
    parser.add_argument('--size-model-instances', type=int, default=2000,
                        help='generated instances for the size-given-shape model (0: none)')
    parser.add_argument('--legacy-exporter', action='store_true',
                        help='use the TorchScript ONNX exporter instead of torch.export')
    parser.add_argument('--metrics', type=Path,
                        help='training.evaluate metrics.json to record in the manifest')
    parser.add_argument('--weights', choices=WEIGHTS, default='fp32',
                        help='fp16: store the weights rounded to float16 (half the size; '
                             'also writes OUT/model.pt); the graph computes in float32')
    parser.add_argument('--shape', type=Path,
                        help='shape-model checkpoint (training.train shape) to export as '
                             'OUT/shape.onnx')
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        path = export(args.out, args.checkpoint, args.category, args.input_size, args.seed,
                      legacy=args.legacy_exporter,
                      size_model_instances=args.size_model_instances,
                      metrics=args.metrics, weights=args.weights, shape=args.shape)
    except (RuntimeError, ValueError, FileNotFoundError) as exc:
        print(f'export failed: {exc}', file=sys.stderr)
        return 1
    data = json.loads(path.read_text())
    print(f'wrote {path} and {data["onnx"]["file"]} (sha256 {data["onnx"]["sha256"][:12]}, '
          f'trained={data["trained"]})')
    if data.get('shape'):
        print(f'shape graph {data["shape"]["file"]} (sha256 {data["shape"]["sha256"][:12]}), '
              f'parity max |onnx - eager| {data["shape"]["parity_max_abs"]:.2e}')
    print('parity max |onnx - eager|: ' + ', '.join(
        f'{k} {v:.2e}' for k, v in data['export']['parity_max_abs'].items()))
    if 'fp16_rounding_max_abs' in data['export']:
        print('float16 weights change the outputs by at most: ' + ', '.join(
            f'{k} {v:.2e}' for k, v in data['export']['fp16_rounding_max_abs'].items()))
    if data.get('size_model'):
        sm = data['size_model']
        print(f'size model: median relative scale error {sm["median_rel_scale_error_size_prior"]}'
              f' (size prior) -> {sm["median_rel_scale_error_size_model"]} (given the shape)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
