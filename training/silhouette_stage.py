"""Stage ``silhouette`` (seed 004, sec. 3.4): fine-tune the image networks from masks only.

    python -m training.train silhouette --data datasets/chair_shift_train \\
        --val-data datasets/chair_shift_sel --shape runs/shape/model.pt \\
        --out runs/silhouette --steps 1500

What a user with segmentation masks of their own images has: images, boxes and object masks,
no 3D and no keypoints. Each crop goes through the 3D-INN (structure and crop-camera pose)
and the style encoder; the frozen voxel decoder turns structure and style into occupancy; the
rigid transformation layer puts it in the crop camera's frustum and the max projection makes
its silhouette (:mod:`perception_3dinn.models.voxel_projection`); the loss is the binary
cross entropy against the mask, cropped as the image and averaged to the silhouette's
resolution. The gradient reaches the INN (keypoint net and interpreter) and the style encoder
through the two layers; the decoder is frozen, as in the paper. Batch norm keeps its
statistics unless ``--bn-train``.

A silhouette fixes the outline, not the depth or the hidden parts: fitted to masks alone, the
chair's 3D AP on the benchmark fell by 5 points while the 2D IoU of the shifted split rose by
5 (docs/shape.md). ``--anchor-weight`` adds the squared distance of the structure (in units
of the category's ``alpha_std``) and the style to what the networks predicted on the same
crop before fine-tuning (:func:`anchor_loss`): no labels, only the start model's own answers,
so the masks move the shape only as far as they need to.

Only ``image``, ``box`` and ``mask`` of the data are read. A sample whose mask is empty,
covers the whole image, or is not the image's size is left out with the shard and sample
named, and training goes on (``skipped`` in ``metrics.json``). ``--val-data`` (masks only
too) gives the validation silhouette IoU; the best validation step (of this run, or since
``--resume``) is kept.

Writes ``<out>/model.pt`` (the INN, as every stage) and ``<out>/shape.pt`` (the shape model
with its fine-tuned style encoder), ``last.pt`` + ``last_shape.pt`` (``--resume``),
``log.jsonl``, ``loss.png`` and ``metrics.json``. Evaluate with
``python -m training.evaluate --checkpoint <out>/model.pt --shape <out>/shape.pt``.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
import time

import cv2
import numpy as np
import torch
from tqdm import tqdm

from perception_3dinn.models import category_record, load_checkpoint, save_checkpoint
from perception_3dinn.models.checkpoint import (
    load_shape_checkpoint,
    read_checkpoint,
    read_shape_checkpoint,
    save_shape_checkpoint,
)
from perception_3dinn.models.voxel_projection import (
    crop_intrinsics,
    downsample_mask,
    project_silhouette,
    VoxelProjectionConfig,
)
from training.inn_data import AugmentConfig, CropSampler, data_category
from training.shape_stage import inn_path
from training.train import pick_device, Run, step_bar, stopped_early
from training.voxel_stage import voxel_iou

FIELDS = ['image', 'box', 'mask']


def mask_problem(mask: np.ndarray, image: np.ndarray) -> str:
    """Why a mask cannot supervise a silhouette ('' when it can)."""
    if mask.shape != image.shape[:2]:
        return f'mask is {mask.shape}, the image {image.shape[:2]}'
    covered = int(np.count_nonzero(mask))
    if covered == 0:
        return 'empty mask'
    if covered == mask.size:
        return 'mask covers the whole image'
    return ''


def load_silhouette_set(root: str | Path) -> tuple[dict, list[str]]:
    """Images, boxes and masks of a data set, with unusable samples left out; returns the
    data and one line per sample left out (shard file and index named)."""
    from training.synth.dataset import ShardDataset

    ds = ShardDataset(root, fields=FIELDS)
    keep: dict[str, list] = {k: [] for k in FIELDS}
    skipped = []
    for i, shard in enumerate(tqdm(ds.shards, desc=f'loading {Path(root).name}', leave=False)):
        data = ds.load_shard(i)
        for j in range(len(data['image'])):
            why = mask_problem(np.asarray(data['mask'][j]), np.asarray(data['image'][j]))
            if why:
                skipped.append(f'{Path(root) / shard["file"]} sample {j}: {why}; skipped')
                continue
            for k in FIELDS:
                keep[k].append(data[k][j])
    if not keep['image']:
        raise SystemExit(f'{root}: no sample with a usable mask ({len(skipped)} skipped)')
    return {k: np.stack(v) for k, v in keep.items()}, skipped


class SilhouetteBatches:
    """Crops of images and masks: ``input`` (B, 3, S, S) and ``target`` (B, s, s)."""

    def __init__(self, sampler: CropSampler, data: dict, out_size: int) -> None:
        self.sampler, self.data, self.out_size = sampler, data, out_size

    def batch(self, idx: np.ndarray, rng: np.random.Generator | None) -> dict:
        s = self.sampler.size
        images, masks = [], []
        for i in idx:
            row = {'image': self.data['image'][i], 'box': self.data['box'][i],
                   'keypoints_2d': np.zeros((0, 2)), 'visible': np.zeros(0, bool),
                   'in_image': np.zeros(0, bool)}
            c = self.sampler.crop(row, rng)
            images.append(c['image'])
            masks.append(cv2.warpAffine(self.data['mask'][i].astype(np.float32),
                                        c['crop'].matrix, (s, s), flags=cv2.INTER_LINEAR,
                                        borderMode=cv2.BORDER_CONSTANT, borderValue=0.0))
        target = downsample_mask(torch.from_numpy(np.stack(masks)), self.out_size)
        return {'input': torch.from_numpy(self.sampler.normalise(np.stack(images))),
                'target': target}


def silhouette_of(inn, shape, x: torch.Tensor, grid: dict, size_prior_m: float,
                  cfg: VoxelProjectionConfig, parts: bool = False):
    """Predicted silhouette (B, s, s) of normalised crops ``x``; with ``parts`` also the
    structure (B, K) and style (B, D) it was made from."""
    _, alpha, R, t, focal = inn(x)
    style = shape.style_encoder(x)
    prob = torch.sigmoid(shape.decoder(alpha, style))
    origin = torch.tensor(grid['origin'], dtype=prob.dtype, device=prob.device)
    s = inn.config.input_size
    sil = project_silhouette(prob, origin, float(grid['resolution']),
                             crop_intrinsics(focal, s), s, R, t,
                             torch.full((len(x),), 1.0 / size_prior_m, device=x.device), cfg)
    return (sil, alpha, style) if parts else sil


def anchor_loss(alpha: torch.Tensor, style: torch.Tensor, start_inn, start_shape,
                x: torch.Tensor, alpha_std: torch.Tensor) -> torch.Tensor:
    """Squared distance of structure (in units of the category's alpha_std) and style to what
    the networks predicted on the same crops before fine-tuning (no labels used)."""
    with torch.no_grad():
        alpha0 = start_inn(x)[1]
        style0 = start_shape.style_encoder(x)
    return ((((alpha - alpha0) / alpha_std) ** 2).sum(1)
            + ((style - style0) ** 2).sum(1)).mean()


@torch.no_grad()
def validate(inn, shape, val: SilhouetteBatches, grid: dict, size_prior_m: float,
             cfg: VoxelProjectionConfig, batch: int = 32) -> dict:
    """Mean silhouette IoU (at 0.5) and BCE on the validation masks."""
    modes = inn.training, shape.training
    inn.eval()
    shape.eval()
    n = len(val.data['image'])
    ious, bces = [], []
    for i in range(0, n, batch):
        b = val.batch(np.arange(i, min(n, i + batch)), None)
        sil = silhouette_of(inn, shape, b['input'], grid, size_prior_m, cfg)
        ious.append(voxel_iou(sil.numpy(), b['target'].numpy() >= 0.5, 0.5))
        bces.append(torch.nn.functional.binary_cross_entropy(
            sil.clamp(1e-6, 1 - 1e-6), b['target'], reduction='none').mean((1, 2)).numpy())
    inn.train(modes[0])
    shape.train(modes[1])
    return {'val_iou_2d': float(np.concatenate(ious).mean()),
            'val_bce': float(np.concatenate(bces).mean())}


def set_modes(inn, shape, bn_train: bool) -> None:
    """Train mode for dropout-free nets, with batch norm frozen unless ``bn_train``."""
    inn.train()
    shape.train()
    shape.decoder.eval()
    if not bn_train:
        for m in list(inn.modules()) + list(shape.style_encoder.modules()):
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()


def train_silhouette(args: argparse.Namespace) -> Path:
    """Fine-tune from masks; returns the path of ``model.pt`` (``last.pt`` when stopped)."""
    t_start = time.time()
    category = data_category(args)
    run = Run(args.out, 'silhouette')
    inn, _ = load_checkpoint(inn_path(args))
    shape, spayload = load_shape_checkpoint(args.shape)
    grid = spayload['grid']
    for p in shape.decoder.parameters():
        p.requires_grad_(False)
    cfg = VoxelProjectionConfig(out_size=args.silhouette_size,
                                depth_samples=args.depth_samples)
    icfg = inn.config
    aug = AugmentConfig(rotation_deg=0.0, flip_prob=0.0, truncation_prob=0.0)
    sampler = CropSampler(category, icfg.input_size, args.pad, icfg.sigma, icfg.mean,
                          icfg.std, aug)
    data, skipped = load_silhouette_set(args.data)
    val_data, val_skipped = load_silhouette_set(args.val_data)
    for line in (skipped + val_skipped)[:20]:
        tqdm.write(line)
    if len(skipped) + len(val_skipped) > 20:
        tqdm.write(f'... {len(skipped) + len(val_skipped) - 20} more samples skipped')
    train_b = SilhouetteBatches(sampler, data, args.silhouette_size)
    val_b = SilhouetteBatches(sampler, {k: v[:args.val_size] for k, v in val_data.items()},
                              args.silhouette_size)
    device = pick_device(args.device)
    inn.to(device)
    shape.to(device)
    params = list(inn.parameters()) + list(shape.style_encoder.parameters())
    opt = torch.optim.Adam(params, lr=args.lr)
    # the anchor is the model before fine-tuning, also when resuming
    start_inn, start_shape = copy.deepcopy(inn).eval(), copy.deepcopy(shape).eval()
    alpha_std = torch.tensor(category.alpha_std, dtype=torch.float32, device=device)
    step = resume(run, inn, shape, opt, args.resume)
    n = len(data['image'])

    def make(step: int) -> dict:
        rng = np.random.default_rng([args.seed, step])
        return train_b.batch(rng.integers(0, n, args.batch), rng)

    start = validate(inn, shape, val_b, grid, category.size_prior_m, cfg)
    if step == 0:
        run.log({'kind': 'val', 'step': 0, **start})
    best = {'step': 0, **start, 'inn': copy.deepcopy(inn.state_dict()),
            'shape': copy.deepcopy(shape.state_dict())}
    set_modes(inn, shape, args.bn_train)
    bar = step_bar(make, step, args, device, 'silhouette', opt, warmup=50)
    t0 = time.time()
    for step, b in bar:
        sil, alpha, style = silhouette_of(inn, shape, b['input'], grid, category.size_prior_m,
                                          cfg, parts=True)
        bce = torch.nn.functional.binary_cross_entropy(sil.clamp(1e-6, 1 - 1e-6), b['target'])
        loss = bce
        if args.anchor_weight > 0:
            loss = loss + args.anchor_weight * anchor_loss(alpha, style, start_inn, start_shape,
                                                           b['input'], alpha_std)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        if step % args.log_every == 0:
            run.log({'kind': 'train', 'step': step, 'loss': loss.item(), 'bce': bce.item(),
                     'time_s': round(time.time() - t0, 1)})
            bar.set_postfix(loss=f'{loss.item():.4f}')
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            r = validate(inn, shape, val_b, grid, category.size_prior_m, cfg)
            run.log({'kind': 'val', 'step': step + 1, **r})
            bar.write(f'step {step + 1}: ' + ', '.join(f'{k} {v:.4f}' for k, v in r.items()))
            if r['val_iou_2d'] > best['val_iou_2d']:
                best = {'step': step + 1, **r, 'inn': copy.deepcopy(inn.state_dict()),
                        'shape': copy.deepcopy(shape.state_dict())}
            save_checkpoint(run.out / 'last.pt', inn, category_record(category), 'silhouette',
                            step + 1, opt, r)
            save_shape_checkpoint(run.out / 'last_shape.pt', shape, spayload['category'], grid,
                                  'silhouette', step + 1, None, spayload['metrics'])
            run.plot()
    if stopped_early(args):
        return run.out / 'last.pt'
    inn.load_state_dict(best['inn'])
    shape.load_state_dict(best['shape'])
    metrics = {'best_step': best['step'], 'val_iou_2d': best['val_iou_2d'],
               'val_bce': best['val_bce'], 'start': start, 'steps': args.steps,
               'train_size': n, 'skipped': len(skipped), 'val_skipped': len(val_skipped),
               'skipped_samples': (skipped + val_skipped)[:100], 'data': str(args.data),
               'val_data': str(args.val_data), 'init': str(inn_path(args)),
               'shape': str(args.shape), 'bn_train': bool(args.bn_train),
               'wall_s': round(time.time() - t_start, 1)}
    path = save_checkpoint(run.out / 'model.pt', inn.cpu(), category_record(category),
                           'silhouette', args.steps, None, {'val_iou_2d': best['val_iou_2d']},
                           {'data': str(args.data), 'shape': str(args.shape)})
    # The threshold of the voxels stays the one chosen on the shape stage's validation split.
    save_shape_checkpoint(run.out / 'shape.pt', shape.cpu(), spayload['category'], grid,
                          'silhouette', args.steps, None, spayload['metrics'])
    run.plot()
    (run.out / 'metrics.json').write_text(json.dumps(metrics, indent=1) + '\n')
    tqdm.write(f'silhouette: wrote {path}: val IoU 2D {start["val_iou_2d"]:.4f} -> '
               f'{best["val_iou_2d"]:.4f} (step {best["step"]})')
    return path


def resume(run: Run, inn, shape, opt: torch.optim.Optimizer, enabled: bool) -> int:
    """Load ``last.pt`` and ``last_shape.pt`` when resuming; returns the step."""
    payload = run.resume_payload(enabled, read_checkpoint)
    if payload is None:
        return 0
    inn.load_state_dict(payload['state_dict'])
    shape.load_state_dict(read_shape_checkpoint(run.out / 'last_shape.pt')['state_dict'])
    opt.load_state_dict(payload['optimizer'])
    return int(payload['step'])


def add_arguments(sp: argparse.ArgumentParser) -> None:
    """The stage's own options (the common ones come from ``training.train``)."""
    sp.add_argument('--data', required=True, help='image set with masks (nothing else read)')
    sp.add_argument('--val-data', required=True, help='validation image set with masks')
    sp.add_argument('--val-size', type=int, default=200, help='validation samples used')
    sp.add_argument('--shape', required=True, help='shape model (stage shape)')
    sp.add_argument('--inn', default='', help='3D-INN to fine-tune (default: the installed '
                    'model of the category)')
    sp.add_argument('--pad', type=float, default=0.15, help='crop padding (as the runtime)')
    sp.add_argument('--silhouette-size', type=int, default=32,
                    help='silhouette pixels per side (a divisor of the crop size)')
    sp.add_argument('--depth-samples', type=int, default=64, help='samples along each ray')
    sp.add_argument('--anchor-weight', type=float, default=0.0,
                    help='weight of the squared distance of structure and style to the '
                    "start model's own predictions on the same crops (0: off)")
    sp.add_argument('--bn-train', action='store_true',
                    help='update batch-norm statistics on the new data')
