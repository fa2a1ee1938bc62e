"""Video consistency losses of seed 001 (sec. 3.2) over the outputs of :class:`INN3D`.

A clip is ``L`` consecutive crops of one static object along its track. Per frame the network
gives structure ``alpha (K,)``, rotation ``R (3, 3)``, translation ``t (3,)`` (crop camera,
normalised shape units) and focal ``f`` (crop pixels). The terms:

* structure consistency (Eq. 3): L1 of each frame's ``alpha`` and focal to a per-clip latent
  ``h = (alpha_c, f_c)``, the latent solved in closed form by the per-dimension median
  (:func:`solve_latents`; the mean for the L2 relaxation that the paper's footnote 1 uses early
  in training). The paper's ``f`` is the camera's focal, which a clip shares. Our crop focal is
  ``f_crop = crop.scale * f_camera`` and changes with the box size, so the clip-constant
  quantity here is ``log(f_crop / crop.scale)``, the log focal of the image camera
  (:func:`clip_focal`); the log makes it scale-free.
* motion smoothness (Eq. 4): L1 on neighbouring frames' rotation and translation. The paper
  differences the sines and cosines of three Euler angles; we use the relative rotation angle
  ``theta`` between neighbours (the geodesic distance, from the chordal distance
  ``|R_j - R_j+1|_F = 2 sqrt(2) sin(theta / 2)``), which does not depend on the absolute pose
  or on an angle convention, and the L1 of ``t_j - t_j+1``.
* reprojection (Eq. 5): the projection layer's keypoints against the peaks of the network's
  own heatmaps (detached; decoded by the shared codec), weighted by the peak values.
* the 2D keypoint loss on labelled images (Eq. 2): squared L2 of the projection against the
  annotations, over labelled keypoints.

Units and the paper's weights. Every clip term is the paper's sum over the clip divided by
its length J, and Eq. 2 a mean over images, so the weights keep the paper's balance between
terms per frame. 2D coordinates are in half-crop units, ``(u - c) / (S / 2)`` (as
``training.losses``), the paper's in pixels of its 64 x 64 heatmaps: one of our units is 32
of its pixels, and squared errors are 32^2 = 1024 times larger in its units. Conversions:

====================  =========  ==============================================  ========
term                  paper      conversion                                      ours
====================  =========  ==============================================  ========
w_kp (Eq. 2)          1          x 32^2 (squared L2, half crop = 32 px)          1024
w_alpha               1e4        x 2 (below)                                     2e4
w_f                   1e4        x 1 (below)                                     1e4
w_R                   50         x 4 / pi (below), per radian                    63.66
w_T                   50         x sqrt(24) (below)                              244.9
w_2D (Eq. 5)          150        x 32^2 x e / 64^2 (below)                       101.9
====================  =========  ==============================================  ========

* alpha: the paper's chair (the 3D-INN release) has a mean shape with keypoint diagonal
  ``sqrt(24)`` and axis-aligned deformation bases of RMS norm ``sqrt(6)``; ours are
  orthonormal in units of the keypoint diagonal. The same 3D change of the flattened
  skeleton is ``sqrt(24) / sqrt(6) = 2`` paper units per unit of our alpha.
* translation: the paper's T is in its shape units (keypoint diagonal ``sqrt(24)``), ours
  in keypoint diagonals: ``x sqrt(24)``.
* rotation: a step ``d`` of one Euler angle ``phi`` moves its (sin, cos) pair by
  ``(|cos phi| + |sin phi|) d``, on average ``4 / pi * d``; ours costs ``theta = d``.
* f: the paper gives no unit for its focal output; ``w_f = w_alpha`` suggests an O(1)
  normalised output like its alpha, and the log focal is our O(1), scale-free counterpart
  (a relative change), so the weight is kept.
* w_2D: the paper's confidence is the softmax of the heatmap at the peak, about
  ``e / 64^2`` for a unit peak on a flat background; ours is the peak value, 1 for a clean
  peak.

These are the defaults of :class:`VideoLossWeights`; they are a starting point to tune on a
selection set (the heatmap term is ours, as in stage 3, not the paper's).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
import math

import torch

from perception_3dinn.codec import HeatmapCodec

#: Squared normalised 2D error at which a keypoint stops counting (a whole half crop off).
MAX_SQUARED_ERROR = 1.0


@dataclass(frozen=True)
class VideoLossWeights:
    """Weights of the semi-supervised loss in our units (module docstring)."""

    keypoints: float = 1.0 * 32 ** 2
    alpha: float = 1e4 * 2.0
    focal: float = 1e4
    rotation: float = 50.0 * 4.0 / math.pi
    translation: float = 50.0 * math.sqrt(24.0)
    reprojection: float = 150.0 * 32 ** 2 * math.e / 64 ** 2
    heatmap: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)


def _check(name: str, x: torch.Tensor, dims: int, last: tuple = ()) -> None:
    if x.dim() != dims or tuple(x.shape[dims - len(last):]) != last:
        raise ValueError(f'{name} must have {dims} dimensions ending in {last}, '
                         f'got {tuple(x.shape)}')


def clip_focal(focal: torch.Tensor, crop_scale: torch.Tensor) -> torch.Tensor:
    """Log focal of the image camera, ``log(f_crop / crop.scale)``, (C, L) -> (C, L, 1)."""
    _check('focal', focal, 2)
    if crop_scale.shape != focal.shape:
        raise ValueError(f'crop_scale {tuple(crop_scale.shape)} must match focal '
                         f'{tuple(focal.shape)}')
    return (torch.log(focal) - torch.log(crop_scale.to(focal.dtype))).unsqueeze(-1)


def solve_latents(values: torch.Tensor, method: str = 'median') -> torch.Tensor:
    """Closed-form per-clip latents with the network fixed (sec. 3.2.3).

    Args:
        values: (C, L, D) per-frame parameters of C clips of L frames.
        method: ``'median'`` (minimises the L1 of Eq. 3 in each dimension; the mid-point of
            the two middle values for even L, as NumPy) or ``'mean'`` (minimises the L2
            relaxation of footnote 1).

    Returns:
        (C, D), detached.
    """
    _check('values', values, 3)
    values = values.detach()
    if method == 'median':
        return torch.quantile(values, 0.5, dim=1)
    if method == 'mean':
        return values.mean(dim=1)
    raise ValueError(f"method must be 'median' or 'mean', got {method!r}")


def consistency_loss(values: torch.Tensor, latents: torch.Tensor,
                     norm: str = 'l1') -> torch.Tensor:
    """One part of Eq. 3: ``sum_j |v_j - h|_1`` per clip divided by L, mean over clips.

    Args:
        values: (C, L, D) per-frame parameters (e.g. alpha, or :func:`clip_focal`).
        latents: (C, D) from :func:`solve_latents` (treated as constants).
        norm: ``'l1'`` (Eq. 3) or ``'l2'`` (squared, footnote 1).
    """
    _check('values', values, 3)
    if tuple(latents.shape) != (values.shape[0], values.shape[2]):
        raise ValueError(f'latents must be ({values.shape[0]}, {values.shape[2]}), '
                         f'got {tuple(latents.shape)}')
    diff = values - latents.detach().unsqueeze(1)
    if norm == 'l1':
        per = diff.abs()
    elif norm == 'l2':
        per = diff ** 2
    else:
        raise ValueError(f"norm must be 'l1' or 'l2', got {norm!r}")
    return per.sum(-1).mean()


def relative_angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Geodesic angle (...,) in radians between rotations (..., 3, 3), differentiable at 0.

    ``theta = 2 asin(|a - b|_F / (2 sqrt(2)))``; the norm's gradient is bounded, as for |x|.
    """
    sq = ((a - b) ** 2).sum((-2, -1))
    chord = torch.where(sq > 0, torch.sqrt(sq.clamp(min=1e-30)), torch.zeros_like(sq))
    return 2.0 * torch.asin((chord / (2.0 * math.sqrt(2.0))).clamp(max=1.0 - 1e-7))


def motion_smoothness(rotation: torch.Tensor, translation: torch.Tensor) -> tuple:
    """Eq. 4, unweighted: per clip ``sum_j theta(R_j, R_j+1)`` and ``sum_j |t_j - t_j+1|_1``,
    each divided by L, mean over clips.

    Args:
        rotation: (C, L, 3, 3); translation: (C, L, 3).

    Returns:
        (rotation term, translation term) scalars.
    """
    _check('rotation', rotation, 4, (3, 3))
    _check('translation', translation, 3, (3,))
    length = rotation.shape[1]
    rot = relative_angle(rotation[:, 1:], rotation[:, :-1]).sum(1) / length
    trans = (translation[:, 1:] - translation[:, :-1]).abs().sum((1, 2)) / length
    return rot.mean(), trans.mean()


def heatmap_peaks(heatmaps: torch.Tensor, codec: HeatmapCodec) -> tuple:
    """Detached peaks of the network's heatmaps: (B, N, h, w) -> keypoints (B, N, 2) crop
    pixels and confidences (B, N) (peak values clipped to [0, 1]), on the heatmaps' device."""
    _check('heatmaps', heatmaps, 4)
    kp, conf = codec.decode(heatmaps.detach().float().cpu().numpy())
    kw = {'dtype': heatmaps.dtype, 'device': heatmaps.device}
    return torch.as_tensor(kp, **kw), torch.as_tensor(conf, **kw)


def _squared_error(proj: torch.Tensor, target: torch.Tensor, input_size: int) -> torch.Tensor:
    """(B, N) squared 2D error in half-crop units, capped at :data:`MAX_SQUARED_ERROR`."""
    _check('proj', proj, 3, (2,))
    if target.shape != proj.shape:
        raise ValueError(f'target {tuple(target.shape)} must match proj {tuple(proj.shape)}')
    err = (((proj - target) / (0.5 * input_size)) ** 2).sum(-1)
    return err.clamp(max=MAX_SQUARED_ERROR)


def peak_reprojection_loss(proj: torch.Tensor, peaks: torch.Tensor, confidence: torch.Tensor,
                           input_size: int) -> torch.Tensor:
    """Eq. 5, unweighted: ``sum_n c_n |x_n - x^h_n|^2`` per frame, mean over frames.

    Args:
        proj: (B, N, 2) projection-layer keypoints, crop pixels.
        peaks, confidence: (B, N, 2), (B, N) from :func:`heatmap_peaks` (constants).
    """
    err = _squared_error(proj, peaks.detach(), input_size)
    if confidence.shape != err.shape:
        raise ValueError(f'confidence must be {tuple(err.shape)}, got {tuple(confidence.shape)}')
    return (confidence.detach() * err).sum(-1).mean()


def keypoint_loss(proj: torch.Tensor, keypoints: torch.Tensor, labelled: torch.Tensor,
                  input_size: int) -> torch.Tensor:
    """Eq. 2, unweighted: squared 2D error summed over labelled keypoints, mean over images.

    Args:
        proj, keypoints: (B, N, 2) crop pixels; labelled: (B, N) bool.
    """
    err = _squared_error(proj, keypoints, input_size)
    if labelled.shape != err.shape:
        raise ValueError(f'labelled must be {tuple(err.shape)}, got {tuple(labelled.shape)}')
    return (err * labelled.to(err.dtype)).sum(-1).mean()


def video_terms(outputs: tuple, proj: torch.Tensor, crop_scale: torch.Tensor,
                codec: HeatmapCodec, method: str = 'median') -> tuple[dict, dict]:
    """The unweighted video terms of a batch of clips, latents solved with the outputs fixed.

    Args:
        outputs: (heatmaps, structure, rotation, translation, focal) of the C * L frames,
            clip-major (frame j of clip i at row ``i * L + j``).
        proj: (C * L, N, 2) their projection-layer keypoints.
        crop_scale: (C, L) crop scales of the frames.
        method: ``'median'`` with L1 (Eq. 3) or ``'mean'`` with L2 (footnote 1).

    Returns:
        terms ``alpha``, ``focal``, ``rotation``, ``translation``, ``reprojection`` (scalar
        tensors) and the latents ``alpha (C, K)``, ``focal (C, 1)``.
    """
    hm, structure, rotation, translation, focal = outputs
    c, length = crop_scale.shape
    if structure.shape[0] != c * length:
        raise ValueError(f'{structure.shape[0]} frames for {c} clips of {length}')
    alpha = structure.reshape(c, length, -1)
    log_f = clip_focal(focal.reshape(c, length), crop_scale)
    latents = {'alpha': solve_latents(alpha, method), 'focal': solve_latents(log_f, method)}
    norm = 'l1' if method == 'median' else 'l2'
    rot, trans = motion_smoothness(rotation.reshape(c, length, 3, 3),
                                   translation.reshape(c, length, 3))
    peaks, conf = heatmap_peaks(hm, codec)
    terms = {'alpha': consistency_loss(alpha, latents['alpha'], norm),
             'focal': consistency_loss(log_f, latents['focal'], norm),
             'rotation': rot, 'translation': trans,
             'reprojection': peak_reprojection_loss(proj, peaks, conf, codec.input_size)}
    return terms, latents


def weighted_sum(terms: dict, weights: VideoLossWeights) -> torch.Tensor:
    """``sum_k w_k * term_k`` over the terms present (names as the weight fields)."""
    w = weights.to_dict()
    unknown = set(terms) - set(w)
    if unknown:
        raise ValueError(f'no weight for {sorted(unknown)}')
    return sum(w[name] * value for name, value in terms.items())

