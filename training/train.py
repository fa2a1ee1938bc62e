"""Train the 3D Interpreter Network in the three stages of seed 000 (sec. 3.3).

    python -m training.train interpreter --out runs/interpreter --steps 20000
    python -m training.train keypoints --data datasets/chair_train_128 --out runs/keypoints
    python -m training.train finetune --keypoints runs/keypoints/model.pt \
        --interpreter runs/interpreter/model.pt --data datasets/chair_train_128 \
        --out runs/finetune

    python -m training.train voxels --out runs/voxels --steps 3000
    python -m training.train shape --data datasets/chair_vox_train \
        --voxels runs/voxels/model.pt --out runs/shape
    python -m training.train silhouette --data datasets/chair_shift_train \
        --val-data datasets/chair_shift_sel --shape runs/shape/model.pt --out runs/silhouette

    python -m training.train video --init runs/finetune/model.pt --videos datasets/videos \
        --images datasets/chair_train_128 --out runs/video --clip-lengths 3,7,11,15

``voxels`` trains the shape space of seed 004 (:mod:`training.voxel_stage`), ``shape`` the
image network that predicts its style code (:mod:`training.shape_stage`), ``silhouette``
fine-tunes both image networks from object masks alone (:mod:`training.silhouette_stage`);
``video`` trains the whole network on unlabelled video clips, seed 001
(:mod:`training.video_stage`).
``interpreter --hidden 1024,1024 [--coord-hidden 512,512]`` sets the interpreter's widths;
``finetune --frozen-keypoints`` trains the interpreter alone on the frozen keypoint net's
heatmaps (computed once for ``--passes`` augmented crops of every image).

Every stage is seeded (each step's batch comes from a generator seeded by (seed, step), so a
resumed run sees the same data), resumable (``--resume`` continues from ``<out>/last.pt``),
shows a tqdm bar, writes ``<out>/log.jsonl``, ``<out>/loss.png`` and a checkpoint
``<out>/model.pt`` that carries config, category and normalisation
(:mod:`perception_3dinn.models.checkpoint`).

``--device cuda`` trains on a GPU; ``--workers N`` makes the batches in N processes (each
step's batch is still a function of (seed, step) alone, so the data do not depend on N).
Checkpoints are device-independent (loaded onto the CPU).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import json
import os
from pathlib import Path
import time

import numpy as np
import torch
from tqdm import tqdm

from perception_3dinn import metrics
from perception_3dinn.models import (
    category_record,
    INN3D,
    load_checkpoint,
    make_config,
    read_checkpoint,
    save_checkpoint,
)
from perception_3dinn.skeleton import Category, load_category
from training.inn_data import AugmentConfig, CropSampler, data_category
from training.losses import (
    cosine_lr,
    heatmap_loss,
    interpreter_loss,
    reprojection_loss,
    structure_loss,
)
from training.synth.heatmap_sampler import HeatmapSampler, SamplerConfig


def to_torch(batch: dict, keys: tuple | None = None) -> dict:
    """numpy batch -> float32 (bool stays bool) torch tensors."""
    out = {}
    for key, value in batch.items():
        if keys is not None and key not in keys:
            continue
        arr = np.asarray(value)
        out[key] = torch.from_numpy(arr if arr.dtype == bool else arr.astype(np.float32))
    return out


def build_model(category: Category, input_size: int = 128, refine: bool = False,
                sampler: SamplerConfig | None = None, **interpreter_kwargs) -> INN3D:
    """A fresh INN3D for ``category`` with output normalisation matched to the sampler;
    ``interpreter_kwargs`` override :class:`InterpreterConfig` fields (``hidden``, ...)."""
    stats = sampler_statistics(category, sampler or SamplerConfig(input_size=input_size))
    cfg = make_config(category.name, category.num_keypoints, category.alpha_std,
                      input_size=input_size, refine=refine, **stats, **interpreter_kwargs)
    return INN3D(cfg, torch.tensor(category.bases, dtype=torch.float32))


def sampler_statistics(category: Category, config: SamplerConfig, count: int = 4096) -> dict:
    """Mean/std of log focal and log (focal / t_z) under the sampler (output normalisation)."""
    geo = HeatmapSampler(category, config, seed=12345).sample_geometry(count)
    log_f = np.log(geo['focal'])
    log_s = np.log(geo['focal'] / geo['translation'][:, 2])
    return {'log_focal_mean': round(float(log_f.mean()), 4),
            'log_focal_std': round(float(log_f.std()), 4),
            'log_scale_mean': round(float(log_s.mean()), 4),
            'log_scale_std': round(float(log_s.std()), 4)}


class Run:
    """Output folder of a stage: log, loss curve, checkpoints, resume."""

    def __init__(self, out: str | Path, stage: str) -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.stage = stage
        self.log_path = self.out / 'log.jsonl'

    def log(self, record: dict) -> None:
        with open(self.log_path, 'a', encoding='utf-8') as f:
            f.write(json.dumps(record) + '\n')

    def records(self) -> list[dict]:
        if not self.log_path.is_file():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line]

    def truncate_log(self, step: int) -> None:
        """Drop log records after ``step`` (when resuming from an older checkpoint)."""
        keep = [r for r in self.records() if r.get('step', 0) <= step]
        self.log_path.write_text(''.join(json.dumps(r) + '\n' for r in keep))

    def resume_payload(self, enabled: bool, reader: Callable[[Path], dict],
                       name: str = 'last.pt') -> dict | None:
        """With ``enabled`` and ``<out>/<name>`` present: that checkpoint read by ``reader``,
        the log cut back to its step. Otherwise None, and a run that does not resume starts
        a fresh log."""
        last = self.out / name
        if not enabled or not last.is_file():
            if self.log_path.is_file() and not enabled:
                self.log_path.unlink()
            return None
        payload = reader(last)
        self.truncate_log(payload['step'])
        tqdm.write(f'resuming {self.stage} from {last} at step {payload["step"]}')
        return payload

    def plot(self) -> Path:
        """Loss curves (train loss and every logged validation number) as PNG."""
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt

        recs = self.records()
        train = [r for r in recs if r.get('kind') == 'train']
        val = [r for r in recs if r.get('kind') == 'val']
        val_keys = sorted({k for r in val for k in r if k not in ('kind', 'step', 'time_s')})
        fig, axes = plt.subplots(1, 1 + bool(val_keys), figsize=(11 if val_keys else 6, 4))
        axes = np.atleast_1d(axes)
        if train:
            steps = np.array([r['step'] for r in train])
            loss = np.array([r['loss'] for r in train])
            axes[0].plot(steps, loss, lw=0.6, alpha=0.5, label='loss')
            if len(loss) > 20:
                k = max(1, len(loss) // 50)
                smooth = np.convolve(loss, np.ones(k) / k, mode='valid')
                axes[0].plot(steps[k - 1:], smooth, lw=1.5, label=f'mean of {k}')
            axes[0].set_yscale('log')
            axes[0].legend()
        axes[0].set_xlabel('step')
        axes[0].set_title(f'{self.stage}: training loss')
        if val_keys:
            for key in val_keys:
                pts = [(r['step'], r[key]) for r in val if key in r]
                axes[1].plot(*zip(*pts), marker='o', label=key)
            axes[1].set_xlabel('step')
            axes[1].set_title('validation')
            axes[1].legend(fontsize=7)
        fig.tight_layout()
        path = self.out / 'loss.png'
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


def set_threads(threads: int) -> None:
    """Limit torch intra-op threads (the training machine is shared)."""
    torch.set_num_threads(max(1, threads))
    os.environ.setdefault('OMP_NUM_THREADS', str(threads))


def pick_device(name: str) -> torch.device:
    """``cpu`` or ``cuda`` (refused with a clear message where torch sees no GPU)."""
    if name == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: torch sees no CUDA device (CPU-only build or no GPU)')
    return torch.device(name)


def to_device(batch: dict, device: torch.device) -> dict:
    """Tensors of a (possibly nested) batch dict on ``device``."""
    return {k: to_device(v, device) if isinstance(v, dict) else
            v.to(device, non_blocking=True) for k, v in batch.items()}


class StepBatches(torch.utils.data.Dataset):
    """Item i = the batch of optimiser step ``start + i``, made by ``make(step)`` (which seeds
    its own generator from the step), so worker processes give the same data as the
    training process."""

    def __init__(self, make: Callable[[int], dict], start: int, stop: int) -> None:
        self.make, self.start, self.stop = make, start, stop

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __getitem__(self, i: int) -> dict:
        return self.make(self.start + i)


def _as_is(batch: dict) -> dict:
    return batch


def step_bar(make: Callable[[int], dict], start: int, args: argparse.Namespace,
             device: torch.device, desc: str, opt: torch.optim.Optimizer,
             warmup: int) -> tqdm:
    """Progress bar over ``(step, batch on device)`` for steps ``start .. args.steps - 1``,
    or up to ``args.stop_after`` (see :func:`stopped_early`); sets the learning rate of each
    step (:func:`cosine_lr` over ``args.steps``) before yielding it. The batches are made in
    ``args.workers`` processes (0: in this one), pinned for a fast copy to a GPU."""
    stop = min(args.steps, args.stop_after) if args.stop_after else args.steps
    batches = torch.utils.data.DataLoader(
        StepBatches(make, start, stop), batch_size=None, shuffle=False,
        num_workers=args.workers, collate_fn=_as_is, pin_memory=device.type == 'cuda',
        prefetch_factor=4 if args.workers else None, persistent_workers=False)

    def steps():
        for step, b in zip(range(start, stop), batches):
            for group in opt.param_groups:
                group['lr'] = cosine_lr(step, args.steps, args.lr, warmup=warmup)
            yield step, to_device(b, device)

    return tqdm(steps(), initial=start, total=args.steps, desc=desc)


def stopped_early(args: argparse.Namespace) -> bool:
    """True when ``--stop-after`` ended the run before ``--steps`` (resume it later)."""
    return bool(args.stop_after) and args.stop_after < args.steps


# -- stage 2: interpreter on synthetic heatmaps -------------------------------------------

def evaluate_interpreter(model: INN3D, category: Category, val: dict) -> dict:
    """Structure average recall, azimuth/geodesic errors, 2D reprojection on a sampler set."""
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        outs = [model.interpreter(torch.from_numpy(val['heatmaps'][i:i + 256]).to(device))
                for i in range(0, len(val['heatmaps']), 256)]
    structure = np.concatenate([o[0].cpu().numpy() for o in outs]).astype(np.float64)
    rotation = np.concatenate([o[1].cpu().numpy() for o in outs]).astype(np.float64)
    rmse = metrics.structure_rmse(category.structure(structure), val['points3d'])
    az = metrics.azimuth_error(rotation, val['rotation'])
    geo = metrics.geodesic_error(rotation, val['rotation'])
    model.train()
    return {'structure_ar': metrics.average_recall(rmse),
            'structure_rmse_median': float(np.median(rmse)),
            'azimuth_median_deg': float(np.degrees(np.median(az))),
            'geodesic_median_deg': float(np.degrees(np.median(geo)))}


def train_interpreter(args: argparse.Namespace) -> Path:
    """Stage 2: the interpreter on heatmaps from :class:`HeatmapSampler`."""
    category = load_category(args.category or 'chair')
    run = Run(args.out, 'interpreter')
    sconf = SamplerConfig(input_size=args.input_size)
    widths_given = {k: v for k, v in (('hidden', args.hidden),
                                      ('coord_hidden', args.coord_hidden)) if v is not None}
    if args.init:
        if widths_given:
            raise SystemExit('--hidden/--coord-hidden set the widths of a new interpreter; '
                             'with --init the checkpoint keeps its own')
        model, _ = load_checkpoint(args.init)
    else:
        model = build_model(category, args.input_size, args.refine, sconf, **widths_given)
    device = pick_device(args.device)
    model.to(device).train()
    params = list(model.interpreter.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-4)
    step = resume(run, model, opt, args.resume)
    bases = model.projection.bases
    sampler = HeatmapSampler(category, sconf, seed=args.seed)
    val = HeatmapSampler(category, sconf, seed=args.seed + 1_000_003).sample(args.val_size)

    def make(step: int) -> dict:
        sampler.rng = np.random.default_rng([args.seed, step])
        return to_torch(sampler.sample(args.batch))

    bar = step_bar(make, step, args, device, 'interpreter', opt, warmup=200)
    t0 = time.time()
    for step, batch in bar:
        raw = model.interpreter.forward_raw(batch['heatmaps'])
        loss, terms = interpreter_loss(model.interpreter, raw, batch, bases)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        end_of_step(run, bar, args, step, t0, model, category, 'interpreter', opt,
                    {'loss': loss.item(), **terms}, {'loss': f'{loss.item():.3f}'},
                    lambda: evaluate_interpreter(model, category, val))
    if stopped_early(args):
        return run.out / 'last.pt'
    res = evaluate_interpreter(model, category, val)
    return finish(run, model, category, 'interpreter', args.steps, res)


def end_of_step(run: Run, bar: tqdm, args: argparse.Namespace, step: int, t0: float,
                model: INN3D, category: Category, stage: str, opt: torch.optim.Optimizer,
                losses: dict, postfix: dict, evaluate: Callable[[], dict] | None = None) -> None:
    """Bookkeeping after optimiser step ``step``, shared by the stages: log the losses every
    ``log_every`` steps; every ``eval_every`` steps and at the end evaluate (if given), save
    ``last.pt`` (for --resume) and redraw the loss curves."""
    if step % args.log_every == 0:
        run.log({'kind': 'train', 'step': step, **losses, 'time_s': round(time.time() - t0, 1)})
        bar.set_postfix(**postfix)
    if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
        res = evaluate() if evaluate is not None else {}
        if evaluate is not None:
            run.log({'kind': 'val', 'step': step + 1, **res})
            bar.write(f'step {step + 1}: ' + ', '.join(f'{k} {v:.4f}' for k, v in res.items()))
        save_checkpoint(run.out / 'last.pt', model, category_record(category), stage,
                        step + 1, opt, res)
        run.plot()


def resume(run: Run, model: INN3D, opt: torch.optim.Optimizer, enabled: bool) -> int:
    """Load ``last.pt`` when resuming; returns the step to continue from."""
    payload = run.resume_payload(enabled, read_checkpoint)
    if payload is None:
        return 0
    model.load_state_dict(payload['state_dict'])
    if 'optimizer' in payload:
        opt.load_state_dict(payload['optimizer'])
    return int(payload['step'])


def finish(run: Run, model: INN3D, category: Category, stage: str, step: int,
           res: dict, extra: dict | None = None) -> Path:
    """Write ``model.pt`` (no optimizer state), the loss curve and a summary JSON."""
    path = save_checkpoint(run.out / 'model.pt', model, category_record(category), stage,
                           step, None, res, extra)
    run.plot()
    (run.out / 'summary.json').write_text(json.dumps({'stage': stage, 'step': step,
                                                      'metrics': res}, indent=1) + '\n')
    tqdm.write(f'{stage}: wrote {path}: ' + json.dumps(res))
    return path


# -- image data ----------------------------------------------------------------------------

IMAGE_FIELDS = ['image', 'keypoints_2d', 'visible', 'in_image', 'box', 'K', 'R', 't',
                'structure', 'scale_m', 'keypoints_3d']


def load_images(root: str | Path, fields: list[str] | None = None,
                limit: int = 0) -> dict[str, np.ndarray]:
    """All (or the first ``limit``) samples of a rendered data set in memory, by field."""
    from training.synth.dataset import ShardDataset

    ds = ShardDataset(root, fields=fields or IMAGE_FIELDS)
    parts: dict[str, list] = {}
    count = 0
    for i in tqdm(range(len(ds.shards)), desc=f'loading {Path(root).name}', leave=False):
        data = ds.load_shard(i)
        for key, value in data.items():
            parts.setdefault(key, []).append(value)
        count += len(next(iter(data.values())))
        if limit and count >= limit:
            break
    out = {k: np.concatenate(v) for k, v in parts.items()}
    if limit:
        out = {k: v[:limit] for k, v in out.items()}
    return out


def sample_rows(data: dict[str, np.ndarray], index: np.ndarray) -> list[dict]:
    """Rows of an in-memory data set as per-sample dicts."""
    return [{k: v[i] for k, v in data.items()} for i in index]


# -- stage 1: keypoint network on rendered images ------------------------------------------

def evaluate_keypoints(model: INN3D, crops: CropSampler, val: dict, batch: int = 64) -> dict:
    """PCK@0.05/0.1 (visible keypoints) of the keypoint network on unaugmented crops."""
    model.eval()
    n = len(val['image'])
    kp_all, gt_all, vis_all, size_all = [], [], [], []
    device = next(model.parameters()).device
    with torch.no_grad():
        for i in range(0, n, batch):
            b = crops.batch(sample_rows(val, range(i, min(n, i + batch))))
            hm = model.heatmaps(torch.from_numpy(b['input']).to(device)).cpu().numpy()
            kp, _ = crops.codec.decode(hm)
            kp_all.append(kp)
            gt_all.append(b['keypoints'])
            vis_all.append(b['visible'])
            size_all.append(b['box_size'])
    kp, gt = np.concatenate(kp_all), np.concatenate(gt_all)
    vis, size = np.concatenate(vis_all), np.concatenate(size_all)
    model.train()
    return {'pck05': metrics.pck(kp, gt, size, 0.05, vis),
            'pck10': metrics.pck(kp, gt, size, 0.1, vis)}


def train_keypoints(args: argparse.Namespace) -> Path:
    """Stage 1: keypoint heatmaps on rendered, augmented crops."""
    category = data_category(args)
    run = Run(args.out, 'keypoints')
    if args.init:
        model, _ = load_checkpoint(args.init)
        if args.refine and model.refine is None:
            model.add_refine()
    else:
        model = build_model(category, args.input_size, args.refine)
    device = pick_device(args.device)
    model.to(device).train()
    cfg = model.config
    crops = CropSampler(category, cfg.input_size, args.pad, cfg.sigma, cfg.mean, cfg.std)
    train = load_images(args.data, limit=args.limit)
    val = load_images(args.val, limit=args.val_size) if args.val else \
        {k: v[-args.val_size:] for k, v in train.items()}
    params = list(model.keypoint_net.parameters())
    if model.refine is not None:
        params += list(model.refine.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-4)
    step = resume(run, model, opt, args.resume)
    n = len(train['image']) - (0 if args.val else args.val_size)

    def make(step: int) -> dict:
        rng = np.random.default_rng([args.seed, step])
        b = crops.batch(sample_rows(train, rng.integers(0, n, args.batch)), rng)
        return {'input': torch.from_numpy(b['input']),
                'heatmaps': torch.from_numpy(b['heatmaps'])}

    bar = step_bar(make, step, args, device, 'keypoints', opt, warmup=100)
    t0 = time.time()
    for step, b in bar:
        hm = model.heatmaps(b['input'])
        loss = heatmap_loss(hm, b['heatmaps'])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        end_of_step(run, bar, args, step, t0, model, category, 'keypoints', opt,
                    {'loss': loss.item()}, {'loss': f'{loss.item():.3f}'},
                    lambda: evaluate_keypoints(model, crops, val))
    if stopped_early(args):
        return run.out / 'last.pt'
    res = evaluate_keypoints(model, crops, val)
    return finish(run, model, category, 'keypoints', args.steps, res,
                  {'pad': args.pad, 'data': str(args.data)})


# -- stage 3: end-to-end fine-tuning through the projection layer --------------------------

def merge_stages(keypoints_ckpt: str, interpreter_ckpt: str) -> INN3D:
    """The keypoint net (and refinement) of one checkpoint + the interpreter of another."""
    model, _ = load_checkpoint(interpreter_ckpt)
    kp_model, _ = load_checkpoint(keypoints_ckpt)
    if kp_model.config.keypoint != model.config.keypoint:
        raise ValueError('the two checkpoints have different keypoint networks')
    model.keypoint_net.load_state_dict(kp_model.keypoint_net.state_dict())
    if kp_model.refine is not None:
        if model.refine is None:
            model.add_refine(kp_model.config.refine)
        model.refine.load_state_dict(kp_model.refine.state_dict())
    return model


def finetune(args: argparse.Namespace) -> Path:
    """Stage 3: image -> heatmaps -> interpreter -> projection layer, supervised by 2D
    keypoints only, mixed with synthetic 3D batches (interpreter loss on the heatmap
    sampler) so that shapes stay plausible; a heatmap loss keeps the keypoint net sharp."""
    if args.frozen_keypoints:
        return finetune_interpreter(args)
    category, run, model, device, crops = finetune_start(args)
    model.train()
    cfg = model.config
    train = load_images(args.data, limit=args.limit)
    n = len(train['image'])
    sampler = HeatmapSampler(category, SamplerConfig(input_size=cfg.input_size), args.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    step = resume(run, model, opt, args.resume)
    bases = model.projection.bases

    def make(step: int) -> dict:
        rng = np.random.default_rng([args.seed, step])
        rows = sample_rows(train, rng.integers(0, n, args.batch))
        b = crops.batch(rows, rng)
        sampler.rng = np.random.default_rng([args.seed, step, 1])
        return {'input': torch.from_numpy(b['input']),
                'keypoints': torch.from_numpy(b['keypoints']).float(),
                'labelled': torch.from_numpy(b['labelled']),
                'heatmaps': torch.from_numpy(b['heatmaps']),
                'alpha': torch.from_numpy(np.stack([r['structure'] for r in rows])),
                'synthetic': to_torch(sampler.sample(args.synthetic_batch))}

    bar = step_bar(make, step, args, device, 'finetune', opt, warmup=50)
    t0 = time.time()
    for step, b in bar:
        hm, structure, rotation, translation, focal = model(b['input'])
        proj = model.project(structure, rotation, translation, focal)
        l_2d = reprojection_loss(proj, b['keypoints'], b['labelled'], cfg.input_size)
        l_hm = heatmap_loss(hm, b['heatmaps'])
        syn = b['synthetic']
        raw = model.interpreter.forward_raw(syn['heatmaps'])
        l_syn, _ = interpreter_loss(model.interpreter, raw, syn, bases)
        loss = args.w_2d * l_2d + args.w_heatmap * l_hm + args.w_synthetic * l_syn
        l_shape = torch.zeros((), device=device)
        if args.w_structure > 0:
            l_shape = structure_loss(structure, b['alpha'], model.interpreter.alpha_std, bases)
            loss = loss + args.w_structure * l_shape
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        end_of_step(run, bar, args, step, t0, model, category, 'finetune', opt,
                    {'loss': loss.item(), 'reprojection': l_2d.item(), 'heatmap': l_hm.item(),
                     'synthetic': l_syn.item(), 'structure': l_shape.item()},
                    {'loss': f'{loss.item():.3f}', 'rep': f'{l_2d.item():.4f}'})
    return finetune_done(run, model, category, args)


def finetune_start(args: argparse.Namespace) -> tuple:
    """Start of stage 3: (category, run folder, the two stages merged on the device, device,
    crop sampler)."""
    category = data_category(args)
    run = Run(args.out, 'finetune')
    model = merge_stages(args.keypoints, args.interpreter)
    device = pick_device(args.device)
    model.to(device)
    cfg = model.config
    crops = CropSampler(category, cfg.input_size, args.pad, cfg.sigma, cfg.mean, cfg.std,
                        AugmentConfig(truncation_prob=args.truncation_prob))
    return category, run, model, device, crops


def finetune_done(run: Run, model: INN3D, category: Category, args: argparse.Namespace,
                  **extra) -> Path:
    """End of stage 3: ``last.pt`` when stopped early, else :func:`finish` with the run's
    inputs (and ``extra``) recorded in the checkpoint."""
    if stopped_early(args):
        return run.out / 'last.pt'
    return finish(run, model, category, 'finetune', args.steps, {},
                  {'pad': args.pad, 'data': str(args.data), 'keypoints': args.keypoints,
                   'interpreter': args.interpreter, **extra})


def heatmap_bank(model: INN3D, crops: CropSampler, data: dict, passes: int, seed: int,
                 batch: int = 128) -> dict:
    """The keypoint net's heatmaps of ``passes`` augmented crops of every image, with the
    crops' 2D labels and the images' 3D shape (float16 heatmaps, on the model's device).

    Each pass crops every image once with its own augmentation (``rng = (seed, pass)``), so
    the bank is a function of the seed and the data alone.
    """
    device = next(model.parameters()).device
    n = len(data['image'])
    out: dict[str, list] = {'heatmaps': [], 'keypoints': [], 'labelled': [], 'alpha': []}
    model.eval()
    with torch.no_grad():
        for p in range(passes):
            rng = np.random.default_rng([seed, 7919, p])
            for i in tqdm(range(0, n, batch), desc=f'heatmaps, pass {p + 1}/{passes}',
                          leave=False):
                rows = sample_rows(data, range(i, min(n, i + batch)))
                b = crops.batch(rows, rng)
                hm = model.heatmaps(torch.from_numpy(b['input']).to(device))
                out['heatmaps'].append(hm.half())
                out['keypoints'].append(torch.from_numpy(b['keypoints']).float().to(device))
                out['labelled'].append(torch.from_numpy(b['labelled']).to(device))
                alpha = np.stack([r['structure'] for r in rows]).astype(np.float32)
                out['alpha'].append(torch.from_numpy(alpha).to(device))
    return {k: torch.cat(v) for k, v in out.items()}


def finetune_interpreter(args: argparse.Namespace) -> Path:
    """Stage 3 with the keypoint net frozen (``finetune --frozen-keypoints``).

    The keypoint net's heatmaps of ``--passes`` augmented crops of every training image are
    computed once; the interpreter alone then trains on them (2D reprojection through the
    projection layer, and the images' own shape with ``--w-structure``), mixed with
    synthetic 3D batches. The keypoint net and its accuracy stay exactly as they were, and
    a step costs only the interpreter, so many more steps fit in the same time. Best with
    images the keypoint net never trained on: their heatmaps are as good as at test time.
    """
    if args.passes < 1:
        raise SystemExit('--passes must be at least 1')
    category, run, model, device, crops = finetune_start(args)
    cfg = model.config
    bank = heatmap_bank(model, crops, load_images(args.data, limit=args.limit), args.passes,
                        args.seed)
    m = len(bank['heatmaps'])
    sampler = HeatmapSampler(category, SamplerConfig(input_size=cfg.input_size), args.seed)
    params = list(model.interpreter.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-4)
    step = resume(run, model, opt, args.resume)
    model.interpreter.train()
    bases = model.projection.bases

    def make(step: int) -> dict:
        idx = torch.from_numpy(np.random.default_rng([args.seed, step]).integers(0, m, args.batch))
        sampler.rng = np.random.default_rng([args.seed, step, 1])
        return {'index': idx, 'synthetic': to_torch(sampler.sample(args.synthetic_batch))}

    bar = step_bar(make, step, args, device, 'finetune (frozen keypoints)', opt, warmup=50)
    t0 = time.time()
    for step, b in bar:
        idx = b['index'].to(bank['heatmaps'].device)
        structure, rotation, translation, focal = model.interpreter(bank['heatmaps'][idx].float())
        proj = model.project(structure, rotation, translation, focal)
        l_2d = reprojection_loss(proj, bank['keypoints'][idx], bank['labelled'][idx],
                                 cfg.input_size)
        syn = b['synthetic']
        l_syn, _ = interpreter_loss(model.interpreter,
                                    model.interpreter.forward_raw(syn['heatmaps']), syn, bases)
        l_shape = structure_loss(structure, bank['alpha'][idx], model.interpreter.alpha_std,
                                 bases)
        loss = args.w_2d * l_2d + args.w_synthetic * l_syn + args.w_structure * l_shape
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        end_of_step(run, bar, args, step, t0, model, category, 'finetune', opt,
                    {'loss': loss.item(), 'reprojection': l_2d.item(), 'heatmap': 0.0,
                     'synthetic': l_syn.item(), 'structure': l_shape.item()},
                    {'loss': f'{loss.item():.3f}', 'rep': f'{l_2d.item():.4f}'})
    return finetune_done(run, model, category, args, frozen_keypoints=True,
                         passes=args.passes)


# -- CLI ----------------------------------------------------------------------------------

def widths(text: str) -> tuple:
    """``'512,512'`` -> ``(512, 512)``; ``''`` -> ``()``."""
    try:
        out = tuple(int(v) for v in text.split(',') if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'expected comma-separated integers, got {text!r}') from None
    if any(v <= 0 for v in out):
        raise argparse.ArgumentTypeError(f'widths must be positive, got {text!r}')
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='python -m training.train', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest='stage', required=True)

    def common(sp: argparse.ArgumentParser, steps: int, batch: int, lr: float) -> None:
        sp.add_argument('--category', default=None,
                        help='category name or JSON path (default: that of --data, else chair)')
        sp.add_argument('--out', required=True, help='run folder (checkpoints, logs, plots)')
        sp.add_argument('--steps', type=int, default=steps, help='optimiser steps')
        sp.add_argument('--batch', type=int, default=batch, help='batch size')
        sp.add_argument('--lr', type=float, default=lr, help='peak learning rate')
        sp.add_argument('--seed', type=int, default=0, help='random seed')
        sp.add_argument('--threads', type=int, default=1, help='torch CPU threads')
        sp.add_argument('--device', choices=('cpu', 'cuda'), default='cpu',
                        help='where the network trains')
        sp.add_argument('--workers', type=int, default=0,
                        help='processes making the batches (0: the training process)')
        sp.add_argument('--resume', action='store_true', help='continue from <out>/last.pt')
        sp.add_argument('--log-every', type=int, default=25, help='steps between log lines')
        sp.add_argument('--eval-every', type=int, default=1000,
                        help='steps between validation + checkpoint')
        sp.add_argument('--input-size', type=int, default=128, help='crop size S')
        sp.add_argument('--stop-after', type=int, default=0,
                        help='stop (resumably) once this step is reached; 0 = run to --steps')

    sp = sub.add_parser('interpreter', help='stage 2: interpreter on synthetic heatmaps')
    common(sp, 20000, 64, 1e-3)
    sp.add_argument('--init', default='', help='start from this checkpoint')
    sp.add_argument('--refine', action='store_true', help='model with refinement bottleneck')
    sp.add_argument('--val-size', type=int, default=1000, help='validation samples')
    sp.add_argument('--hidden', type=widths, default=None,
                    help='widths of the fully connected layers, e.g. 1024,1024 (new models; '
                         'default 256,256)')
    sp.add_argument('--coord-hidden', type=widths, default=None,
                    help='widths of the coordinate branch, e.g. 512,512 (new models; '
                         'default: none)')

    sp = sub.add_parser('keypoints', help='stage 1: keypoint net on rendered images')
    common(sp, 3000, 32, 2e-3)
    sp.add_argument('--data', required=True, help='rendered training set folder')
    sp.add_argument('--val', default='', help='rendered validation set (default: hold out '
                    'the last --val-size training samples)')
    sp.add_argument('--val-size', type=int, default=300, help='validation samples')
    sp.add_argument('--limit', type=int, default=0, help='use only the first N samples')
    sp.add_argument('--pad', type=float, default=0.15, help='crop padding (as the runtime)')
    sp.add_argument('--init', default='', help='start from this checkpoint')
    sp.add_argument('--refine', action='store_true', help='add the refinement bottleneck '
                    '(to an --init checkpoint without one: starting as the identity)')

    sp = sub.add_parser('finetune', help='stage 3: end-to-end through the projection layer')
    common(sp, 600, 16, 1e-4)
    sp.add_argument('--keypoints', required=True, help='stage-1 checkpoint')
    sp.add_argument('--interpreter', required=True, help='stage-2 checkpoint')
    sp.add_argument('--data', required=True, help='rendered training set folder')
    sp.add_argument('--limit', type=int, default=0, help='use only the first N samples')
    sp.add_argument('--pad', type=float, default=0.15, help='crop padding (as the runtime)')
    sp.add_argument('--synthetic-batch', type=int, default=32,
                    help='synthetic 3D samples per step (keeps shapes plausible)')
    sp.add_argument('--w-2d', type=float, default=5.0, help='weight of the 2D reprojection')
    sp.add_argument('--w-heatmap', type=float, default=1.0, help='weight of the heatmap loss')
    sp.add_argument('--w-structure', type=float, default=0.0,
                    help="weight of a structure loss on the rendered images' own 3D shape "
                         "(alpha): trains the interpreter on the keypoint net's heatmaps; "
                         "0 = the paper's stage 3 (2D labels only)")
    sp.add_argument('--w-synthetic', type=float, default=1.0,
                    help='weight of the synthetic 3D interpreter loss')
    sp.add_argument('--frozen-keypoints', action='store_true',
                    help='train the interpreter alone, on heatmaps of the frozen keypoint '
                         'net computed once for --passes augmented crops of every image '
                         '(no heatmap loss; the keypoint net stays as it is)')
    sp.add_argument('--truncation-prob', type=float, default=0.0,
                    help='fraction of crops cut at a simulated image border '
                         '(training.inn_data.truncate_sample)')
    sp.add_argument('--passes', type=int, default=2,
                    help='augmented crops per image with --frozen-keypoints')

    from training import voxel_stage

    sp = sub.add_parser('voxels', help='seed 004: voxel shape auto-encoder (decoder + style)')
    common(sp, 3000, 32, 1e-3)
    voxel_stage.add_arguments(sp)

    from training import shape_stage

    sp = sub.add_parser('shape', help='seed 004: style encoder (image -> voxel shape code)')
    common(sp, 3000, 32, 1e-3)
    shape_stage.add_arguments(sp)

    from training import silhouette_stage

    sp = sub.add_parser('silhouette', help='seed 004: fine-tune from object masks only')
    common(sp, 1500, 16, 5e-5)
    silhouette_stage.add_arguments(sp)

    from training import video_stage

    sp = sub.add_parser('video', help='seed 001: semi-supervised training on video clips',
                        description=video_stage.__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    common(sp, 0, 8, 1e-4)
    video_stage.add_arguments(sp)
    return p


def train_voxels(args: argparse.Namespace) -> Path:
    """Seed 004's shape space: :func:`training.voxel_stage.train_voxels`."""
    from training import voxel_stage

    return voxel_stage.train_voxels(args)


def train_shape(args: argparse.Namespace) -> Path:
    """Seed 004's image -> style network: :func:`training.shape_stage.train_shape`."""
    from training import shape_stage

    return shape_stage.train_shape(args)


def train_silhouette(args: argparse.Namespace) -> Path:
    """Seed 004's mask-only fine-tuning: :func:`training.silhouette_stage.train_silhouette`."""
    from training import silhouette_stage

    return silhouette_stage.train_silhouette(args)


def train_video(args: argparse.Namespace) -> Path:
    """Seed 001's video stage: :func:`training.video_stage.train_video`."""
    from training import video_stage

    return video_stage.train_video(args)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    set_threads(args.threads)
    torch.manual_seed(args.seed)
    {'interpreter': train_interpreter, 'keypoints': train_keypoints,
     'finetune': finetune, 'voxels': train_voxels, 'shape': train_shape,
     'silhouette': train_silhouette, 'video': train_video}[args.stage](args)


if __name__ == '__main__':
    main()
