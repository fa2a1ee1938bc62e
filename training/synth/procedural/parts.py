"""Building blocks of procedural objects: convex parts, the generated mesh, part builders.

A :class:`Mesh` is a list of convex parts (seat slab, legs, back slats, table top, ...),
each a closed convex polyhedron with planar faces, plus its keypoints in metres in the
canonical object frame (x forward, y left, z up, origin on the floor under the object
centre). Convex parts keep everything downstream simple and exact: the renderer fills each
face as a convex polygon with a per-plane depth, the voxeliser tests voxels against each
part's half-spaces, and rays can be clipped against parts analytically.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ConvexPart:
    """A closed convex polyhedron.

    Attributes:
        vertices: (V, 3) float64 corners, metres.
        faces: tuple of index arrays, each a planar convex polygon ordered
            counter-clockwise seen from outside (outward normal by the right-hand rule).
        material: index of the part's material slot (0 frame, 1 seat, 2 back, ...).
    """

    vertices: np.ndarray
    faces: tuple[np.ndarray, ...]
    material: int = 0
    _hs: np.ndarray | None = field(default=None, repr=False, compare=False)
    _hs_src: np.ndarray | None = field(default=None, repr=False, compare=False)

    def halfspaces(self) -> np.ndarray:
        """(F, 4) outward unit normals n and offsets d: inside iff ``n @ x <= d``.

        Cached until ``vertices`` is replaced by another array.
        """
        if self._hs is None or self._hs_src is not self.vertices:
            n = face_normals(self.vertices, self.faces)
            d = np.array([n[i] @ self.vertices[f[0]] for i, f in enumerate(self.faces)])
            self._hs = np.column_stack([n, d])
            self._hs_src = self.vertices
        return self._hs

    def transformed(self, scale: float = 1.0, shift: np.ndarray | None = None) -> ConvexPart:
        """Copy with vertices ``scale * v + shift`` (half-spaces carried over, not redone)."""
        shift = np.zeros(3) if shift is None else np.asarray(shift, np.float64)
        hs = self.halfspaces()
        v = self.vertices * scale + shift
        part = ConvexPart(v, self.faces, self.material)
        part._hs = np.column_stack([hs[:, :3], hs[:, 3] * scale + hs[:, :3] @ shift])
        part._hs_src = v
        return part


def face_normals(vertices: np.ndarray, faces) -> np.ndarray:
    """(F, 3) unit normals of planar polygons by Newell's method (right-hand rule),
    vectorised over faces of equal vertex count."""
    out = np.empty((len(faces), 3))
    by_len: dict[int, list[int]] = {}
    for i, f in enumerate(faces):
        by_len.setdefault(len(f), []).append(i)
    for _, idx in by_len.items():
        poly = vertices[np.stack([faces[i] for i in idx])]  # (F, L, 3)
        nxt = np.roll(poly, -1, axis=1)
        n = np.stack([
            np.sum((poly[..., 1] - nxt[..., 1]) * (poly[..., 2] + nxt[..., 2]), -1),
            np.sum((poly[..., 2] - nxt[..., 2]) * (poly[..., 0] + nxt[..., 0]), -1),
            np.sum((poly[..., 0] - nxt[..., 0]) * (poly[..., 1] + nxt[..., 1]), -1),
        ], -1)
        out[idx] = n / np.linalg.norm(n, axis=-1, keepdims=True)
    return out


@dataclass
class Mesh:
    """A generated object: convex parts, exact keypoints and the parameters used.

    Attributes:
        category: category name.
        parts: convex parts in the object frame (metres).
        keypoints: (N, 3) keypoints in the object frame (metres).
        keypoint_parts: (N,) index of the part each keypoint lies on.
        params: generator parameters (for debugging and statistics).
    """

    category: str
    parts: list[ConvexPart]
    keypoints: np.ndarray
    keypoint_parts: np.ndarray
    params: dict = field(default_factory=dict)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounds (3,), (3,) of all part vertices."""
        v = np.concatenate([p.vertices for p in self.parts])
        return v.min(0), v.max(0)

    def scaled(self, s: float) -> Mesh:
        """Copy scaled by ``s`` about the object origin."""
        parts = [p.transformed(s) for p in self.parts]
        return Mesh(self.category, parts, self.keypoints * s, self.keypoint_parts.copy(),
                    dict(self.params))

    @property
    def num_faces(self) -> int:
        return sum(len(p.faces) for p in self.parts)


def prism(bottom: np.ndarray, top: np.ndarray, material: int = 0) -> ConvexPart:
    """Convex part spanned by two corresponding convex polygons.

    Args:
        bottom: (M, 3) first cap; top: (M, 3) second cap, vertex i joined to bottom's i.
            Side faces are planar when the caps are parallel and one is a (per-axis)
            scaled, translated copy of the other, which all builders here respect.

    Returns:
        The part with faces oriented outwards.
    """
    bottom = np.asarray(bottom, np.float64)
    top = np.asarray(top, np.float64)
    m = len(bottom)
    verts = np.concatenate([bottom, top])
    idx = np.arange(m)
    faces = [idx[::-1].copy(), idx + m]
    faces += [np.array([i, (i + 1) % m, m + (i + 1) % m, m + i]) for i in range(m)]
    centre = verts.mean(0)
    normals = face_normals(verts, faces)
    oriented = []
    for i, f in enumerate(faces):
        if normals[i] @ (verts[f].mean(0) - centre) < 0:
            f = f[::-1].copy()
            normals[i] = -normals[i]
        oriented.append(f)
    part = ConvexPart(verts, tuple(oriented), material)
    d = np.array([normals[i] @ verts[f[0]] for i, f in enumerate(oriented)])
    part._hs = np.column_stack([normals, d])
    part._hs_src = verts
    return part


def ngon(n: int, rx: float, ry: float, phase: float = 0.0) -> np.ndarray:
    a = phase + 2.0 * np.pi * np.arange(n) / n
    return np.stack([rx * np.cos(a), ry * np.sin(a)], -1)


def square(h: float) -> np.ndarray:
    return np.array([[h, -h], [h, h], [-h, h], [-h, -h]], np.float64)


def vertical_strut(bottom_xy, top_xy, z0: float, z1: float, r0: float, r1: float,
                   round_: bool, material: int = 0) -> ConvexPart:
    """A leg or column from z0 to z1, cross-section half-size r0 at z0 and r1 at z1."""
    sec = ngon(8, 1.0, 1.0, np.pi / 8) if round_ else square(1.0)
    b = np.column_stack([sec * r0 + np.asarray(bottom_xy), np.full(len(sec), z0)])
    t = np.column_stack([sec * r1 + np.asarray(top_xy), np.full(len(sec), z1)])
    return prism(b, t, material)


def box(lo, hi, material: int = 0) -> ConvexPart:
    """Axis-aligned box between corners lo (3,) and hi (3,)."""
    lo = np.asarray(lo, np.float64)
    hi = np.asarray(hi, np.float64)
    q = np.array([[hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]], [lo[0], lo[1]]])
    return prism(np.column_stack([q, np.full(4, lo[2])]),
                 np.column_stack([q, np.full(4, hi[2])]), material)


def beam(p0, p1, half_w: float, half_h: float, material: int = 0) -> ConvexPart:
    """Box of cross-section (2 half_w, 2 half_h) along the segment p0 -> p1."""
    p0 = np.asarray(p0, np.float64)
    p1 = np.asarray(p1, np.float64)
    ax = p1 - p0
    ax /= np.linalg.norm(ax)
    ref = np.array([0.0, 0.0, 1.0]) if abs(ax[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    u = np.cross(ax, ref)
    u /= np.linalg.norm(u)
    v = np.cross(ax, u)
    sec = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], np.float64)
    ring = sec[:, :1] * half_w * u + sec[:, 1:] * half_h * v
    return prism(p0 + ring, p1 + ring, material)


def uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))
