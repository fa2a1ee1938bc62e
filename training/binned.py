"""Pose errors binned by what makes an object hard: distance, size in the image, truncation,
occlusion, viewpoint (front, side, back) and elevation.

Used by ``training.evaluate`` (rendered benchmarks) and ``training.bag evaluate`` (bags).
Per bin: the object count, the median translation error as a fraction of the distance, the
median signed range ratio (estimated distance / true distance: above 1 is too far) with its
interquartile range, the median geodesic rotation error (modulo the category's symmetry,
when the caller applies it) and, where given, PCK@0.1 and the fraction of errors inside the
reported 1-sigma band.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from perception_3dinn.geometry import camera_position

INF = float('inf')
# name -> (edges, labels); a value v falls in bin i when edges[i] <= v < edges[i + 1]
NUMERIC_BINS = {
    'distance_m': ([0.0, 2.0, 3.0, 4.0, 5.0, INF],
                   ['<2 m', '2-3 m', '3-4 m', '4-5 m', '>=5 m']),
    'box_height_px': ([0.0, 48.0, 96.0, 192.0, 384.0, INF],
                      ['<48 px', '48-96 px', '96-192 px', '192-384 px', '>=384 px']),
    'truncation': ([0.0, 1e-3, 0.1, 0.4, 1.01], ['none', '<10 %', '10-40 %', '>40 %']),
    'occlusion': ([0.0, 0.05, 0.2, 0.5, 1.01], ['<5 %', '5-20 %', '20-50 %', '>50 %']),
    'elevation_deg': ([-90.0, 0.0, 10.0, 20.0, 30.0, 90.1],
                      ['<0 deg', '0-10 deg', '10-20 deg', '20-30 deg', '>=30 deg']),
}
VIEW_LABELS = ['front', 'side', 'back']  # camera azimuth about the object: <45, 45-135, >135


def view_attributes(R: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
    """Distance (m), view ('front'/'side'/'back') and camera elevation (deg) of objects.

    The camera's position in each object's frame (x forward, z up, origin on the floor)
    gives the azimuth of the view (0 = seen from the front) and its elevation above the
    object's floor point.

    Args:
        R: (B, 3, 3) true object -> camera rotations; t: (B, 3) true translations (m).
    """
    c = camera_position(R, t)
    az = np.degrees(np.abs(np.arctan2(c[:, 1], c[:, 0])))
    view = np.where(az < 45, 'front', np.where(az > 135, 'back', 'side'))
    el = np.degrees(np.arctan2(c[:, 2], np.hypot(c[:, 0], c[:, 1])))
    return {'distance_m': np.linalg.norm(np.asarray(t, np.float64), axis=1), 'view': view,
            'elevation_deg': el}


def _summary(sel: np.ndarray, errors: dict[str, np.ndarray]) -> dict:
    n = int(sel.sum())
    row: dict = {'count': n}
    if n == 0:
        return row
    row['translation_rel_median'] = float(np.median(errors['translation_rel'][sel]))
    ratio = errors['range_ratio'][sel]
    row['range_ratio_median'] = float(np.median(ratio))
    row['range_ratio_q25'] = float(np.percentile(ratio, 25))
    row['range_ratio_q75'] = float(np.percentile(ratio, 75))
    row['rotation_median_deg'] = float(np.degrees(np.median(errors['rotation'][sel])))
    for key in ('pck10', 'inside_1sigma', 'size_ratio', 'spread_ratio'):
        if key in errors:
            v = errors[key][sel]
            v = v[np.isfinite(v)]
            if len(v):
                row[f'{key}_median' if key.endswith('ratio') else key] = float(
                    np.median(v) if key.endswith('ratio') else np.mean(v))
    return row


def pose_errors(R_pred: np.ndarray, t_pred: np.ndarray, R_gt: np.ndarray,
                t_gt: np.ndarray, rotation_error: np.ndarray | None = None) -> dict:
    """Per-object errors: translation_rel, range_ratio, rotation (rad).

    Args:
        rotation_error: (B,) rad, when the caller computes it (e.g. modulo a symmetry);
            default the geodesic error.
    """
    from perception_3dinn import metrics

    t_pred = np.asarray(t_pred, np.float64)
    t_gt = np.asarray(t_gt, np.float64)
    dist = np.linalg.norm(t_gt, axis=1)
    rot = (metrics.geodesic_error(R_pred, R_gt) if rotation_error is None
           else np.asarray(rotation_error, np.float64))
    return {'translation_rel': np.linalg.norm(t_pred - t_gt, axis=1) / dist,
            'range_ratio': np.linalg.norm(t_pred, axis=1) / dist, 'rotation': rot}


def binned_errors(attributes: dict[str, np.ndarray], errors: dict[str, np.ndarray]) -> dict:
    """Tables of `errors` (arrays of B objects, see :func:`pose_errors`) per bin of each
    attribute present (names of NUMERIC_BINS, and 'view').

    Returns:
        {'all': row, attribute: [{'bin': label, **row}, ...]}.
    """
    n = len(errors['range_ratio'])
    out: dict = {'all': _summary(np.ones(n, bool), errors)}
    for name, (edges, labels) in NUMERIC_BINS.items():
        if name not in attributes:
            continue
        v = np.asarray(attributes[name], np.float64)
        rows = []
        for i, label in enumerate(labels):
            sel = (v >= edges[i]) & (v < edges[i + 1])
            rows.append({'bin': label, **_summary(sel, errors)})
        out[name] = rows
    if 'view' in attributes:
        v = np.asarray(attributes['view'])
        out['view'] = [{'bin': label, **_summary(v == label, errors)} for label in VIEW_LABELS]
    return out


def markdown(binned: dict, title: str = '') -> str:
    """The binned tables as markdown (one table per attribute)."""
    cols = [('count', 'n', '{:d}'), ('translation_rel_median', 'transl. err. / dist.', '{:.1%}'),
            ('range_ratio_median', 'range ratio', '{:.3f}'),
            ('rotation_median_deg', 'rot. err. (deg)', '{:.1f}'), ('pck10', 'PCK@0.1', '{:.3f}'),
            ('inside_1sigma', 'inside 1 sigma', '{:.0%}'),
            ('size_ratio_median', 'size ratio', '{:.3f}'),
            ('spread_ratio_median', '2D spread ratio', '{:.3f}')]
    present = [c for c in cols if any(c[0] in r for rows in binned.values()
                                      for r in (rows if isinstance(rows, list) else [rows]))]
    lines = [f'### {title}', ''] if title else []
    for name, rows in binned.items():
        rows = rows if isinstance(rows, list) else [{'bin': 'all objects', **rows}]
        lines.append('| ' + name + ' | ' + ' | '.join(c[1] for c in present) + ' |')
        lines.append('| --- ' * (len(present) + 1) + '|')
        for r in rows:
            cells = [c[2].format(r[c[0]]) if c[0] in r else '-' for c in present]
            lines.append(f"| {r['bin']} | " + ' | '.join(cells) + ' |')
        lines.append('')
    return '\n'.join(lines)


def plot(binned: dict, path: str | Path, title: str = '') -> Path:
    """One panel per attribute: translation error and |range ratio - 1| (left axis, %) and
    rotation error (right axis, deg) per bin, with the counts under the labels."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    names = [k for k in binned if k != 'all']
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        rows = [r for r in binned[name] if r['count']]
        x = np.arange(len(rows))
        te = [100 * r['translation_rel_median'] for r in rows]
        rr = [100 * (r['range_ratio_median'] - 1) for r in rows]
        ax.bar(x - 0.2, te, 0.4, label='transl. err. % dist.', color='tab:blue')
        ax.bar(x + 0.2, rr, 0.4, label='range ratio - 1 (%)', color='tab:orange')
        ax.axhline(0, color='k', lw=0.5)
        ax.set_xticks(x, [f"{r['bin']}\nn={r['count']}" for r in rows], fontsize=7)
        ax.set_title(name, fontsize=9)
        ax2 = ax.twinx()
        ax2.plot(x, [r['rotation_median_deg'] for r in rows], 'k.-', label='rot. err. (deg)')
        ax2.set_ylim(bottom=0)
        if name == names[0]:
            ax.set_ylabel('%')
            ax.legend(fontsize=7, loc='upper left')
            ax2.legend(fontsize=7, loc='upper right')
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
