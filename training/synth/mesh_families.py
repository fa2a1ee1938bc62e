"""Mesh-only object families: categories we never wrote a skeleton for (issue 19, item 6).

These generators make plain triangle meshes (trimesh, metres, z up, x forward, on the floor),
the kind of input a user brings; their keypoints must come from discovery
(``training.discover``). :mod:`training.synth.mesh_export` writes them as files::

    python -m training.synth.mesh_export --category stool --count 200 --seed 400 \
        --out datasets/stool_meshes

- ``stool``: round or square seat (0.28-0.45 m across) at 0.42-0.80 m, three or four legs
  splayed outwards, with a footrest ring or rungs half of the time and a low back on a
  fifth of them (which breaks the rotational symmetry, as on many bar stools).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _rod(p0, p1, radius: float, sections: int = 8):
    import trimesh

    return trimesh.creation.cylinder(radius=radius, segment=np.array([p0, p1], np.float64),
                                     sections=sections)


def generate_stool(rng: np.random.Generator):
    """One stool as a ``trimesh.Trimesh``."""
    import trimesh

    height = rng.uniform(0.42, 0.80)
    half = rng.uniform(0.14, 0.225)
    thick = rng.uniform(0.02, 0.05)
    legs = int(rng.choice([3, 4]))
    round_seat = rng.random() < 0.6
    if round_seat:
        seat = trimesh.creation.cylinder(radius=half, height=thick, sections=24)
    else:
        seat = trimesh.creation.box((2 * half, 2 * half, thick))
    seat.apply_translation((0, 0, height - thick / 2))
    parts = [seat]
    splay = rng.uniform(1.0, 1.35)
    r_leg = rng.uniform(0.012, 0.025)
    phase = np.pi / legs if not round_seat else rng.uniform(0, np.pi)
    angles = phase + 2 * np.pi * np.arange(legs) / legs
    top_r = 0.75 * half * (1.0 if round_seat else np.sqrt(2) * 0.9)
    tops = [np.array([top_r * np.cos(a), top_r * np.sin(a), height - thick]) for a in angles]
    feet = [np.array([t[0] * splay, t[1] * splay, 0.0]) for t in tops]
    parts += [_rod(f, t, r_leg) for f, t in zip(feet, tops)]
    if rng.random() < 0.5:  # rungs between neighbouring legs at one height
        s = rng.uniform(0.25, 0.45)
        ring = [f + s * (t - f) for f, t in zip(feet, tops)]
        parts += [_rod(ring[i], ring[(i + 1) % legs], 0.7 * r_leg) for i in range(legs)]
    if rng.random() < 0.2:  # low back at -x
        back_h = rng.uniform(0.12, 0.25)
        back = trimesh.creation.box((0.03, 1.4 * half, back_h))
        back.apply_translation((-0.9 * half, 0, height + back_h / 2))
        parts.append(back)
    return trimesh.util.concatenate(parts)


FAMILIES: dict[str, Callable] = {'stool': generate_stool}
