"""From discovered keypoints to a category file (seed 003 -> our skeleton format).

A trained KeypointNet (:mod:`training.discover`) predicts its N keypoints on ``views``
rendered views of every mesh. The keypoints are lifted with the known camera (the paper's
pi^-1) and brought into the mesh's object frame with the known pose; the per-mesh keypoint
set is the median over views (robust to the views where the orientation flag is wrong).
Then, as :mod:`training.synth.bases` does for our procedural categories:

- **frame and units**: the origin moves to the floor under the bounding-box centre (our
  canonical frame) and the points to metres: a file unit is a metre, or, with
  ``metric_size``, the median longest side of the meshes is ``metric_size`` metres (the
  meshes keep their relative sizes);
- **bases**: PCA of the size-normalised keypoint sets (:func:`learn_bases`); the number of
  deformations is the smallest that explains ``explained_variance`` of the variance
  (at most ``max_bases``);
- **symmetric pairs**: keypoints whose y-mirror (the left/right plane of the canonical frame)
  lands within ``mirror_tol`` (normalised units: keypoint diagonal 1) of another keypoint,
  mutually nearest; a keypoint whose mirror is itself lies on the plane;
- **edges**: a minimum spanning tree of the mean shape whose edge cost is the segment's
  length times ``1 + off_surface_weight * f``, where f is the fraction of the points along
  the segment farther than ``surface_tol`` from the mesh surface, averaged over meshes.
  Segments through the air (a chair's front leg to its back top) cost more than those along
  the object (leg to seat). Edges are mirrored through the symmetric pairs.

Keypoint names are ``kp<i>`` with ``_left``, ``_right`` or ``_centre`` from the mirror
pairing, so the markers and logs tell the sides apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse.csgraph import minimum_spanning_tree
from scipy.spatial import cKDTree
import torch
from tqdm import tqdm

from perception_3dinn.models.keypointnet import KeypointNetModel
from perception_3dinn.skeleton import Category
from training.synth import render
from training.synth.bases import learn_bases
from training.synth.meshes import render_view, sample_camera, UserMesh, ViewConfig
from training.synth.procedural import keypoint_diagonal


@dataclass
class CategoryOptions:
    """Settings of :func:`build_discovered_category` (see the module docstring)."""

    explained_variance: float = 0.95
    max_bases: int = 10
    mirror_tol: float = 0.05
    surface_tol: float = 0.04
    off_surface_weight: float = 4.0
    surface_samples: int = 4000
    segment_samples: int = 16
    edge_meshes: int = 30


def to_object_frame(uv: np.ndarray, z: np.ndarray, K: np.ndarray, R: np.ndarray,
                    t: np.ndarray) -> np.ndarray:
    """Pixels (V, N, 2) and depths (V, N) of views with poses R (V, 3, 3), t (V, 3)
    (``X_cam = R @ X_obj + t``) -> object-frame points (V, N, 3), float64."""
    uv, z = np.asarray(uv, np.float64), np.asarray(z, np.float64)
    ray = np.concatenate([uv, np.ones_like(uv[..., :1])], -1) @ np.linalg.inv(K).T
    cam = ray * z[..., None]
    return np.einsum('vnj,vji->vni', cam - np.asarray(t)[:, None, :], np.asarray(R))


@torch.no_grad()
def mesh_keypoints(model: KeypointNetModel, mesh: UserMesh, view: ViewConfig, views: int,
                   rng: np.random.Generator, device: str = 'cpu') -> np.ndarray:
    """(views, N, 3) keypoints predicted on random views of ``mesh``, in its normalised
    object frame (the deployed path: the orientation network's flag)."""
    K = view.intrinsics()
    colour = render.random_colour(rng)
    imgs, Rs, ts = [], [], []
    for _ in range(views):
        R, t = sample_camera(rng, view)
        v = render_view(mesh, R, t, K, view.size, rng, colour)
        imgs.append(v.image.transpose(2, 0, 1) / 255.0)
        Rs.append(R)
        ts.append(t)
    model.eval()
    x = torch.from_numpy(np.stack(imgs).astype(np.float32)).to(device)
    out = model(x)
    return to_object_frame(out['uv'].cpu().numpy(), out['z'].cpu().numpy(), K, np.stack(Rs),
                           np.stack(ts))


def metres_per_unit(meshes: list[UserMesh], metric_size: float | None) -> np.ndarray:
    """(M,) metres per normalised unit of every mesh (see the module docstring)."""
    raw_unit = np.array([1.0 / m.scale for m in meshes])  # file units per normalised unit
    if metric_size is None:
        return raw_unit
    longest = np.median([float(np.max(m.raw_extent)) for m in meshes])
    return raw_unit * float(metric_size) / longest


def to_canonical(points: np.ndarray, mesh: UserMesh, metres: float) -> np.ndarray:
    """(..., 3) normalised object-frame points -> metres, origin on the floor."""
    floor = float(mesh.vertices[:, 2].min())
    return (np.asarray(points, np.float64) - np.array([0.0, 0.0, floor])) * metres


def mirror_pairs(mean: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric pairs (P, 2) and the (N,) side of each keypoint (+1 left, -1 right, 0 on
    the plane, 2 unmatched) of a mean shape (N, 3) under the y-mirror."""
    mirrored = mean * np.array([1.0, -1.0, 1.0])
    d = np.linalg.norm(mirrored[:, None, :] - mean[None, :, :], axis=-1)
    best = d.argmin(1)
    pairs, side = [], np.full(len(mean), 2, np.int64)
    for i, j in enumerate(best):
        if d[i, j] > tol or best[j] != i:
            continue
        if i == j:
            side[i] = 0
        elif i < j:
            left, right = (i, j) if mean[i, 1] >= mean[j, 1] else (j, i)
            pairs.append((left, right))
            side[left], side[right] = 1, -1
    return np.array(pairs, np.int64).reshape(-1, 2), side


def off_surface_fraction(keypoints: np.ndarray, surface: cKDTree, tol: float,
                         samples: int) -> np.ndarray:
    """(N, N) fraction of the points along each keypoint segment farther than ``tol`` from
    the surface points in ``surface`` (keypoints and surface in one frame)."""
    n = len(keypoints)
    s = np.linspace(0.0, 1.0, samples)[:, None, None, None]
    pts = keypoints[None, :, None, :] * (1 - s) + keypoints[None, None, :, :] * s
    dist, _ = surface.query(pts.reshape(-1, 3))
    return (dist.reshape(samples, n, n) > tol).mean(0)


def surface_edges(mean: np.ndarray, per_mesh: np.ndarray, meshes: list[UserMesh],
                  perm: np.ndarray, options: CategoryOptions,
                  rng: np.random.Generator) -> np.ndarray:
    """(E, 2) skeleton edges: a spanning tree of ``mean`` (N, 3) that follows the surface,
    mirrored through ``perm`` (the flip permutation). ``per_mesh`` (M, N, 3) holds the
    keypoints in each mesh's normalised frame."""
    import trimesh

    n = len(mean)
    frac = np.zeros((n, n))
    pick = rng.permutation(len(meshes))[:options.edge_meshes]
    for i in pick:
        m = trimesh.Trimesh(meshes[i].vertices, meshes[i].faces, process=False)
        pts, _ = trimesh.sample.sample_surface(m, options.surface_samples,
                                               seed=int(rng.integers(1 << 31)))
        tol = options.surface_tol * 2.0  # normalised meshes span 2 units
        frac += off_surface_fraction(per_mesh[i], cKDTree(pts), tol, options.segment_samples)
    frac /= max(1, len(pick))
    length = np.linalg.norm(mean[:, None] - mean[None], axis=-1)
    cost = length * (1.0 + options.off_surface_weight * frac) + 1e-9
    np.fill_diagonal(cost, 0.0)
    tree = minimum_spanning_tree(np.triu(cost)).tocoo()
    edges = {tuple(sorted((int(a), int(b)))) for a, b in zip(tree.row, tree.col)}
    edges |= {tuple(sorted((int(perm[a]), int(perm[b])))) for a, b in edges}
    return np.array(sorted(e for e in edges if e[0] != e[1]), np.int64).reshape(-1, 2)


def choose_num_bases(explained: np.ndarray, target: float) -> int:
    """Smallest K whose first K deformations explain ``target`` of the variance
    (``explained``: fractions of the total variance, as :func:`learn_bases` returns)."""
    total = np.cumsum(explained)
    hit = np.nonzero(total >= target - 1e-12)[0]
    return int(hit[0] + 1) if hit.size else len(explained)


def build_discovered_category(name: str, per_mesh_norm: np.ndarray, meshes: list[UserMesh],
                              metres: np.ndarray, options: CategoryOptions | None = None,
                              seed: int = 0, metadata: dict | None = None) -> Category:
    """The category of the keypoint sets ``per_mesh_norm`` (M, N, 3), each in its mesh's
    normalised object frame, with ``metres`` (M,) per normalised unit."""
    options = options or CategoryOptions()
    m, n, _ = per_mesh_norm.shape
    if m < 3:
        raise ValueError(f'{name}: need keypoints of at least 3 meshes for bases, got {m}')
    kps = np.stack([to_canonical(k, mesh, s)
                    for k, mesh, s in zip(per_mesh_norm, meshes, metres)])
    k_max = max(1, min(options.max_bases, m - 1, 3 * n))
    full = learn_bases(kps, k_max)
    k = choose_num_bases(full['explained_variance'], options.explained_variance)
    learned = learn_bases(kps, k)
    mean = learned['bases'][0]
    pairs, side = mirror_pairs(mean, options.mirror_tol)
    perm = np.arange(n)
    for a, b in pairs:
        perm[a], perm[b] = b, a
    edges = surface_edges(mean, per_mesh_norm, meshes, perm, options,
                          np.random.default_rng(seed))
    suffix = {1: '_left', -1: '_right', 0: '_centre', 2: ''}
    names = tuple(f'kp{i:02d}{suffix[int(s)]}' for i, s in enumerate(side))
    size = float(learned['diagonals'].mean())
    lo = np.stack([to_canonical(mesh.vertices.min(0), mesh, s)
                   for mesh, s in zip(meshes, metres)])
    hi = np.stack([to_canonical(mesh.vertices.max(0), mesh, s)
                   for mesh, s in zip(meshes, metres)])
    scale = size / learned['diagonals']
    lo_n, hi_n = lo * scale[:, None], hi * scale[:, None]
    half_xy = np.maximum(np.abs(lo_n[:, :2]), np.abs(hi_n[:, :2])).max(0)
    dims = np.array([2 * half_xy[0], 2 * half_xy[1], hi_n[:, 2].max()])
    y = kps / keypoint_diagonal(kps)[:, None, None]
    spread = np.sqrt(((y - mean) ** 2).sum(-1).mean(0))
    meta = {'generator': 'training.discover (KeypointNet, seed 003)',
            'instances': m, 'explained_variance_total':
                round(float(learned['explained_variance'].sum()), 6),
            'explained_variance_candidates': [round(float(v), 6)
                                              for v in full['explained_variance']],
            'mirror_plane': 'y' if np.all(side != 2) else
                            ('partial' if np.any(side != 2) else 'none'),
            'keypoint_spread': [round(float(v), 6) for v in spread],
            'rmse_units': 'normalised (keypoint bounding-box diagonal = 1)',
            'options': {k_: v for k_, v in vars(options).items()}, **(metadata or {})}
    return Category(name=name, keypoint_names=names, edges=edges, symmetric_pairs=pairs,
                    bases=learned['bases'], alpha_std=learned['alpha_std'],
                    size_prior_m=round(size, 6), dimensions_m=dims,
                    explained_variance=learned['explained_variance'], metadata=meta)


def predict_all(model: KeypointNetModel, meshes: list[UserMesh], view: ViewConfig, views: int,
                seed: int, device: str = 'cpu',
                progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Per-mesh median keypoints (M, N, 3) and all views' keypoints (M, views, N, 3), in each
    mesh's normalised object frame; mesh i's views come from a generator seeded (seed, i)."""
    every = []
    for i, mesh in enumerate(tqdm(meshes, desc='keypoints per mesh', disable=not progress)):
        every.append(mesh_keypoints(model, mesh, view, views,
                                    np.random.default_rng([seed, i]), device))
    every = np.stack(every)
    return np.median(every, axis=1), every
