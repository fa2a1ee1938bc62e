"""Object categories as data: keypoints, skeleton edges, symmetric pairs and base shapes.

One JSON file per category in ``perception_3dinn/categories/<name>.json`` is read by
training, runtime and the RViz markers alike (see docs/interfaces.md, "Categories").
Adding a category (sofa, bed, swivel chair) is a data-only change: write its JSON file.

Shapes follow the 3D Interpreter Network (3D-INN): a skeleton of N keypoints is
``Y = bases[0] + sum_k alpha_k * bases[k]`` in normalised units (each instance scaled to a
keypoint bounding-box diagonal of about 1), in the object's canonical frame (x forward,
y left, z up, origin on the floor under the object centre). ``size_prior_m`` turns
normalised units into metres.

The deformation bases ``bases[1:]`` are orthonormal when flattened to (N * 3,) vectors
(they are principal directions learned from generated instances, see
``training.synth.bases``), so the least-squares structure of a skeleton is a dot product.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import functools
import json
from pathlib import Path
from typing import Any

import numpy as np

from perception_3dinn.symmetry import (
    Element,
    group_elements,
    RotationalSymmetry,
    symmetries_from_list,
)

CATEGORY_DIR = Path(__file__).resolve().parent / 'categories'
FORMAT_VERSION = 1


def _frozen(array: Any, dtype: Any) -> np.ndarray:
    out = np.array(array, dtype=dtype, copy=True)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class Category:
    """A keypoint skeleton with base shapes for one object category.

    Attributes:
        name: category name, e.g. ``'chair'``.
        keypoint_names: N names.
        edges: (E, 2) int keypoint index pairs drawn as skeleton lines.
        symmetric_pairs: (P, 2) int left/right pairs swapped by a y-mirror.
        bases: (K + 1, N, 3) float64; ``bases[0]`` is the mean shape, ``bases[1:]`` the
            deformations (orthonormal as flattened vectors), in normalised units.
        alpha_std: (K,) standard deviation of each deformation weight over generated
            instances.
        size_prior_m: metres per normalised unit (keypoint diagonal of the mean instance).
        dimensions_m: (3,) nominal metric extent (x, y, z) of the object's meshes.
        explained_variance: (K,) fraction of the keypoint variance each deformation explains.
        metadata: free-form provenance (generator version, seed, instance count, ...).
        rotational_symmetries: declared turns about z under which instances may look the
            same (:mod:`perception_3dinn.symmetry`); whether one holds is per instance.
    """

    name: str
    keypoint_names: tuple[str, ...]
    edges: np.ndarray
    symmetric_pairs: np.ndarray
    bases: np.ndarray
    alpha_std: np.ndarray
    size_prior_m: float
    dimensions_m: np.ndarray
    explained_variance: np.ndarray = field(default_factory=lambda: np.zeros(0))
    metadata: dict = field(default_factory=dict)
    rotational_symmetries: tuple[RotationalSymmetry, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.keypoint_names)
        set_ = functools.partial(object.__setattr__, self)
        set_('keypoint_names', tuple(str(k) for k in self.keypoint_names))
        set_('edges', _frozen(self.edges, np.int64).reshape(-1, 2))
        set_('symmetric_pairs', _frozen(self.symmetric_pairs, np.int64).reshape(-1, 2))
        set_('bases', _frozen(self.bases, np.float64))
        set_('alpha_std', _frozen(self.alpha_std, np.float64).reshape(-1))
        set_('dimensions_m', _frozen(self.dimensions_m, np.float64).reshape(-1))
        set_('size_prior_m', float(self.size_prior_m))
        ev = _frozen(self.explained_variance, np.float64).reshape(-1)
        if ev.size == 0:
            ev = _frozen(np.full(self.bases.shape[0] - 1, np.nan), np.float64)
        set_('explained_variance', ev)
        if n < 2 or len(set(self.keypoint_names)) != n:
            raise ValueError(f'{self.name}: keypoint names must be >= 2 and unique')
        if self.bases.ndim != 3 or self.bases.shape[1:] != (n, 3) or self.bases.shape[0] < 1:
            raise ValueError(f'{self.name}: bases must be (K + 1, {n}, 3), '
                             f'got {self.bases.shape}')
        k = self.bases.shape[0] - 1
        if self.alpha_std.shape != (k,) or self.explained_variance.shape != (k,):
            raise ValueError(f'{self.name}: alpha_std and explained_variance must be ({k},)')
        for what, idx in (('edges', self.edges), ('symmetric_pairs', self.symmetric_pairs)):
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise ValueError(f'{self.name}: {what} index out of range 0..{n - 1}')
        if self.dimensions_m.shape != (3,) or np.any(self.dimensions_m <= 0):
            raise ValueError(f'{self.name}: dimensions_m must be 3 positive numbers')
        if not np.isfinite(self.size_prior_m) or self.size_prior_m <= 0:
            raise ValueError(f'{self.name}: size_prior_m must be positive')
        if not np.all(np.isfinite(self.bases)):
            raise ValueError(f'{self.name}: bases contain NaN or inf')
        set_('rotational_symmetries', tuple(self.rotational_symmetries))
        for sym in self.rotational_symmetries:
            sym.check(n, self.name)

    @property
    def num_keypoints(self) -> int:
        """N, the number of keypoints."""
        return len(self.keypoint_names)

    @property
    def num_bases(self) -> int:
        """K, the number of deformation bases (structure parameters)."""
        return self.bases.shape[0] - 1

    @property
    def mean_shape(self) -> np.ndarray:
        """(N, 3) mean skeleton in normalised units."""
        return self.bases[0]

    @functools.cached_property
    def symmetry_elements(self) -> list[Element]:
        """Identity and every turn of the declared symmetries (one per angle)."""
        return group_elements(self.rotational_symmetries, self.num_keypoints)

    @property
    def flip_permutation(self) -> np.ndarray:
        """(N,) keypoint order after a left/right mirror: ``kp_flipped = kp[perm]``."""
        perm = np.arange(self.num_keypoints)
        for a, b in self.symmetric_pairs:
            perm[a], perm[b] = b, a
        return perm

    def structure(self, alpha: np.ndarray) -> np.ndarray:
        """Skeleton from structure parameters, in normalised units.

        Args:
            alpha: (..., K) deformation weights.

        Returns:
            (..., N, 3) keypoints ``bases[0] + sum_k alpha_k bases[k]``.
        """
        alpha = np.asarray(alpha, dtype=np.float64)
        if alpha.shape[-1:] != (self.num_bases,):
            raise ValueError(f'alpha must be (..., {self.num_bases}), got {alpha.shape}')
        return self.bases[0] + np.tensordot(alpha, self.bases[1:], axes=([-1], [0]))

    def metric_structure(self, alpha: np.ndarray) -> np.ndarray:
        """(..., N, 3) skeleton in metres (``structure(alpha) * size_prior_m``)."""
        return self.structure(alpha) * self.size_prior_m

    def fit_structure(self, keypoints: np.ndarray) -> np.ndarray:
        """Least-squares structure parameters of normalised skeletons.

        Args:
            keypoints: (..., N, 3) skeletons in normalised units, canonical frame.

        Returns:
            (..., K) alpha minimising ``|structure(alpha) - keypoints|``.
        """
        y = np.asarray(keypoints, dtype=np.float64)
        if y.shape[-2:] != (self.num_keypoints, 3):
            raise ValueError(f'keypoints must be (..., {self.num_keypoints}, 3), got {y.shape}')
        d = (y - self.bases[0]).reshape(*y.shape[:-2], -1)
        b = self.bases[1:].reshape(self.num_bases, -1)
        # Least squares through the pseudo-inverse (exact projection for orthonormal bases).
        return d @ np.linalg.pinv(b)

    def to_dict(self) -> dict:
        """JSON-serialisable dictionary (the category file's content)."""
        return {
            'format_version': FORMAT_VERSION,
            'name': self.name,
            'canonical_frame': 'x forward, y left, z up, origin on the floor under the '
                               'object centre (REP 103)',
            'keypoint_names': list(self.keypoint_names),
            'edges': self.edges.tolist(),
            'symmetric_pairs': self.symmetric_pairs.tolist(),
            'size_prior_m': self.size_prior_m,
            'dimensions_m': [round(float(v), 6) for v in self.dimensions_m],
            'alpha_std': [float(v) for v in self.alpha_std],
            'explained_variance': [float(v) for v in self.explained_variance],
            'rotational_symmetries': [s.to_dict() for s in self.rotational_symmetries],
            'bases': [[[round(float(v), 8) for v in p] for p in b] for b in self.bases],
            'metadata': self.metadata,
        }


def category_from_dict(data: dict) -> Category:
    """Build a Category from the content of a category JSON file."""
    version = int(data.get('format_version', FORMAT_VERSION))
    if version > FORMAT_VERSION:
        raise ValueError(f'category file format {version} is newer than supported '
                         f'({FORMAT_VERSION})')
    n = len(data['keypoint_names'])
    return Category(
        name=data['name'],
        keypoint_names=tuple(data['keypoint_names']),
        edges=np.asarray(data['edges'], dtype=np.int64),
        symmetric_pairs=np.asarray(data.get('symmetric_pairs', []), dtype=np.int64),
        bases=np.asarray(data['bases'], dtype=np.float64),
        alpha_std=np.asarray(data['alpha_std'], dtype=np.float64),
        size_prior_m=float(data['size_prior_m']),
        dimensions_m=np.asarray(data['dimensions_m'], dtype=np.float64),
        explained_variance=np.asarray(data.get('explained_variance', []), dtype=np.float64),
        metadata=dict(data.get('metadata', {})),
        rotational_symmetries=symmetries_from_list(data.get('rotational_symmetries'), n,
                                                   str(data['name'])),
    )


def save_category(category: Category, path: str | Path) -> Path:
    """Write a category JSON file (stable key order, one line per base keypoint)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for key, value in category.to_dict().items():
        if key == 'bases':
            blocks = [',\n'.join('   ' + json.dumps(p) for p in b) for b in value]
            body = '[\n  [\n' + '\n  ],\n  [\n'.join(blocks) + '\n  ]\n ]'
        elif key == 'metadata':
            body = json.dumps(value, indent=2).replace('\n', '\n ')
        else:
            body = json.dumps(value)
        lines.append(f' {json.dumps(key)}: {body}')
    path.write_text('{\n' + ',\n'.join(lines) + '\n}\n', encoding='utf-8')
    return path


def available_categories() -> list[str]:
    """Names of the categories shipped in ``perception_3dinn/categories``."""
    return sorted(p.stem for p in CATEGORY_DIR.glob('*.json'))


@functools.lru_cache(maxsize=32)
def _load_cached(path: str) -> Category:
    with open(path, encoding='utf-8') as f:
        return category_from_dict(json.load(f))


def load_category(name: str | Path) -> Category:
    """Load a category by name (shipped file) or by path to a JSON file.

    Raises:
        FileNotFoundError: with the available names when the category is unknown.
    """
    text = str(name)
    path = Path(text)
    if not (text.endswith('.json') or path.is_file()):
        path = CATEGORY_DIR / f'{text}.json'
    if not path.is_file():
        raise FileNotFoundError(f'unknown category {text!r}: no {path}; available: '
                                f'{", ".join(available_categories()) or "none"}')
    return _load_cached(str(path.resolve()))
