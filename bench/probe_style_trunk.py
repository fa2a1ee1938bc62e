"""How fast a style encoder learns what a crop shows: R^2 of a short pure regression.

    python bench/probe_style_trunk.py --voxels runs/voxels/model.pt \
        --data datasets/chair_vox_train [--count 6000] [--steps 600] [--threads 2]

For each trunk of :class:`perception_3dinn.models.style_encoder.StyleEncoder` (``conv`` from
scratch, ``keypoint`` initialised from the INN of ``--inn``), trains it for ``--steps`` steps
(batch 32, Adam 1e-3, squared error) to regress two targets of the first ``--count`` crops:
the shape space's style code of the true voxels (``--voxels``) and the true structure alpha
divided by the category's alpha_std. The last 500 crops are held out. Prints a markdown
table of R^2 per dimension (1 - squared error / variance) and writes
``<out>/probe_style_trunk.{md,json}``. A diagnostic of docs/shape.md, not a benchmark of speed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from perception_3dinn.models import load_checkpoint, load_voxel_checkpoint  # noqa: E402
from perception_3dinn.models.style_encoder import (  # noqa: E402
    StyleEncoder,
    StyleEncoderConfig,
)
from perception_3dinn.skeleton import load_category  # noqa: E402
from training.inn_data import AugmentConfig, CropSampler  # noqa: E402
from training.shape_stage import inn_path  # noqa: E402
from training.train import load_images  # noqa: E402

HELD_OUT = 500


def encoder(trunk: str, dim: int, inn) -> StyleEncoder:
    if trunk == 'keypoint':
        enc = StyleEncoder(StyleEncoderConfig(style_dim=dim, channels=(64, 96, 128),
                                              extra_convs=1, head='flatten', trunk='keypoint',
                                              keypoint=inn.config.keypoint))
        enc.init_trunk(inn.keypoint_net)
        return enc
    return StyleEncoder(StyleEncoderConfig(style_dim=dim, extra_convs=1, head='flatten'))


def r2(enc: StyleEncoder, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    enc.eval()
    with torch.no_grad():
        p = enc(x)
    return (1 - ((p - y) ** 2).mean(0) / y.var(0)).tolist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--voxels', required=True, help='shape-space checkpoint (stage voxels)')
    ap.add_argument('--data', required=True, help='rendered image set with voxels')
    ap.add_argument('--inn', default='', help='INN for the keypoint trunk (default installed)')
    ap.add_argument('--category', default='chair')
    ap.add_argument('--count', type=int, default=6000, help='crops used (last 500 held out)')
    ap.add_argument('--steps', type=int, default=600)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--out', default=str(REPO / 'bench' / 'results'))
    args = ap.parse_args()
    if args.count <= HELD_OUT + 32:
        raise SystemExit(f'--count must exceed {HELD_OUT + 32}')
    torch.set_num_threads(args.threads)
    category = load_category(args.category)
    ae, _ = load_voxel_checkpoint(args.voxels)
    ae.eval()
    inn, _ = load_checkpoint(inn_path(args))
    data = load_images(args.data, fields=['image', 'box', 'keypoints_2d', 'visible',
                                          'in_image', 'voxels', 'structure'])
    n = min(args.count, len(data['image']))
    sampler = CropSampler(category, inn.config.input_size, 0.15, augment=AugmentConfig(
        rotation_deg=0.0, flip_prob=0.0, centre_jitter=0.0, scale_jitter=0.0,
        truncation_prob=0.0))
    rows = [{k: v[j] for k, v in data.items()} for j in range(n)]
    x = torch.from_numpy(np.concatenate([sampler.batch(rows[i:i + 200])['input']
                                         for i in range(0, n, 200)]))
    with torch.no_grad():
        code = ae.encoder(torch.from_numpy(data['voxels'][:n].astype(np.float32)))[0]
    alpha = torch.from_numpy((data['structure'][:n] / np.asarray(category.alpha_std))
                             .astype(np.float32))
    cut = n - HELD_OUT
    results = {}
    for trunk in ('conv', 'keypoint'):
        for name, y in (('style', code), ('alpha', alpha)):
            torch.manual_seed(0)
            enc = encoder(trunk, y.shape[1], inn)
            opt = torch.optim.Adam(enc.parameters(), 1e-3)
            rng = np.random.default_rng(0)
            for _ in range(args.steps):
                idx = torch.from_numpy(rng.integers(0, cut, 32))
                loss = ((enc(x[idx]) - y[idx]) ** 2).sum(1).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            results[f'{trunk}/{name}'] = r2(enc, x[cut:], y[cut:])
            print(trunk, name, np.round(results[f'{trunk}/{name}'], 2), flush=True)
    lines = ['# probe_style_trunk', '',
             f'Command: `python bench/probe_style_trunk.py {" ".join(sys.argv[1:])}`', '',
             f'{n - HELD_OUT} training crops, {HELD_OUT} held out, {args.steps} steps; '
             'R^2 per dimension on the held-out crops.', '',
             '| trunk | target | R^2 per dimension |', '| --- | --- | --- |']
    lines += [f'| {k.split("/")[0]} | {k.split("/")[1]} | '
              + ', '.join(f'{v:.2f}' for v in r) + ' |' for k, r in results.items()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / 'probe_style_trunk.md').write_text('\n'.join(lines) + '\n')
    (out / 'probe_style_trunk.json').write_text(json.dumps(
        {'argv': sys.argv[1:], 'steps': args.steps, 'count': n, 'r2': results}, indent=1) + '\n')
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
