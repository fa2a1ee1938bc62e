"""Learned voxel occupancy (seed 004): the manifest's shape graph run on the objects' crops.

The shape graph (`training.export_shape`) maps a frame's normalised crops ``(B, 3, S, S)``
and the objects' structure ``(B, K)`` to occupancy probabilities ``(B, V, V, V)`` in the
category's canonical grid: metres at the category's size prior. An object of metric scale
``scale_m`` is that shape scaled by ``scale_m / size_prior`` about the object origin, and its
grid is laid out as `StructureVoxelizer`'s (`voxels.grid_for_dimensions` of the category's
dimensions, fixed for every scale: the skeleton scaled by ``scale_m`` is drawn into it). So
the probabilities are resampled (linear, separable, zero outside the canonical grid) from
the canonical grid scaled by ``scale_m / size_prior`` into that grid, and published as
``round(255 * p)``: both voxel sources give grids of the same geometry for the same object.

`voxel_source` picks the source of a pipeline from `PipelineConfig.voxel_source` and the
manifest. numpy and ONNX Runtime only (no torch).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
import warnings

import numpy as np

from perception_3dinn.inference.manifest import (
    load_manifest,
    ManifestError,
    ModelManifest,
    SHAPE_INPUTS,
    SHAPE_OUTPUT,
    ShapeGraph,
)
from perception_3dinn.skeleton import Category
from perception_3dinn.voxels import grid_for_dimensions, VoxelGrid

VOXEL_SOURCES = ('auto', 'learned', 'skeleton')


def voxel_source(manifest: ModelManifest, source: str) -> tuple[ShapeGraph | None, str | None]:
    """The shape graph to use (None: skeleton voxels) and a warning, or None.

    'auto' takes the manifest's shape graph when it has one; 'learned' asks for it and falls
    back to skeleton voxels with a warning when the manifest has none; 'skeleton' never uses
    it (with a warning when the manifest names a shape graph that fails verification).

    Raises:
        ManifestError: 'auto' or 'learned' and the shape graph is missing or its sha256
            differs (the message names the file).
        ValueError: an unknown source.
    """
    if source not in VOXEL_SOURCES:
        raise ValueError(f'voxel_source must be one of {VOXEL_SOURCES}, got {source!r}')
    graph = manifest.shape
    if graph is None:
        note = (f'voxel_source learned: model {manifest.path} has no shape graph; publishing '
                'skeleton voxels (export one with python -m training.export --shape)')
        return None, note if source == 'learned' else None
    if source == 'skeleton':
        try:
            graph.verify()
        except ManifestError as err:
            return None, f'voxel_source skeleton: {err}; publishing skeleton voxels'
        return None, None
    graph.verify()
    return graph, None


def resample_matrices(n_out: int, res_out: float, origin_out: np.ndarray, n_in: int,
                      res_in: float, origin_in: np.ndarray, factor: float) -> np.ndarray:
    """``(3, n_out, n_in)`` float32 linear interpolation per axis: output voxel centres ``x``
    sample the input grid scaled by `factor` about 0 at ``x / factor`` (zero outside it)."""
    x = np.asarray(origin_out, np.float64)[:, None] + (np.arange(n_out) + 0.5) * res_out
    u = (x / factor - np.asarray(origin_in, np.float64)[:, None]) / res_in - 0.5
    lo = np.floor(u).astype(np.int64)  # (3, n_out) continuous input index (voxel centres)
    frac = u - lo
    w = np.zeros((3, n_out, n_in + 2), np.float32)  # columns 0 and n_in + 1: outside
    axes, rows = np.arange(3)[:, None], np.arange(n_out)[None]
    for idx, weight in ((lo, 1.0 - frac), (lo + 1, frac)):  # (axis, row) pairs are unique
        w[axes, rows, np.clip(idx, -1, n_in) + 1] += weight
    return w[:, :, 1:-1]


class ShapeSession:
    """ONNX Runtime session of a manifest's shape graph: (crops, structure) -> probabilities."""

    def __init__(self, graph: ShapeGraph, num_threads: int = 1, device: str = 'cpu') -> None:
        import onnxruntime as ort

        self.graph = graph
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(int(num_threads), 0)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ['CPUExecutionProvider']
        if device == 'cuda' and 'CUDAExecutionProvider' in ort.get_available_providers():
            providers.insert(0, 'CUDAExecutionProvider')
        self.session = ort.InferenceSession(str(graph.onnx_file), sess_options=options,
                                            providers=providers)
        names_in = sorted(i.name for i in self.session.get_inputs())
        names_out = [o.name for o in self.session.get_outputs()]
        if names_in != sorted(SHAPE_INPUTS) or names_out != [SHAPE_OUTPUT]:
            raise RuntimeError(f'{graph.onnx_file}: inputs {names_in} and outputs '
                               f'{names_out}, the manifest says {list(SHAPE_INPUTS)} and '
                               f'[{SHAPE_OUTPUT!r}]')

    def run(self, crops: np.ndarray, structure: np.ndarray) -> np.ndarray:
        """``(B, 3, S, S)`` crops and ``(B, K)`` structure -> ``(B, V, V, V)`` float32."""
        g = self.graph
        crops = np.ascontiguousarray(crops, np.float32)
        structure = np.ascontiguousarray(structure, np.float32)
        b = len(crops)
        if crops.shape != (b, 3, g.input_size, g.input_size) or b < 1:
            raise ValueError(f'shape graph: crops must be (B >= 1, 3, {g.input_size}, '
                             f'{g.input_size}), got {crops.shape}')
        if structure.shape != (b, g.num_bases):
            raise ValueError(f'shape graph: structure must be ({b}, {g.num_bases}), got '
                             f'{structure.shape}')
        out, = self.session.run([SHAPE_OUTPUT], dict(zip(SHAPE_INPUTS, (crops, structure))))
        if out.shape != (b, g.size, g.size, g.size):
            raise RuntimeError(f'{g.onnx_file}: occupancy has shape {out.shape}, the manifest '
                               f'says {(b, g.size, g.size, g.size)}')
        return out


class LearnedVoxelizer:
    """The shape graph, batched over a frame's objects, into `VoxelGrid`s (module docstring)."""

    def __init__(self, graph: ShapeGraph, category: Category, size: int = 32,
                 margin: float = 0.1, num_threads: int = 1, device: str = 'cpu') -> None:
        """
        Args:
            graph: the manifest's shape graph (verified by the caller).
            category: the category (size prior, dimensions).
            size, margin: the output grid, as `StructureVoxelizer`'s.
            num_threads, device: of the ONNX Runtime session.
        """
        self.graph = graph
        self.category = category
        self.size = int(size)
        self.resolution, self.origin = grid_for_dimensions(category.dimensions_m, size, margin)
        self.session = ShapeSession(graph, num_threads, device)

    def probabilities(self, probs: np.ndarray, scale_m: float | None = None) -> np.ndarray:
        """Canonical probabilities ``(V, V, V)`` -> ``(size,) * 3`` in the output grid of an
        object of `scale_m` metres per unit (None: the size prior)."""
        prior = self.category.size_prior_m
        scale = prior if scale_m is None else float(scale_m)
        if not (np.isfinite(scale) and scale > 0):
            raise ValueError(f'scale_m must be positive and finite, got {scale_m}')
        g, n = self.graph, self.size
        w = resample_matrices(n, self.resolution, self.origin, g.size, g.resolution,
                              np.asarray(g.origin), scale / prior)
        probs = np.asarray(probs, np.float32).reshape(g.size, -1)
        out = (w[0] @ probs).reshape(n, g.size, g.size)  # [a, j, k]
        return (w[1] @ out) @ w[2].T  # [a, b, k], then [a, b, c]

    def grids(self, crops: np.ndarray, structures: np.ndarray,
              scales_m: Sequence[float]) -> list[VoxelGrid]:
        """One VoxelGrid (occupancy ``round(255 * p)``) per object: crops ``(B, 3, S, S)``
        (normalised network input), structures ``(B, K)``, metric scales ``(B,)``."""
        probs = self.session.run(crops, structures)
        grids = []
        for p, scale in zip(probs, scales_m):
            occ = self.probabilities(p, scale)
            np.clip(occ, 0.0, 1.0, out=occ)
            occ *= 255.0
            grids.append(VoxelGrid(np.rint(occ, out=occ).astype(np.uint8), self.resolution,
                                   self.origin.copy()))
        return grids


def fill_voxels(objects: Sequence, learned: LearnedVoxelizer | None, skeleton) -> None:
    """Fill ``voxels`` of the objects that have none: one shape-graph batch for those with a
    crop when `learned` is given, `skeleton` (a `StructureVoxelizer`) for the others."""
    todo = [o for o in objects if o.voxels is None]
    batch = [o for o in todo if learned is not None and o.crop is not None]
    if batch:
        grids = learned.grids(np.stack([o.crop for o in batch]),
                              np.stack([o.structure for o in batch]),
                              [o.scale_m for o in batch])
        for obj, grid in zip(batch, grids):
            obj.voxels = grid
    for obj in todo:
        if obj.voxels is None:
            obj.voxels = skeleton(obj.structure, obj.scale_m)


def make_voxelizer(manifest: ModelManifest, category: Category, source: str, size: int,
                   num_threads: int = 1, device: str = 'cpu'
                   ) -> tuple[LearnedVoxelizer | None, str | None]:
    """The LearnedVoxelizer `source` asks for (`voxel_source`; None: skeleton voxels) and the
    fallback's warning, which also goes out as a RuntimeWarning (None when there is none)."""
    graph, note = voxel_source(manifest, source)
    if note:
        warnings.warn(note, RuntimeWarning, stacklevel=3)
    if graph is None:
        return None, note
    return LearnedVoxelizer(graph, category, size, num_threads=num_threads, device=device), None


def shape_graph_problem(manifest_path: str | Path, source: str) -> str | None:
    """Why the model at `manifest_path` cannot give the voxels `source` asks for: its shape
    graph is missing or has the wrong sha256 (the message names the file), for 'auto' and
    'learned'; None when it can, for 'skeleton', and when the manifest itself cannot be read
    (loading the model reports that)."""
    if source == 'skeleton':
        return None
    try:
        manifest = load_manifest(manifest_path, verify=False)
    except ManifestError:
        return None
    try:
        voxel_source(manifest, source)
    except ManifestError as err:
        return str(err)
    return None
