"""Stage ``video`` (seed 001, sec. 3.2): semi-supervised training on unlabelled video clips.

From a fresh clone (a few minutes on 2 CPU cores; real runs use more data and steps)::

    python -m training.synthesize videos --count 6 --out datasets/chair_videos_demo \\
        --seed 11 --frames 24 --size 128 --objects 1 2
    python -m training.synthesize images --count 64 --out datasets/chair_images_demo \\
        --seed 12 --no-voxels
    python -m training.train video --init perception_3dinn/data/models/chair \\
        --videos datasets/chair_videos_demo --images datasets/chair_images_demo \\
        --out runs/video_demo --clip-lengths 3,7 --steps-per-length 20 --clips 2 --batch 4
    python -m training.export --checkpoint runs/video_demo/model.pt --out runs/video_demo/export

A robot's own recordings (any rosbag2 with images, camera_info and Detection2DArray; tracks
and the motion report: :mod:`training.video_data`)::

    python -m training.train video --init perception_3dinn/data/models/chair \\
        --bag my_robot.bag [--bag another.bag] --images datasets/chair_images_demo \\
        --out runs/video_bag --clip-lengths 3,7 --val-fraction 0.3

With ``--bag``, the last ``--val-fraction`` of every track's frames validate and the best
model of a length is the one with the lowest video loss (no labels in a user's bag).

Data. ``--videos`` is a rendered video set (``training.synthesize videos``) of which only the
frames and the objects' boxes are used (3D labels withheld; the held-out validation videos'
structure labels are read for model selection only). Each object's track, the frames where it
is present with a box at least ``--min-box`` pixels wide and high, is cropped as the runtime
crops a detection and cut into clips of L consecutive frames (``--clip-stride``, default L).
Tracks shorter than L are skipped and counted (a message and a ``kind: data`` log record per
clip length). The last ``--val-fraction`` of the videos are held out. ``--images`` is a
labelled image set; its 2D keypoints give the mixed-in loss of Eq. 2 (plus, as in stage 3,
a heatmap loss), on augmented crops.

Training (sec. 3.2.3). Every step takes ``--clips`` clips and ``--batch`` labelled images
(``rng(seed, step)``) through the whole network at once. Alternating updates: the per-clip
latents are solved in closed form with the network fixed (median, or the mean with the L2
relaxation for the first ``--l2-steps`` steps, footnote 1), then one network step is taken
with the latents fixed (:mod:`training.video_losses`; weights ``--w-*``, defaults converted
from the paper's). Curriculum over ``--clip-lengths``, ``--steps-per-length`` steps each
(``--steps`` is set to their product; ``--workers`` is not used: the clips' crops are made
once at start); each length restarts the optimiser and the learning-rate
schedule from the best checkpoint of the length before (``best_L<L>.pt``).

Validation, at the start and the end of each length and every ``--eval-every`` steps, on the
held-out clips of the current length: the video loss (the weighted sum of the video terms)
and, where the validation videos carry structure labels (synthetic ones do), the structure
error of every frame (RMSE after normalisation, ``perception_3dinn.metrics``). The best model
of a length, its starting point included, is the one with the lowest mean structure RMSE
where labels exist, else the lowest video loss (``selection`` in the summary). Resumable
(``--resume`` from ``last.pt``); writes ``log.jsonl``, ``loss.png``, ``summary.json`` and
``model.pt`` (the best of the last length, an INN3D checkpoint as stage 3 writes, for
``training.export``).
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path
import time

import numpy as np
import torch
from tqdm import tqdm

from perception_3dinn import metrics
from perception_3dinn.codec import HeatmapCodec
from perception_3dinn.models import (
    category_record,
    INN3D,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from perception_3dinn.skeleton import Category
from training.inn_data import CropSampler, data_category
from training.losses import cosine_lr, heatmap_loss
from training.train import finish, load_images, pick_device, resume, Run, sample_rows
from training.video_data import (  # noqa: F401 (track_runs, usable_frames: public API)
    cut_clips,
    load_bag_tracks,
    load_tracks,
    split_tracks,
    track_runs,
    usable_frames,
)
from training.video_losses import keypoint_loss, video_terms, VideoLossWeights, weighted_sum


def outputs_of(model: INN3D, x: torch.Tensor) -> tuple:
    """The model's five outputs and the projection-layer keypoints of a batch."""
    out = model(x)
    return out, model.project(*out[1:])


def step_terms(model: INN3D, tracks: dict, pick: np.ndarray, images: dict,
               crops: CropSampler, codec: HeatmapCodec, method: str) -> dict:
    """Unweighted loss terms of one step: the clips ``pick`` (C, L) of ``tracks`` and a
    labelled image batch (:meth:`CropSampler.batch`) through the network in one batch; the
    latents solved from this forward pass, i.e. with the network fixed."""
    device = next(model.parameters()).device
    x = np.concatenate([crops.normalise(tracks['crops'][pick.reshape(-1)]), images['input']])
    out, proj = outputs_of(model, torch.from_numpy(x).to(device))
    nv = pick.size
    terms, _ = video_terms(tuple(o[:nv] for o in out), proj[:nv],
                           torch.from_numpy(tracks['scale'][pick]).to(device), codec, method)
    terms['keypoints'] = keypoint_loss(
        proj[nv:], torch.from_numpy(images['keypoints']).float().to(device),
        torch.from_numpy(images['labelled']).to(device), model.config.input_size)
    terms['heatmap'] = heatmap_loss(out[0][nv:], torch.from_numpy(images['heatmaps']).to(device))
    return terms


@torch.no_grad()
def evaluate(model: INN3D, category: Category, val: dict, clips: np.ndarray, owner: np.ndarray,
             crops: CropSampler, codec: HeatmapCodec, weights: VideoLossWeights,
             batch: int = 64) -> dict:
    """Video loss (and structure error where labelled) on held-out clips, model in eval."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    rows = clips.reshape(-1)
    parts = []
    for i in range(0, len(rows), batch):
        x = torch.from_numpy(crops.normalise(val['crops'][rows[i:i + batch]])).to(device)
        out, proj = outputs_of(model, x)
        parts.append([o.cpu() for o in out] + [proj.cpu()])
    cat = [torch.cat([p[j] for p in parts]) for j in range(6)]
    scale = torch.from_numpy(val['scale'][clips])
    terms, _ = video_terms(tuple(cat[:5]), cat[5], scale, codec)
    res = {f'val_{k}': float(v) for k, v in terms.items()}
    res['video_loss'] = float(weighted_sum(terms, weights))
    if 'structure' in val:
        pred = category.structure(cat[1].numpy().astype(np.float64))
        gt = category.structure(np.repeat(val['structure'][owner], clips.shape[1], axis=0))
        rmse = metrics.structure_rmse(pred, gt)
        res['structure_rmse_mean'] = float(rmse.mean())
        res['structure_ar'] = metrics.average_recall(rmse)
    model.train(was)
    return res


def validate(run: Run, model: INN3D, category: Category, split: tuple, evaluation: tuple,
             key: str, best: dict, length: int, step: int) -> tuple[dict, dict]:
    """Evaluate after ``step`` steps on the held-out ``split`` = (tracks, clips, owner), log
    it, and save ``best_L<length>.pt`` when ``key`` improves on ``best``; returns the
    results and the (updated) best ``{score, step}``."""
    crops, codec, weights = evaluation
    res = evaluate(model, category, *split, crops, codec, weights)
    if res[key] < best['score']:
        best = {'score': res[key], 'step': step}
        save_checkpoint(run.out / f'best_L{length}.pt', model, category_record(category),
                        'video', step, None, res)
    run.log({'kind': 'val', 'step': step, 'clip_length': length, **res})
    tqdm.write(f'step {step} (L={length}): {key} {res[key]:.4f}, best {best["score"]:.4f} '
               f'at step {best["step"]}')
    return res, best


def selection_key(val: dict) -> str:
    """The validation number that picks the best model of a clip length (lower is better)."""
    return 'structure_rmse_mean' if 'structure' in val else 'video_loss'


def clip_lengths(text: str) -> tuple:
    """``'3,7,11,15'`` -> (3, 7, 11, 15)."""
    try:
        out = tuple(int(v) for v in text.split(',') if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected integers like 3,7,11,15, got {text!r}') \
            from None
    if not out or any(v < 2 for v in out):
        raise argparse.ArgumentTypeError(f'clip lengths must be at least 2, got {text!r}')
    return out


def clip_report(train: dict, val: dict, lengths: tuple, stride: int) -> dict:
    """Clip counts of every length (:func:`cut_clips` reports, ``val_*`` for the held-out
    videos); SystemExit before any training when a length has no training or no validation
    clip."""
    report = {}
    for length in lengths:
        rep = cut_clips(train['tracks'], length, stride)[2]
        vrep = cut_clips(val['tracks'], length)[2]
        if not rep['clips'] or not vrep['clips']:
            raise SystemExit(f'clip length {length}: {rep["clips"]} training and '
                             f'{vrep["clips"]} validation clips (tracks shorter than '
                             f'{length} frames are skipped); use shorter --clip-lengths or '
                             'longer videos')
        report[length] = {**rep, 'val_clips': vrep['clips'],
                          'val_short_tracks_skipped': vrep['short_tracks_skipped']}
    return report


def _optimizer(model: INN3D, lr: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)


def train_video(args: argparse.Namespace) -> Path:
    """Run the stage; returns ``model.pt`` (or ``last.pt`` when ``--stop-after`` ended it)."""
    lengths, spl = args.clip_lengths, args.steps_per_length
    if spl < 1:
        raise SystemExit('--steps-per-length must be at least 1')
    args.steps = spl * len(lengths)
    category = data_category(args)
    run = Run(args.out, 'video')
    init = Path(args.init)
    model, _ = load_checkpoint(init / 'model.pt' if init.is_dir() else init)
    device = pick_device(args.device)
    model.to(device).train()
    cfg = model.config
    codec = HeatmapCodec(cfg.input_size, cfg.stride, cfg.sigma)
    crops = CropSampler(category, cfg.input_size, args.pad, cfg.sigma, cfg.mean, cfg.std)
    weights = VideoLossWeights(**{f.name: getattr(args, f'w_{f.name}')
                                  for f in fields(VideoLossWeights)})
    images = load_images(args.images, limit=args.limit)
    common = (cfg.input_size, args.pad, args.min_box)
    bag_report = {}
    if bool(args.videos) == bool(args.bag):
        raise SystemExit('give either --videos (a rendered video set) or --bag (rosbags)')
    if args.bag:
        data, bag_report = load_bag_tracks(args.bag, *common, args.frame_stride,
                                           args.min_motion, args.max_gap)
        train, val = split_tracks(data, args.val_fraction)
        for rep in bag_report['bags']:
            tqdm.write(f'{rep["bag"]}: {rep["frames"]} frames (stride {rep["stride"]}), '
                       f'{rep["detections"]} detections, {rep["tracks"]} tracks of '
                       f'{rep["track_frames"]} frames ({rep["bridged_frames"]} missed frames '
                       f'bridged), {rep["static_tracks"]} static, '
                       f'{rep["small_boxes"]} boxes under --min-box')
    else:
        from training.synth.dataset import ShardDataset

        n_videos = len(ShardDataset(args.videos))
        n_val = max(1, int(round(args.val_fraction * n_videos)))
        if n_videos - n_val < 1:
            raise SystemExit(f'{args.videos}: {n_videos} videos; need at least 2 (train + val)')
        train = load_tracks(args.videos, range(n_videos - n_val), *common)
        val = load_tracks(args.videos, range(n_videos - n_val, n_videos), *common, labels=True)
    report = clip_report(train, val, lengths, args.clip_stride)
    opt = _optimizer(model, args.lr)
    step = resume(run, model, opt, args.resume)
    if args.bag:
        run.log({'kind': 'bags', 'step': step, **bag_report})
    best = {'score': float('inf'), 'step': -1}
    if step:
        best = read_checkpoint(run.out / 'last.pt').get('extra', {}).get('best', best)
    stop = min(args.steps, args.stop_after) if args.stop_after else args.steps
    bar = tqdm(total=args.steps, initial=step, desc='video')
    t0 = time.time()
    key = selection_key(val)
    evaluation = (crops, codec, weights)
    while step < stop:
        si = step // spl
        length, start = lengths[si], si * spl
        clips, _, rep = cut_clips(train['tracks'], length, args.clip_stride)
        vclips, vowner, vrep = cut_clips(val['tracks'], length)
        if step == start:
            run.log({'kind': 'data', 'step': start, 'clip_length': length,
                     **report[length]})
            bar.write(f'clip length {length}: {rep["clips"]} clips from {rep["tracks"]} '
                      f'tracks; {rep["short_tracks_skipped"]} tracks shorter than {length} '
                      f'frames skipped ({rep["short_track_frames"]} frames); '
                      f'{vrep["clips"]} validation clips')
            if si > 0:
                prev = read_checkpoint(run.out / f'best_L{lengths[si - 1]}.pt')
                model.load_state_dict(prev['state_dict'])
            opt = _optimizer(model, args.lr)
            # the starting point is a candidate too: a length never ends worse than it began
            _, best = validate(run, model, category, (val, vclips, vowner), evaluation, key,
                               {'score': float('inf'), 'step': -1}, length, start)
        bar.set_description(f'video L={length}')
        first = step
        for step in range(first, min(start + spl, stop)):
            for group in opt.param_groups:
                group['lr'] = cosine_lr(step - start, spl, args.lr, warmup=min(50, spl // 5))
            rng = np.random.default_rng([args.seed, step])
            pick = clips[rng.integers(0, len(clips), args.clips)]
            rows = sample_rows(images, rng.integers(0, len(images['image']), args.batch))
            method = 'mean' if step < args.l2_steps else 'median'
            terms = step_terms(model, train, pick, crops.batch(rows, rng), crops, codec,
                               method)
            loss = weighted_sum(terms, weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            if step % args.log_every == 0:
                run.log({'kind': 'train', 'step': step, 'loss': loss.item(),
                         **{k: v.item() for k, v in terms.items()}, 'clip_length': length,
                         'l2': int(method == 'mean'), 'time_s': round(time.time() - t0, 1)})
                bar.set_postfix(loss=f'{loss.item():.3f}')
            bar.update(1)
            if (step + 1) % args.eval_every == 0 or step + 1 == start + spl:
                res, best = validate(run, model, category, (val, vclips, vowner), evaluation,
                                     key, best, length, step + 1)
                save_checkpoint(run.out / 'last.pt', model, category_record(category), 'video',
                                step + 1, opt, res, {'best': best, 'clip_length': length})
                run.plot()
        step += 1
    bar.close()
    if step < args.steps:
        return run.out / 'last.pt'
    final = read_checkpoint(run.out / f'best_L{lengths[-1]}.pt')
    model.load_state_dict(final['state_dict'])
    res = dict(final['metrics'], selection=key)
    return finish(run, model, category, 'video', args.steps, res,
                  {'init': str(args.init), 'videos': str(args.videos),
                   'bags': [str(b) for b in args.bag or []],
                   'images': str(args.images), 'pad': args.pad, 'clip_lengths': list(lengths),
                   'steps_per_length': spl, 'weights': weights.to_dict(),
                   'data': {str(k): v for k, v in report.items()}})


def add_arguments(sp: argparse.ArgumentParser) -> None:
    """The stage's own options (the common ones come from ``training.train``)."""
    sp.add_argument('--init', required=True,
                    help='starting model: an INN3D checkpoint or a model folder with model.pt')
    sp.add_argument('--videos', default=None,
                    help='rendered video set (frames + boxes used); or --bag')
    sp.add_argument('--bag', action='append', default=None,
                    help='rosbag2 with images, camera_info and Detection2DArray (repeat for '
                         'several); tracks follow the detection ids (training.video_data)')
    sp.add_argument('--frame-stride', type=int, default=1,
                    help='--bag: keep every N-th image')
    sp.add_argument('--max-gap', type=int, default=2,
                    help='--bag: missed detections up to this many frames in a row are '
                         'bridged (longer gaps end the track)')
    sp.add_argument('--min-motion', type=float, default=0.01,
                    help='--bag: tracks whose box moves less than this fraction of its size '
                         'per frame count as static (reported; all static: a warning)')
    sp.add_argument('--images', required=True, help='labelled rendered image set (2D loss)')
    sp.add_argument('--clip-lengths', type=clip_lengths, default=(3, 7, 11, 15),
                    help='curriculum of clip lengths, e.g. 3,7,11,15')
    sp.add_argument('--steps-per-length', type=int, default=500,
                    help='optimiser steps at each clip length (--steps is set from it)')
    sp.add_argument('--clips', type=int, default=4, help='clips per step')
    sp.add_argument('--clip-stride', type=int, default=0,
                    help='frames between clip starts along a track (0: the clip length)')
    sp.add_argument('--val-fraction', type=float, default=0.2,
                    help='fraction of the videos (--bag: of the tracks), the last ones, held '
                         'out for validation')
    sp.add_argument('--min-box', type=float, default=16.0,
                    help='smallest box side (pixels) for a frame to join a track')
    sp.add_argument('--pad', type=float, default=0.15, help='crop padding (as the runtime)')
    sp.add_argument('--limit', type=int, default=0, help='use only the first N images')
    sp.add_argument('--l2-steps', type=int, default=100,
                    help='first steps with mean latents and the L2 relaxation (footnote 1)')
    for f in fields(VideoLossWeights):
        sp.add_argument(f'--w-{f.name}', type=float, default=f.default,
                        help=f'weight of the {f.name} term (default {f.default:.4g})')
