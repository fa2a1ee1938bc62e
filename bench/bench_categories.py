"""Several categories in one process: memory with all five models loaded, and the latency of
a frame of 8 objects of 3 categories against 8 chairs (issue 16, node targets).

    python bench/bench_categories.py [--frames 40] [--threads 1] [--model CAT=MANIFEST ...]

Loads a `MultiPipeline` of chair, swivel_chair, sofa, table and bed (the packaged model of
each, a `--model` given here, or else a randomly initialised export of that category: same
architecture and size, so memory and timings hold, accuracy does not) and measures, in one
run: the process RSS before and after loading; the median frame time of 8 chair boxes; of
8 boxes of 3 categories (3 chairs, 3 tables, 2 sofas); and of 8 boxes of COCO class `chair`,
which the default class map sends to both chair and swivel_chair (both models run, the
better fit is kept). The class map routes `chair` to the chair alone in the first two, so
they compare like with like. Tables: bench/results/bench_categories.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_pipeline import scene_boxes  # noqa: E402
from perception_3dinn.camera import CameraIntrinsics  # noqa: E402
from perception_3dinn.inference import Box2D, Pipeline, PipelineConfig  # noqa: E402
from perception_3dinn.inference.manifest import default_model_dir, load_manifest  # noqa: E402
from perception_3dinn.inference.multi import ClassMap, MultiPipeline  # noqa: E402
from perception_3dinn.ros.memory import rss_mb  # noqa: E402

CATEGORIES = ('chair', 'swivel_chair', 'sofa', 'table', 'bed')


def models(given: dict[str, Path], tmp: Path) -> dict[str, tuple[Path, bool]]:
    """Category -> (manifest, trained) for the five categories."""
    out = {}
    for cat in CATEGORIES:
        path = given.get(cat) or default_model_dir(cat) / 'manifest.json'
        if not path.is_file():
            path = tmp / cat / 'manifest.json'
            subprocess.run([sys.executable, '-m', 'training.export', '--random-init',
                            '--category', cat, '--out', str(path.parent)], cwd=REPO,
                           check=True, capture_output=True,
                           env={**os.environ, 'OMP_NUM_THREADS': '1'})
        out[cat] = (path, load_manifest(path).trained)
    return out


def frame_boxes(classes: list[str]) -> list[Box2D]:
    grid = scene_boxes(len(classes), 640, 480, seed=len(classes))
    return [Box2D(b.x_min, b.y_min, b.x_max, b.y_max, c, 0.9, detection_id=str(i))
            for i, (b, c) in enumerate(zip(grid, classes))]


def time_frames(multi: MultiPipeline, boxes: list[Box2D], frames: int) -> dict:
    cam = CameraIntrinsics.from_fov(640, 480, 60.0)
    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), np.uint8)
    multi.reset()
    total, network = [], []
    for f in tqdm(range(frames + 3), desc=f'{len(boxes)} boxes', leave=False):
        result = multi.process(np.roll(image, 3 * f, axis=1), cam, boxes, f / 30.0,
                               voxels=False)
        if f >= 3:
            total.append(result.timings_ms['total'])
            network.append(result.timings_ms['network'])
    t, n = np.array(total), np.array(network)
    return {'p50_ms': round(float(np.median(t)), 2),
            'network_p50_ms': round(float(np.median(n)), 2),
            'outside_network_per_object_ms': round(float(np.median(t - n)) / len(boxes), 3),
            'objects': len(result.objects)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--frames', type=int, default=40)
    parser.add_argument('--threads', type=int, default=1, help='engine CPU threads')
    parser.add_argument('--model', action='append', default=[], metavar='CAT=MANIFEST',
                        help='a model for a category (default: packaged, else random-init)')
    parser.add_argument('--out', type=Path, default=REPO / 'bench' / 'results')
    args = parser.parse_args(argv)
    given = {k: Path(v) for k, _, v in (m.partition('=') for m in args.model)}
    config = PipelineConfig(num_threads=args.threads, min_keypoint_confidence=0.0,
                            max_pnp_reproj_px=1e9, class_ids=(), compute_voxels=False)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        found = models(given, Path(tmp))
        rss_before = rss_mb()
        pipes = {c: Pipeline.from_manifest(p, backend='onnxruntime', config=config)
                 for c, (p, _) in found.items()}
        mapping = ClassMap.with_defaults(['chair:chair'], CATEGORIES)
        multi = MultiPipeline(pipes, mapping)
        rss_loaded = rss_mb()
        rows = [
            {'frame': '8 chairs', **time_frames(multi, frame_boxes(['chair'] * 8), args.frames)},
            {'frame': '8 objects of 3 categories (3 chairs, 3 tables, 2 sofas)',
             **time_frames(multi, frame_boxes(['chair'] * 3 + ['dining table'] * 3
                                              + ['couch'] * 2), args.frames)},
        ]
        multi.class_map = ClassMap.default(CATEGORIES)  # COCO chair: chair or swivel chair
        rows.append({'frame': "8 COCO 'chair' boxes, each run as chair and swivel_chair",
                     **time_frames(multi, frame_boxes(['chair'] * 8), args.frames)})
        multi.close()
    ratio = rows[1]['p50_ms'] / rows[0]['p50_ms']
    meta = {
        'date_utc': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
        'command': 'python bench/bench_categories.py ' + ' '.join(argv or sys.argv[1:]),
        'machine': f'{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, '
                   f'load average at start {load:.1f} (other jobs share the CPUs)',
        'frames': args.frames, 'threads': args.threads,
        'models': {c: {'manifest': str(p) if not str(p).startswith(tempfile.gettempdir())
                       else 'random-init export', 'trained': t}
                   for c, (p, t) in found.items()},
        'rss_before_mb': round(rss_before, 1), 'rss_all_five_mb': round(rss_loaded, 1),
        'three_categories_over_chairs_p50': round(ratio, 3),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / 'bench_categories.json').write_text(
        json.dumps({'meta': meta, 'rows': rows}, indent=1) + '\n')
    lines = [f'# bench_categories ({meta["date_utc"]})', '', f'Command: `{meta["command"]}`',
             '', f'Machine: {meta["machine"]}; engine threads {args.threads}; median over '
             f'{args.frames} frames of 640x480 (noise image, PnP always runs).', '',
             'Models: ' + ', '.join(f'{c} ({"trained" if m["trained"] else "untrained"}: '
                                    f'{m["manifest"]})' for c, m in meta['models'].items()),
             '', f'RSS: {meta["rss_before_mb"]} MB before loading, '
             f'{meta["rss_all_five_mb"]} MB with all five models loaded (target <= 500 MB).',
             '', '| frame | p50 ms | network p50 ms | outside network / object ms | objects |',
             '| --- | --- | --- | --- | --- |']
    lines += [f'| {r["frame"]} | {r["p50_ms"]:.2f} | {r["network_p50_ms"]:.2f} | '
              f'{r["outside_network_per_object_ms"]:.3f} | {r["objects"]} |' for r in rows]
    lines += ['', f'3 categories / 8 chairs p50: {ratio:.2f}x (target <= 1.5x).', '']
    (args.out / 'bench_categories.md').write_text('\n'.join(lines))
    print('\n'.join(lines))
    return 0


if __name__ == '__main__':
    sys.exit(main())
