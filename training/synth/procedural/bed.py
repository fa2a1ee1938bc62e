"""Procedural beds: single to king, legs or a platform base, headboard and footboard or none.

x points from the head end toward the foot end (the foot end is +x). The frame is a deck
under the mattress, optionally with rails rising around it; without a headboard the
headboard keypoints are the mattress's head corners (and there is no footboard), so such a
bed has the half-turn symmetry that ``ROTATIONAL_ORDERS`` declares.
"""

from __future__ import annotations

import numpy as np

from training.synth.procedural.parts import (
    box,
    ConvexPart,
    Mesh,
    uniform,
    vertical_strut,
)

KEYPOINTS = (
    'leg_foot_left', 'leg_foot_right', 'leg_head_left', 'leg_head_right',
    'mattress_foot_left', 'mattress_foot_right', 'mattress_head_left', 'mattress_head_right',
    'headboard_top_left', 'headboard_top_right',
)
EDGES = ((0, 4), (1, 5), (2, 6), (3, 7), (4, 5), (5, 7), (7, 6), (6, 4), (6, 8), (7, 9),
         (8, 9))
SYMMETRIC = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))
FLOOR = (0, 1, 2, 3)
ROTATIONAL_ORDERS = (2,)  # beds without a headboard: a half turn

_SIGN = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], np.float64)  # keypoint corner order


def generate_bed(rng: np.random.Generator) -> Mesh:
    """Sample one bed."""
    p: dict = {}
    p['width'] = wm = uniform(rng, 0.9, 1.95)
    p['length'] = lm = uniform(rng, 1.9, 2.2)
    p['mattress_height'] = hm = uniform(rng, 0.4, 0.7)
    p['mattress_thickness'] = tm = uniform(rng, 0.15, 0.32)
    zd = hm - tm  # deck top = mattress bottom
    p['frame_margin'] = fr = uniform(rng, 0.02, 0.08) if rng.random() < 0.7 else 0.0
    wf, lf = wm + 2 * fr, lm + 2 * fr
    zf0 = zd - min(uniform(rng, 0.06, 0.28), zd - 0.04)  # frame underside
    rail = uniform(rng, 0.02, min(0.12, tm - 0.05)) if fr > 0 and rng.random() < 0.6 else 0.0
    p['rail_height'] = rail
    parts: list[ConvexPart] = []
    kp = np.zeros((10, 3))
    kp_parts = np.zeros(10, np.int64)

    # Frame deck, rails around the mattress, mattress (keypoints 4..7 at its top corners).
    parts.append(box([-lf / 2, -wf / 2, zf0], [lf / 2, wf / 2, zd]))
    if rail > 0:
        for s in (1, -1):
            parts.append(box([-lf / 2, min(s * wm / 2, s * wf / 2), zd],
                             [lf / 2, max(s * wm / 2, s * wf / 2), zd + rail]))
            parts.append(box([min(s * lm / 2, s * lf / 2), -wm / 2, zd],
                             [max(s * lm / 2, s * lf / 2), wm / 2, zd + rail]))
    kp_parts[4:8] = len(parts)
    parts.append(box([-lm / 2, -wm / 2, zd], [lm / 2, wm / 2, hm], 1))
    kp[4:8] = np.column_stack([_SIGN * [lm / 2, wm / 2], np.full(4, hm)])
    if rng.random() < 0.6:  # pillows at the head end
        n_pil = 2 if wm > 1.3 else 1
        pl, pt = uniform(rng, 0.3, 0.45), uniform(rng, 0.08, 0.14)
        margin = uniform(rng, 0.04, 0.1)
        step = (wm - 2 * margin) / n_pil
        for i in range(n_pil):
            y0 = -wm / 2 + margin + i * step
            parts.append(box([-lm / 2 + 0.04, y0 + 0.02, hm], [-lm / 2 + 0.04 + pl,
                                                                 y0 + step - 0.02, hm + pt], 3))

    # Base: legs (keypoints at the centres of their floor faces) or a platform.
    p['base'] = base = str(rng.choice(['legs', 'platform'], p=[0.6, 0.4]))
    if base == 'legs':
        r = uniform(rng, 0.02, 0.05)
        taper = uniform(rng, 0.6, 1.0) if rng.random() < 0.5 else 1.0
        round_ = bool(rng.random() < 0.4)
        ins = uniform(rng, 0.0, 0.15) if rng.random() < 0.6 else 0.0
        at = _SIGN * [lf / 2 - ins - r, wf / 2 - ins - r]
        extra = [(0.0, 0.0)] if wm > 1.3 or lf > 2.1 else []
        for i, xy in enumerate(list(at) + extra):
            if i < 4:
                kp[i] = [xy[0], xy[1], 0.0]
                kp_parts[i] = len(parts)
            parts.append(vertical_strut(xy, xy, 0.0, zf0, r * taper, r, round_))
    else:
        ins = uniform(rng, 0.0, 0.12) if rng.random() < 0.6 else 0.0
        kp_parts[:4] = len(parts)
        parts.append(box([-lf / 2 + ins, -wf / 2 + ins, 0.0], [lf / 2 - ins, wf / 2 - ins, zf0]))
        kp[:4] = np.column_stack([_SIGN * [lf / 2 - ins, wf / 2 - ins], np.zeros(4)])
    p['base_inset'] = ins

    # Headboard (keypoints 8, 9) and footboard.
    p['headboard'] = bool(rng.random() < 0.75)
    if p['headboard']:
        top = hm + uniform(rng, 0.25, 0.8)
        owners, x_kp, y_kp = _board(parts, rng, -lf / 2, -1.0, wf / 2, zf0, top)
        kp[8:10] = [[x_kp, y_kp, top], [x_kp, -y_kp, top]]
        kp_parts[8:10] = owners
        p['headboard_height'] = top
    else:  # the mattress's head corners: a plain bed then looks the same turned by 180 deg
        kp[8:10] = kp[6:8]
        kp_parts[8:10] = kp_parts[6:8]
        p['headboard_height'] = 0.0
    p['footboard'] = bool(rng.random() < 0.4) and p['headboard']
    if p['footboard']:
        _board(parts, rng, lf / 2, 1.0, wf / 2, zf0, hm + uniform(rng, 0.0, 0.35))
    return Mesh('bed', parts, kp, kp_parts, p)


def _board(parts, rng, x_in: float, out: float, half_w: float, zf0: float, top: float):
    """Append a head- or footboard outside x = x_in (direction ``out`` = +-1) up to ``top``.

    A panel, or two posts with a lower panel between them; it starts at the frame underside
    or at the floor. Returns the part indices owning its left and right outer top corners
    and the keypoint x and |y| (mid-thickness, outer face).
    """
    z0 = 0.0 if rng.random() < 0.5 else zf0
    yh = half_w + (uniform(rng, 0.0, 0.06) if rng.random() < 0.5 else 0.0)
    if rng.random() < 0.5:  # panel
        t = uniform(rng, 0.03, 0.10)
        xa, xb = sorted((x_in, x_in + out * t))
        owner = len(parts)
        parts.append(box([xa, -yh, z0], [xb, yh, top], 2))
        return [owner, owner], (xa + xb) / 2, yh
    ps = uniform(rng, 0.025, 0.05)
    xa, xb = sorted((x_in, x_in + out * 2 * ps))
    owners = []
    for s in (1, -1):
        owners.append(len(parts))
        ya, yb = sorted((s * yh, s * (yh - 2 * ps)))
        parts.append(box([xa, ya, z0], [xb, yb, top], 2))
    t = uniform(rng, 0.02, 2 * ps)
    xpa, xpb = sorted((x_in, x_in + out * t))
    drop = uniform(rng, 0.0, 0.1) if rng.random() < 0.6 else 0.0
    parts.append(box([xpa, -yh + 2 * ps, zf0], [xpb, yh - 2 * ps, top - drop], 2))
    return owners, (xa + xb) / 2, yh
