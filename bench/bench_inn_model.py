"""Cost of 3D-INN architecture variants through ONNX Runtime on this machine's CPU.

    python bench/bench_inn_model.py [--threads 2] [--runs 200]

For each variant (input size, keypoint-net width, refinement bottleneck) prints and saves
(bench/results/bench_inn_model.{json,md}): parameters, multiply-accumulates per crop
(counted over every Conv/Linear/ConvTranspose by forward hooks), and the median ONNX Runtime
latency per crop of the whole network (keypoint net + interpreter, the exported graph) at
batch 1 and batch 8. The default chair model is the row marked `default`.
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

VARIANTS = [
    # name, input size, keypoint channels, refine, interpreter config fields
    ('96 px, 32 ch', 96, 32, False, {}),
    ('128 px, 24 ch', 128, 24, False, {}),
    ('128 px, 32 ch', 128, 32, False, {}),
    ('128 px, 32 ch + refine (default)', 128, 32, True, {}),
    ('128 px, 32 ch + refine, interpreter FC 1024-1024', 128, 32, True,
     {'hidden': (1024, 1024)}),
    ('128 px, 32 ch + refine, interpreter FC 512-512 + coordinate branch 512-512', 128, 32,
     True, {'hidden': (512, 512), 'coord_hidden': (512, 512)}),
    ('128 px, 48 ch', 128, 48, False, {}),
    ('160 px, 32 ch', 160, 32, False, {}),
]


def count_macs(model, input_size: int) -> int:
    """Multiply-accumulates of one forward pass on one crop."""
    import torch
    from torch import nn

    total = 0

    def hook(mod, inp, out):
        nonlocal total
        if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d)):
            k = mod.kernel_size[0] * mod.kernel_size[1]
            if isinstance(mod, nn.Conv2d):
                total += out[0].numel() * mod.in_channels // mod.groups * k
            else:
                total += inp[0][0].numel() * mod.out_channels // mod.groups * k
        elif isinstance(mod, nn.Linear):
            total += mod.in_features * mod.out_features
    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(1, 3, input_size, input_size))
    for h in handles:
        h.remove()
    return total


def time_onnx(path: Path, input_size: int, batch: int, threads: int, runs: int) -> float:
    """Median milliseconds per crop."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=['CPUExecutionProvider'])
    x = np.random.default_rng(0).standard_normal((batch, 3, input_size, input_size))
    x = x.astype(np.float32)
    for _ in range(10):
        sess.run(None, {'image': x})
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, {'image': x})
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3 / batch)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--threads', type=int, default=2, help='ONNX Runtime intra-op threads')
    p.add_argument('--runs', type=int, default=200, help='timed runs per setting')
    p.add_argument('--out', default=str(REPO / 'bench' / 'results'), help='output folder')
    args = p.parse_args(argv)
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    import torch
    from tqdm import tqdm

    from perception_3dinn.models import INN3D, make_config, OUTPUT_NAMES
    from perception_3dinn.skeleton import load_category

    torch.set_num_threads(1)
    cat = load_category('chair')
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, size, ch, refine, interp) in enumerate(tqdm(VARIANTS, desc='variants')):
            cfg = make_config('chair', cat.num_keypoints, cat.alpha_std, input_size=size,
                              refine=refine, **interp)
            cfg.keypoint.channels = ch
            model = INN3D(cfg, torch.tensor(cat.bases, dtype=torch.float32)).eval()
            path = Path(tmp) / f'variant{i}.onnx'
            torch.onnx.export(model, (torch.zeros(1, 3, size, size),), str(path),
                              input_names=['image'], output_names=list(OUTPUT_NAMES),
                              dynamic_axes={n: {0: 'B'} for n in ('image', *OUTPUT_NAMES)},
                              opset_version=17, dynamo=False)
            kp_params = sum(p.numel() for p in model.keypoint_net.parameters())
            rows.append({
                'variant': name, 'input_size': size, 'channels': ch, 'refine': refine,
                'interpreter': {k: list(v) for k, v in interp.items()},
                'params_total': sum(p.numel() for p in model.parameters()),
                'params_keypoint_net': kp_params,
                'params_interpreter': sum(p.numel() for p in model.interpreter.parameters()),
                'mmac_per_crop': round(count_macs(model, size) / 1e6, 1),
                'ms_per_crop_b1': round(time_onnx(path, size, 1, args.threads, args.runs), 3),
                'ms_per_crop_b8': round(time_onnx(path, size, 8, args.threads,
                                                  max(20, args.runs // 8)), 3),
            })
    meta = {'threads': args.threads, 'runs': args.runs, 'cpu': platform.processor() or
            platform.machine(), 'cpu_count': os.cpu_count(),
            'onnxruntime': __import__('onnxruntime').__version__, 'torch': torch.__version__,
            'note': 'shared 2-core machine; other jobs may have been running'}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / 'bench_inn_model.json').write_text(json.dumps({'meta': meta, 'rows': rows},
                                                         indent=1) + '\n')
    lines = [f"ONNX Runtime {meta['onnxruntime']}, {args.threads} threads, median of "
             f"{args.runs} runs, {meta['cpu_count']} CPUs (shared).", '',
             '| variant | params | MMAC/crop | ms/crop (B=1) | ms/crop (B=8) |',
             '| --- | --- | --- | --- | --- |']
    for r in rows:
        lines.append(f"| {r['variant']} | {r['params_total'] / 1e6:.2f} M | "
                     f"{r['mmac_per_crop']} | {r['ms_per_crop_b1']} | {r['ms_per_crop_b8']} |")
    (out / 'bench_inn_model.md').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
