"""Per-stage latency of the inference pipeline for 1, 4 and 8 objects per frame.

    python bench/bench_pipeline.py [--manifest DIR] [--backends onnxruntime torch]
                                   [--objects 1 4 8] [--frames 40] [--threads 1]
                                   [--device cpu|cuda]

Runs `Pipeline.process` on a 640x480 frame with N chair boxes for every backend in one run and
prints/saves the median milliseconds per stage (bench/results/bench_pipeline.{json,md}, or
bench_pipeline_cuda.{json,md} with --device cuda: ONNX Runtime's CUDA provider and torch on
the GPU; the network time then includes the host-device copies).
'outside net / obj' is (total - network) / N: the pipeline's own work per object, the issue's
<= 2 ms target, as the median and the fastest frame (closest to an idle machine).
PnP always runs (min_keypoint_confidence 0) so the figure is the worst case.
The torch backend uses the manifest's source checkpoint, or a random model of the same
architecture when the manifest has none (an untrained plumbing model: timings only).
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
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from perception_3dinn.camera import CameraIntrinsics  # noqa: E402
from perception_3dinn.inference import Box2D, Pipeline, PipelineConfig  # noqa: E402
from perception_3dinn.inference.manifest import default_model_dir, load_manifest  # noqa: E402

STAGES = ('boxes', 'crops', 'network', 'decode', 'pose', 'tracking', 'voxels', 'total')


def scene_boxes(n: int, width: int, height: int, seed: int = 0) -> list[Box2D]:
    """n non-overlapping-ish chair boxes laid out on a grid."""
    rng = np.random.default_rng(seed)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    cw, ch = width / cols, height / rows
    boxes = []
    for i in range(n):
        r, c = divmod(i, cols)
        w, h = cw * rng.uniform(0.5, 0.9), ch * rng.uniform(0.6, 0.95)
        x0, y0 = c * cw + rng.uniform(0, cw - w), r * ch + rng.uniform(0, ch - h)
        boxes.append(Box2D(x0, y0, x0 + w, y0 + h, 'chair', 0.9, detection_id=str(i)))
    return boxes


def tiled_scene(dataset: Path, n: int, width: int = 640, height: int = 480
                ) -> tuple[np.ndarray, list[Box2D]]:
    """A frame of rendered chairs (a 4 x 2 grid of 160 x 160 tiles from an image data set)
    and their boxes, so crops and keypoints look like real ones."""
    import cv2

    from training.synth.dataset import ShardDataset

    ds = ShardDataset(dataset, fields=['image', 'box'])
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (height, width, 3), np.uint8)
    boxes = []
    tile = 160
    for i in range(n):
        s = ds[i]
        r, c = divmod(i, 4)
        x0, y0 = c * tile, r * tile + 40
        img = cv2.resize(np.ascontiguousarray(s['image']), (tile, tile))
        frame[y0:y0 + tile, x0:x0 + tile] = img
        k = tile / s['image'].shape[1]
        b = np.asarray(s['box'], np.float64) * k + [x0, y0, x0, y0]
        boxes.append(Box2D(*b, 'chair', 0.9, detection_id=str(i)))
    return frame, boxes


def torch_checkpoint(manifest_dir: Path, tmp: Path) -> Path | None:
    """Checkpoint for the torch engine: the manifest's, else a random model's."""
    manifest = load_manifest(manifest_dir)
    source = (manifest.raw.get('source_checkpoint') or {}).get('path')
    if source and (manifest.path.parent / source).is_file():
        return manifest.path.parent / source
    from perception_3dinn.models import category_record, save_checkpoint
    from perception_3dinn.skeleton import load_category
    from training.export import random_model

    model, _ = random_model(manifest.category, manifest.input_size, seed=0)
    return save_checkpoint(tmp / 'random.pt', model, category_record(
        load_category(manifest.category)), stage='random-init')


def bench(manifest_dir: Path, backend: str, objects: list[int], frames: int, threads: int,
          checkpoint: Path | None, scene: Path | None = None, device: str = 'cpu'
          ) -> list[dict]:
    config = PipelineConfig(num_threads=threads, min_keypoint_confidence=0.0,
                            max_pnp_reproj_px=1e9, max_objects=max(objects), device=device)
    pipe = Pipeline.from_manifest(manifest_dir, backend=backend, config=config,
                                  checkpoint=checkpoint)
    cam = CameraIntrinsics.from_fov(640, 480, 60.0)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (480, 640, 3), np.uint8)
    rows = []
    for n in objects:
        boxes = scene_boxes(n, 640, 480, seed=n)
        if scene is not None:
            image, boxes = tiled_scene(scene, n)
        pipe.reset()
        samples = {k: [] for k in STAGES}
        for f in tqdm(range(frames + 3), desc=f'{backend} {n} obj', unit='frame', leave=False):
            # a new image each frame (shifted), so the network outputs and voxels change
            shift = 3 * f if scene is None else f % 3  # rendered chairs stay in their boxes
            result = pipe.process(np.roll(image, shift, axis=1), cam, boxes, f / 30.0)
            if len(result.objects) != n:
                raise RuntimeError(f'expected {n} objects, got {result.skipped}')
            if f >= 3:  # warm-up frames excluded
                for k in STAGES:
                    samples[k].append(result.timings_ms[k])
        med = {k: float(np.median(v)) for k, v in samples.items()}
        outside = (np.array(samples['total']) - np.array(samples['network'])) / n
        rows.append({'backend': backend, 'device': device, 'objects': n, 'frames': frames,
                     **{f'{k}_ms': round(v, 3) for k, v in med.items()},
                     'outside_network_per_object_ms': round(float(np.median(outside)), 3),
                     'outside_network_per_object_min_ms': round(float(np.min(outside)), 3)})
    pipe.close()
    return rows


def markdown(rows: list[dict], meta: dict) -> str:
    head = ['backend', 'device', 'objects'] + [f'{k} ms' for k in STAGES] + [
        'outside net / obj ms', 'outside net / obj, best frame ms']
    lines = [f'# bench_pipeline ({meta["date_utc"]})', '',
             f'Command: `{meta["command"]}`', '',
             f'Machine: {meta["machine"]}; GPU: {meta.get("gpu", "none")}; '
             f'threads {meta["threads"]}; model trained: '
             f'{meta["model_trained"]}; scene: {meta["scene"]}. Median over {meta["frames"]} '
             'frames.', '',
             '| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for r in rows:
        cells = [r['backend'], r['device'], str(r['objects'])]
        cells += [f'{r[f"{k}_ms"]:.2f}' for k in STAGES]
        cells.append(f'{r["outside_network_per_object_ms"]:.2f}')
        cells.append(f'{r["outside_network_per_object_min_ms"]:.2f}')
        lines.append('| ' + ' | '.join(cells) + ' |')
    lines += ['', 'Stage columns are wall-clock medians over the frames; they include time the '
              'process waited for a CPU while other jobs ran (see the load average). The last '
              'column is the fastest frame, the closest to an idle machine.',
              'Target: pipeline work outside the network <= 2 ms per object.', '']
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--manifest', type=Path, default=default_model_dir('chair'))
    parser.add_argument('--backends', nargs='+', default=['onnxruntime', 'torch'],
                        choices=['onnxruntime', 'torch', 'tensorrt'])
    parser.add_argument('--objects', nargs='+', type=int, default=[1, 4, 8])
    parser.add_argument('--frames', type=int, default=40)
    parser.add_argument('--threads', type=int, default=1, help='engine CPU threads')
    parser.add_argument('--checkpoint', type=Path, default=None, help='torch checkpoint')
    parser.add_argument('--scene', type=Path, default=None,
                        help='rendered image data set: frames of tiled rendered chairs instead '
                             'of noise (realistic keypoints for a trained model)')
    parser.add_argument('--device', choices=('cpu', 'cuda'), default='cpu',
                        help='engine device (cuda: ONNX Runtime CUDA provider, torch CUDA)')
    parser.add_argument('--out', type=Path, default=REPO / 'bench' / 'results')
    args = parser.parse_args(argv)
    manifest = load_manifest(args.manifest)
    load = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends:
            ckpt = args.checkpoint
            if backend == 'torch' and ckpt is None:
                ckpt = torch_checkpoint(args.manifest, Path(tmp))
            rows += bench(args.manifest, backend, args.objects, args.frames, args.threads,
                          ckpt, args.scene, args.device)
    meta = {
        'date_utc': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
        'command': 'python bench/bench_pipeline.py ' + ' '.join(argv or sys.argv[1:]),
        'machine': f'{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, '
                   f'Python {platform.python_version()}, load average at start '
                   f'{load:.1f} (other jobs share the CPUs)',
        'threads': args.threads, 'frames': args.frames, 'model_trained': manifest.trained,
        'scene': str(args.scene) if args.scene else 'random noise image',
        'onnx_sha256': manifest.onnx_sha256, 'device': args.device,
    }
    if args.device == 'cuda':
        import torch

        meta['gpu'] = torch.cuda.get_device_name(0)
    name = 'bench_pipeline' if args.device == 'cpu' else f'bench_pipeline_{args.device}'
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f'{name}.json').write_text(json.dumps({'meta': meta, 'rows': rows},
                                                      indent=1) + '\n')
    text = markdown(rows, meta)
    (args.out / f'{name}.md').write_text(text)
    print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
