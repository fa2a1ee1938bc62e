"""Discover a category's 3D keypoints from a folder of meshes with KeypointNet (seed 003).

    python -m training.discover --meshes runs/demo_meshes --demo --category demo \
        --out runs/discover_demo --steps 200    # about 2 s a step on one CPU core

    python -m training.discover --meshes ~/my_stools --category stool --up z \
        --metric-size 0.45 --out runs/discover_stool --steps 20000

The meshes are loaded, checked and normalised (:mod:`training.synth.meshes`; the report of
skipped files and warnings is printed and kept in ``summary.json``). Every step renders
``--batch`` pairs of views of random meshes with their relative pose and trains the
orientation and keypoint networks (:mod:`perception_3dinn.models.keypointnet`) on the losses
of :mod:`training.keypointnet_losses`, the keypoint network conditioned on the true
orientation flag. Each step's batch comes from a generator seeded by (seed, step).
``--val-meshes`` meshes are held out (default: a tenth; with fewer than 10 meshes the
validation pairs come from the training meshes, as ``summary.json`` says). Validation
reports the relative-pose angular error (degrees, mean and median) of the Procrustes fit
of the keypoints predicted with the predicted flag, the paper's metric.

``--demo`` first writes a few procedural meshes (boxes and cones) into ``--meshes``, so the
first example runs on a fresh clone. Writes ``<out>/model.pt`` (config, loss weights, view
config, state dict), ``log.jsonl``, ``loss.png`` and ``summary.json``; then
:mod:`training.discover_category` lifts the keypoints of ``--category-views`` views of every
training mesh to the object frame and writes ``<out>/<category>.json`` and
``evaluation.json`` (held-out relative-pose error, 3D-SE, and the distance to hand-made
keypoints where the folder has them). ``--supervised`` trains the paper's supervised
baseline on the folder's ``keypoints.json`` (same networks, L2 to the labels). Not yet:
resuming.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
import json
from pathlib import Path
import time

import numpy as np
import torch
from tqdm import tqdm

from perception_3dinn.models.keypointnet import (
    KeypointNetConfig,
    KeypointNetModel,
    lift,
    project,
)
from training.discover_category import add_arguments, make_category, options_from
from training.keypointnet_eval import hand_made_keypoints
from training.keypointnet_losses import (
    front_back_pixels,
    keypointnet_loss,
    KeypointNetLossWeights,
    orientation_flag,
    procrustes,
    rotation_angle,
    supervised_loss,
)
from training.synth.meshes import load_mesh_folder, render_pair, UserMesh, ViewConfig
from training.train import pick_device, Run, set_threads, step_bar, stopped_early


def write_demo_meshes(folder: Path, count: int = 4, seed: int = 0) -> None:
    """``count`` OBJ files of boxes and cones with random proportions in ``folder``."""
    import trimesh

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        if i % 2:
            m = trimesh.creation.cone(rng.uniform(0.3, 0.6), rng.uniform(0.8, 1.5), sections=12)
        else:
            m = trimesh.creation.box(rng.uniform(0.4, 1.5, 3))
        m.export(str(folder / f'demo_{i:02d}.obj'))


def pair_batch(meshes: list[UserMesh], rng: np.random.Generator, batch: int,
               view: ViewConfig) -> dict[str, torch.Tensor]:
    """``batch`` view pairs of random meshes as float32 tensors: images (B, 3, S, S) in
    [0, 1], masks (B, S, S), K, poses of both views and their relative pose."""
    cols: dict[str, list] = {k: [] for k in ('image_a', 'image_b', 'mask_a', 'mask_b', 'R_a',
                                            't_a', 'R_b', 't_b', 'R_ab', 't_ab')}
    index = []
    for _ in range(batch):
        index.append(int(rng.integers(len(meshes))))
        p = render_pair(meshes[index[-1]], rng, view)
        for side, v in (('a', p.a), ('b', p.b)):
            cols[f'image_{side}'].append(v.image.transpose(2, 0, 1) / 255.0)
            cols[f'mask_{side}'].append(v.mask)
            cols[f'R_{side}'].append(v.R)
            cols[f't_{side}'].append(v.t)
        cols['R_ab'].append(p.R_ab)
        cols['t_ab'].append(p.t_ab)
    out = {k: torch.from_numpy(np.stack(v).astype(np.float32)) for k, v in cols.items()}
    out['K'] = torch.from_numpy(view.intrinsics().astype(np.float32)).expand(batch, 3, 3)
    out['mesh'] = torch.tensor(index, dtype=torch.long)
    return out


def with_targets(b: dict[str, torch.Tensor],
                 labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Adds the orientation targets and true flags of both views and, given ``labels``
    (M, N, 3) hand-made keypoints of the meshes (normalised frames), their pixels and
    depths in both views (the supervised baseline's targets)."""
    for side in ('a', 'b'):
        R, t = b[f'R_{side}'], b[f't_{side}']
        b[f'front_back_{side}'] = front_back_pixels(b['K'], R, t)
        b[f'flag_{side}'] = orientation_flag(b['K'], R, t)
        if labels is not None:
            X = labels.to(R)[b['mesh'].to(R.device)] @ R.transpose(1, 2) + t[:, None]
            b[f'label_uv_{side}'], b[f'label_z_{side}'] = project(X, b['K'])
    return b


def _rotation_errors(model: KeypointNetModel, val: dict[str, torch.Tensor],
                     flags: tuple | None) -> tuple[torch.Tensor, dict, dict]:
    out_a = model(val['image_a'], None if flags is None else flags[0])
    out_b = model(val['image_b'], None if flags is None else flags[1])
    X_a = lift(out_a['uv'], out_a['z'], val['K']).double()
    X_b = lift(out_b['uv'], out_b['z'], val['K']).double()
    err = torch.rad2deg(rotation_angle(procrustes(X_a, X_b), val['R_ab'].double()))
    return err, out_a, out_b


@torch.no_grad()
def evaluate(model: KeypointNetModel, val: dict[str, torch.Tensor]) -> dict[str, float]:
    """Relative-pose error (degrees) of the keypoints predicted with the predicted flags (the
    deployed path) and with the true flags (the keypoint network alone), and the flag
    accuracy."""
    model.eval()
    err, out_a, out_b = _rotation_errors(model, val, None)
    true_err, _, _ = _rotation_errors(model, val, (val['flag_a'], val['flag_b']))
    model.train()
    flag_ok = torch.cat([out_a['flag'] == val['flag_a'], out_b['flag'] == val['flag_b']])
    return {'rot_err_mean_deg': float(err.mean()), 'rot_err_median_deg': float(err.median()),
            'true_flag_rot_err_median_deg': float(true_err.median()),
            'flag_accuracy': float(flag_ok.float().mean())}


def discover(args: argparse.Namespace) -> Path:
    """Train KeypointNet on the meshes; returns the path of ``model.pt``."""
    t_start = time.time()
    set_threads(args.threads)
    folder = Path(args.meshes)
    if args.demo:
        write_demo_meshes(folder, seed=args.seed)
    meshes, report = load_mesh_folder(folder, args.up, args.metric_size, args.max_faces,
                                      args.units)
    tqdm.write(report.summary())
    if not meshes:
        raise SystemExit(f'no usable mesh in {folder} (see the report above)')
    n_val = len(meshes) // 10 if args.val_meshes < 0 else min(args.val_meshes,
                                                               len(meshes) - 1)
    order = np.random.default_rng(args.seed).permutation(len(meshes))
    train = [meshes[i] for i in order[n_val:]]
    held = [meshes[i] for i in order[:n_val]] or train
    view = ViewConfig(size=args.size)
    labels, num_keypoints = None, args.keypoints
    if args.supervised:
        found = hand_made_keypoints(folder, train)
        if found is None:
            raise SystemExit(f'--supervised needs {folder}/keypoints.json with every mesh '
                             '(python -m training.synth.mesh_export writes one)')
        labels, num_keypoints = torch.from_numpy(found), found.shape[1]
    cfg = KeypointNetConfig(num_keypoints=num_keypoints, image_size=args.size,
                            channels=args.channels,
                            orientation_channels=max(1, args.channels // 2))
    weights = KeypointNetLossWeights(noise=args.noise)
    run = Run(args.out, 'discover')
    if run.log_path.is_file():
        run.log_path.unlink()
    device = pick_device(args.device)
    model = KeypointNetModel(cfg).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.999))
    val = with_targets({k: v.to(device) for k, v in pair_batch(
        held, np.random.default_rng([args.seed, 1 << 30]), args.val_pairs, view).items()})

    def make(step: int) -> dict:
        return pair_batch(train, np.random.default_rng([args.seed, step]), args.batch, view)

    bar = step_bar(make, 0, args, device, f'discover {args.category}', opt,
                   warmup=min(100, max(1, args.steps // 10)))
    t0 = time.time()
    res: dict[str, float] = {}
    for step, b in bar:
        b = with_targets(b, labels)
        gen = torch.Generator(device=device).manual_seed(args.seed * 1_000_003 + step)
        out_a = model(b['image_a'], b['flag_a'])
        out_b = model(b['image_b'], b['flag_b'])
        if labels is None:
            loss, terms = keypointnet_loss(out_a, out_b, b, weights, cfg.image_size, gen)
        else:
            loss, terms = supervised_loss(out_a, out_b, b, weights, cfg.image_size)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        if step % args.log_every == 0:
            run.log({'kind': 'train', 'step': step, 'loss': loss.item(), **terms,
                     'time_s': round(time.time() - t0, 1)})
            bar.set_postfix(loss=f'{loss.item():.4f}')
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            res = evaluate(model, val)
            run.log({'kind': 'val', 'step': step + 1, **res})
            bar.write(f'step {step + 1}: ' + ', '.join(f'{k} {v:.3f}' for k, v in res.items()))
            run.plot()
    step_done = min(args.steps, args.stop_after) if stopped_early(args) else args.steps
    if step_done % args.eval_every and step_done != args.steps:  # stopped between evaluations
        res = evaluate(model, val)
        run.log({'kind': 'val', 'step': step_done, **res})
    path = run.out / 'model.pt'
    torch.save({'kind': 'keypointnet', 'category': args.category, 'step': step_done,
                'supervised': bool(args.supervised),
                'config': cfg.to_dict(), 'loss_weights': weights.to_dict(),
                'view': asdict(view), 'state_dict': model.state_dict(), 'metrics': res}, path)
    run.plot()
    summary = {'category': args.category, 'step': step_done, 'metrics': res,
               'supervised': bool(args.supervised),
               'train_meshes': [m.name for m in train], 'val_meshes': [m.name for m in held],
               'val_split': 'held-out meshes' if n_val else 'training meshes',
               'loaded': report.loaded, 'skipped': report.skipped,
               'warnings': report.warnings, 'wall_s': round(time.time() - t_start, 1)}
    (run.out / 'summary.json').write_text(json.dumps(summary, indent=1) + '\n')
    tqdm.write(f'discover: wrote {path}: ' + json.dumps(res))
    if args.category_views > 0:
        make_category(run.out, folder, args.up, args.metric_size, args.category_views,
                      args.pairs, options_from(args), args.seed, str(device), args.max_faces)
    return path


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='python -m training.discover', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--meshes', required=True, help='folder of OBJ/PLY/GLB/STL/OFF meshes')
    p.add_argument('--category', required=True, help='name of the new category')
    p.add_argument('--out', required=True, help='run folder')
    p.add_argument('--steps', type=int, default=20000, help='optimiser steps')
    p.add_argument('--stop-after', type=int, default=0, help='end after this many steps')
    p.add_argument('--demo', action='store_true', help='first write demo meshes to --meshes')
    p.add_argument('--up', default='auto', help='up axis of the files: auto, x, -x, y, ...')
    p.add_argument('--metric-size', type=float, default=None,
                   help='expected longest side in metres (for the units check)')
    p.add_argument('--units', choices=('warn', 'skip'), default='warn',
                   help='what to do with meshes of suspicious units')
    p.add_argument('--max-faces', type=int, default=500_000, help='larger meshes are skipped')
    p.add_argument('--val-meshes', type=int, default=-1, help='held-out meshes (-1: a tenth)')
    p.add_argument('--val-pairs', type=int, default=32, help='validation view pairs')
    p.add_argument('--size', type=int, default=64, help='image side in pixels')
    p.add_argument('--keypoints', type=int, default=10, help='keypoints to discover')
    p.add_argument('--channels', type=int, default=32, help='keypoint network width')
    p.add_argument('--noise', type=float, default=0.1, help='Procrustes keypoint noise')
    p.add_argument('--batch', type=int, default=8, help='view pairs per step')
    p.add_argument('--lr', type=float, default=1e-3, help='Adam learning rate')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--log-every', type=int, default=10)
    p.add_argument('--eval-every', type=int, default=500)
    p.add_argument('--workers', type=int, default=0, help='batch-making processes')
    p.add_argument('--threads', type=int, default=2, help='torch threads')
    p.add_argument('--device', choices=('cpu', 'cuda'), default='cpu')
    p.add_argument('--supervised', action='store_true',
                   help="the paper's supervised baseline: L2 to the hand-made keypoints of "
                        "the folder's keypoints.json instead of the unsupervised losses")
    p.add_argument('--category-views', type=int, default=16,
                   help='views per mesh for the category file (0: no category, no '
                        'evaluation)')
    add_arguments(p)
    return p


def main(argv: list[str] | None = None) -> None:
    discover(parser().parse_args(argv))


if __name__ == '__main__':
    main()
