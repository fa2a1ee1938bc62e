"""Voxel shape metrics of seed 004 on a rendered benchmark (``training.evaluate --shape``).

For every sample, two shapes in the category's canonical grid (metres at the size prior):

- ``learned``: the shape model (:class:`perception_3dinn.models.style_encoder.ShapeModel`)
  on the crop and the INN's structure estimate;
- ``skeleton_tubes``: the runtime's skeleton voxels of the same structure estimate
  (:class:`perception_3dinn.inference.shape.StructureVoxelizer`), the baseline.

Metrics, as the paper's: voxel IoU at a threshold chosen on the shape stage's validation split
(stored in the shape checkpoint, then fixed), 3D AP (average precision of the probabilities
against the true occupancy, per sample, averaged), and, with each shape projected by the
INN's own crop-camera pose through the rigid transformation layer
(:mod:`perception_3dinn.models.voxel_projection`), the 2D silhouette AP and IoU (at 0.5)
against the rendered mask cropped as the network's input. A rendered mask leaves out what
occluders hide while the projection of a shape does not, so 2D numbers are also reported on
the samples with no occluded object pixels (``*_unoccluded``, from the depth of the render).
Rotation Acc_pi/6 and the median geodesic error come from ``training.evaluate``'s methods.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from perception_3dinn.inference.shape import StructureVoxelizer
from perception_3dinn.models.checkpoint import load_shape_checkpoint
from perception_3dinn.models.voxel_projection import (
    crop_intrinsics,
    downsample_mask,
    project_silhouette,
    VoxelProjectionConfig,
)
from perception_3dinn.skeleton import Category
from training.voxel_stage import average_precision, voxel_iou

SILHOUETTE_SIZE = 64


def crop_masks(masks: np.ndarray, crops: list, size: int) -> np.ndarray:
    """Object masks (n, H, W) warped into each crop (n, size, size) float32 in [0, 1]."""
    return np.stack([cv2.warpAffine(m.astype(np.float32), c.matrix, (size, size),
                                    flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                    borderValue=0.0) for m, c in zip(masks, crops)])


@torch.no_grad()
def silhouettes(prob: np.ndarray, grid: dict, net: dict, size_prior_m: float,
                input_size: int, out_size: int = SILHOUETTE_SIZE,
                batch: int = 32) -> np.ndarray:
    """Silhouette probabilities (n, out, out) of canonical occupancies ``prob`` seen by the
    INN's crop-camera poses (``net`` from ``training.evaluate.run_model``)."""
    cfg = VoxelProjectionConfig(out_size=out_size, depth_samples=64)
    origin = torch.tensor(grid['origin'], dtype=torch.float32)
    out = []
    for i in range(0, len(prob), batch):
        sl = slice(i, i + batch)
        p = torch.from_numpy(np.ascontiguousarray(prob[sl], np.float32))
        focal = torch.from_numpy(net['focal'][sl]).float()
        b = len(p)
        out.append(project_silhouette(
            p, origin, float(grid['resolution']), crop_intrinsics(focal, input_size),
            input_size, torch.from_numpy(net['rotation'][sl]).float(),
            torch.from_numpy(net['translation'][sl]).float(),
            torch.full((b,), 1.0 / size_prior_m), cfg).numpy())
    return np.concatenate(out)


@torch.no_grad()
def learned_voxels(model, inputs: np.ndarray, structure: np.ndarray,
                   batch: int = 64) -> np.ndarray:
    """Shape model probabilities (n, V, V, V) of normalised crops (n, 3, S, S)."""
    out = []
    for i in range(0, len(inputs), batch):
        out.append(model(torch.from_numpy(inputs[i:i + batch]).float(),
                         torch.from_numpy(structure[i:i + batch]).float()).numpy())
    return np.concatenate(out)


def shape_metrics(prob: np.ndarray, truth: np.ndarray, threshold: float, sil: np.ndarray,
                  target: np.ndarray, unoccluded: np.ndarray) -> tuple[dict, dict]:
    """Summary and per-sample numbers of one method."""
    iou = voxel_iou(prob, truth, threshold)
    ap3 = average_precision(prob, truth)
    gt2 = target >= 0.5
    ap2 = average_precision(sil, gt2)
    iou2 = voxel_iou(sil, gt2, 0.5)
    summary = {'iou': float(iou.mean()), 'iou_median': float(np.median(iou)),
               'ap_3d': float(np.nanmean(ap3)), 'ap_2d': float(np.nanmean(ap2)),
               'iou_2d': float(iou2.mean()), 'threshold': float(threshold)}
    if unoccluded.any():
        summary['ap_2d_unoccluded'] = float(np.nanmean(ap2[unoccluded]))
        summary['iou_2d_unoccluded'] = float(iou2[unoccluded].mean())
    return summary, {'iou': iou, 'ap_3d': ap3, 'ap_2d': ap2, 'iou_2d': iou2}


def unoccluded_samples(data: dict) -> np.ndarray:
    """(n,) True where no occluder is drawn inside the object's box (the render's depth is
    0 where nothing is drawn, the mask is the object alone), so the mask is the object's
    whole silhouette. Conservative: an occluder seen between the legs also counts."""
    mask = data['mask'].astype(bool)
    drawn = data['depth'].astype(np.float32) > 0
    out = np.zeros(len(mask), bool)
    for i, (m, d, b) in enumerate(zip(mask, drawn, data['box'])):
        x0, y0, x1, y1 = np.round(b).astype(int)
        out[i] = not (d[y0:y1 + 1, x0:x1 + 1] & ~m[y0:y1 + 1, x0:x1 + 1]).any()
    return out


def evaluate_voxels(shape_path: str | Path, data: dict, net: dict, inputs: np.ndarray,
                    category: Category, input_size: int) -> tuple[dict, dict]:
    """The ``voxels`` section of ``metrics.json`` and per-sample arrays (for the picture).

    Args:
        shape_path: shape checkpoint (``python -m training.train shape``).
        data: benchmark samples (need ``voxels``, ``mask``, ``depth``, ``box``).
        net: ``training.evaluate.run_model`` output (structure, pose, crops).
        inputs: (n, 3, S, S) the normalised crops the INN saw.
    """
    model, payload = load_shape_checkpoint(shape_path)
    if payload['category']['name'] != category.name:
        raise ValueError(f'{shape_path} is a {payload["category"]["name"]!r} shape model, '
                         f'the benchmark is {category.name!r}')
    truth = data['voxels'].astype(bool)
    grid = payload['grid']
    if truth.shape[1] != grid['size']:
        raise ValueError(f'benchmark voxels are {truth.shape[1]}^3, the shape model '
                         f'{grid["size"]}^3')
    threshold = float(payload['metrics'].get('threshold', 0.5))
    target = downsample_mask(torch.from_numpy(crop_masks(data['mask'], net['crops'],
                                                         input_size)),
                             SILHOUETTE_SIZE).numpy()
    unocc = unoccluded_samples(data)
    prob = learned_voxels(model, inputs, net['structure'])
    tubes = StructureVoxelizer(category, size=grid['size'])
    tube = np.stack([tubes.occupancy(a) for a in net['structure']]).astype(np.float32)
    section, per = {'threshold_from': 'shape checkpoint validation split',
                    'silhouette_size': SILHOUETTE_SIZE, 'unoccluded_count': int(unocc.sum()),
                    'shape_model': str(shape_path)}, {'learned_prob': prob}
    for name, p, thr in (('learned', prob, threshold), ('skeleton_tubes', tube, 0.5)):
        sil = silhouettes(p, grid, net, category.size_prior_m, input_size)
        section[name], per[name] = shape_metrics(p, truth, thr, sil, target, unocc)
        per[name]['silhouette'] = sil
    per['target'] = target
    per['threshold'] = threshold
    return section, per


def plot_voxel_cases(data: dict, per: dict, out: Path, rows: int = 4) -> None:
    """``voxels.png``: crop, predicted and true voxels, for the best and worst IoU."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    iou = per['learned']['iou']
    order = np.argsort(iou)
    picks = [('good', i) for i in order[::-1][:rows]] + [('failed', i) for i in order[:rows]]
    fig = plt.figure(figsize=(9, 2.6 * len(picks)))
    for r, (kind, i) in enumerate(picks):
        ax = fig.add_subplot(len(picks), 3, 3 * r + 1)
        ax.imshow(data['image'][i])
        ax.set_title(f'{kind}: sample {i}, IoU {iou[i]:.2f}', fontsize=8)
        ax.axis('off')
        for c, (vox, title) in enumerate(((per['learned_prob'][i] >= per['threshold'],
                                           'predicted'), (data['voxels'][i], 'true'))):
            ax = fig.add_subplot(len(picks), 3, 3 * r + 2 + c, projection='3d')
            pts = np.argwhere(vox)
            ax.scatter(pts[:, 0], pts[:, 1], pts[:, 2], c=pts[:, 2], s=2, cmap='viridis')
            ax.set_xlim(0, vox.shape[0])
            ax.set_ylim(0, vox.shape[1])
            ax.set_zlim(0, vox.shape[2])
            ax.view_init(elev=20, azim=-60)
            ax.set_title(title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_zticks([])
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
