"""Evaluation of discovered keypoints on held-out meshes (seed 003, sec. 4.1).

- **Relative pose** (the paper's metric): for ``pairs`` random view pairs of every held-out
  mesh, the angle between the true relative rotation and the Procrustes fit of the two
  lifted keypoint sets, with the orientation network's flags (the deployed path); mean,
  median and the fraction under 5, 15 and 30 degrees.
- **3D-SE** (the paper's keypoint location consistency): each view's keypoints are taken to
  the object frame with the known camera; for every mesh and keypoint, the standard
  deviation of its position over the views of the pairs whose rotation error is under 90
  degrees (the paper's outlier rule), averaged. Object units: the mesh spans [-1, 1], as
  the paper's normalised ShapeNet models.
- **Against hand-made keypoints** (when the mesh folder has ``keypoints.json``, as
  :mod:`training.synth.mesh_export` writes): for each discovered keypoint, the hand-made
  keypoint nearest to it on average, the mean distance to it and the spread of the offset
  over meshes, in units of the hand-made keypoints' bounding-box diagonal.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from perception_3dinn.models.keypointnet import KeypointNetModel, lift
from training.keypoint_category import to_object_frame
from training.keypointnet_losses import procrustes, rotation_angle
from training.synth.mesh_export import KEYPOINTS_FILE
from training.synth.meshes import render_pair, UserMesh, ViewConfig
from training.synth.procedural import keypoint_diagonal


@torch.no_grad()
def pose_errors(model: KeypointNetModel, meshes: list[UserMesh], view: ViewConfig,
                pairs: int, seed: int, device: str = 'cpu', progress: bool = True) -> dict:
    """Relative-pose errors and 3D-SE of ``pairs`` view pairs per mesh (see the docstring);
    mesh i's pairs come from a generator seeded (seed, i)."""
    model.eval()
    K = torch.from_numpy(view.intrinsics().astype(np.float32)).to(device)
    errors, se = [], []
    for i, mesh in enumerate(tqdm(meshes, desc='pose pairs', disable=not progress)):
        rng = np.random.default_rng([seed, i])
        ps = [render_pair(mesh, rng, view) for _ in range(pairs)]
        cams, pts = [], []
        for side in ('a', 'b'):
            vs = [getattr(p, side) for p in ps]
            x = torch.from_numpy(np.stack([v.image.transpose(2, 0, 1) / 255.0 for v in vs])
                                 .astype(np.float32)).to(device)
            out = model(x)
            cams.append(lift(out['uv'], out['z'], K).double().cpu())
            pts.append(to_object_frame(out['uv'].cpu().numpy(), out['z'].cpu().numpy(),
                                       view.intrinsics(), np.stack([v.R for v in vs]),
                                       np.stack([v.t for v in vs])))
        R_ab = torch.from_numpy(np.stack([p.R_ab for p in ps]))
        err = torch.rad2deg(rotation_angle(procrustes(cams[0], cams[1]), R_ab)).numpy()
        errors.append(err)
        good = err < 90.0
        pts = [p[good] for p in pts]
        pts = np.concatenate(pts)
        if len(pts) >= 2:
            se.append(pts.std(0, ddof=1).mean())
    e = np.concatenate(errors)
    return {'pairs': int(e.size), 'meshes': len(meshes),
            'rot_err_mean_deg': float(e.mean()), 'rot_err_median_deg': float(np.median(e)),
            'under_5_deg': float(np.mean(e < 5)), 'under_15_deg': float(np.mean(e < 15)),
            'under_30_deg': float(np.mean(e < 30)),
            'se_3d': float(np.mean(se)) if se else float('nan'), 'errors_deg': e}


def hand_made_keypoints(folder: str | Path, meshes: list[UserMesh]) -> np.ndarray | None:
    """(M, N', 3) hand-made keypoints of ``meshes`` in their normalised frames, or None when
    the folder has no ``keypoints.json`` or it misses one of the meshes."""
    path = Path(folder) / KEYPOINTS_FILE
    if not path.is_file():
        return None
    labels = json.loads(path.read_text())['keypoints']
    if any(m.name not in labels for m in meshes):
        return None
    return np.stack([m.normalise(np.asarray(labels[m.name], np.float64)) for m in meshes])


def against_hand_made(discovered: np.ndarray, hand: np.ndarray,
                      names: list[str] | None = None) -> list[dict]:
    """Per discovered keypoint: its nearest hand-made keypoint, mean distance and spread.

    Args:
        discovered: (M, N, 3) per-mesh discovered keypoints; hand: (M, N', 3) hand-made
            keypoints of the same meshes, in the same frames.
    """
    unit = keypoint_diagonal(hand)[:, None, None]
    d, h = discovered / unit, hand / unit
    offsets = d[:, :, None, :] - h[:, None, :, :]  # (M, N, N', 3)
    mean_dist = np.linalg.norm(offsets, axis=-1).mean(0)  # (N, N')
    rows = []
    for k, j in enumerate(mean_dist.argmin(1)):
        off = offsets[:, k, j]
        spread = np.sqrt(((off - off.mean(0)) ** 2).sum(-1).mean())
        rows.append({'keypoint': k, 'nearest': names[j] if names else int(j),
                     'mean_distance': float(mean_dist[k, j]), 'spread': float(spread)})
    return rows
