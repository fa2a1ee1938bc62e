"""Procedural, parametric objects whose keypoints are exact by construction.

One module per category (``chair.py``, ``table.py``, ``swivel_chair.py``, ``sofa.py``,
``bed.py``) defines ``KEYPOINTS``, ``EDGES``, ``SYMMETRIC``, ``FLOOR`` (the keypoints on the
floor, z = 0) and a ``generate_<category>(rng) -> Mesh``; :data:`GENERATORS`,
:data:`SKELETONS` and :data:`FLOOR_KEYPOINTS` register them. ``generate(category, rng)``
samples one instance with its origin moved to the floor under the object centre. The
building blocks (convex parts, :class:`Mesh`, prisms, boxes, beams) are in
:mod:`training.synth.procedural.parts`.

Every keypoint lies on the surface of its *owner* part (``Mesh.keypoint_parts``): leg tips
are the centres of the legs' floor faces, seat and table-top corners are corners of the
slab's top face, back-top corners the outer top corners of the back. The renderer ignores
the owner part when it decides whether a keypoint is hidden (a leg does not hide its own
foot), as a person labelling the image would.

Adding a category with a generator means a module here, a line in the registry below and
its ``perception_3dinn/categories/<name>.json`` (``python -m training.synth.bases``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from training.synth.procedural import bed, chair, sofa, swivel_chair, table
from training.synth.procedural.parts import (
    beam,
    box,
    ConvexPart,
    face_normals,
    Mesh,
    prism,
    vertical_strut,
)

GENERATOR_VERSION = '1.1'

_MODULES = {
    'chair': (chair, chair.generate_chair),
    'table': (table, table.generate_table),
    'swivel_chair': (swivel_chair, swivel_chair.generate_swivel_chair),
    'sofa': (sofa, sofa.generate_sofa),
    'bed': (bed, bed.generate_bed),
}

GENERATORS: dict[str, Callable[[np.random.Generator], Mesh]] = {
    name: gen for name, (_, gen) in _MODULES.items()}
SKELETONS = {name: (mod.KEYPOINTS, mod.EDGES, mod.SYMMETRIC)
             for name, (mod, _) in _MODULES.items()}
FLOOR_KEYPOINTS = {name: mod.FLOOR for name, (mod, _) in _MODULES.items()}
ROTATIONAL_ORDERS = {name: mod.ROTATIONAL_ORDERS for name, (mod, _) in _MODULES.items()}

__all__ = ['beam', 'box', 'ConvexPart', 'face_normals', 'FLOOR_KEYPOINTS', 'generate',
           'GENERATOR_VERSION', 'GENERATORS', 'keypoint_diagonal', 'Mesh', 'prism',
           'ROTATIONAL_ORDERS',            'SKELETONS', 'vertical_strut']


def generate(category: str, rng: np.random.Generator) -> Mesh:
    """Sample one instance of ``category`` (metres, canonical frame)."""
    try:
        gen = GENERATORS[category]
    except KeyError:
        raise KeyError(f'no procedural generator for {category!r}; '
                       f'available: {", ".join(sorted(GENERATORS))}') from None
    mesh = gen(rng)
    # Origin on the floor under the object centre (centre of the keypoints' x-y box).
    lo, hi = mesh.keypoints.min(0), mesh.keypoints.max(0)
    shift = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    mesh.parts = [part.transformed(1.0, -shift) for part in mesh.parts]
    mesh.keypoints = mesh.keypoints - shift
    return mesh


def keypoint_diagonal(keypoints: np.ndarray) -> np.ndarray:
    """(..., N, 3) -> (...) length of the keypoints' axis-aligned bounding-box diagonal."""
    k = np.asarray(keypoints, np.float64)
    if k.ndim < 2 or k.shape[-1] != 3:
        raise ValueError(f'keypoints must be (..., N, 3), got {k.shape}')
    return np.linalg.norm(k.max(-2) - k.min(-2), axis=-1)
