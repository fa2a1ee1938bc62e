"""Shared fixtures of the inference tests: a small chair-like category built in code."""

from __future__ import annotations

import numpy as np

from perception_3dinn.skeleton import Category


def toy_chair(num_bases: int = 3, seed: int = 0) -> Category:
    """A 10-keypoint chair (4 leg tips, 4 seat corners, 2 back tops) with random bases."""
    x, y, h, b = 0.25, 0.22, 0.45, 0.9
    mean = np.array([
        [x, y, 0.0], [x, -y, 0.0], [-x, -y, 0.0], [-x, y, 0.0],      # leg tips
        [x, y, h], [x, -y, h], [-x, -y, h], [-x, y, h],              # seat corners
        [-x, y, b], [-x, -y, b],                                     # back tops
    ])
    edges = [[0, 4], [1, 5], [2, 6], [3, 7], [4, 5], [5, 6], [6, 7], [7, 4],
             [7, 8], [6, 9], [8, 9]]
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(30, num_bases)))
    bases = np.concatenate([mean[None], 0.3 * q.T.reshape(num_bases, 10, 3)])
    return Category(
        name='toychair', keypoint_names=tuple(f'k{i}' for i in range(10)), edges=edges,
        symmetric_pairs=[[0, 1], [3, 2], [4, 5], [7, 6], [8, 9]], bases=bases,
        alpha_std=np.full(num_bases, 0.3), size_prior_m=1.0,
        dimensions_m=np.array([0.6, 0.55, 1.0]))
