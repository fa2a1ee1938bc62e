"""Procedural chairs: 4 legs, pedestal, sled or panel bases, slatted/solid/open backs, arms."""

from __future__ import annotations

import numpy as np

from training.synth.procedural.parts import (
    beam,
    box,
    ConvexPart,
    Mesh,
    prism,
    uniform,
    vertical_strut,
)

KEYPOINTS = (
    'leg_front_left', 'leg_front_right', 'leg_back_left', 'leg_back_right',
    'seat_front_left', 'seat_front_right', 'seat_back_left', 'seat_back_right',
    'back_top_left', 'back_top_right',
)
EDGES = ((0, 4), (1, 5), (2, 6), (3, 7), (4, 5), (5, 7), (7, 6), (6, 4),
         (6, 8), (7, 9), (8, 9))
SYMMETRIC = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))
FLOOR = (0, 1, 2, 3)
ROTATIONAL_ORDERS: tuple[int, ...] = ()  # turns about z an instance may look the same after


def generate_chair(rng: np.random.Generator) -> Mesh:
    """Sample one chair: seat, 4 legs / pedestal / sled / panels, back styles, arms."""
    p: dict = {}
    p['seat_depth'] = d = uniform(rng, 0.36, 0.58)
    p['seat_width'] = w = uniform(rng, 0.36, 0.62)
    p['seat_back_ratio'] = uniform(rng, 0.8, 1.0) if rng.random() < 0.5 else 1.0
    wb = w * p['seat_back_ratio']
    p['seat_height'] = h = uniform(rng, 0.36, 0.56)
    p['seat_thickness'] = th = uniform(rng, 0.015, 0.10)
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
        p['leg_half'] = r = uniform(rng, 0.01, 0.03)
        p['leg_taper'] = taper = uniform(rng, 0.5, 1.0) if rng.random() < 0.5 else 1.0
        p['leg_round'] = round_ = bool(rng.random() < 0.35)
        p['leg_inset'] = inset = uniform(rng, 0.0, 0.05)
        p['leg_splay'] = splay = uniform(rng, 0.0, 0.08) if rng.random() < 0.5 else 0.0
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
            zs = uniform(rng, 0.08, 0.6) * z_under
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
        p['foot_radius'] = rf = uniform(rng, 0.25, 0.36)
        p['column_half'] = rc = uniform(rng, 0.02, 0.045)
        foot_h = uniform(rng, 0.03, 0.06)
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
        p['panel_half'] = pt = uniform(rng, 0.008, 0.02)
        inset = uniform(rng, 0.0, 0.04)
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
    p['back_height'] = hb = uniform(rng, 0.22, 0.70)
    p['back_tilt'] = tilt = uniform(rng, 0.0, 0.35)
    p['back_thickness'] = tb = uniform(rng, 0.015, 0.07)
    p['back_top_ratio'] = uniform(rng, 0.75, 1.1)
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
        pw = min(uniform(rng, 0.015, 0.04), wb / 6)  # post half-width
        for s in (1, -1):  # posts at both sides, their outer top corner is the keypoint
            y0o, y1o = s * wb / 2, s * wt / 2
            y0i, y1i = s * (wb / 2 - 2 * pw), s * (wt / 2 - 2 * pw)
            kp_parts[8 if s > 0 else 9] = len(parts) + len(back_parts)
            back_parts.append(_back_slab(xb0, xt, z0, ztop, max(y0o, y0i), max(y1o, y1i),
                                         min(y0o, y0i), min(y1o, y1i), tb))
        top_rail_h = uniform(rng, 0.03, 0.12) * hb if style != 'vertical_slats' else 0.04 * hb
        z_rail = ztop - top_rail_h
        if style in ('rails', 'frame', 'vertical_slats'):
            back_parts.append(_back_slab(xb0, xt, z0, ztop, wb / 2 - pw, wt / 2 - pw,
                                         -wb / 2 + pw, -wt / 2 + pw, tb * 0.8,
                                         z_from=z_rail))
        if style == 'rails':
            n = int(rng.integers(1, 4))
            for j in range(n):
                zc = z0 + (z_rail - z0) * (j + 1) / (n + 1)
                hh = uniform(rng, 0.02, 0.05)
                back_parts.append(_back_slab(xb0, xt, z0, ztop, wb / 2 - pw, wt / 2 - pw,
                                             -wb / 2 + pw, -wt / 2 + pw, tb * 0.6,
                                             z_from=zc - hh / 2, z_to=zc + hh / 2))
        elif style == 'vertical_slats':
            n = int(rng.integers(1, 6))
            sw = uniform(rng, 0.01, 0.04)
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
        za = h + uniform(rng, 0.17, 0.28)
        ha = uniform(rng, 0.01, 0.03)
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
