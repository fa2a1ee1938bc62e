"""Accuracy of a bag's (or a live node's) per-frame objects against the bag's ground truth:
matching by detection id or box overlap within a category, rotation (modulo the rotational
symmetries a category declares and the instance has), translation, PCK, and the errors
binned by distance, size, truncation, occlusion and viewpoint (`training.binned`); overall
and per category."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from training import binned


def same_category(a: Any, b: Any) -> bool:
    """Whether two records may be the same object: equal categories, or either unknown."""
    ca, cb = getattr(a, 'category', ''), getattr(b, 'category', '')
    return not ca or not cb or ca == cb


def match_objects(pred: list[Any], gt: list[Any]) -> list[tuple[Any, Any]]:
    """Pairs (prediction, ground truth) of the same category: same detection id, else the
    best box IoU > 0.3."""
    from perception_3dinn.tracking import box_iou

    pairs, used = [], set()
    rest = []
    gt_by_id = {str(g.track_id): g for g in gt}
    for p in pred:
        g = gt_by_id.get(p.detection_id) if p.detection_id else None
        if g is not None and g.track_id not in used and same_category(p, g):
            pairs.append((p, g))
            used.add(g.track_id)
        else:
            rest.append(p)
    free = [g for g in gt if g.track_id not in used]
    if rest and free:
        iou = box_iou(np.array([p.box for p in rest]), np.array([g.box for g in free]))
        iou = np.where([[same_category(p, g) for g in free] for p in rest], iou, -1.0)
        for i, p in enumerate(rest):
            j = int(np.argmax(iou[i]))
            if iou[i, j] > 0.3 and free[j].track_id not in used:
                pairs.append((p, free[j]))
                used.add(free[j].track_id)
    return pairs


def image_size(frames: list[Any]) -> tuple[int, int] | None:
    """(W, H) of a bag's camera_info, None without one."""
    info = frames[0].camera_info if frames else None
    return (int(info.width), int(info.height)) if info is not None else None


@dataclass
class _Match:
    """One matched pair, its ground truth already the closest equivalent under symmetry."""

    category: str
    R_p: np.ndarray
    R_g: np.ndarray
    t_p: np.ndarray
    t_g: np.ndarray
    geo: float  # rotation error, radians
    sigma: float  # predicted range sigma (NaN without a covariance)
    attrs: dict
    correct: np.ndarray | None  # PCK@0.1 hits of the visible keypoints (None: other layout)


def _category_of(name: str, categories: dict) -> Any:
    """The Category of a name (categories given, else the packaged file; None unknown)."""
    if name not in categories:
        from perception_3dinn.skeleton import load_category

        try:
            categories[name] = load_category(name)
        except (FileNotFoundError, KeyError, ValueError):
            categories[name] = None
    return categories[name]


def _matches(pairs: list[tuple[Any, Any]], category: Any,
             image_size: tuple[int, int] | None) -> list[_Match]:
    """Errors of the pairs of one category (modulo its symmetry when it declares one)."""
    from perception_3dinn import metrics, symmetry
    from perception_3dinn.inference.uncertainty import range_sigma

    R_p = np.array([p.R for p, _ in pairs], np.float64)
    R_g = np.array([g.R for _, g in pairs], np.float64)
    elements = category.symmetry_elements if category is not None else []
    kp_gt = [np.asarray(g.keypoints_2d, np.float64) for _, g in pairs]
    vis = [np.asarray(g.confidences) > 0.5 for _, g in pairs]
    if len(elements) > 1:
        obj = np.array([(np.asarray(g.keypoints_3d) - g.t) @ g.R for _, g in pairs])
        masks = symmetry.instance_masks(obj, elements)
        geo, idx = symmetry.rotation_error_modulo(R_p, R_g, elements, masks)
        R_g = R_g @ np.stack([e.S for e in elements])[idx]
        same = [i for i, (p, g) in enumerate(pairs)
                if p.keypoints_2d.shape == g.keypoints_2d.shape]
        if same:  # keypoint labels of the equivalent closest in the image
            kp = np.array([pairs[i][0].keypoints_2d for i in same], np.float64)
            best = symmetry.best_keypoint_element(
                kp, np.array([kp_gt[i] for i in same]), np.array([vis[i] for i in same]),
                elements, masks[same])
            moved_kp = symmetry.relabel(np.array([kp_gt[i] for i in same]), elements, best)
            moved_vis = symmetry.relabel(np.array([vis[i] for i in same]), elements, best)
            for j, i in enumerate(same):
                kp_gt[i], vis[i] = moved_kp[j], moved_vis[j]
    else:
        geo = metrics.geodesic_error(R_p, R_g)
    out = []
    for k, (p, g) in enumerate(pairs):
        attrs = {'box_height_px': float(g.box[3] - g.box[1])}
        gv = np.asarray(g.confidences) > 0.5
        inside = np.ones(len(g.keypoints_2d), bool)
        if image_size is not None:
            u, v = np.asarray(g.keypoints_2d, np.float64).T
            inside = (u >= -0.5) & (u < image_size[0] - 0.5) & (v >= -0.5) & \
                (v < image_size[1] - 0.5)
            attrs['truncation'] = float(1.0 - inside.mean())
        attrs['occlusion'] = float(1.0 - gv.sum() / max(inside.sum(), 1))
        correct = None
        if p.keypoints_2d.shape == g.keypoints_2d.shape:
            size = max(g.box[2] - g.box[0], g.box[3] - g.box[1], 1.0)
            err = metrics.keypoint_errors(p.keypoints_2d[None], kp_gt[k][None])[0]
            correct = (err < 0.1 * size)[vis[k]]
        out.append(_Match(getattr(g, 'category', '') or getattr(p, 'category', ''),
                          np.asarray(p.R, np.float64), R_g[k], np.asarray(p.t, np.float64),
                          np.asarray(g.t, np.float64), float(geo[k]),
                          range_sigma(p.covariance, p.t) if p.covariance is not None
                          else np.nan, attrs, correct))
    return out


def _summary(rows: list[_Match], n_gt: int, n_pred: int, full: bool) -> dict[str, Any]:
    """Counts and error statistics of matched rows; `full`: also per object and binned."""
    from perception_3dinn import metrics

    out: dict[str, Any] = {'ground_truth_objects': n_gt, 'predicted_objects': n_pred,
                           'matched': len(rows),
                           'recall': len(rows) / n_gt if n_gt else float('nan')}
    if not rows:
        return out
    R_p, R_g = np.array([r.R_p for r in rows]), np.array([r.R_g for r in rows])
    t_p, t_g = np.array([r.t_p for r in rows]), np.array([r.t_g for r in rows])
    geo = np.array([r.geo for r in rows])
    dist = np.linalg.norm(t_g, axis=1)
    terr = metrics.translation_error(t_p, t_g)
    out['rotation'] = metrics.summarise_angles(geo)
    out['azimuth'] = metrics.summarise_angles(metrics.azimuth_error(R_p, R_g))
    out['translation_m'] = {'median': float(np.median(terr)), 'mean': float(terr.mean())}
    out['translation_rel_distance_median'] = float(np.median(terr / dist))
    hits = [r.correct for r in rows if r.correct is not None]
    if hits:
        hits = np.concatenate(hits)
        out['pck@0.1'] = float(hits.mean()) if hits.size else float('nan')
    if not full:
        return out
    out['per_object'] = {'geodesic_deg': np.degrees(geo).tolist(), 'translation_m': terr.tolist()}
    view = binned.view_attributes(R_g, t_g)
    for key in ('box_height_px', 'truncation', 'occlusion'):
        values = [r.attrs[key] for r in rows if key in r.attrs]
        if len(values) == len(rows):
            view[key] = np.asarray(values)
    errors = binned.pose_errors(R_p, t_p, R_g, t_g, geo)
    sig = np.array([r.sigma for r in rows], np.float64)
    if np.all(np.isfinite(sig)):
        errors['inside_1sigma'] = (np.abs(np.linalg.norm(t_p, axis=1) - dist)
                                   <= sig).astype(np.float64)
    out['binned'] = binned.binned_errors(view, errors)
    return out


def accuracy(frames_pred: list[list[Any]], frames_gt: list[list[Any]],
             image_size: tuple[int, int] | None = None,
             categories: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Accuracy of per-frame predictions (ObjectRecord lists) against ground truth, also
    binned (`training.binned`; with `image_size` (W, H) the truncation proxy is the fraction
    of true keypoints outside the image).

    Predictions match ground truth of their own category only. A category (from
    `categories`, name -> Category, else its packaged file) that declares rotational
    symmetries has its rotation errors modulo those the instance has (its true keypoints,
    `perception_3dinn.symmetry`), and its PCK against the equivalent keypoint labels.

    Returns:
        the overall numbers, and when the ground truth names categories ``per_category``:
        name -> the same counts and medians (without per-object lists and bins) and
        ``rotation_modulo_symmetry`` (whether the category declares a symmetry).
    """
    cats = dict(categories or {})
    pairs_by: dict[str, list[tuple[Any, Any]]] = {}
    slots: dict[str, list[int]] = {}  # the pairs' places in frame order
    n_gt: dict[str, int] = {}
    n_pred: dict[str, int] = {}
    count = 0
    for pred, gt in zip(frames_pred, frames_gt):
        for g in gt:
            n_gt[getattr(g, 'category', '')] = n_gt.get(getattr(g, 'category', ''), 0) + 1
        for p in pred:
            n_pred[getattr(p, 'category', '')] = n_pred.get(getattr(p, 'category', ''), 0) + 1
        for p, g in match_objects(pred, gt):
            name = getattr(g, 'category', '') or getattr(p, 'category', '')
            pairs_by.setdefault(name, []).append((p, g))
            slots.setdefault(name, []).append(count)
            count += 1
    rows = {name: _matches(pairs, _category_of(name, cats) if name else None, image_size)
            for name, pairs in pairs_by.items()}
    ordered: list[Any] = [None] * count
    for name, rs in rows.items():
        for k, r in zip(slots[name], rs):
            ordered[k] = r
    out = _summary(ordered, sum(n_gt.values()), sum(n_pred.values()), full=True)
    names = [n for n in dict.fromkeys([*n_gt, *n_pred]) if n]
    if names:
        out['per_category'] = {}
        for name in names:
            cat = _category_of(name, cats)
            section = _summary(rows.get(name, []), n_gt.get(name, 0), n_pred.get(name, 0),
                               full=False)
            section['rotation_modulo_symmetry'] = bool(
                cat is not None and len(cat.symmetry_elements) > 1)
            out['per_category'][name] = section
    return out
