"""Seed 000, Fig. 6: the 3D interpreter against the optimisation method on synthetic heatmaps
at increasing salt-and-pepper noise; and the effect of stage-3 fine-tuning (before/after).

    python -m training.fig6 --checkpoint runs/interpreter/model.pt --out bench/results/fig6
    python -m training.fig6 --checkpoint ... --out ... \
        --before bench/results/chair_eval_stage12/metrics.json \
        --after bench/results/chair_eval/metrics.json

Each noise level uses the same ``--count`` objects (fixed seed) from the heatmap sampler with
otherwise clean heatmaps; the optimisation method (and PnP of the mean shape) get the
arg-max keypoints of the noisy heatmaps (sub-pixel, ``HeatmapCodec.decode``) with their
peak values as confidences, the true crop focal as initialisation, and the crop centre as the
principal point (the sampler's camera). Writes ``fig6.json``, ``fig6.png`` and, with
``--before``/``--after``, ``finetune.png``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from perception_3dinn import metrics
from perception_3dinn.codec import HeatmapCodec
from perception_3dinn.models import load_checkpoint
from perception_3dinn.skeleton import load_category
from training.baselines import fit_optimisation, pnp_mean_shape
from training.synth.heatmap_sampler import (
    add_salt_pepper,
    HeatmapSampler,
    NoiseConfig,
    SamplerConfig,
)

LEVELS = (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)


def run_fig6(checkpoint: str | Path, count: int = 500, levels=LEVELS, seed: int = 6,
             baselines: bool = True) -> dict:
    """Structure average recall and azimuth error per noise level and method."""
    model, payload = load_checkpoint(checkpoint)
    category = load_category(payload['category']['name'])
    size = model.config.input_size
    sampler = HeatmapSampler(category, SamplerConfig(input_size=size), seed=seed)
    base = sampler.sample(count, NoiseConfig.clean())
    codec = HeatmapCodec(size, model.config.stride, model.config.sigma)
    c = 0.5 * (size - 1)
    rows = []
    for level in tqdm(levels, desc='noise levels'):
        rng = np.random.default_rng([seed, int(level * 1e4)])
        maps = add_salt_pepper(base['clean_heatmaps'], level, rng)
        with torch.no_grad():
            outs = [model.interpreter(torch.from_numpy(maps[i:i + 256]))
                    for i in range(0, count, 256)]
        alpha = np.concatenate([o[0].numpy() for o in outs]).astype(np.float64)
        R = np.concatenate([o[1].numpy() for o in outs]).astype(np.float64)
        est = {'3D-INN': (alpha, R)}
        if baselines:
            kp, conf = codec.decode(maps)
            for name, fn in (('optimisation', fit_optimisation), ('PnP mean shape',
                                                                   pnp_mean_shape)):
                r = fn(category, kp, conf, base['focal'], c)
                est[name] = (r.alpha, r.rotation)
        for name, (a, rot) in est.items():
            rmse = metrics.structure_rmse(category.structure(a), base['points3d'])
            az = metrics.azimuth_error(rot, base['rotation'])
            rows.append({'level': level, 'method': name,
                         'structure_average_recall': metrics.average_recall(rmse),
                         'azimuth_median_deg': float(np.degrees(np.median(az))),
                         'azimuth_acc_pi6': float(np.mean(az <= np.pi / 6))})
    return {'checkpoint': str(checkpoint), 'count': count, 'seed': seed,
            'levels': list(levels), 'rows': rows}


def plot_fig6(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    methods = sorted({r['method'] for r in result['rows']})
    for m in methods:
        rs = [r for r in result['rows'] if r['method'] == m]
        x = [100 * r['level'] + 0.05 for r in rs]
        axes[0].plot(x, [r['structure_average_recall'] for r in rs], marker='o', label=m)
        axes[1].plot(x, [r['azimuth_acc_pi6'] for r in rs], marker='o', label=m)
    axes[0].set_title('(a) 3D structure: average recall')
    axes[1].set_title('(b) viewpoint: azimuth accuracy (error < 30 deg)')
    for ax in axes:
        ax.set_xscale('log')
        ax.set_xlabel('salt-and-pepper noise (% of heatmap pixels, + 0.05, log scale)')
        ax.set_ylim(0, 1.02)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_finetune(before: dict, after: dict, path: Path) -> dict:
    """Recall curves and key numbers of the model before/after stage 3."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    th = np.asarray(after['rmse_thresholds'])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    table = {}
    for label, res in (('stages 1+2 (w/o FT)', before), ('after stage 3 (FT)', after)):
        m = res['methods']['3d-inn']
        axes[0].plot(th, m['structure_recall_curve'],
                     label=f"{label}: AR {m['structure_average_recall']:.3f}")
        table[label] = {'structure_average_recall': m['structure_average_recall'],
                        'azimuth_median_deg': m['azimuth_median_deg'],
                        'geodesic_median_deg': m['geodesic_median_deg'],
                        'pck10': res['keypoints_2d']['pck10']}
    axes[0].set_xlabel('structure RMSE threshold')
    axes[0].set_ylabel('recall')
    axes[0].legend()
    axes[0].set_title('3D structure on the benchmark')
    keys = ['azimuth_median_deg', 'geodesic_median_deg']
    x = np.arange(len(keys))
    for j, (label, row) in enumerate(table.items()):
        axes[1].bar(x + 0.4 * j, [row[k] for k in keys], width=0.4, label=label)
    axes[1].set_xticks(x + 0.2, keys)
    axes[1].set_ylabel('degrees')
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return table


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog='python -m training.fig6', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--checkpoint', required=True, help='checkpoint with a trained interpreter')
    p.add_argument('--out', required=True, help='output folder')
    p.add_argument('--count', type=int, default=500, help='objects per noise level')
    p.add_argument('--seed', type=int, default=6, help='sampler seed')
    p.add_argument('--before', default='', help='evaluate.py metrics.json before stage 3')
    p.add_argument('--after', default='', help='evaluate.py metrics.json after stage 3')
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = run_fig6(args.checkpoint, args.count, seed=args.seed)
    if args.before and args.after:
        result['finetune'] = plot_finetune(json.loads(Path(args.before).read_text()),
                                           json.loads(Path(args.after).read_text()),
                                           out / 'finetune.png')
    (out / 'fig6.json').write_text(json.dumps(result, indent=1) + '\n')
    plot_fig6(result, out / 'fig6.png')
    lines = ['| noise | method | structure AR | azimuth median (deg) | azimuth acc pi/6 |',
             '| --- | --- | --- | --- | --- |']
    for r in result['rows']:
        lines.append(f"| {100 * r['level']:g} % | {r['method']} | "
                     f"{r['structure_average_recall']:.3f} | {r['azimuth_median_deg']:.1f} | "
                     f"{r['azimuth_acc_pi6']:.3f} |")
    (out / 'fig6.md').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
