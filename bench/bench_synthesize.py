"""Synthetic data throughput: labelled chair images per second at 128 and 256 px.

    python bench/bench_synthesize.py [--count 400] [--sizes 128 256] [--workers 1 2]
                                     [--video-frames 48]

Generates full image data sets (render + labels + voxels + shard files, the real CLI path)
into a temporary folder for each (size, workers) and reports images/s and the projected time
for the 20,000-image training set; also one video's frames/s. Prints a table and saves it to
bench/results/bench_synthesize.{json,md}. The machine may be shared: the load average before
each run is recorded beside the numbers.
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

os.environ.setdefault('OMP_NUM_THREADS', '1')

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from perception_3dinn.skeleton import load_category  # noqa: E402
from training.synth.generate import generate_image_dataset  # noqa: E402
from training.synth.images import ImageConfig  # noqa: E402
from training.synth.videos import render_video, VideoConfig  # noqa: E402


def bench_images(size: int, workers: int, count: int, voxels: bool = True) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        generate_image_dataset('chair', count, Path(tmp) / 'd', seed=0,
                               config=ImageConfig(size=size, voxels=voxels),
                               shard_size=max(1, count // (2 * workers)), workers=workers,
                               progress=False)
        dt = time.perf_counter() - t0
        mb = sum(f.stat().st_size for f in (Path(tmp) / 'd').iterdir()) / 1e6
    ips = count / dt
    return {'kind': 'images', 'size': size, 'workers': workers, 'voxels': voxels,
            'count': count, 'seconds': round(dt, 2), 'images_per_s': round(ips, 1),
            'minutes_for_20000': round(20000 / ips / 60, 1),
            'mb_per_1000': round(mb / count * 1000, 1), 'load_before': round(load, 2)}


def bench_video(frames: int) -> dict:
    cat = load_category('chair')
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    render_video(cat, np.random.default_rng(0), VideoConfig(frames=frames))
    dt = time.perf_counter() - t0
    return {'kind': 'video 256x192', 'size': 256, 'workers': 1, 'voxels': True,
            'count': frames, 'seconds': round(dt, 2), 'images_per_s': round(frames / dt, 1),
            'minutes_for_20000': round(20000 / (frames / dt) / 60, 1), 'mb_per_1000': None,
            'load_before': round(load, 2)}


def to_markdown(rows: list[dict], meta: dict) -> str:
    head = ('| kind | size | workers | voxels | count | s | images/s | min for 20k | '
            'MB / 1000 | load before |')
    lines = [f'# bench_synthesize ({meta["date"]}, {meta["machine"]})', '', head,
             '|' + ' --- |' * 10]
    for r in rows:
        lines.append(f'| {r["kind"]} | {r["size"]} | {r["workers"]} | {r["voxels"]} | '
                     f'{r["count"]} | {r["seconds"]} | {r["images_per_s"]} | '
                     f'{r["minutes_for_20000"]} | {r["mb_per_1000"]} | {r["load_before"]} |')
    lines += ['', 'Target: 20,000 labelled 128x128 chair images in < 10 min on 2 cores '
              '(>= 34 images/s).', '']
    return '\n'.join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--count', type=int, default=400)
    p.add_argument('--sizes', type=int, nargs='+', default=[128, 256])
    p.add_argument('--workers', type=int, nargs='+', default=[1, 2])
    p.add_argument('--video-frames', type=int, default=48)
    p.add_argument('--out', type=Path, default=REPO / 'bench' / 'results')
    args = p.parse_args()
    rows = []
    for size in args.sizes:
        for w in args.workers:
            rows.append(bench_images(size, w, args.count))
            print(rows[-1], flush=True)
    rows.append(bench_images(128, 1, args.count, voxels=False))
    print(rows[-1], flush=True)
    if args.video_frames:
        rows.append(bench_video(args.video_frames))
        print(rows[-1], flush=True)
    meta = {'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
            'machine': f'{platform.processor() or platform.machine()}, '
                       f'{os.cpu_count()} CPUs, Python {platform.python_version()}'}
    md = to_markdown(rows, meta)
    print(md)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / 'bench_synthesize.json').write_text(json.dumps({'meta': meta, 'rows': rows},
                                                               indent=1) + '\n')
    (args.out / 'bench_synthesize.md').write_text(md)


if __name__ == '__main__':
    main()
