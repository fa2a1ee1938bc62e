"""Stage ``voxels`` (seed 004, sec. 3.3 stage 1): the shape space as a voxel auto-encoder.

    python -m training.train voxels --out runs/voxels --steps 3000

The encoder maps a canonical 32^3 grid to a style code, the decoder maps (alpha, style) back
to occupancy logits (:mod:`perception_3dinn.models.voxel_decoder`); the loss is a weighted
binary cross entropy (occupied voxels, a few percent of the grid, weigh ``--pos-weight``)
plus ``--kl-weight`` times the KL divergence of the style code from N(0, I) (the paper's
p-TL uses a variational auto-encoder).

Defaults, measured on the chair (``--data datasets/chair_vox_train``, 20,000 renders, 3,000
to 4,000 steps, docs/shape.md): a KL weight of 1e-3 keeps the test IoU of 3e-5 (0.768
against 0.765 at the validation threshold; 0.777 at 3e-4) and makes the space dense: the zero
code decodes to a plausible mean shape (IoU 0.577 given the true alpha, against 0.009 at
3e-5), so a style that an image network can only partly predict still lands on a chair.
Decoder channels 32, 16, 8 instead of 64, 32, 16 keep the decoder within 1 ms on ONNX Runtime
(0.80-0.83 ms, bench/results/bench_shape.md); the 64, 32, 16 space of an earlier run
(procedural shapes, not the same data) reached 0.791.

Data: procedural instances of the category made once at start (``--train-size``, ``--val-size``
and ``--test-size`` instances from disjoint seeds; instance i of a split draws from
``rng([seed, split, i])``): the mesh rescaled to the size prior and voxelised as the renderer
does, with the alpha fitted to its size-normalised keypoints (``training.synth.images``); or,
with ``--data``, a rendered image set's ``voxels`` and ``structure`` (its last val + test
samples held out). The threshold is chosen on the validation split and the held-out test IoU
is reported at 0.5 and at that threshold, with the skeleton-tube voxels
(:class:`perception_3dinn.inference.shape.StructureVoxelizer` given the true alpha at the size
prior) as the baseline. Writes ``<out>/model.pt``, ``last.pt`` (``--resume``), ``log.jsonl``,
``loss.png`` and ``metrics.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import time

import numpy as np
import torch
from torch.nn import functional
from tqdm import tqdm

from perception_3dinn.inference.shape import StructureVoxelizer
from perception_3dinn.models import (
    category_record,
    save_voxel_checkpoint,
    VoxelAutoEncoder,
    VoxelDecoderConfig,
)
from perception_3dinn.models.checkpoint import read_voxel_checkpoint
from perception_3dinn.models.voxel_decoder import parameter_bytes
from perception_3dinn.skeleton import Category
from perception_3dinn.voxels import grid_for_dimensions
from training.inn_data import data_category
from training.synth import render
from training.synth.procedural import generate, keypoint_diagonal
from training.train import pick_device, Run, step_bar, stopped_early

SPLITS = {'train': 0, 'val': 1, 'test': 2}
THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.05), 2)


def procedural_shapes(category: Category, count: int, seed: int, split: str,
                      size: int = 32) -> dict[str, np.ndarray]:
    """``count`` procedural instances: ``voxels`` (n, S, S, S) bool, ``alpha`` (n, K)."""
    res, origin = grid_for_dimensions(category.dimensions_m, size)
    vox = np.zeros((count, size, size, size), bool)
    alpha = np.zeros((count, category.num_bases), np.float32)
    for i in tqdm(range(count), desc=f'{split} shapes', leave=False):
        rng = np.random.default_rng([seed, SPLITS[split], i])
        mesh = generate(category.name, rng)
        scale = float(keypoint_diagonal(mesh.keypoints))
        alpha[i] = category.fit_structure(mesh.keypoints / scale)
        k = category.size_prior_m / scale
        vox[i] = render.voxelize([p.transformed(k) for p in mesh.parts], res, origin, size)
    return {'voxels': vox, 'alpha': alpha}


def rendered_shapes(root: str, val: int, test: int) -> dict[str, dict]:
    """Splits of a rendered image set's ``voxels`` and ``structure``: the last ``test``
    samples are the test split, the ``val`` before them validation, the rest training."""
    from training.train import load_images

    data = load_images(root, fields=['voxels', 'structure'])
    n = len(data['voxels'])
    if n <= val + test:
        raise SystemExit(f'{root}: {n} samples, need more than --val-size + --test-size')
    vox, alpha = data['voxels'].astype(bool), data['structure'].astype(np.float32)
    cut = [0, n - val - test, n - test, n]
    return {name: {'voxels': vox[cut[j]:cut[j + 1]], 'alpha': alpha[cut[j]:cut[j + 1]]}
            for j, name in enumerate(SPLITS)}


def voxel_iou(prob: np.ndarray, target: np.ndarray, threshold: float) -> np.ndarray:
    """Per-sample IoU (n,) of ``prob >= threshold`` against boolean ``target`` (n, ...);
    1 where both are empty."""
    pred = prob.reshape(len(prob), -1) >= threshold
    gt = target.reshape(len(target), -1).astype(bool)
    inter = (pred & gt).sum(1)
    union = (pred | gt).sum(1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def average_precision(prob: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-sample average precision (n,) of probabilities against boolean occupancy."""
    out = np.zeros(len(prob))
    for i, (p, g) in enumerate(zip(prob.reshape(len(prob), -1),
                                   target.reshape(len(target), -1).astype(bool))):
        hits = g[np.argsort(-p, kind='stable')]
        if not hits.any():
            out[i] = np.nan
            continue
        precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        out[i] = float(precision[hits].mean())
    return out


@torch.no_grad()
def predict(model: VoxelAutoEncoder, data: dict, zero_style: bool = False,
            batch: int = 64) -> np.ndarray:
    """Reconstruction probabilities (n, S, S, S) float32 (style = encoder mean, or zeros)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(data['voxels']), batch):
        v = torch.from_numpy(data['voxels'][i:i + batch].astype(np.float32)).to(device)
        a = torch.from_numpy(data['alpha'][i:i + batch]).to(device)
        style = model.encoder(v)[0]
        if zero_style:
            style = torch.zeros_like(style)
        out.append(torch.sigmoid(model.decoder(a, style)).cpu().numpy())
    model.train(was_training)
    return np.concatenate(out)


def shape_loss(logits: torch.Tensor, target: torch.Tensor, mean: torch.Tensor,
               log_var: torch.Tensor, pos_weight: float,
               kl_weight: float) -> tuple[torch.Tensor, dict]:
    """Weighted BCE (mean over voxels) + ``kl_weight`` * KL (sum over the code, mean over the
    batch); returns the loss and its terms."""
    bce = functional.binary_cross_entropy_with_logits(
        logits, target, pos_weight=torch.tensor(pos_weight, device=logits.device))
    kl = (-0.5 * (1 + log_var - mean ** 2 - log_var.exp()).sum(1)).mean()
    return bce + kl_weight * kl, {'bce': bce.item(), 'kl': kl.item()}


def evaluate(model: VoxelAutoEncoder, val: dict) -> dict:
    """Validation numbers logged during training."""
    prob = predict(model, val)
    return {'val_iou@0.5': float(voxel_iou(prob, val['voxels'], 0.5).mean())}


def final_metrics(model: VoxelAutoEncoder, category: Category, val: dict, test: dict) -> dict:
    """Threshold chosen on ``val``; test IoU at 0.5 and at it, AP, and the skeleton tubes."""
    prob_val = predict(model, val)
    val_iou = {float(t): float(voxel_iou(prob_val, val['voxels'], t).mean())
               for t in THRESHOLDS}
    best = max(val_iou, key=val_iou.get)
    prob = predict(model, test)
    prob0 = predict(model, test, zero_style=True)
    tubes = StructureVoxelizer(category)
    tube = np.stack([tubes.occupancy(a.astype(np.float64), category.size_prior_m)
                     for a in test['alpha']])
    iou_best = voxel_iou(prob, test['voxels'], best)
    return {
        'threshold': best,
        'val_iou@0.5': val_iou[0.5], 'val_iou@threshold': val_iou[best],
        'test_iou@0.5': float(voxel_iou(prob, test['voxels'], 0.5).mean()),
        'test_iou@threshold': float(iou_best.mean()),
        'test_iou@threshold_min': float(iou_best.min()),
        'test_ap_3d': float(np.nanmean(average_precision(prob, test['voxels']))),
        'test_iou_zero_style@threshold': float(voxel_iou(prob0, test['voxels'], best).mean()),
        'skeleton_tube_test_iou': float(voxel_iou(tube, test['voxels'], 0.5).mean()),
        'test_size': len(test['voxels']), 'val_size': len(val['voxels']),
        'test_occupancy': float(test['voxels'].mean()),
    }


def save(run: Run, name: str, model: VoxelAutoEncoder, category: Category, grid: dict,
         step: int, opt: torch.optim.Optimizer | None, res: dict,
         extra: dict | None = None) -> Path:
    record = {**category_record(category),
              'dimensions_m': [float(v) for v in category.dimensions_m]}
    return save_voxel_checkpoint(run.out / name, model, record, grid, 'voxels', step, opt, res,
                                 extra)


def resume(run: Run, model: VoxelAutoEncoder, opt: torch.optim.Optimizer,
           enabled: bool) -> int:
    """Load ``last.pt`` when resuming; returns the step to continue from."""
    payload = run.resume_payload(enabled, read_voxel_checkpoint)
    if payload is None:
        return 0
    model.load_state_dict(payload['state_dict'])
    opt.load_state_dict(payload['optimizer'])
    return int(payload['step'])


def train_voxels(args: argparse.Namespace) -> Path:
    """Train the shape-space auto-encoder; returns the path of ``model.pt`` (or ``last.pt``
    when ``--stop-after`` ended the run early)."""
    t_start = time.time()
    category = data_category(args)
    run = Run(args.out, 'voxels')
    cfg = VoxelDecoderConfig(num_bases=category.num_bases,
                             alpha_std=tuple(float(v) for v in category.alpha_std),
                             style_dim=args.style_dim, size=32, channels=args.channels)
    res, origin = grid_for_dimensions(category.dimensions_m, cfg.size)
    grid = {'size': cfg.size, 'resolution': res, 'origin': origin.tolist()}
    if args.data:
        splits = rendered_shapes(args.data, args.val_size, args.test_size)
    else:
        splits = {name: procedural_shapes(category, count, args.seed, name, cfg.size)
                  for name, count in (('train', args.train_size), ('val', args.val_size),
                                      ('test', args.test_size))}
    train, val, test = splits['train'], splits['val'], splits['test']
    n = len(train['voxels'])
    device = pick_device(args.device)
    model = VoxelAutoEncoder(cfg).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    step = resume(run, model, opt, args.resume)

    def make(step: int) -> dict:
        idx = np.random.default_rng([args.seed, step]).integers(0, n, args.batch)
        return {'voxels': torch.from_numpy(train['voxels'][idx].astype(np.float32)),
                'alpha': torch.from_numpy(train['alpha'][idx])}

    bar = step_bar(make, step, args, device, 'voxels', opt, warmup=100)
    t0 = time.time()
    for step, b in bar:
        torch.manual_seed(args.seed * 1_000_003 + step)  # the code's noise, resumable
        logits, mean, log_var = model(b['voxels'], b['alpha'], sample=True)
        loss, terms = shape_loss(logits, b['voxels'], mean, log_var, args.pos_weight,
                                 args.kl_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        if step % args.log_every == 0:
            run.log({'kind': 'train', 'step': step, 'loss': loss.item(), **terms,
                     'time_s': round(time.time() - t0, 1)})
            bar.set_postfix(loss=f'{loss.item():.4f}')
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            r = evaluate(model, val)
            run.log({'kind': 'val', 'step': step + 1, **r})
            bar.write(f'step {step + 1}: ' + ', '.join(f'{k} {v:.4f}' for k, v in r.items()))
            save(run, 'last.pt', model, category, grid, step + 1, opt, r)
            run.plot()
    if stopped_early(args):
        return run.out / 'last.pt'
    metrics = final_metrics(model, category, val, test)
    metrics.update({'steps': args.steps, 'train_size': n, 'seed': args.seed,
                    'data': args.data or 'procedural', 'config': cfg.to_dict(),
                    'decoder_fp16_bytes': parameter_bytes(model.decoder),
                    'wall_s': round(time.time() - t_start, 1)})
    path = save(run, 'model.pt', model, category, grid, args.steps, None, metrics)
    run.plot()
    (run.out / 'metrics.json').write_text(json.dumps(metrics, indent=1) + '\n')
    tqdm.write(f'voxels: wrote {path}: ' + json.dumps(
        {k: v for k, v in metrics.items() if k != 'config'}))
    return path


def add_arguments(sp: argparse.ArgumentParser) -> None:
    """The stage's own options (the common ones come from ``training.train``)."""
    from training.train import widths

    sp.add_argument('--data', default='', help='rendered image set to take voxels and '
                    'structure from (default: procedural instances made at start)')
    sp.add_argument('--train-size', type=int, default=8000, help='procedural training shapes')
    sp.add_argument('--val-size', type=int, default=256, help='validation shapes (threshold)')
    sp.add_argument('--test-size', type=int, default=256, help='held-out test shapes')
    sp.add_argument('--style-dim', type=int, default=8, help='length of the style code')
    sp.add_argument('--channels', type=widths, default=(32, 16, 8),
                    help='decoder channels from the 4^3 seed up, e.g. 32,16,8')
    sp.add_argument('--pos-weight', type=float, default=3.0,
                    help='BCE weight of occupied voxels')
    sp.add_argument('--kl-weight', type=float, default=1e-3,
                    help='weight of the style KL (the BCE is a mean over voxels)')
