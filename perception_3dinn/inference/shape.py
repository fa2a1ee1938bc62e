"""Voxel occupancy of an object's shape from its structure parameters (DESIGN.md step 7).

Until the learned voxel decoder (seed 004) exists, the shape is the skeleton itself made
solid: every edge becomes a tube of radius r and every 4-cycle of the skeleton graph (a chair's
seat and back) a slab of half-thickness r, rasterised into the category's fixed grid
(`voxels.grid_for_dimensions`: 32^3 by default) in the object frame. Plain numpy + scipy.
"""

from __future__ import annotations

from collections import OrderedDict
import itertools

import numpy as np

from perception_3dinn.skeleton import Category
from perception_3dinn.voxels import grid_for_dimensions, VoxelGrid


def skeleton_quads(edges: np.ndarray, num_keypoints: int) -> np.ndarray:
    """Chordless 4-cycles of the skeleton graph (the planar panels of a chair).

    Args:
        edges: `(E, 2)` keypoint index pairs.
        num_keypoints: N.

    Returns:
        `(Q, 4)` int keypoint indices of each cycle, in cycle order.
    """
    edges = np.asarray(edges, np.int64).reshape(-1, 2)
    adjacent = np.zeros((num_keypoints, num_keypoints), bool)
    adjacent[edges[:, 0], edges[:, 1]] = True
    adjacent[edges[:, 1], edges[:, 0]] = True
    quads = set()
    for a, b, c, d in itertools.permutations(range(num_keypoints), 4):
        if a != min(a, b, c, d) or b > d:
            continue  # one representative per cycle
        if (adjacent[a, b] and adjacent[b, c] and adjacent[c, d] and adjacent[d, a]
                and not adjacent[a, c] and not adjacent[b, d]):
            quads.add((a, b, c, d))
    return np.array(sorted(quads), np.int64).reshape(-1, 4)


class StructureVoxelizer:
    """Rasterises a category's skeleton, given its structure, into a VoxelGrid."""

    def __init__(self, category: Category, size: int = 32, radius_m: float = 0.0,
                 margin: float = 0.1, fill_quads: bool = True, cache_size: int = 64) -> None:
        """
        Args:
            category: the category (bases, size prior, dimensions).
            size: voxels per axis.
            radius_m: tube radius / slab half-thickness in metres; 0 -> 4 % of the largest
                dimension, at least one voxel.
            margin: grid margin around the category's dimensions (fraction).
            fill_quads: fill the skeleton's 4-cycles as slabs.
            cache_size: grids remembered, keyed by the structure quantised so that no
                keypoint moves by more than a quarter voxel (`quantum`).
        """
        if size < 2:
            raise ValueError(f'size must be >= 2, got {size}')
        self.category = category
        self.size = int(size)
        self.resolution, self.origin = grid_for_dimensions(category.dimensions_m, size, margin)
        if radius_m <= 0:
            radius_m = max(0.04 * float(np.max(category.dimensions_m)), self.resolution)
        self.radius_m = float(radius_m)
        self.edges = category.edges
        quads = (skeleton_quads(category.edges, category.num_keypoints) if fill_quads
                 else np.zeros((0, 4), np.int64))
        self.triangles = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
        span = self.size * self.resolution
        # samples at most one voxel apart: the dilation below closes the gaps
        n_edge = int(np.ceil(span / self.resolution)) + 1
        self._edge_t = np.linspace(0.0, 1.0, n_edge)
        n_tri = int(np.ceil(span / self.resolution))
        u, v = np.meshgrid(np.arange(n_tri + 1), np.arange(n_tri + 1), indexing='ij')
        keep = (u + v) <= n_tri
        self._bary = np.stack([u[keep], v[keep]], axis=1) / float(n_tri)  # (P, 2)
        r = self.radius_m / self.resolution
        n = int(np.floor(r))
        offsets = np.arange(-n, n + 1)
        dx, dy, dz = np.meshgrid(offsets, offsets, offsets, indexing='ij')
        ball = (dx * dx + dy * dy + dz * dz) <= r * r
        self._ball_offsets = np.stack([dx[ball], dy[ball], dz[ball]], axis=1)  # (O, 3)
        # Bases are orthonormal as flattened vectors, so rounding each of the K weights by at
        # most q / 2 moves any keypoint by at most sqrt(K) * q / 2 * size_prior: a quarter voxel.
        k = max(category.num_bases, 1)
        self.quantum = 0.5 * self.resolution / (np.sqrt(k) * category.size_prior_m)
        # a scale step of q_s moves a keypoint by at most q_s / 2 * max |Y|: an eighth voxel
        reach = float(np.max(np.linalg.norm(category.bases[0], axis=1))) + 1.0
        self.scale_quantum = 0.25 * self.resolution / reach
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._cache_size = int(cache_size)

    def surface_points(self, skeleton_m: np.ndarray) -> np.ndarray:
        """Dense samples `(M, 3)` of the edges and panels of a metric skeleton `(N, 3)`."""
        y = np.asarray(skeleton_m, np.float64)
        if y.shape != (self.category.num_keypoints, 3):
            raise ValueError(f'skeleton must be ({self.category.num_keypoints}, 3), '
                             f'got {y.shape}')
        a, b = y[self.edges[:, 0]], y[self.edges[:, 1]]
        t = self._edge_t[None, :, None]
        parts = [(a[:, None] + t * (b - a)[:, None]).reshape(-1, 3)]
        if len(self.triangles):
            p0 = y[self.triangles[:, 0]][:, None]
            e1 = (y[self.triangles[:, 1]] - y[self.triangles[:, 0]])[:, None]
            e2 = (y[self.triangles[:, 2]] - y[self.triangles[:, 0]])[:, None]
            w = self._bary[None]
            parts.append((p0 + w[..., :1] * e1 + w[..., 1:] * e2).reshape(-1, 3))
        return np.concatenate(parts)

    def occupancy(self, structure: np.ndarray, scale_m: float | None = None) -> np.ndarray:
        """Boolean occupancy `(S, S, S)` of the skeleton with structure `(K,)` scaled by
        `scale_m` metres per unit (None: the category's size prior); both quantised (at most
        3/8 voxel of keypoint motion, see __init__) for the cache."""
        structure = np.asarray(structure, np.float64)
        if structure.shape != (self.category.num_bases,):
            raise ValueError(f'structure must be ({self.category.num_bases},), '
                             f'got {structure.shape}')
        if not np.all(np.isfinite(structure)):
            raise ValueError('structure has non-finite values')
        scale = self.category.size_prior_m if scale_m is None else float(scale_m)
        if not (np.isfinite(scale) and scale > 0):
            raise ValueError(f'scale_m must be positive and finite, got {scale_m}')
        steps = np.round(structure / self.quantum).astype(np.int64)
        scale_step = int(round(scale / self.scale_quantum))
        key = steps.tobytes() + scale_step.to_bytes(8, 'little', signed=True)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        skeleton = self.category.structure(steps * self.quantum) * (scale_step
                                                                    * self.scale_quantum)
        points = self.surface_points(skeleton)
        s = self.size
        idx = np.floor((points - self.origin) / self.resolution).astype(np.int64)
        idx = idx[(idx.min(axis=1) >= 0) & (idx.max(axis=1) < s)]
        seeds = np.unique((idx[:, 0] * s + idx[:, 1]) * s + idx[:, 2])
        seeds = np.stack([seeds // (s * s), (seeds // s) % s, seeds % s], axis=1)
        # dilation by a ball: every voxel within radius_m (centre to centre) of a voxel the
        # surface passes through
        grown = (seeds[:, None, :] + self._ball_offsets[None]).reshape(-1, 3)
        grown = grown[(grown.min(axis=1) >= 0) & (grown.max(axis=1) < s)]
        occ = np.zeros((s, s, s), bool)
        occ[grown[:, 0], grown[:, 1], grown[:, 2]] = True
        occ.setflags(write=False)
        self._cache[key] = occ
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return occ

    def __call__(self, structure: np.ndarray, scale_m: float | None = None) -> VoxelGrid:
        """VoxelGrid (occupancy 0 / 255) of the object with structure `(K,)` at `scale_m`."""
        occ = self.occupancy(structure, scale_m)
        return VoxelGrid(occ.astype(np.uint8) * 255, self.resolution, self.origin.copy())
