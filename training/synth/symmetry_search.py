"""Keypoint maps of rotational symmetries, found on generated instances.

A generator module declares the orders it can produce (``ROTATIONAL_ORDERS``: a square
table has 4, a rectangular one 2). For each order, every instance is turned by 360/n
degrees about z and each turned keypoint matched to the nearest unturned one. The map need
not be one to one: a bed without a headboard has its headboard keypoints on the mattress's
head corners, and turned by 180 degrees both land on the foot corners. The map of the
best-matching instance is the category's permutation; the fraction of instances that have
it within the tolerance goes into the category's metadata, so a reader sees how common the
symmetry is.
"""

from __future__ import annotations

import numpy as np

from perception_3dinn.symmetry import Element, RotationalSymmetry, symmetry_residual, z_rotation


def find_permutation(instances: np.ndarray, order: int,
                     tolerance: float = 0.03) -> tuple[np.ndarray | None, float]:
    """Keypoint map of a +360/order turn, and the fraction of instances that have it.

    Args:
        instances: (M, N, 3) canonical-frame keypoints.
        order: n of the turn (360/n degrees about z).
        tolerance: largest keypoint mismatch, relative to the keypoint diagonal.

    Returns:
        (N,) permutation, or None when no instance has the symmetry; the fraction.
    """
    k = np.asarray(instances, np.float64)
    angle = 2.0 * np.pi / order
    S = z_rotation(angle)
    moved = k @ S.T
    diag = np.linalg.norm(k.max(-2) - k.min(-2), axis=-1)
    best, best_err = None, np.inf
    for m in range(len(k)):
        cost = np.linalg.norm(moved[m][:, None] - k[m][None], axis=-1)
        cols = cost.argmin(1)
        err = cost[np.arange(len(cols)), cols].max() / max(diag[m], 1e-12)
        if err < best_err:
            best, best_err = cols.copy(), err
    if best is None or best_err > tolerance:
        return None, 0.0
    held = symmetry_residual(k, Element(angle, S, best)) <= tolerance
    return best, float(held.mean())


def find_symmetries(instances: np.ndarray, orders: tuple[int, ...],
                    tolerance: float = 0.03) -> tuple[tuple[RotationalSymmetry, ...], dict]:
    """The symmetries of ``orders`` that some instance has, and {order: fraction}."""
    out, fractions = [], {}
    for order in orders:
        perm, frac = find_permutation(instances, order, tolerance)
        fractions[str(order)] = round(frac, 4)
        if perm is not None:
            out.append(RotationalSymmetry(order, perm))
    return tuple(out), fractions
