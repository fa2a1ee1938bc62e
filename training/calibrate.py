"""Calibrate the pose covariance on full-frame selection sets (never on the benchmark).

    python -m training.calibrate --data datasets/frames_640_sel datasets/frames_1280_sel \
        --out bench/results/covariance_calibration.json [--model MANIFEST]

The pipeline runs once per set with the covariance uncalibrated (inflation 1, no truncation
term). The range error |(|t_est| - |t_true|)| of each object is then compared with the range
standard deviation the covariance gives (`inference.uncertainty.range_sigma`), and two
numbers are chosen so that 68 % of the errors fall inside 1 sigma:

* ``covariance_inflation`` k, on the objects whose box touches no image edge: the 68th
  percentile of (error / sigma) squared;
* ``truncation_sigma`` s, on the objects whose box touches an edge: the relative range
  uncertainty that, added in quadrature (sigma^2 = k (sigma_fit^2 + s^2 |t|^2)), brings their
  coverage to 68 %.

The result is printed and written as JSON; the defaults of ``PipelineConfig`` (and the
node's pose.covariance_inflation / pose.truncation_sigma) are set from it by hand.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

TARGET = 0.6827  # a Gaussian's mass within 1 sigma


def _coverage(err: np.ndarray, var: np.ndarray) -> float:
    return float(np.mean(err <= np.sqrt(var)))


def calibrate(per_object: list[dict]) -> dict:
    """k and s (module docstring) from per-object arrays of `frame_eval` runs made with
    inflation 1 and truncation_sigma 0."""
    err = np.concatenate([np.abs(np.linalg.norm(p['t_pred'], axis=1)
                                 - np.linalg.norm(p['t_gt'], axis=1)) for p in per_object])
    base = np.concatenate([p['range_sigma'] for p in per_object]) ** 2
    dist2 = np.concatenate([np.sum(p['t_pred'] ** 2, axis=1) for p in per_object])
    border = np.concatenate([p['touches_border'] for p in per_object]).astype(bool)
    inner = ~border
    k = float(np.percentile(err[inner] / np.sqrt(base[inner]), 100 * TARGET) ** 2)
    lo, hi = 0.0, 5.0
    for _ in range(60):
        s = 0.5 * (lo + hi)
        if _coverage(err[border], k * (base[border] + s * s * dist2[border])) < TARGET:
            lo = s
        else:
            hi = s
    s = 0.5 * (lo + hi)
    var = k * (base + np.where(border, s * s * dist2, 0.0))
    return {'covariance_inflation': k, 'truncation_sigma': s, 'objects': int(len(err)),
            'objects_touching_an_edge': int(border.sum()),
            'coverage_uncalibrated': _coverage(err, base),
            'coverage_calibrated': _coverage(err, var),
            'coverage_calibrated_inner': _coverage(err[inner], var[inner]),
            'coverage_calibrated_border': _coverage(err[border], var[border])}


def main(argv: list[str] | None = None) -> None:
    from training.frame_eval import evaluate_scenes

    p = argparse.ArgumentParser(prog='python -m training.calibrate', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--data', nargs='+', required=True, help='full-frame selection sets')
    p.add_argument('--out', type=Path, required=True, help='JSON file to write')
    p.add_argument('--model', default=None, help='model manifest (default: packaged)')
    p.add_argument('--work', type=Path, default=Path('out/calibrate'),
                   help='folder for the evaluation runs')
    args = p.parse_args(argv)
    per = []
    for data in args.data:
        run = args.work / Path(data).name
        evaluate_scenes(data, run, args.model, overrides={'covariance_inflation': 1.0,
                                                          'truncation_sigma': 0.0})
        per.append(dict(np.load(run / 'per_object.npz')))
    result = {'data': [str(d) for d in args.data], 'model': args.model or 'packaged',
              **calibrate(per)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + '\n')
    print(json.dumps(result, indent=1))


if __name__ == '__main__':
    main()
