"""Accuracy of a bag's (or a live node's) per-frame objects against the bag's ground truth:
matching by detection id or box overlap, rotation, translation, PCK, and the errors binned by
distance, size, truncation, occlusion and viewpoint (`training.binned`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from training import binned


def match_objects(pred: list[Any], gt: list[Any]) -> list[tuple[Any, Any]]:
    """Pairs (prediction, ground truth): same detection id, else the best box IoU > 0.3."""
    from perception_3dinn.tracking import box_iou

    pairs, used = [], set()
    rest = []
    gt_by_id = {str(g.track_id): g for g in gt}
    for p in pred:
        g = gt_by_id.get(p.detection_id) if p.detection_id else None
        if g is not None and g.track_id not in used:
            pairs.append((p, g))
            used.add(g.track_id)
        else:
            rest.append(p)
    free = [g for g in gt if g.track_id not in used]
    if rest and free:
        iou = box_iou(np.array([p.box for p in rest]), np.array([g.box for g in free]))
        for i, p in enumerate(rest):
            j = int(np.argmax(iou[i]))
            if iou[i, j] > 0.3 and free[j].track_id not in used:
                pairs.append((p, free[j]))
                used.add(free[j].track_id)
    return pairs


def accuracy(frames_pred: list[list[Any]], frames_gt: list[list[Any]],
             image_size: tuple[int, int] | None = None) -> dict[str, Any]:
    """Accuracy of per-frame predictions (ObjectRecord lists) against ground truth, also
    binned (`training.binned`; with `image_size` (W, H) the truncation proxy is the fraction
    of true keypoints outside the image)."""
    from perception_3dinn import metrics
    from perception_3dinn.inference.uncertainty import range_sigma

    rot, trans, dist, kp_pred, kp_gt, vis, size = [], [], [], [], [], [], []
    attrs: dict[str, list] = {'box_height_px': [], 'truncation': [], 'occlusion': []}
    sigmas = []
    n_gt = sum(len(g) for g in frames_gt)
    n_pred = sum(len(p) for p in frames_pred)
    for pred, gt in zip(frames_pred, frames_gt):
        for p, g in match_objects(pred, gt):
            rot.append((p.R, g.R))
            trans.append((p.t, g.t))
            dist.append(float(np.linalg.norm(g.t)))
            sigmas.append(range_sigma(p.covariance, p.t) if p.covariance is not None
                          else np.nan)
            attrs['box_height_px'].append(float(g.box[3] - g.box[1]))
            gv = np.asarray(g.confidences) > 0.5
            inside = np.ones(len(g.keypoints_2d), bool)
            if image_size is not None:
                u, v = np.asarray(g.keypoints_2d, np.float64).T
                inside = (u >= -0.5) & (u < image_size[0] - 0.5) & (v >= -0.5) & \
                    (v < image_size[1] - 0.5)
                attrs['truncation'].append(float(1.0 - inside.mean()))
            attrs['occlusion'].append(float(1.0 - gv.sum() / max(inside.sum(), 1)))
            if p.keypoints_2d.shape == g.keypoints_2d.shape:
                kp_pred.append(p.keypoints_2d)
                kp_gt.append(g.keypoints_2d)
                vis.append(g.confidences > 0.5)
                size.append(max(g.box[2] - g.box[0], g.box[3] - g.box[1], 1.0))
    out: dict[str, Any] = {'ground_truth_objects': n_gt, 'predicted_objects': n_pred,
                           'matched': len(rot),
                           'recall': len(rot) / n_gt if n_gt else float('nan')}
    if not rot:
        return out
    R_p, R_g = np.array([r[0] for r in rot]), np.array([r[1] for r in rot])
    t_p, t_g = np.array([t[0] for t in trans]), np.array([t[1] for t in trans])
    geo = metrics.geodesic_error(R_p, R_g)
    terr = metrics.translation_error(t_p, t_g)
    out['rotation'] = metrics.summarise_angles(geo)
    out['azimuth'] = metrics.summarise_angles(metrics.azimuth_error(R_p, R_g))
    out['translation_m'] = {'median': float(np.median(terr)), 'mean': float(terr.mean())}
    out['translation_rel_distance_median'] = float(np.median(terr / np.array(dist)))
    if kp_pred:
        out['pck@0.1'] = metrics.pck(np.array(kp_pred), np.array(kp_gt), np.array(size), 0.1,
                                     np.array(vis))
    out['per_object'] = {'geodesic_deg': np.degrees(geo).tolist(), 'translation_m': terr.tolist()}
    view = binned.view_attributes(R_g, t_g)
    view.update({k: np.asarray(v) for k, v in attrs.items() if len(v) == len(rot)})
    errors = binned.pose_errors(R_p, t_p, R_g, t_g, geo)
    sig = np.asarray(sigmas, np.float64)
    if np.all(np.isfinite(sig)):
        errors['inside_1sigma'] = (np.abs(np.linalg.norm(t_p, axis=1) - np.asarray(dist))
                                   <= sig).astype(np.float64)
    out['binned'] = binned.binned_errors(view, errors)
    return out
