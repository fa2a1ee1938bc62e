"""Procedural swivel (office) chairs: 5-star base on casters, gas-lift column, tilted backs.

The star has one leg pointing forward (+x) and the others at multiples of 72 degrees, so
the caster keypoints are exact y-mirrors (``params['star_phase']`` is 0). Casters are
octagonal wheels rolling along their leg with a flat face on the floor; the caster
keypoint is the centre of that face.
"""

from __future__ import annotations

import numpy as np

from training.synth.procedural.parts import (
    beam,
    box,
    ConvexPart,
    Mesh,
    ngon,
    prism,
    uniform,
    vertical_strut,
)

KEYPOINTS = (
    'caster_front', 'caster_front_left', 'caster_back_left', 'caster_back_right',
    'caster_front_right', 'hub', 'column_top',
    'seat_front_left', 'seat_front_right', 'seat_back_left', 'seat_back_right',
    'back_top_left', 'back_top_right',
)
EDGES = ((0, 5), (1, 5), (2, 5), (3, 5), (4, 5), (5, 6), (6, 7), (6, 8), (6, 9), (6, 10),
         (7, 8), (8, 10), (10, 9), (9, 7), (9, 11), (10, 12), (11, 12))
SYMMETRIC = ((1, 4), (2, 3), (7, 8), (9, 10), (11, 12))
FLOOR = (0, 1, 2, 3, 4)
ROTATIONAL_ORDERS: tuple[int, ...] = ()  # turns about z an instance may look the same after

# Star legs in keypoint order: front, front-left, back-left, back-right, front-right.
_LEG_DEG = np.array([0.0, 72.0, 144.0, -144.0, -72.0])


def generate_swivel_chair(rng: np.random.Generator) -> Mesh:
    """Sample one swivel chair: star base, column, seat, (framed) back, arms, headrest."""
    p: dict = {'star_phase': 0.0}
    parts: list[ConvexPart] = []
    kp = np.zeros((13, 3))
    kp_parts = np.zeros(13, np.int64)

    # 5-star base: casters (keypoints 0..4), legs and hub (keypoint 5).
    p['star_radius'] = rs = uniform(rng, 0.26, 0.36)
    p['caster_radius'] = rw = uniform(rng, 0.022, 0.035)
    wd = uniform(rng, 0.018, 0.03)  # wheel width
    leg_hw, leg_hh = uniform(rng, 0.018, 0.03), uniform(rng, 0.012, 0.022)
    hub_r, hub_h = uniform(rng, 0.035, 0.06), uniform(rng, 0.05, 0.09)
    oct_ = ngon(8, rw, rw, np.pi / 8)  # (u, z) wheel profile, flat face at the bottom
    oct_[:, 1] -= oct_[:, 1].min()
    z_housing = oct_[:, 1].max() + uniform(rng, 0.008, 0.02)
    z_tip = z_housing + leg_hh + uniform(rng, 0.0, 0.02)  # leg centre line at the tip
    z_hub = z_tip + uniform(rng, 0.0, 0.05)
    angles = np.deg2rad(_LEG_DEG + p['star_phase'])
    for i, a in enumerate(angles):
        u = np.array([np.cos(a), np.sin(a), 0.0])
        v = np.array([-np.sin(a), np.cos(a), 0.0])
        tip = rs * u
        ring = tip + oct_[:, :1] * u + oct_[:, 1:] * [0.0, 0.0, 1.0] - wd / 2 * v
        kp[i] = [tip[0], tip[1], 0.0]
        kp_parts[i] = len(parts)
        parts.append(prism(ring, ring + wd * v))
        zc = rw * np.cos(np.pi / 8)
        q = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]]) * [0.8 * rw, wd / 2 + 0.004]
        hq = tip + q[:, :1] * u + q[:, 1:] * v
        parts.append(prism(hq + [0, 0, zc], hq + [0, 0, z_housing]))
        parts.append(vertical_strut(tip[:2], tip[:2], z_housing, z_tip, 0.008, 0.008, True))
        end = (rs + 0.025) * u + [0.0, 0.0, z_tip - 0.025 * (z_hub - z_tip) / rs]
        parts.append(beam([0.0, 0.0, z_hub], end, leg_hw, leg_hh))
    z_hub_top = z_hub + hub_h / 2
    kp[5] = [0.0, 0.0, z_hub_top]
    kp_parts[5] = len(parts)
    parts.append(vertical_strut((0, 0), (0, 0), z_hub - hub_h / 2, z_hub_top, hub_r,
                                hub_r * uniform(rng, 0.6, 1.0), True))

    # Seat (keypoints 7..10) on a tilt mechanism on the gas-lift column (keypoint 6).
    p['seat_height'] = h = uniform(rng, 0.40, 0.58)
    p['seat_depth'] = d = uniform(rng, 0.40, 0.53)
    p['seat_width'] = w = uniform(rng, 0.42, 0.56)
    p['seat_back_ratio'] = uniform(rng, 0.85, 1.0) if rng.random() < 0.5 else 1.0
    wb = w * p['seat_back_ratio']
    p['seat_thickness'] = th = uniform(rng, 0.04, 0.10)
    tm = uniform(rng, 0.03, 0.06)  # mechanism box under the seat
    sx = uniform(rng, 0.0, 0.04)  # seat centre ahead of the column
    xf, xb = sx + d / 2, sx - d / 2
    kp[7:11] = [[xf, w / 2, h], [xf, -w / 2, h], [xb, wb / 2, h], [xb, -wb / 2, h]]
    ring = np.array([[xf, -w / 2], [xf, w / 2], [xb, wb / 2], [xb, -wb / 2]])
    kp_parts[7:11] = len(parts)
    parts.append(prism(np.column_stack([ring, np.full(4, h - th)]),
                       np.column_stack([ring, np.full(4, h)]), material=1))
    z_col = h - th - tm
    p['column_height'] = float(z_col - z_hub_top)
    rc = uniform(rng, 0.018, 0.03)
    kp[6] = [0.0, 0.0, z_col]
    kp_parts[6] = len(parts)
    parts.append(vertical_strut((0, 0), (0, 0), z_hub_top, z_col, rc, rc, True))
    if rng.random() < 0.6:  # wider cover over the lower column
        zs = z_hub_top + uniform(rng, 0.3, 0.7) * (z_col - z_hub_top)
        parts.append(vertical_strut((0, 0), (0, 0), z_hub_top, zs, rc * 1.5, rc * 1.35, True))
    mx = uniform(rng, 0.07, 0.12)
    my = uniform(rng, 0.06, 0.11)
    parts.append(box([-mx, -my, z_col], [mx + sx, my, h - th]))

    # Back (keypoints 11, 12 at its outer top corners, mid-thickness), tilted by back_tilt.
    p['back_height'] = hb = uniform(rng, 0.32, 0.80)
    p['back_tilt'] = tilt = uniform(rng, 0.0, np.deg2rad(25.0))
    tan_t = np.tan(tilt)
    p['back_thickness'] = tb = uniform(rng, 0.025, 0.07)
    p['back_gap'] = gap = 0.0 if rng.random() < 0.4 else uniform(rng, 0.03, 0.10)
    p['back_style'] = style = str(rng.choice(['solid', 'framed']))
    y0 = wb / 2 * uniform(rng, 0.85, 1.0)
    y1 = y0 * uniform(rng, 0.8, 1.15)
    z0, z1 = h + gap, h + hb
    x0 = xb + uniform(rng, 0.0, 0.04) - tb / 2  # mid-plane at z0: front face near seat edge
    xt = x0 - (z1 - z0) * tan_t
    kp[11:13] = [[xt, y1, z1], [xt, -y1, z1]]
    if style == 'solid':
        kp_parts[11:13] = len(parts)
        parts.append(_slab(x0, z0, z1, tan_t, (-y0, y0), (-y1, y1), tb))
    else:  # side posts, top and bottom rails and a thin mesh panel between them
        pw = uniform(rng, 0.015, 0.03)
        for s, k in ((1, 11), (-1, 12)):
            kp_parts[k] = len(parts)
            parts.append(_slab(x0, z0, z1, tan_t, tuple(sorted((s * y0, s * (y0 - 2 * pw)))),
                               tuple(sorted((s * y1, s * (y1 - 2 * pw)))), tb))
        rail = uniform(rng, 0.03, 0.06)
        inner0, inner1 = (-y0 + pw, y0 - pw), (-y1 + pw, y1 - pw)
        parts.append(_slab(x0, z0, z1, tan_t, inner0, inner1, tb * 0.8, z1 - rail, z1))
        parts.append(_slab(x0, z0, z1, tan_t, inner0, inner1, tb * 0.8, z0, z0 + rail))
        parts.append(_slab(x0, z0, z1, tan_t, inner0, inner1, tb * 0.3))
    # Spine from the mechanism to the back's rear face (of the bottom rail when framed).
    sh = uniform(rng, 0.012, 0.02)
    zm = z_col + tm / 2
    z2 = z0 + min(0.25, 0.5 * hb)
    tc = tb if style == 'solid' else 0.8 * tb

    def x_spine(z):  # spine axis, sunk 3 mm into the back
        return x0 - tc / 2 - sh + 0.003 - (z - z0) * tan_t

    parts.append(beam([-mx + 0.02, 0.0, zm], [x_spine(zm) - sh, 0.0, zm], 0.03, sh))
    parts.append(beam([x_spine(zm - sh), 0.0, zm - sh], [x_spine(z2), 0.0, z2], 0.03, sh))
    p['headrest'] = bool(rng.random() < (0.5 if hb > 0.6 else 0.15))
    if p['headrest']:
        hg, hh = uniform(rng, 0.03, 0.07), uniform(rng, 0.10, 0.17)
        yh = y1 * uniform(rng, 0.5, 0.8)
        parts.append(_slab(x0, z0, z1, tan_t, (-yh, yh), (-yh, yh), tb * 1.2,
                           z1 + hg, z1 + hg + hh))
        parts.append(_slab(x0 - tb / 2, z0, z1, tan_t, (-0.02, 0.02), (-0.02, 0.02), 0.025,
                           z1 - 0.08, z1 + hg + 0.5 * hh))

    # Armrests: bracket under the seat, post and pad (no keypoints).
    p['arms'] = bool(rng.random() < 0.6)
    if p['arms']:
        za = h + uniform(rng, 0.18, 0.28)
        xa = sx + uniform(rng, -0.07, 0.0)
        ya = w / 2 + uniform(rng, 0.02, 0.05)
        tp, lp, wp = uniform(rng, 0.02, 0.04), uniform(rng, 0.20, 0.28), uniform(rng, 0.03, 0.045)
        px, py = uniform(rng, 0.015, 0.025), uniform(rng, 0.01, 0.018)
        zbr = h - th - 0.012
        for s in (1, -1):
            parts.append(beam([xa, s * 0.06, zbr], [xa, s * (ya + py), zbr], px, 0.012, 3))
            parts.append(box([xa - px, s * ya - py, zbr - 0.012], [xa + px, s * ya + py, za - tp],
                             3))
            parts.append(box([xa - lp / 2 + 0.03, s * ya - wp, za - tp],
                             [xa + lp / 2 + 0.03, s * ya + wp, za], 3))
    return Mesh('swivel_chair', parts, kp, kp_parts, p)


def _slab(x0, z0, z1, tan_t, y_at0, y_at1, t, z_from=None, z_to=None, material=2):
    """Slab leaning back: mid-plane x = x0 - (z - z0) tan_t, y bounds (lo, hi) interpolated
    linearly from y_at0 at z0 to y_at1 at z1, thickness t, cut between z_from and z_to."""
    z_from = z0 if z_from is None else z_from
    z_to = z1 if z_to is None else z_to

    def ring(z):
        f = (z - z0) / (z1 - z0)
        x = x0 - (z - z0) * tan_t
        lo = y_at0[0] + f * (y_at1[0] - y_at0[0])
        hi = y_at0[1] + f * (y_at1[1] - y_at0[1])
        return np.array([[x + t / 2, lo, z], [x + t / 2, hi, z], [x - t / 2, hi, z],
                         [x - t / 2, lo, z]])

    return prism(ring(z_from), ring(z_to), material)
