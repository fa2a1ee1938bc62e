"""Procedural sofas: 1-3 seats, arms or none, cushions or a solid seat, chaise, feet or plinth.

The back frame leans back by ``back_lean`` metres over its height; the arms and the seat
meet its front face. A chaise extends one side's seat (and that side's arm) forward, so a
sofa with ``params['chaise']`` set is not a mirror of itself. Without arms the arm
keypoints coincide with the seat's outer front and back corners.
"""

from __future__ import annotations

import numpy as np

from training.synth.procedural.parts import (
    box,
    ConvexPart,
    Mesh,
    prism,
    uniform,
    vertical_strut,
)

KEYPOINTS = (
    'base_front_left', 'base_front_right', 'base_back_left', 'base_back_right',
    'seat_front_left', 'seat_front_right', 'seat_back_left', 'seat_back_right',
    'back_top_left', 'back_top_right',
    'arm_front_left', 'arm_front_right', 'arm_back_left', 'arm_back_right',
)
EDGES = ((0, 4), (1, 5), (2, 6), (3, 7), (4, 5), (5, 7), (7, 6), (6, 4), (6, 8), (7, 9),
         (8, 9), (10, 12), (11, 13), (12, 8), (13, 9), (10, 4), (11, 5))
SYMMETRIC = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11), (12, 13))
FLOOR = (0, 1, 2, 3)
ROTATIONAL_ORDERS: tuple[int, ...] = ()  # turns about z an instance may look the same after


def generate_sofa(rng: np.random.Generator) -> Mesh:
    """Sample one sofa."""
    p: dict = {}
    p['seats'] = n = int(rng.choice([1, 2, 3], p=[0.25, 0.35, 0.4]))
    p['seat_width'] = sw = uniform(rng, 0.5, 0.7)
    ws = n * sw  # seating width between the arms
    p['arms'] = arms = bool(rng.random() < 0.75)
    p['arm_width'] = aw = uniform(rng, 0.08, 0.28) if arms else 0.0
    yo = ws / 2 + aw  # outer half-width
    p['seat_height'] = hs = uniform(rng, 0.38, 0.48)
    p['seat_depth'] = sd = uniform(rng, 0.5, 0.68)
    p['back_height'] = zt = uniform(rng, 0.75, 1.0)
    p['back_thickness'] = tb = uniform(rng, 0.12, 0.25)
    p['back_lean'] = lean = uniform(rng, 0.0, 0.12) if rng.random() < 0.6 else 0.0
    chaise = str(rng.choice(['left', 'right'])) if n >= 2 and rng.random() < 0.35 else None
    p['chaise'] = chaise
    p['chaise_length'] = ext = uniform(rng, 0.45, 0.8) if chaise else 0.0
    cs = {'left': 1, 'right': -1, None: 0}[chaise]
    p['base'] = base = str(rng.choice(['feet', 'plinth'], p=[0.65, 0.35]))
    p['base_height'] = hf = uniform(rng, 0.04, 0.16) if base == 'feet' else uniform(rng, 0.03,
                                                                                    0.10)
    p['cushions'] = cushions = bool(rng.random() < 0.6)
    xb = -(tb + sd) / 2  # back face of the back frame (at the floor side)
    xs, xf = xb + tb, (tb + sd) / 2  # back frame front face at z = hf; seat front

    def x_back(z):  # front face of the leaning back frame at height z
        return xs - lean * (z - hf) / (zt - hf)

    def front(s):
        return xf + (ext if s == cs else 0.0)

    def seat_y(i):  # y range of seat i (0 rightmost); outer edges exactly at +-ws/2
        return (-ws / 2 + i * sw, ws / 2 if i == n - 1 else -ws / 2 + (i + 1) * sw)

    chaise_seat = (n - 1 if cs > 0 else 0) if chaise else None
    parts: list[ConvexPart] = []
    kp = np.zeros((14, 3))
    kp_parts = np.zeros(14, np.int64)
    xsb = x_back(hs)  # where the seat's top meets the back

    # Back frame: a parallelogram in x-z extruded over the full width.
    kp[8:10] = [[x_back(zt) - tb / 2, yo, zt], [x_back(zt) - tb / 2, -yo, zt]]
    kp_parts[8:10] = len(parts)
    parts.append(_extrude_y([[xb, hf], [xs, hf], [xs - lean, zt], [xb - lean, zt]], -yo, yo,
                            2))

    # Seat: a solid slab, or a deck under one cushion per seat (the chaise's is longer).
    ct = uniform(rng, 0.10, 0.18) if cushions else hs - hf
    gap = uniform(rng, 0.004, 0.012)
    seat_owner = {}
    if cushions:
        parts.append(box([xsb, -ws / 2, hf], [xf, ws / 2, hs - ct]))
        if chaise:
            y0, y1 = seat_y(chaise_seat)
            parts.append(box([xf, y0, hf], [xf + ext, y1, hs - ct]))
        for i in range(n):
            y0, y1 = seat_y(i)
            x1 = xf + (ext if i == chaise_seat else 0.0)
            seat_owner[i] = len(parts)
            parts.append(box([xsb, y0 + (gap if i > 0 else 0.0), hs - ct],
                             [x1, y1 - (gap if i < n - 1 else 0.0), hs], 1))
        owner_front = {1: seat_owner[n - 1], -1: seat_owner[0]}
        owner_back = dict(owner_front)
    else:
        main = len(parts)
        parts.append(box([xsb, -ws / 2, hf], [xf, ws / 2, hs], 1))
        owner_front = {1: main, -1: main}
        owner_back = {1: main, -1: main}
        if chaise:
            y0, y1 = seat_y(chaise_seat)
            owner_front[cs] = len(parts)
            parts.append(box([xf, y0, hf], [xf + ext, y1, hs], 1))
    for s, (f, b) in ((1, (4, 6)), (-1, (5, 7))):
        kp[f] = [front(s), s * ws / 2, hs]
        kp[b] = [xsb, s * ws / 2, hs]
        kp_parts[f], kp_parts[b] = owner_front[s], owner_back[s]

    # Back cushions leaning on the frame, one per seat.
    if cushions and rng.random() < 0.8:
        p['back_cushions'] = True
        ctb = uniform(rng, 0.10, 0.18)
        zc = zt + uniform(rng, -0.12, 0.02)
        dx = lean * (zc - hs) / (zt - hf)
        for i in range(n):
            y0, y1 = seat_y(i)
            y0, y1 = y0 + (gap if i > 0 else 0.0), y1 - (gap if i < n - 1 else 0.0)
            ring = np.array([[xsb + ctb, y0], [xsb + ctb, y1], [xsb, y1], [xsb, y0]])
            parts.append(prism(np.column_stack([ring, np.full(4, hs)]),
                               np.column_stack([ring - [dx, 0.0], np.full(4, zc)]), 1))
    else:
        p['back_cushions'] = False

    # Arms: x-z profiles (front top optionally sloping down) extruded over the arm width.
    if arms:
        ha = min(hs + uniform(rng, 0.12, 0.26), zt - 0.05)
        p['arm_height'] = ha
        slope = uniform(rng, 0.0, 0.08) if rng.random() < 0.4 else 0.0
        for s, (f, b) in ((1, (10, 12)), (-1, (11, 13))):
            fa = front(s)
            prof = [[xs, hf], [fa, hf], [fa, ha - slope], [x_back(ha), ha]]
            kp[f] = [fa, s * yo, ha - slope]
            kp[b] = [x_back(ha), s * yo, ha]
            kp_parts[f] = kp_parts[b] = len(parts)
            parts.append(_extrude_y(prof, *sorted((s * ws / 2, s * yo)), 3))
    else:
        p['arm_height'] = hs
        kp[10:14] = kp[[4, 5, 6, 7]]
        kp_parts[10:14] = kp_parts[[4, 5, 6, 7]]

    # Base: feet under the outline corners, or a (recessed) plinth.
    ychaise = ws / 2 - sw  # inner edge of the chaise (seen from its side)
    if base == 'feet':
        r = uniform(rng, 0.018, 0.04)
        taper = uniform(rng, 0.5, 1.0) if rng.random() < 0.5 else 1.0
        round_ = bool(rng.random() < 0.5)
        fi = uniform(rng, 0.0, 0.06) + r
        spots = []
        for s, (f, b) in ((1, (0, 2)), (-1, (1, 3))):
            spots += [(f, front(s) - fi, s * (yo - fi)), (b, xb + fi, s * (yo - fi))]
        if chaise:
            spots.append((None, xf + ext - fi, cs * (ychaise + fi)))
        if n == 3 or (chaise and n == 2):
            spots += [(None, xf - fi, 0.0), (None, xb + fi, 0.0)]
        for k, x, y in spots:
            if k is not None:
                kp[k] = [x, y, 0.0]
                kp_parts[k] = len(parts)
            parts.append(vertical_strut((x, y), (x, y), 0.0, hf, r * taper, r, round_))
    else:
        ins = uniform(rng, 0.0, 0.05) if rng.random() < 0.6 else 0.0
        main = len(parts)
        parts.append(box([xb + ins, -yo + ins, 0.0], [xf - ins, yo - ins, hf]))
        owner = {1: main, -1: main}
        if chaise:
            owner[cs] = len(parts)
            ya, yb_ = sorted((cs * (ychaise + ins), cs * (yo - ins)))
            parts.append(box([xf - ins, ya, 0.0], [xf + ext - ins, yb_, hf]))
        for s, (f, b) in ((1, (0, 2)), (-1, (1, 3))):
            kp[f] = [front(s) - ins, s * (yo - ins), 0.0]
            kp[b] = [xb + ins, s * (yo - ins), 0.0]
            kp_parts[f], kp_parts[b] = owner[s], main
    return Mesh('sofa', parts, kp, kp_parts, p)


def _extrude_y(profile_xz, y0: float, y1: float, material: int = 0) -> ConvexPart:
    """Prism of a convex x-z polygon between the planes y = y0 and y = y1."""
    q = np.asarray(profile_xz, np.float64)
    cap = np.column_stack([q[:, 0], np.full(len(q), y0), q[:, 1]])
    return prism(cap, cap + [0.0, y1 - y0, 0.0], material)
