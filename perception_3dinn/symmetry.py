"""Rotational symmetries about the object's z axis (square tables, rectangular tables, beds).

A category file declares, per symmetry, its ``order`` n (the object may look the same after
turning it by 360/n degrees about z) and a keypoint ``permutation`` p: turned by +360/n
degrees, keypoint i lands where keypoint p[i] was (``S K[i] = K[p[i]]``, S = Rz(360/n)).
The map need not be one to one (two keypoints that coincide on a plain bed).

Whether a declared symmetry holds is a property of the instance, not of the category: a
table declares order 4, which a square top has and a rectangular one does not. So every
use starts from the instance's keypoints: :func:`instance_elements` keeps the group
elements under which the instance's skeleton maps onto itself within a tolerance.

Under an element (S, p), the pose (R S, t) shows the same image as (R, t), with the
keypoint labels moved: keypoint j of the new pose is where keypoint p[j] was. That gives

- **metrics modulo symmetry** (:func:`rotation_error_modulo`, :func:`relabel`): the error
  against the closest equivalent ground truth;
- **training targets** (:func:`canonical_element`): one representative per equivalence
  class, the equivalent pose whose azimuth is closest to 0;
- **tracking** (:func:`closest_element`): the equivalent measurement nearest to the track,
  so the TF frame does not jump between equivalent poses.

Plain numpy: no torch, no ROS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perception_3dinn.geometry import geodesic_angle


@dataclass(frozen=True, eq=False)
class RotationalSymmetry:
    """One declared symmetry: ``order`` n and the keypoint map of a +360/n degree turn."""

    order: int
    permutation: np.ndarray

    def __post_init__(self) -> None:
        perm = np.array(self.permutation, dtype=np.int64, copy=True).reshape(-1)
        perm.setflags(write=False)
        object.__setattr__(self, 'permutation', perm)
        if int(self.order) < 2:
            raise ValueError(f'rotational symmetry order must be >= 2, got {self.order}')
        object.__setattr__(self, 'order', int(self.order))

    def check(self, num_keypoints: int, where: str = 'category') -> None:
        """Raise ValueError when the permutation does not fit ``num_keypoints``."""
        p = self.permutation
        if p.shape != (num_keypoints,) or p.min() < 0 or p.max() >= num_keypoints:
            raise ValueError(f'{where}: rotational symmetry of order {self.order} needs a '
                             f'permutation of {num_keypoints} indices 0..{num_keypoints - 1}, '
                             f'got {p.tolist()}')

    def to_dict(self) -> dict:
        return {'order': self.order, 'permutation': self.permutation.tolist()}


def symmetries_from_list(items: list[dict] | None, num_keypoints: int,
                         where: str = 'category') -> tuple[RotationalSymmetry, ...]:
    """Parse a category file's ``rotational_symmetries`` list (checked)."""
    out = []
    for item in items or []:
        try:
            sym = RotationalSymmetry(int(item['order']), np.asarray(item['permutation']))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f'{where}: bad rotational symmetry {item!r}: {exc}') from None
        sym.check(num_keypoints, where)
        out.append(sym)
    return tuple(out)


def z_rotation(angle: float) -> np.ndarray:
    """(3, 3) rotation by ``angle`` radians about z."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True, eq=False)
class Element:
    """A group element: turn ``angle`` (radians) about z, rotation S and keypoint map."""

    angle: float
    S: np.ndarray
    permutation: np.ndarray


def group_elements(symmetries: tuple[RotationalSymmetry, ...],
                   num_keypoints: int) -> list[Element]:
    """Every power of every declared symmetry, one per angle, sorted by angle (the identity
    first)."""
    out = [Element(0.0, np.eye(3), np.arange(num_keypoints))]
    seen = {0}
    for sym in symmetries:
        perm = np.arange(num_keypoints)
        for k in range(1, sym.order):
            perm = sym.permutation[perm]  # k turns: i -> p(p(...p(i)))
            key = round(k * 360.0 / sym.order, 6) % 360.0
            if key in seen:
                continue
            seen.add(key)
            angle = np.deg2rad(key)
            out.append(Element(float(angle), z_rotation(angle), perm.copy()))
    return sorted(out, key=lambda e: e.angle)


def symmetry_residual(keypoints: np.ndarray, element: Element) -> np.ndarray:
    """(...,) largest ``|S K[i] - K[p[i]]|`` over keypoints, relative to the keypoints'
    bounding-box diagonal: 0 when the instance has the symmetry exactly."""
    k = np.asarray(keypoints, np.float64)
    moved = k @ element.S.T
    diag = np.linalg.norm(k.max(-2) - k.min(-2), axis=-1)
    err = np.linalg.norm(moved - k[..., element.permutation, :], axis=-1).max(-1)
    return err / np.maximum(diag, 1e-12)


def instance_elements(keypoints: np.ndarray, elements: list[Element],
                      tolerance: float = 0.03) -> list[Element]:
    """The elements one instance (N, 3 canonical-frame keypoints) has, identity included."""
    return [e for e in elements
            if e.angle == 0.0 or float(symmetry_residual(keypoints, e)) <= tolerance]


def equivalent_turns(keypoints: np.ndarray, elements: list[Element],
                     tolerance: float = 0.03) -> np.ndarray | None:
    """(G, 3, 3) turns S of the elements one instance (N, 3) has, identity first; None when
    it has none but the identity (the tracker's ``Observation.equivalents``)."""
    if len(elements) < 2:
        return None
    held = instance_elements(keypoints, elements, tolerance)
    return np.stack([e.S for e in held]) if len(held) > 1 else None


def instance_masks(keypoints: np.ndarray, elements: list[Element],
                   tolerance: float = 0.03) -> np.ndarray:
    """(B, G) bool: which of the G elements each of B instances (B, N, 3) has."""
    k = np.asarray(keypoints, np.float64)
    masks = np.stack([np.full(k.shape[0], True) if e.angle == 0.0
                      else symmetry_residual(k, e) <= tolerance for e in elements], -1)
    return masks


def rotation_error_modulo(R_pred: np.ndarray, R_gt: np.ndarray, elements: list[Element],
                          masks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Geodesic error to the closest equivalent ground truth ``R_gt S``.

    Args:
        R_pred, R_gt: (B, 3, 3) object -> camera rotations.
        elements: the category's group elements (:func:`group_elements`).
        masks: (B, G) which elements each instance has (default: all).

    Returns:
        (B,) error in radians and (B,) index of the element that attains it.
    """
    R_pred = np.asarray(R_pred, np.float64)
    R_gt = np.asarray(R_gt, np.float64)
    errs = np.stack([geodesic_angle(R_pred, R_gt @ e.S) for e in elements], -1)
    if masks is not None:
        errs = np.where(masks, errs, np.inf)
    best = errs.argmin(-1)
    return np.take_along_axis(errs, best[:, None], -1)[:, 0], best


def relabel(values: np.ndarray, elements: list[Element], index: np.ndarray) -> np.ndarray:
    """Per-keypoint ground truth, (B, N) or (B, N, D), relabelled for the equivalent pose
    of element ``index[b]``: keypoint j takes the value of keypoint p[j]."""
    v = np.asarray(values)
    perms = np.stack([e.permutation for e in elements])[np.asarray(index)]
    return np.take_along_axis(v, perms if v.ndim == 2 else perms[..., None], axis=1)


def best_keypoint_element(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray,
                          elements: list[Element], masks: np.ndarray) -> np.ndarray:
    """(B,) element whose relabelled ground-truth keypoints (B, N, 2) are closest to the
    predicted ones on average over the (relabelled) visible keypoints."""
    pred = np.asarray(pred, np.float64)
    costs = []
    for g, _ in enumerate(elements):
        idx = np.full(len(pred), g)
        gt_g, vis_g = relabel(gt, elements, idx), relabel(visible, elements, idx)
        err = np.linalg.norm(pred - gt_g, axis=-1)
        costs.append((err * vis_g).sum(-1) / np.maximum(vis_g.sum(-1), 1))
    costs = np.where(masks, np.stack(costs, -1), np.inf)
    return costs.argmin(-1)


def _azimuth_of(R: np.ndarray) -> np.ndarray:
    """Azimuth (radians) of the camera's optical axis in the object frame, about the
    object's z axis. A turn of the object by S = Rz(a) shifts it by -a."""
    axis = np.einsum('...ji,...j->...i', R, np.array([0.0, 0.0, 1.0]))  # R^T z
    return np.arctan2(axis[..., 1], axis[..., 0])


def canonical_element(R: np.ndarray, elements: list[Element],
                      masks: np.ndarray | None = None) -> np.ndarray:
    """(B,) index of the equivalent pose ``R S`` whose viewing azimuth is closest to 0:
    one label per equivalence class for training targets."""
    R = np.asarray(R, np.float64)
    az = np.stack([np.abs(np.angle(np.exp(1j * _azimuth_of(R @ e.S)))) for e in elements],
                  -1)
    if masks is not None:
        az = np.where(masks, az, np.inf)
    return az.argmin(-1)


def canonical_labels(R: np.ndarray, keypoints_obj: np.ndarray, elements: list[Element],
                     per_keypoint: dict[str, np.ndarray],
                     tolerance: float = 1e-6) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One image's labels in the canonical representative of their equivalence class.

    Args:
        R: (3, 3) object -> camera rotation of the sample.
        keypoints_obj: (N, 3) the instance's keypoints in its canonical frame (they do not
            change: a symmetric instance maps onto itself).
        elements: the category's group elements.
        per_keypoint: camera-frame labels, each (N, ...) (pixels, 3D points, visibility).
        tolerance: symmetry tolerance; exact by default (generated instances are exact).

    Returns:
        ``R S`` and the labels relabelled for it (unchanged without a symmetry).
    """
    if len(elements) < 2:
        return R, per_keypoint
    masks = instance_masks(np.asarray(keypoints_obj)[None], elements, tolerance)
    g = int(canonical_element(np.asarray(R)[None], elements, masks)[0])
    if g == 0:
        return R, per_keypoint
    perm = elements[g].permutation
    return R @ elements[g].S, {k: np.asarray(v)[perm] for k, v in per_keypoint.items()}


def closest_turn(R_meas: np.ndarray, R_ref: np.ndarray, turns: np.ndarray) -> int:
    """Index of the turn S in ``turns`` (G, 3, 3) whose equivalent measurement ``R_meas S``
    is nearest to the reference rotation (the largest trace of ``(R_meas S)^T R_ref``)."""
    turned = np.asarray(R_meas, np.float64) @ np.asarray(turns, np.float64)
    return int(np.argmax(np.einsum('gij,ij->g', turned, np.asarray(R_ref, np.float64))))


def closest_element(R_meas: np.ndarray, R_ref: np.ndarray, elements: list[Element]) -> int:
    """Index of the element whose equivalent measurement ``R_meas S`` is nearest to the
    reference rotation (e.g. a track's prediction)."""
    return closest_turn(R_meas, R_ref, np.stack([e.S for e in elements]))
