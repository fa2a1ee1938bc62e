"""Latency of the learned shape graph and of the pipeline's voxels, learned against skeleton.

    python bench/bench_shape.py [--shape runs/shape/model.pt] [--manifest DIR] [--runs 50]
                                [--threads 1 2] [--batches 1 4] [--objects 1 4] [--frames 30]

Exports the shape checkpoint (`--shape`; without one a randomly initialised ShapeModel of the
default config: latency does not depend on the weights) with `training.export_shape` beside
the INN of `--manifest`, then measures in one run:

- the shape graph (style encoder + decoder) and the decoder alone (structure + style ->
  occupancy, exported here) on ONNX Runtime CPU with 1 and 2 intra-op threads, batch 1 and 4:
  median of `--runs` runs, per object;
- `Pipeline.add_voxels` per object on a frame of N objects with voxel_source learned and
  skeleton (the node's path: poses first, voxels after), median over `--frames` frames.

Prints a markdown table and writes bench/results/bench_shape.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import platform
import sys
import tempfile
import time

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'bench'))

from bench_pipeline import scene_boxes  # noqa: E402

from perception_3dinn.camera import CameraIntrinsics  # noqa: E402
from perception_3dinn.inference import Pipeline, PipelineConfig  # noqa: E402
from perception_3dinn.inference.learned_shape import ShapeSession  # noqa: E402
from perception_3dinn.inference.manifest import default_model_dir, load_manifest  # noqa: E402


def shape_checkpoint(path: Path | None, category_name: str, tmp: Path) -> tuple[Path, bool]:
    """(`path`, True) or a random default-config ShapeModel's checkpoint (…, False)."""
    if path is not None:
        return path, True
    import torch

    from perception_3dinn.models import category_record
    from perception_3dinn.models.checkpoint import save_shape_checkpoint
    from perception_3dinn.models.style_encoder import ShapeModel, ShapeModelConfig
    from perception_3dinn.models.voxel_decoder import VoxelDecoderConfig
    from perception_3dinn.skeleton import load_category
    from perception_3dinn.voxels import grid_for_dimensions

    category = load_category(category_name)
    torch.manual_seed(0)
    cfg = ShapeModelConfig(category.name, decoder=VoxelDecoderConfig(
        num_bases=category.num_bases, alpha_std=tuple(category.alpha_std)))
    res, origin = grid_for_dimensions(category.dimensions_m, cfg.decoder.size)
    grid = {'size': cfg.decoder.size, 'resolution': res, 'origin': origin.tolist()}
    return save_shape_checkpoint(tmp / 'random_shape.pt', ShapeModel(cfg).eval(),
                                 category_record(category), grid, stage='random-init'), False


def model_with_shape(manifest_dir: Path, shape: Path, tmp: Path) -> Path:
    """A manifest in `tmp`: the INN of `manifest_dir` and `shape` exported as shape.onnx."""
    from training.export import MAX_BATCH, OPSET, PARITY_ATOL, PARITY_RTOL
    from training.export_shape import export_shape

    manifest = load_manifest(manifest_dir)
    data = dict(manifest.raw)
    data['onnx'] = {**data['onnx'], 'file': str(manifest.onnx_file)}
    data['shape'] = export_shape(shape, tmp, tmp, manifest.category, manifest.input_size,
                                 manifest.num_bases, OPSET, MAX_BATCH, PARITY_ATOL,
                                 PARITY_RTOL)
    path = tmp / 'manifest.json'
    path.write_text(json.dumps(data, indent=1) + '\n')
    return path


def decoder_graph(shape: Path, tmp: Path) -> tuple[Path, int, int]:
    """The shape model's decoder alone as ONNX: (path, K, style_dim)."""
    import torch

    from perception_3dinn.models.checkpoint import load_shape_checkpoint

    model, _ = load_shape_checkpoint(shape)

    class Decoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.decoder = model.decoder

        def forward(self, structure: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.decoder(structure, style))

    k, d = model.config.decoder.num_bases, model.config.decoder.style_dim
    path = tmp / 'decoder.onnx'
    with torch.no_grad():
        torch.onnx.export(Decoder().eval(), (torch.zeros(2, k), torch.zeros(2, d)), str(path),
                          input_names=['structure', 'style'], output_names=['occupancy'],
                          dynamic_axes={n: {0: 'B'} for n in ('structure', 'style', 'occupancy')},
                          opset_version=18, dynamo=False)
    return path, k, d


def median_ms(fn, runs: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(samples))


def bench_graphs(manifest: Path, decoder: tuple[Path, int, int], threads: list[int],
                 batches: list[int], runs: int) -> list[dict]:
    import onnxruntime as ort

    graph = load_manifest(manifest).shape
    rng = np.random.default_rng(0)
    rows = []
    for t in threads:
        session = ShapeSession(graph, num_threads=t)
        options = ort.SessionOptions()
        options.intra_op_num_threads = t
        options.inter_op_num_threads = 1
        dec = ort.InferenceSession(str(decoder[0]), sess_options=options,
                                   providers=['CPUExecutionProvider'])
        for b in batches:
            crops = rng.normal(0, 1, (b, 3, graph.input_size, graph.input_size))
            structure = rng.normal(0, 1, (b, graph.num_bases)).astype(np.float32)
            style = rng.normal(0, 1, (b, decoder[2])).astype(np.float32)
            crops = crops.astype(np.float32)
            full = median_ms(lambda s=session, c=crops, a=structure: s.run(c, a), runs)
            feed = {'structure': structure, 'style': style}
            alone = median_ms(lambda d=dec, f=feed: d.run(None, f), runs)
            rows.append({'threads': t, 'batch': b, 'shape_graph_ms': round(full, 3),
                         'shape_graph_per_object_ms': round(full / b, 3),
                         'decoder_ms': round(alone, 3),
                         'decoder_per_object_ms': round(alone / b, 3)})
    return rows


def bench_add_voxels(manifest: Path, objects: list[int], frames: int) -> list[dict]:
    cam = CameraIntrinsics.from_fov(640, 480, 60.0)
    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), np.uint8)
    rows = []
    for n in objects:
        boxes = scene_boxes(n, 640, 480, seed=n)
        row = {'objects': n}
        for source in ('learned', 'skeleton'):
            config = PipelineConfig(num_threads=1, min_keypoint_confidence=0.0,
                                    max_pnp_reproj_px=1e9, max_objects=n, voxel_source=source)
            pipe = Pipeline.from_manifest(manifest, config=config)
            samples = []
            for f in range(frames + 3):
                result = pipe.process(np.roll(image, 3 * f, axis=1), cam, boxes, f / 30.0,
                                      voxels=False)
                if len(result.objects) != n:
                    raise RuntimeError(f'expected {n} objects, got {result.skipped}')
                pipe.add_voxels(result)
                if f >= 3:
                    samples.append(result.timings_ms['voxels_added'] / n)
            pipe.close()
            row[f'{source}_per_object_ms'] = round(float(np.median(samples)), 3)
        row['difference_per_object_ms'] = round(row['learned_per_object_ms']
                                                - row['skeleton_per_object_ms'], 3)
        rows.append(row)
    return rows


def markdown(graphs: list[dict], voxels: list[dict], meta: dict) -> str:
    weights = ('trained weights' if meta['trained'] else 'randomly initialised ShapeModel of '
               'the default config (latency does not depend on the weights)')
    lines = [f'# bench_shape ({meta["date_utc"]})', '', f'Command: `{meta["command"]}`', '',
             f'Machine: {meta["machine"]}. Shape model: {weights}. ONNX Runtime CPU, median '
             f'of {meta["runs"]} runs (graphs) and {meta["frames"]} frames (add_voxels).', '',
             '## Shape graph (style encoder + decoder) and decoder alone', '',
             '| threads | batch | shape graph ms | per object ms | decoder ms | '
             'decoder per object ms |', '|---|---|---|---|---|---|']
    for r in graphs:
        lines.append(f'| {r["threads"]} | {r["batch"]} | {r["shape_graph_ms"]:.3f} | '
                     f'{r["shape_graph_per_object_ms"]:.3f} | {r["decoder_ms"]:.3f} | '
                     f'{r["decoder_per_object_ms"]:.3f} |')
    lines += ['', '## Pipeline.add_voxels per object (1 engine thread)', '',
              '| objects | learned ms | skeleton ms | learned - skeleton ms |',
              '|---|---|---|---|']
    for r in voxels:
        lines.append(f'| {r["objects"]} | {r["learned_per_object_ms"]:.3f} | '
                     f'{r["skeleton_per_object_ms"]:.3f} | '
                     f'{r["difference_per_object_ms"]:.3f} |')
    lines += ['', 'Wall-clock medians; they include time the process waited for a CPU while '
              'other jobs ran (see the load average). Skeleton voxels are cached per quantised '
              'structure (tracked structures change little), learned ones are computed each '
              'frame. Targets (issue 17): decoder <= 1 ms per object on 2 cores; voxels '
              '<= +1.5 ms per object.', '']
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--shape', type=Path, default=None, help='shape-model checkpoint')
    parser.add_argument('--manifest', type=Path, default=default_model_dir('chair'))
    parser.add_argument('--runs', type=int, default=50)
    parser.add_argument('--threads', nargs='+', type=int, default=[1, 2])
    parser.add_argument('--batches', nargs='+', type=int, default=[1, 4])
    parser.add_argument('--objects', nargs='+', type=int, default=[1, 4])
    parser.add_argument('--frames', type=int, default=30)
    parser.add_argument('--out', type=Path, default=REPO / 'bench' / 'results')
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    load = os.getloadavg()[0]
    category = load_manifest(args.manifest).category
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shape, trained = shape_checkpoint(args.shape, category, tmp)
        manifest = model_with_shape(args.manifest, shape, tmp)
        graphs = bench_graphs(manifest, decoder_graph(shape, tmp), args.threads,
                              args.batches, args.runs)
        voxels = bench_add_voxels(manifest, args.objects, args.frames)
    meta = {
        'date_utc': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
        'command': 'python bench/bench_shape.py ' + ' '.join(argv or sys.argv[1:]),
        'machine': f'{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, '
                   f'Python {platform.python_version()}, load average at start {load:.1f} '
                   '(other jobs share the CPUs)',
        'trained': trained, 'shape_checkpoint': str(args.shape) if args.shape else None,
        'runs': args.runs, 'frames': args.frames,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / 'bench_shape.json').write_text(json.dumps(
        {'meta': meta, 'graphs': graphs, 'add_voxels': voxels}, indent=1) + '\n')
    text = markdown(graphs, voxels, meta)
    (args.out / 'bench_shape.md').write_text(text)
    print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
