"""Turn a trained KeypointNet run into a category file, and evaluate it (seed 003, item 3).

    python -m training.discover_category --run runs/discover_stool --meshes ~/my_stools

``training.discover`` calls this at its end; run it alone to redo the category of a run
with other settings. It reads ``<run>/model.pt`` and ``summary.json`` (the split of the
meshes), reloads the meshes with the run's settings and:

1. predicts the keypoints on ``--views`` rendered views of every training mesh and builds
   the category (:mod:`training.keypoint_category`): ``<run>/<category>.json``, which
   ``perception_3dinn.skeleton.load_category`` reads as any shipped category, and
   ``<run>/keypoints.npz`` (per-mesh keypoints in metres, canonical frame);
2. evaluates on the held-out meshes (:mod:`training.keypointnet_eval`): relative-pose error
   of ``--pairs`` view pairs per mesh, 3D-SE, and, when the folder has hand-made keypoints,
   the distance and spread of each discovered keypoint to its nearest hand-made one:
   ``<run>/evaluation.json`` and ``pose_errors.png`` (the paper's histogram).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import time

import numpy as np
import torch
from tqdm import tqdm

from perception_3dinn.models.keypointnet import KeypointNetConfig, KeypointNetModel
from perception_3dinn.skeleton import load_category, save_category
from training.keypoint_category import (
    build_discovered_category,
    CategoryOptions,
    metres_per_unit,
    predict_all,
    to_canonical,
)
from training.keypointnet_eval import against_hand_made, hand_made_keypoints, pose_errors
from training.synth.meshes import load_mesh_folder, ViewConfig


def load_run(run: Path, device: str = 'cpu') -> tuple[KeypointNetModel, dict, dict]:
    """The model, checkpoint payload and summary of a ``training.discover`` run."""
    path = run / 'model.pt'
    if not path.is_file():
        raise SystemExit(f'{path} does not exist: train with python -m training.discover first')
    payload = torch.load(path, map_location=device, weights_only=False)
    if payload.get('kind') != 'keypointnet':
        raise SystemExit(f'{path} is not a KeypointNet checkpoint (kind {payload.get("kind")})')
    model = KeypointNetModel(KeypointNetConfig.from_dict(payload['config'])).to(device)
    model.load_state_dict(payload['state_dict'])
    summary_path = run / 'summary.json'
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    return model.eval(), payload, summary


def plot_errors(errors: np.ndarray, path: Path, title: str) -> Path:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(errors, bins=np.arange(0, 181, 5), color='tab:blue')
    ax.axvline(float(np.median(errors)), color='k', ls='--',
               label=f'median {np.median(errors):.1f} deg')
    ax.set_xlabel('relative rotation error (deg)')
    ax.set_ylabel('view pairs')
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def make_category(run: Path, meshes_dir: Path, up: str, metric_size: float | None,
                  views: int, pairs: int, options: CategoryOptions, seed: int = 0,
                  device: str = 'cpu', max_faces: int = 500_000) -> dict:
    """Steps 1 and 2 of the module docstring; returns the evaluation dictionary."""
    t0 = time.time()
    model, payload, summary = load_run(run, device)
    name = payload['category']
    view = ViewConfig(**{k: tuple(v) if isinstance(v, list) else v
                         for k, v in payload['view'].items()})
    meshes, report = load_mesh_folder(meshes_dir, up, metric_size, max_faces)
    if not meshes:
        raise SystemExit(f'no usable mesh in {meshes_dir}')
    by_name = {m.name: m for m in meshes}
    train = [by_name[n] for n in summary.get('train_meshes', []) if n in by_name] or meshes
    held = [by_name[n] for n in summary.get('val_meshes', []) if n in by_name]
    if summary.get('val_split') != 'held-out meshes':
        held = []
    if len(train) < 3:
        why = (f'{len(train)} training meshes: a category needs at least 3 (mean shape and '
               'bases); no category file written')
        tqdm.write(f'{name}: {why}')
        (run / 'evaluation.json').write_text(json.dumps({'category': name, 'skipped': why})
                                             + '\n')
        return {'category': name, 'skipped': why}
    tqdm.write(f'{name}: keypoints on {views} views of {len(train)} training meshes')
    median, _ = predict_all(model, train, view, views, seed, device)
    metres = metres_per_unit(train, metric_size)
    cat = build_discovered_category(
        name, median, train, metres, options, seed,
        metadata={'run': str(run), 'model_step': payload.get('step'), 'views': views,
                  'metric_size_m': metric_size})
    cat_path = save_category(cat, run / f'{name}.json')
    load_category(cat_path)  # read back as the runtime does
    np.savez_compressed(run / 'keypoints.npz', names=np.array([m.name for m in train]),
                        metres_per_unit=metres,
                        keypoints_m=np.stack([to_canonical(k, m, s) for k, m, s in
                                              zip(median, train, metres)]))
    result = {'category': name, 'category_file': str(cat_path), 'num_keypoints':
              cat.num_keypoints, 'num_bases': cat.num_bases,
              'explained_variance_total': cat.metadata['explained_variance_total'],
              'symmetric_pairs': cat.symmetric_pairs.tolist(), 'edges': cat.edges.tolist(),
              'size_prior_m': cat.size_prior_m, 'train_meshes': len(train),
              'skipped_meshes': len(report.skipped)}
    if held:
        ev = pose_errors(model, held, view, pairs, seed + 1, device)
        plot_errors(ev.pop('errors_deg'), run / 'pose_errors.png',
                    f'{name}: {ev["pairs"]} held-out view pairs')
        result['held_out'] = ev
        hand = hand_made_keypoints(meshes_dir, held)
        if hand is not None:
            disc, _ = predict_all(model, held, view, views, seed + 2, device, progress=False)
            names = json.loads((meshes_dir / 'keypoints.json').read_text()).get(
                'keypoint_names') or None
            result['against_hand_made'] = against_hand_made(disc, hand, names)
    else:
        result['held_out'] = None
        tqdm.write('no held-out meshes in this run: relative-pose evaluation skipped')
    result['wall_s'] = round(time.time() - t0, 1)
    (run / 'evaluation.json').write_text(json.dumps(result, indent=1) + '\n')
    tqdm.write(f'{name}: wrote {cat_path} (K={cat.num_bases}, '
               f'{len(cat.symmetric_pairs)} symmetric pairs, {len(cat.edges)} edges)')
    return result


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The category and evaluation options (shared with ``training.discover``)."""
    p.add_argument('--pairs', type=int, default=16, help='view pairs per held-out mesh')
    p.add_argument('--explained-variance', type=float, default=0.95,
                   help='keep the fewest bases explaining this fraction')
    p.add_argument('--max-bases', type=int, default=10)
    p.add_argument('--mirror-tol', type=float, default=0.05,
                   help='symmetric pair tolerance (keypoint diagonal = 1)')


def options_from(args: argparse.Namespace) -> CategoryOptions:
    return CategoryOptions(explained_variance=args.explained_variance,
                           max_bases=args.max_bases, mirror_tol=args.mirror_tol)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog='python -m training.discover_category',
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--run', required=True, type=Path, help='training.discover run folder')
    p.add_argument('--meshes', required=True, type=Path, help="the run's mesh folder")
    p.add_argument('--up', default='auto')
    p.add_argument('--metric-size', type=float, default=None)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--views', type=int, default=16, help='rendered views per mesh')
    add_arguments(p)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    res = make_category(args.run, args.meshes, args.up, args.metric_size, args.views,
                        args.pairs, options_from(args), args.seed)
    print(json.dumps({k: v for k, v in res.items() if k != 'against_hand_made'}, indent=1))


if __name__ == '__main__':
    main()
