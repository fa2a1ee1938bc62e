"""Stage ``shape`` (seed 004, sec. 3.3 stage 2): the image network that predicts the style.

    python -m training.train shape --data datasets/chair_vox_train \\
        --voxels runs/voxels/model.pt --out runs/shape --steps 3000

A :class:`perception_3dinn.models.style_encoder.StyleEncoder` learns to predict, from the
same normalised crop the 3D-INN sees, the style code of the shape space trained by stage
``voxels``, and the decoder (initialised from that stage) is trained with it end to end. It
decodes the style together with the **INN's own structure estimate** (``--inn``, computed
once on the unaugmented crops), so that the shape also absorbs what the INN's alpha gets
wrong. The loss is the decoder's weighted BCE against the true voxels plus
``--style-weight`` times the squared distance to the auto-encoder's code of the true voxels,
which keeps the code in the learned space.

Why the decoder trains too by default (``--freeze-decoder`` is the paper's regression into
a fixed space): the INN's alpha is not the true one, and a trainable decoder absorbs part of
that error. On the chair with the conv trunk (docs/shape.md), the validation IoU at step
1,000 was 0.435 trainable and 0.433 frozen (that run was stopped there); trainable reached
0.453 at 3,000, and with the default keypoint trunk 0.472. How well the style is predicted
from the image is the main gap to the targets.

Data: a rendered image set with voxels (``python -m training.synthesize images``); its last
``--val-size`` samples are held out: progress, and the occupancy threshold of best IoU
there, stored in the checkpoint's metrics as ``threshold`` and used unchanged by
``training.evaluate --shape``. Crops are made as at runtime (``CropSampler``, padding ``--pad``)
with colour jitter. Writes ``<out>/model.pt`` (a shape checkpoint: style encoder and
decoder, ``perception_3dinn.models.checkpoint.save_shape_checkpoint``), ``last.pt``
(``--resume``), ``log.jsonl``, ``loss.png`` and ``metrics.json``.
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

from perception_3dinn.models import load_checkpoint, load_voxel_checkpoint
from perception_3dinn.models.checkpoint import read_shape_checkpoint, save_shape_checkpoint
from perception_3dinn.models.style_encoder import (
    ShapeModel,
    ShapeModelConfig,
    StyleEncoderConfig,
)
from training.inn_data import AugmentConfig, CropSampler, data_category
from training.train import load_images, pick_device, Run, step_bar, stopped_early
from training.voxel_stage import average_precision, THRESHOLDS, voxel_iou

DEFAULT_INN = Path(__file__).resolve().parent.parent / 'perception_3dinn' / 'data' / \
    'models' / '{category}' / 'model.pt'


def inn_path(args: argparse.Namespace) -> Path:
    """``--inn`` or the installed default model of the category."""
    return Path(args.inn or str(DEFAULT_INN).format(category=args.category or 'chair'))


@torch.no_grad()
def prepare(data: dict, inn, sampler: CropSampler, batch: int = 64) -> dict:
    """Unaugmented crops (n, S, S, 3) uint8 and the INN's structure on them (n, K)."""
    n = len(data['image'])
    crops, alpha = [], []
    for i in tqdm(range(0, n, batch), desc='INN structure', leave=False):
        rows = [{k: v[j] for k, v in data.items()} for j in range(i, min(n, i + batch))]
        b = sampler.batch(rows)
        crops.append(b['images'])
        alpha.append(inn(torch.from_numpy(b['input']))[1].numpy())
    return {'crops': np.concatenate(crops), 'alpha': np.concatenate(alpha).astype(np.float32)}


@torch.no_grad()
def predict_voxels(model: ShapeModel, sampler: CropSampler, crops: np.ndarray,
                   alpha: np.ndarray, batch: int = 64) -> np.ndarray:
    """Occupancy probabilities (n, V, V, V) float32 of unaugmented crops and their alpha."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(crops), batch):
        x = torch.from_numpy(sampler.normalise(crops[i:i + batch])).to(device)
        a = torch.from_numpy(alpha[i:i + batch]).to(device)
        out.append(model(x, a).cpu().numpy())
    model.train(was)
    return np.concatenate(out)


def train_shape(args: argparse.Namespace) -> Path:
    """Train the style encoder; returns the path of ``model.pt`` (or ``last.pt`` when
    ``--stop-after`` ended the run early)."""
    t_start = time.time()
    category = data_category(args)
    run = Run(args.out, 'shape')
    ae, vpayload = load_voxel_checkpoint(args.voxels)
    inn, _ = load_checkpoint(inn_path(args))
    keypoint_config = inn.config.keypoint if args.style_trunk == 'keypoint' else None
    if args.style_channels is None:
        args.style_channels = (64, 96, 128) if args.style_trunk == 'keypoint' else \
            (16, 32, 64, 96, 128)
    cfg = ShapeModelConfig(category=category.name,
                           style=StyleEncoderConfig(input_size=args.input_size,
                                                    channels=args.style_channels,
                                                    style_dim=ae.config.style_dim,
                                                    extra_convs=args.style_extra_convs,
                                                    head=args.style_head,
                                                    hidden=args.style_hidden,
                                                    dropout=args.style_dropout,
                                                    trunk=args.style_trunk,
                                                    keypoint=keypoint_config),
                           decoder=ae.config)
    model = ShapeModel(cfg)
    model.decoder.load_state_dict(ae.decoder.state_dict())
    if args.style_trunk == 'keypoint':
        model.style_encoder.init_trunk(inn.keypoint_net)
    if args.freeze_decoder:
        for p in model.decoder.parameters():
            p.requires_grad_(False)

    data = load_images(args.data, fields=['image', 'box', 'keypoints_2d', 'visible',
                                          'in_image', 'voxels'])
    n = len(data['image'])
    if n <= args.val_size + 1:
        raise SystemExit(f'{args.data}: {n} samples, need more than --val-size')
    sampler = CropSampler(category, args.input_size, args.pad,
                          augment=AugmentConfig(rotation_deg=0.0, flip_prob=0.0,
                                                centre_jitter=0.0, scale_jitter=0.0,
                                                truncation_prob=0.0))
    prep = prepare(data, inn, sampler)
    voxels = data['voxels'].astype(bool)
    with torch.no_grad():
        target = np.concatenate([ae.encoder(torch.from_numpy(voxels[i:i + 64]
                                                            .astype(np.float32)))[0].numpy()
                                 for i in range(0, n, 64)])
    cut = n - args.val_size
    device = pick_device(args.device)
    model.to(device).train()
    if args.freeze_decoder:
        model.decoder.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=args.lr)
    step = resume(run, model, opt, args.resume)

    def make(step: int) -> dict:
        rng = np.random.default_rng([args.seed, step])
        idx = rng.integers(0, cut, args.batch)
        imgs = np.stack([sampler._colour(prep['crops'][i], rng) for i in idx])
        return {'input': torch.from_numpy(sampler.normalise(imgs)),
                'alpha': torch.from_numpy(prep['alpha'][idx]),
                'style': torch.from_numpy(target[idx]),
                'voxels': torch.from_numpy(voxels[idx].astype(np.float32))}

    pos_weight = torch.tensor(args.pos_weight, device=device)
    bar = step_bar(make, step, args, device, 'shape', opt, warmup=100)
    t0 = time.time()
    for step, b in bar:
        style = model.style_encoder(b['input'])
        logits = model.decoder(b['alpha'], style)
        bce = functional.binary_cross_entropy_with_logits(logits, b['voxels'],
                                                          pos_weight=pos_weight)
        code = ((style - b['style']) ** 2).sum(1).mean()
        loss = bce + args.style_weight * code
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        if step % args.log_every == 0:
            run.log({'kind': 'train', 'step': step, 'loss': loss.item(), 'bce': bce.item(),
                     'style': code.item(), 'time_s': round(time.time() - t0, 1)})
            bar.set_postfix(loss=f'{loss.item():.4f}')
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            prob = predict_voxels(model, sampler, prep['crops'][cut:], prep['alpha'][cut:])
            if args.freeze_decoder:
                model.decoder.eval()
            r = {'val_iou@0.5': float(voxel_iou(prob, voxels[cut:], 0.5).mean())}
            run.log({'kind': 'val', 'step': step + 1, **r})
            bar.write(f'step {step + 1}: val_iou@0.5 {r["val_iou@0.5"]:.4f}')
            save(run, 'last.pt', model, vpayload, step + 1, opt, r)
            run.plot()
    if stopped_early(args):
        return run.out / 'last.pt'
    prob = predict_voxels(model, sampler, prep['crops'][cut:], prep['alpha'][cut:])
    val_iou = {float(t): float(voxel_iou(prob, voxels[cut:], t).mean()) for t in THRESHOLDS}
    best = max(val_iou, key=val_iou.get)
    metrics = {
        'threshold': best, 'val_iou@threshold': val_iou[best],
        'val_iou@0.5': val_iou[0.5],
        'val_ap_3d': float(np.nanmean(average_precision(prob, voxels[cut:]))),
        'val_size': int(n - cut), 'train_size': int(cut), 'steps': args.steps,
        'seed': args.seed, 'data': str(args.data), 'voxels': str(args.voxels),
        'inn': str(inn_path(args)), 'config': cfg.to_dict(),
        'freeze_decoder': bool(args.freeze_decoder), 'style_weight': args.style_weight,
        'wall_s': round(time.time() - t_start, 1)}
    path = save(run, 'model.pt', model, vpayload, args.steps, None, metrics)
    run.plot()
    (run.out / 'metrics.json').write_text(json.dumps(metrics, indent=1) + '\n')
    tqdm.write(f'shape: wrote {path}: val IoU@0.5 {metrics["val_iou@0.5"]:.4f}, '
               f'AP {metrics["val_ap_3d"]:.4f}')
    return path


def save(run: Run, name: str, model: ShapeModel, vpayload: dict, step: int,
         opt: torch.optim.Optimizer | None, res: dict) -> Path:
    return save_shape_checkpoint(run.out / name, model, vpayload['category'], vpayload['grid'],
                                 'shape', step, opt, res)


def resume(run: Run, model: ShapeModel, opt: torch.optim.Optimizer, enabled: bool) -> int:
    """Load ``last.pt`` when resuming; returns the step to continue from."""
    payload = run.resume_payload(enabled, read_shape_checkpoint)
    if payload is None:
        return 0
    model.load_state_dict(payload['state_dict'])
    opt.load_state_dict(payload['optimizer'])
    return int(payload['step'])


def add_arguments(sp: argparse.ArgumentParser) -> None:
    """The stage's own options (the common ones come from ``training.train``)."""
    from training.train import widths

    sp.add_argument('--data', required=True, help='rendered image set with voxels')
    sp.add_argument('--voxels', required=True, help='shape-space checkpoint (stage voxels)')
    sp.add_argument('--inn', default='', help='3D-INN checkpoint whose structure the decoder '
                    'gets (default: the installed model of the category)')
    sp.add_argument('--val-size', type=int, default=500, help='held-out samples at the end')
    sp.add_argument('--pad', type=float, default=0.15, help='crop padding (as the runtime)')
    sp.add_argument('--style-trunk', choices=('keypoint', 'conv'), default='keypoint',
                    help="style encoder trunk: the INN keypoint net's stem and hourglass "
                    '(initialised from --inn) or plain strided convolutions')
    sp.add_argument('--style-channels', type=widths, default=None,
                    help='style encoder channels, one per halving after the trunk (default '
                    '64,96,128 after the keypoint trunk, 16,32,64,96,128 without)')
    sp.add_argument('--style-extra-convs', type=int, default=1,
                    help='stride-1 3x3 convolutions after each halving of the style encoder')
    sp.add_argument('--style-head', choices=('pool', 'flatten'), default='flatten',
                    help='style encoder head: global mean or the flattened last map')
    sp.add_argument('--style-hidden', type=int, default=256,
                    help='hidden units of the flatten head')
    sp.add_argument('--style-dropout', type=float, default=0.2,
                    help='dropout in the flatten head')
    sp.add_argument('--pos-weight', type=float, default=3.0,
                    help='BCE weight of occupied voxels')
    sp.add_argument('--freeze-decoder', action='store_true',
                    help='train the style encoder alone into the fixed shape space')
    sp.add_argument('--style-weight', type=float, default=0.01,
                    help="weight of the squared distance to the true voxels' code")
