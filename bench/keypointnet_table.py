"""Tables of keypoint discovery runs (issue 19, item 5): bench/results/keypointnet.md, .json.

    python bench/keypointnet_table.py \
        --run 'KeypointNet (unsupervised)=runs/discover_chair_unsup' \
        --run 'supervised (hand-made keypoints)=runs/discover_chair_sup' \
        --command 'the commands that made the runs' --out bench/results/keypointnet

Each run folder holds the ``evaluation.json`` and ``summary.json`` of ``training.discover``.
The published rows (cars, seed 003, table 1) are printed beside ours for scale, not as a
like-for-like comparison.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PUBLISHED = [('paper, cars: supervised', 16.268, 5.583, 0.240),
             ('paper, cars: supervised with pretrained O-Net', 13.961, 4.475, 0.197),
             ('paper, cars: KeypointNet', 11.310, 3.372, 0.171)]


def rows(runs: list[tuple[str, Path]]) -> list[dict]:
    out = []
    for label, run in runs:
        ev = json.loads((run / 'evaluation.json').read_text())
        summary = json.loads((run / 'summary.json').read_text())
        held = ev.get('held_out') or {}
        out.append({'method': label, 'run': str(run), 'steps': summary.get('step'),
                    'wall_s': summary.get('wall_s'), 'category': ev.get('category_file'),
                    'num_bases': ev.get('num_bases'),
                    'symmetric_pairs': len(ev.get('symmetric_pairs', [])), **held,
                    'against_hand_made': ev.get('against_hand_made')})
    return out


def markdown(table: list[dict], command: str) -> str:
    lines = ['# Keypoint discovery (seed 003): relative pose on held-out meshes', '',
             'Made by (see docs/discover.md):', '',
             *[f'    {c.strip()}' for c in command.split(';')],
             '', '| method | steps | pairs | mean (deg) | median (deg) | < 5 deg | < 15 deg | '
             '< 30 deg | 3D-SE | bases | mirror pairs |',
             '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |']
    for r in table:
        lines.append(f"| {r['method']} | {r['steps']} | {r.get('pairs', '-')} | "
                     f"{r.get('rot_err_mean_deg', float('nan')):.1f} | "
                     f"{r.get('rot_err_median_deg', float('nan')):.1f} | "
                     f"{r.get('under_5_deg', float('nan')):.2f} | "
                     f"{r.get('under_15_deg', float('nan')):.2f} | "
                     f"{r.get('under_30_deg', float('nan')):.2f} | "
                     f"{r.get('se_3d', float('nan')):.3f} | {r['num_bases']} | "
                     f"{r['symmetric_pairs']} |")
    for name, mean, median, se in PUBLISHED:
        lines.append(f'| {name} | 200k+ | 72,000 | {mean:.1f} | {median:.1f} | - | - | - | '
                     f'{se:.3f} | - | - |')
    lines += ['', '3D-SE: per-axis standard deviation of each keypoint in the object frame '
              'over the views of pairs under 90 degrees, object units (mesh spans [-1, 1]).']
    for r in table:
        if not r.get('against_hand_made'):
            continue
        lines += ['', f"## {r['method']}: each keypoint against its nearest hand-made one", '',
                  '| keypoint | nearest hand-made | mean distance | spread over meshes |',
                  '| --- | --- | --- | --- |']
        lines += [f"| {a['keypoint']} | {a['nearest']} | {a['mean_distance']:.3f} | "
                  f"{a['spread']:.3f} |" for a in r['against_hand_made']]
        lines += ['', "Units: the hand-made keypoints' bounding-box diagonal."]
    return '\n'.join(lines) + '\n'


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--run', action='append', required=True, help="'label=run folder'")
    p.add_argument('--command', default='', help="the commands, ';'-separated")
    p.add_argument('--out', type=Path, default=Path('bench/results/keypointnet'))
    args = p.parse_args(argv)
    runs = [(s.split('=', 1)[0], Path(s.split('=', 1)[1])) for s in args.run]
    table = rows(runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix('.json').write_text(json.dumps(
        {'runs': table, 'published': PUBLISHED, 'command': args.command}, indent=1) + '\n')
    text = markdown(table, args.command)
    args.out.with_suffix('.md').write_text(text)
    print(text)


if __name__ == '__main__':
    main()
