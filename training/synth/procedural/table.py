"""Procedural tables: rectangular/square/round/oval tops, 4 legs, pedestal or trestle bases."""

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
    'leg_front_left', 'leg_front_right', 'leg_back_left', 'leg_back_right',
    'top_front_left', 'top_front_right', 'top_back_left', 'top_back_right',
)
EDGES = ((0, 4), (1, 5), (2, 6), (3, 7), (4, 5), (5, 7), (7, 6), (6, 4))
SYMMETRIC = ((0, 1), (2, 3), (4, 5), (6, 7))
FLOOR = (0, 1, 2, 3)
ROTATIONAL_ORDERS = (2, 4)  # rectangular tops: a half turn; square and round ones: a quarter


def generate_table(rng: np.random.Generator) -> Mesh:
    """Sample one table: rectangular/square/round/oval top, 4 legs / pedestal / trestle."""
    p: dict = {}
    p['kind'] = kind = rng.choice(['dining', 'coffee', 'desk', 'side'], p=[0.4, 0.2, 0.25, 0.15])
    hmin, hmax = {'dining': (0.7, 0.8), 'coffee': (0.35, 0.5), 'desk': (0.68, 0.8),
                  'side': (0.5, 0.7)}[kind]
    p['height'] = h = uniform(rng, hmin, hmax)
    p['shape'] = shape = str(rng.choice(['rect', 'rect', 'square', 'round', 'oval']))
    if shape == 'round':
        L = W = uniform(rng, 0.5, 1.3)
    elif shape == 'square':
        L = W = uniform(rng, 0.45, 1.2)
    else:
        L = uniform(rng, 0.5, 2.0)
        W = uniform(rng, 0.45, min(L, 1.1))
    p['length'], p['width'] = L, W
    p['top_thickness'] = tt = uniform(rng, 0.02, 0.07)
    parts: list[ConvexPart] = []
    kp_parts = np.zeros(8, np.int64)
    sign = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], np.float64)
    if shape in ('rect', 'square'):
        ring = np.array([[L / 2, -W / 2], [L / 2, W / 2], [-L / 2, W / 2], [-L / 2, -W / 2]])
        top_corners = sign * [L / 2, W / 2]
    else:
        m = 24  # vertices at 45 + k * 15 degrees: the diagonals are vertices
        ring = ngon(m, L / 2, W / 2, np.pi / 4)
        top_corners = sign * [L / 2 * np.cos(np.pi / 4), W / 2 * np.sin(np.pi / 4)]
    parts.append(prism(np.column_stack([ring, np.full(len(ring), h - tt)]),
                       np.column_stack([ring, np.full(len(ring), h)]), material=1))
    top_kps = np.column_stack([top_corners, np.full(4, h)])
    z_under = h - tt
    p['base'] = base = rng.choice(['legs', 'legs', 'pedestal', 'trestle'])
    leg_kps = np.zeros((4, 3))
    if base == 'legs':
        r = uniform(rng, 0.015, 0.045)
        taper = uniform(rng, 0.5, 1.0) if rng.random() < 0.5 else 1.0
        round_ = bool(rng.random() < 0.4)
        inset = uniform(rng, 0.0, 0.12) + (0.05 if shape in ('round', 'oval') else 0.0)
        splay = uniform(rng, 0.0, 0.06) if rng.random() < 0.3 else 0.0
        for i in range(4):
            top_xy = top_corners[i] - sign[i] * (inset + r)
            bot_xy = top_xy + sign[i] * splay
            leg_kps[i] = [bot_xy[0], bot_xy[1], 0.0]
            kp_parts[i] = len(parts)
            parts.append(vertical_strut(bot_xy, top_xy, 0.0, z_under, r * taper, r, round_))
        if rng.random() < 0.6:  # apron
            ah = uniform(rng, 0.04, 0.12)
            ins = inset + r
            for a, b in ((0, 2), (1, 3), (0, 1), (2, 3)):
                pa = np.r_[top_corners[a] - sign[a] * ins, z_under - ah / 2]
                pb = np.r_[top_corners[b] - sign[b] * ins, z_under - ah / 2]
                parts.append(beam(pa, pb, 0.01, ah / 2))
    elif base == 'pedestal':
        rc = uniform(rng, 0.03, 0.09)
        rf = uniform(rng, 0.2, 0.45) * min(1.0, min(L, W) / 0.8)
        fh = uniform(rng, 0.02, 0.05)
        parts.append(vertical_strut((0, 0), (0, 0), fh, z_under, rc, rc * uniform(rng, 0.6, 1.0),
                                    True))
        for i in range(4):
            ang = np.arctan2(top_corners[i][1], top_corners[i][0])
            tip = np.array([rf * np.cos(ang), rf * np.sin(ang)])
            leg_kps[i] = [tip[0], tip[1], 0.0]
            kp_parts[i] = len(parts)
            parts.append(vertical_strut(tip, tip, 0.0, fh, 0.025, 0.025, False))
            parts.append(beam([0, 0, fh], [tip[0], tip[1], fh], 0.02, fh * 0.9))
    else:  # trestle: two end frames (x = +-), each a foot beam and an upright
        fx = L / 2 - uniform(rng, 0.05, 0.25) * L / 2
        fy = W / 2 - uniform(rng, 0.0, 0.1)
        hf = uniform(rng, 0.02, 0.04)
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
