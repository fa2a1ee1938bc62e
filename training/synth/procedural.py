"""Procedural, parametric objects whose keypoints are exact by construction.

An object is a :class:`Mesh`: a list of convex parts (seat slab, legs, back slats, table
top, ...), each a closed convex polyhedron with planar faces, plus its keypoints in metres
in the canonical object frame (x forward, y left, z up, origin on the floor under the
object centre). Convex parts keep everything downstream simple and exact: the renderer
fills each face as a convex polygon with a per-plane depth, the voxeliser tests voxels
against each part's half-spaces, and rays can be clipped against parts analytically.

Every keypoint lies on the surface of its *owner* part (``Mesh.keypoint_parts``): leg tips
are the centres of the legs' floor faces, seat and table-top corners are corners of the
slab's top face, back-top corners the outer top corners of the back. The renderer ignores
the owner part when it decides whether a keypoint is hidden (a leg does not hide its own
foot), as a person labelling the image would.

Generators are registered per category in :data:`GENERATORS`; ``generate(category, rng)``
samples one instance. Adding a category means a generator here plus its JSON file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

GENERATOR_VERSION = '1.0'

CHAIR_KEYPOINTS = (
    'leg_front_left', 'leg_front_right', 'leg_back_left', 'leg_back_right',
    'seat_front_left', 'seat_front_right', 'seat_back_left', 'seat_back_right',
    'back_top_left', 'back_top_right',
)
CHAIR_EDGES = ((0, 4), (1, 5), (2, 6), (3, 7), (4, 5), (5, 7), (7, 6), (6, 4),
               (6, 8), (7, 9), (8, 9))
CHAIR_SYMMETRIC = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))

TABLE_KEYPOINTS = (
    'leg_front_left', 'leg_front_right', 'leg_back_left', 'leg_back_right',
    'top_front_left', 'top_front_right', 'top_back_left', 'top_back_right',
)
TABLE_EDGES = ((0, 4), (1, 5), (2, 6), (3, 7), (4, 5), (5, 7), (7, 6), (6, 4))
TABLE_SYMMETRIC = ((0, 1), (2, 3), (4, 5), (6, 7))

SKELETONS = {
    'chair': (CHAIR_KEYPOINTS, CHAIR_EDGES, CHAIR_SYMMETRIC),
    'table': (TABLE_KEYPOINTS, TABLE_EDGES, TABLE_SYMMETRIC),
}


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


def _ngon(n: int, rx: float, ry: float, phase: float = 0.0) -> np.ndarray:
    a = phase + 2.0 * np.pi * np.arange(n) / n
    return np.stack([rx * np.cos(a), ry * np.sin(a)], -1)


def _square(h: float) -> np.ndarray:
    return np.array([[h, -h], [h, h], [-h, h], [-h, -h]], np.float64)


def vertical_strut(bottom_xy, top_xy, z0: float, z1: float, r0: float, r1: float,
                   round_: bool, material: int = 0) -> ConvexPart:
    """A leg or column from z0 to z1, cross-section half-size r0 at z0 and r1 at z1."""
    sec = _ngon(8, 1.0, 1.0, np.pi / 8) if round_ else _square(1.0)
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


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


# ----------------------------------------------------------------------------- chair
def generate_chair(rng: np.random.Generator) -> Mesh:
    """Sample one chair: seat, 4 legs / pedestal / sled / panels, back styles, arms."""
    p: dict = {}
    p['seat_depth'] = d = _u(rng, 0.36, 0.58)
    p['seat_width'] = w = _u(rng, 0.36, 0.62)
    p['seat_back_ratio'] = _u(rng, 0.8, 1.0) if rng.random() < 0.5 else 1.0
    wb = w * p['seat_back_ratio']
    p['seat_height'] = h = _u(rng, 0.36, 0.56)
    p['seat_thickness'] = th = _u(rng, 0.015, 0.10)
    p['base'] = base = rng.choice(['legs', 'legs', 'legs', 'sled', 'pedestal', 'panels'],
                                  p=[0.3, 0.2, 0.15, 0.1, 0.15, 0.1])
    parts: list[ConvexPart] = []
    kp_parts = np.zeros(10, np.int64)

    # Seat slab: top face corners are keypoints 4..7.
    xf, xb = d / 2.0, -d / 2.0
    seat_top = np.array([[xf, w / 2, h], [xf, -w / 2, h], [xb, wb / 2, h], [xb, -wb / 2, h]])
    ring = np.array([[xf, -w / 2], [xf, w / 2], [xb, wb / 2], [xb, -wb / 2]])
    parts.append(prism(np.column_stack([ring, np.full(4, h - th)]),
                       np.column_stack([ring, np.full(4, h)]), material=1))
    kp_parts[4:8] = 0

    # Base: keypoints 0..3 (front-left, front-right, back-left, back-right) on the floor.
    corners = seat_top[:, :2]  # same order as the leg keypoints
    sign = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], np.float64)
    kps_legs = np.zeros((4, 3))
    z_under = h - th
    if base in ('legs', 'sled'):
        p['leg_half'] = r = _u(rng, 0.01, 0.03)
        p['leg_taper'] = taper = _u(rng, 0.5, 1.0) if rng.random() < 0.5 else 1.0
        p['leg_round'] = round_ = bool(rng.random() < 0.35)
        p['leg_inset'] = inset = _u(rng, 0.0, 0.05)
        p['leg_splay'] = splay = _u(rng, 0.0, 0.08) if rng.random() < 0.5 else 0.0
        for i in range(4):
            top_xy = corners[i] - sign[i] * (inset + r)
            bot_xy = top_xy + sign[i] * splay
            kps_legs[i] = [bot_xy[0], bot_xy[1], 0.0]
            kp_parts[i] = len(parts)
            parts.append(vertical_strut(bot_xy, top_xy, 0.0, z_under, r * taper, r, round_))
        if base == 'sled':  # floor runners joining front and back legs on each side
            hr = min(r * taper, 0.02)
            for a, b in ((0, 2), (1, 3)):
                pa = kps_legs[a] + [0.0, 0.0, hr]
                pb = kps_legs[b] + [0.0, 0.0, hr]
                parts.append(beam(pa + [0.03, 0, 0], pb - [0.03, 0, 0], hr, hr))
        if rng.random() < 0.45:  # stretchers between legs
            zs = _u(rng, 0.08, 0.6) * z_under
            frac = zs / z_under
            hs = max(0.006, 0.5 * r)
            pts = [kps_legs[i] + frac * (np.r_[corners[i] - sign[i] * (inset + r), z_under]
                                         - kps_legs[i]) for i in range(4)]
            pts = [q.copy() for q in pts]
            for q in pts:
                q[2] = zs
            for a, b in ((0, 2), (1, 3), (0, 1), (2, 3)):
                if rng.random() < 0.8:
                    parts.append(beam(pts[a], pts[b], hs, hs))
    elif base == 'pedestal':
        p['foot_radius'] = rf = _u(rng, 0.25, 0.36)
        p['column_half'] = rc = _u(rng, 0.02, 0.045)
        foot_h = _u(rng, 0.03, 0.06)
        zc0 = foot_h + 0.02
        parts.append(vertical_strut((0, 0), (0, 0), zc0, z_under, rc, rc, True))
        parts.append(vertical_strut((0, 0), (0, 0), z_under - 0.04, z_under, 0.08, 0.08,
                                    False))
        for i in range(4):
            ang = np.arctan2(corners[i][1], corners[i][0])
            tip = np.array([rf * np.cos(ang), rf * np.sin(ang)])
            fh = foot_h / 2
            kps_legs[i] = [tip[0], tip[1], 0.0]
            kp_parts[i] = len(parts)
            parts.append(vertical_strut(tip, tip, 0.0, foot_h, fh, fh, True))
            parts.append(beam([0.0, 0.0, zc0 + 0.01], [tip[0], tip[1], foot_h + 0.012],
                              0.018, 0.012))
    else:  # panels: two side panels, leg tips at their bottom corners
        p['panel_half'] = pt = _u(rng, 0.008, 0.02)
        inset = _u(rng, 0.0, 0.04)
        for a, b in ((0, 2), (1, 3)):
            ya = corners[a][1] - sign[a][1] * (inset + pt)
            yb = corners[b][1] - sign[b][1] * (inset + pt)
            xa, xb2 = corners[a][0] - inset, corners[b][0] + inset
            ring = np.array([[xa, ya - pt], [xa, ya + pt], [xb2, yb + pt], [xb2, yb - pt]])
            kps_legs[a] = [xa, ya, 0.0]
            kps_legs[b] = [xb2, yb, 0.0]
            kp_parts[a] = kp_parts[b] = len(parts)
            parts.append(prism(np.column_stack([ring, np.zeros(4)]),
                               np.column_stack([ring, np.full(4, z_under)])))

    # Back: keypoints 8, 9 at the outer top corners (mid-thickness).
    p['back_height'] = hb = _u(rng, 0.22, 0.70)
    p['back_tilt'] = tilt = _u(rng, 0.0, 0.35)
    p['back_thickness'] = tb = _u(rng, 0.015, 0.07)
    p['back_top_ratio'] = _u(rng, 0.75, 1.1)
    wt = wb * p['back_top_ratio']
    p['back_style'] = style = rng.choice(['solid', 'vertical_slats', 'rails', 'frame'])
    z0 = h - th if rng.random() < 0.5 else h
    xb0 = xb + tb / 2
    ztop = h + hb
    xt = xb0 - (ztop - z0) * np.tan(tilt)
    back_parts = []
    if style == 'solid':
        back_parts.append(_back_slab(xb0, xt, z0, ztop, wb / 2, wt / 2, -wb / 2, -wt / 2, tb))
        kp_parts[8] = kp_parts[9] = len(parts)
    else:
        pw = min(_u(rng, 0.015, 0.04), wb / 6)  # post half-width
        for s in (1, -1):  # posts at both sides, their outer top corner is the keypoint
            y0o, y1o = s * wb / 2, s * wt / 2
            y0i, y1i = s * (wb / 2 - 2 * pw), s * (wt / 2 - 2 * pw)
            kp_parts[8 if s > 0 else 9] = len(parts) + len(back_parts)
            back_parts.append(_back_slab(xb0, xt, z0, ztop, max(y0o, y0i), max(y1o, y1i),
                                         min(y0o, y0i), min(y1o, y1i), tb))
        top_rail_h = _u(rng, 0.03, 0.12) * hb if style != 'vertical_slats' else 0.04 * hb
        z_rail = ztop - top_rail_h
        if style in ('rails', 'frame', 'vertical_slats'):
            back_parts.append(_back_slab(xb0, xt, z0, ztop, wb / 2 - pw, wt / 2 - pw,
                                         -wb / 2 + pw, -wt / 2 + pw, tb * 0.8,
                                         z_from=z_rail))
        if style == 'rails':
            n = int(rng.integers(1, 4))
            for j in range(n):
                zc = z0 + (z_rail - z0) * (j + 1) / (n + 1)
                hh = _u(rng, 0.02, 0.05)
                back_parts.append(_back_slab(xb0, xt, z0, ztop, wb / 2 - pw, wt / 2 - pw,
                                             -wb / 2 + pw, -wt / 2 + pw, tb * 0.6,
                                             z_from=zc - hh / 2, z_to=zc + hh / 2))
        elif style == 'vertical_slats':
            n = int(rng.integers(1, 6))
            sw = _u(rng, 0.01, 0.04)
            for j in range(n):
                fy = -1 + 2 * (j + 1) / (n + 1)
                yb_, yt_ = fy * (wb / 2 - 2 * pw), fy * (wt / 2 - 2 * pw)
                back_parts.append(_back_slab(xb0, xt, z0, ztop, yb_ + sw, yt_ + sw,
                                             yb_ - sw, yt_ - sw, tb * 0.6, z_to=z_rail))
        else:  # frame: a panel inset in the frame
            back_parts.append(_back_slab(xb0, xt, z0, ztop, wb / 2 - pw, wt / 2 - pw,
                                         -wb / 2 + pw, -wt / 2 + pw, tb * 0.4,
                                         z_from=h + 0.35 * hb, z_to=z_rail))
    for bp in back_parts:
        bp.material = 2
    parts += back_parts
    kp_back = np.array([[xt, wt / 2, ztop], [xt, -wt / 2, ztop]])

    # Arms (no keypoints).
    p['arms'] = bool(rng.random() < 0.3)
    if p['arms']:
        za = h + _u(rng, 0.17, 0.28)
        ha = _u(rng, 0.01, 0.03)
        for s in (1, -1):
            ya = s * (w / 2 - 0.02)
            x_back = xb0 - (za - z0) * np.tan(tilt)
            parts.append(box([x_back, ya - 0.025, za - ha], [xf, ya + 0.025, za + ha], 3))
            parts.append(box([xf - 0.06, ya - 0.015, h], [xf - 0.03, ya + 0.015, za - ha], 3))

    kps = np.concatenate([kps_legs, seat_top, kp_back])
    return Mesh('chair', parts, kps, kp_parts, p)


def _back_slab(xb0, xt, z0, ztop, yl0, yl1, yr0, yr1, tb, z_from=None, z_to=None):
    """Slab of the tilted back between z_from and z_to; y bounds interpolate linearly."""
    z_from = z0 if z_from is None else z_from
    z_to = ztop if z_to is None else z_to

    def at(z):
        f = (z - z0) / (ztop - z0)
        x = xb0 + f * (xt - xb0)
        yl = yl0 + f * (yl1 - yl0)
        yr = yr0 + f * (yr1 - yr0)
        return np.array([[x + tb / 2, yr, z], [x + tb / 2, yl, z],
                         [x - tb / 2, yl, z], [x - tb / 2, yr, z]])

    return prism(at(z_from), at(z_to), material=2)


# ----------------------------------------------------------------------------- table
def generate_table(rng: np.random.Generator) -> Mesh:
    """Sample one table: rectangular/round/oval top, 4 legs / pedestal / trestle ends."""
    p: dict = {}
    p['kind'] = kind = rng.choice(['dining', 'coffee', 'desk', 'side'], p=[0.4, 0.2, 0.25, 0.15])
    hmin, hmax = {'dining': (0.7, 0.8), 'coffee': (0.35, 0.5), 'desk': (0.68, 0.8),
                  'side': (0.5, 0.7)}[kind]
    p['height'] = h = _u(rng, hmin, hmax)
    p['shape'] = shape = rng.choice(['rect', 'rect', 'round', 'oval'])
    if shape == 'round':
        L = W = _u(rng, 0.5, 1.3)
    else:
        L = _u(rng, 0.5, 2.0)
        W = _u(rng, 0.45, min(L, 1.1))
    p['length'], p['width'] = L, W
    p['top_thickness'] = tt = _u(rng, 0.02, 0.07)
    parts: list[ConvexPart] = []
    kp_parts = np.zeros(8, np.int64)
    sign = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], np.float64)
    if shape == 'rect':
        ring = np.array([[L / 2, -W / 2], [L / 2, W / 2], [-L / 2, W / 2], [-L / 2, -W / 2]])
        top_corners = sign * [L / 2, W / 2]
    else:
        m = 24  # vertices at 45 + k * 15 degrees: the diagonals are vertices
        ring = _ngon(m, L / 2, W / 2, np.pi / 4)
        top_corners = sign * [L / 2 * np.cos(np.pi / 4), W / 2 * np.sin(np.pi / 4)]
    parts.append(prism(np.column_stack([ring, np.full(len(ring), h - tt)]),
                       np.column_stack([ring, np.full(len(ring), h)]), material=1))
    top_kps = np.column_stack([top_corners, np.full(4, h)])
    z_under = h - tt
    p['base'] = base = rng.choice(['legs', 'legs', 'pedestal', 'trestle'])
    leg_kps = np.zeros((4, 3))
    if base == 'legs':
        r = _u(rng, 0.015, 0.045)
        taper = _u(rng, 0.5, 1.0) if rng.random() < 0.5 else 1.0
        round_ = bool(rng.random() < 0.4)
        inset = _u(rng, 0.0, 0.12) + (0.05 if shape != 'rect' else 0.0)
        splay = _u(rng, 0.0, 0.06) if rng.random() < 0.3 else 0.0
        for i in range(4):
            top_xy = top_corners[i] - sign[i] * (inset + r)
            bot_xy = top_xy + sign[i] * splay
            leg_kps[i] = [bot_xy[0], bot_xy[1], 0.0]
            kp_parts[i] = len(parts)
            parts.append(vertical_strut(bot_xy, top_xy, 0.0, z_under, r * taper, r, round_))
        if rng.random() < 0.6:  # apron
            ah = _u(rng, 0.04, 0.12)
            ins = inset + r
            for a, b in ((0, 2), (1, 3), (0, 1), (2, 3)):
                pa = np.r_[top_corners[a] - sign[a] * ins, z_under - ah / 2]
                pb = np.r_[top_corners[b] - sign[b] * ins, z_under - ah / 2]
                parts.append(beam(pa, pb, 0.01, ah / 2))
    elif base == 'pedestal':
        rc = _u(rng, 0.03, 0.09)
        rf = _u(rng, 0.2, 0.45) * min(1.0, min(L, W) / 0.8)
        fh = _u(rng, 0.02, 0.05)
        parts.append(vertical_strut((0, 0), (0, 0), fh, z_under, rc, rc * _u(rng, 0.6, 1.0),
                                    True))
        for i in range(4):
            ang = np.arctan2(top_corners[i][1], top_corners[i][0])
            tip = np.array([rf * np.cos(ang), rf * np.sin(ang)])
            leg_kps[i] = [tip[0], tip[1], 0.0]
            kp_parts[i] = len(parts)
            parts.append(vertical_strut(tip, tip, 0.0, fh, 0.025, 0.025, False))
            parts.append(beam([0, 0, fh], [tip[0], tip[1], fh], 0.02, fh * 0.9))
    else:  # trestle: two end frames (x = +-), each a foot beam and an upright
        fx = L / 2 - _u(rng, 0.05, 0.25) * L / 2
        fy = W / 2 - _u(rng, 0.0, 0.1)
        hf = _u(rng, 0.02, 0.04)
        for s in (1, -1):
            a, b = (0, 1) if s > 0 else (2, 3)
            leg_kps[a] = [s * fx, fy, 0.0]
            leg_kps[b] = [s * fx, -fy, 0.0]
            kp_parts[a] = kp_parts[b] = len(parts)
            parts.append(box([s * fx - hf, -fy, 0.0], [s * fx + hf, fy, 2 * hf]))
            parts.append(box([s * fx - hf, -0.04, 2 * hf], [s * fx + hf, 0.04, z_under]))
        parts.append(beam([fx, 0, 0.3 * z_under], [-fx, 0, 0.3 * z_under], 0.02, 0.03))
    kps = np.concatenate([leg_kps, top_kps])
    kp_parts[4:] = 0
    return Mesh('table', parts, kps, kp_parts, p)


GENERATORS: dict[str, Callable[[np.random.Generator], Mesh]] = {
    'chair': generate_chair,
    'table': generate_table,
}


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
