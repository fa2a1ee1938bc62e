"""Rigid transformation layer and max-projection silhouette of seed 004 (sec. 3.2, 3.4).

The paper warps its canonical voxel grid into a camera-aligned grid by inverse warping
(trilinear sampling of the canonical grid at the transformed sample positions) and takes the
maximum along each viewing ray as the silhouette. It uses weak perspective; we resample
into the **perspective frustum of the crop camera** instead, so the same layer serves the
128 px crops the network sees, whatever the object's distance:

1. :func:`frustum_points`: for each output pixel (``out_size`` x ``out_size`` over the crop
   image of ``image_size`` pixels) and each of ``depth_samples`` depths between the nearest
   and farthest corner of the object's grid box, the camera point ``X = z K^-1 [u, v, 1]``.
2. :func:`voxel_frustum`: those points taken back to the grid frame,
   ``Y = R^T (X - t) / scale``, and the occupancy probabilities sampled there trilinearly
   (``torch.nn.functional.grid_sample``; zero outside the grid): ``(B, D, H, W)``.
3. :func:`max_projection`: the maximum over depth, ``(B, H, W)``, the silhouette
   probability (its gradient goes to the sample that holds the maximum, as the paper's).

The pose convention is the renderer's and the network's, ``X_cam = R (scale * Y) + t``,
with ``Y`` in the grid's frame (metres at the category's size prior,
:func:`perception_3dinn.voxels.grid_for_dimensions`):

- ground truth of a rendered sample: ``scale = scale_m / size_prior_m``, ``t`` in metres,
  ``K`` the sample's intrinsics;
- the network (:class:`perception_3dinn.models.inn.INN3D`): ``scale = 1 / size_prior_m``
  (its structure is in normalised units), its ``translation``, and ``K`` from its ``focal``
  with the principal point at the crop centre (:func:`crop_intrinsics`).

Occupancy is indexed ``[ix, iy, iz]`` (``VoxelGrid.occupancy``); pixel centres are at
integers of the ``image_size`` image, and output pixel ``j`` covers input pixels
``[j * r - 0.5, (j + 1) * r - 0.5)`` with ``r = image_size / out_size``, so a silhouette of
``out_size = image_size / r`` compares with the mask averaged over ``r x r`` blocks.

Everything is differentiable in the probabilities and in ``R``, ``t`` and ``scale``; the
depth range is taken from the pose without gradient (it only places the samples).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch.nn import functional

from perception_3dinn.models.projection import _check


@dataclass
class VoxelProjectionConfig:
    """Sampling of the crop camera's frustum.

    Attributes:
        out_size: silhouette pixels per side.
        depth_samples: samples along each ray between the grid box's nearest and farthest
            corner; a few per voxel keeps thin parts from falling between samples.
        near_m: smallest depth sampled, in the pose's units (a box reaching behind the
            camera is cut there).
        mode: ``'bilinear'`` (trilinear on a 3D grid: differentiable in the pose; a thin
            part one voxel wide projects narrower than its voxel boxes, since the
            interpolated value falls below 0.5 towards their corners) or ``'nearest'``
            (the silhouette is the union of the occupied voxel boxes; no pose gradient).
    """

    out_size: int = 64
    depth_samples: int = 64
    near_m: float = 1e-3
    mode: str = 'bilinear'

    def __post_init__(self) -> None:
        if self.out_size < 1 or self.depth_samples < 2:
            raise ValueError(f'out_size >= 1 and depth_samples >= 2 needed, got '
                             f'{self.out_size}, {self.depth_samples}')
        if not self.near_m > 0:
            raise ValueError(f'near_m must be positive, got {self.near_m}')
        if self.mode not in ('bilinear', 'nearest'):
            raise ValueError(f"mode must be 'bilinear' or 'nearest', got {self.mode!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def crop_intrinsics(focal: torch.Tensor, image_size: int) -> torch.Tensor:
    """(B,) focal in crop pixels -> (B, 3, 3) K with the principal point at the crop centre
    (the network's crop camera, :meth:`INN3D.project`)."""
    b = focal.shape[0]
    c = 0.5 * (image_size - 1)
    K = torch.zeros(b, 3, 3, dtype=focal.dtype, device=focal.device)
    K[:, 0, 0] = focal
    K[:, 1, 1] = focal
    K[:, 0, 2] = c
    K[:, 1, 2] = c
    K[:, 2, 2] = 1.0
    return K


def grid_corners(origin: torch.Tensor, span: float) -> torch.Tensor:
    """(8, 3) corners of the cubic grid box starting at ``origin`` with side ``span``."""
    bits = torch.tensor([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)],
                        dtype=origin.dtype, device=origin.device)
    return origin.view(1, 3) + bits * span


def depth_range(origin: torch.Tensor, span: float, R: torch.Tensor, t: torch.Tensor,
                scale: torch.Tensor, near: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest and farthest camera depth (B,) of the grid box's corners, at least ``near``
    (no gradient: the range only places the samples)."""
    with torch.no_grad():
        corners = grid_corners(origin, span)
        z = torch.einsum('bj,nj->bn', R[:, 2, :], corners) * scale.view(-1, 1)
        z = z + t[:, 2:3]
        lo = z.min(1).values.clamp(min=near)
        hi = z.max(1).values.clamp(min=near * 2)
    return lo, hi


def frustum_points(K: torch.Tensor, image_size: int, near: torch.Tensor, far: torch.Tensor,
                   config: VoxelProjectionConfig) -> torch.Tensor:
    """Camera points (B, D, H, W, 3) of the output pixels' rays at ``depth_samples`` depths
    spaced evenly over ``[near, far]`` (each (B,))."""
    b, s, d = K.shape[0], config.out_size, config.depth_samples
    r = image_size / s
    pix = (torch.arange(s, dtype=K.dtype, device=K.device) + 0.5) * r - 0.5
    v, u = torch.meshgrid(pix, pix, indexing='ij')
    uv1 = torch.stack([u, v, torch.ones_like(u)], -1).reshape(-1, 3)       # (H W, 3)
    rays = torch.einsum('bij,pj->bpi', torch.linalg.inv(K), uv1)          # (B, H W, 3)
    frac = torch.linspace(0.0, 1.0, d, dtype=K.dtype, device=K.device)
    z = near.view(b, 1) + (far - near).view(b, 1) * frac.view(1, d)        # (B, D)
    pts = z.view(b, d, 1, 1) * rays.view(b, 1, -1, 3)
    return pts.view(b, d, s, s, 3)


def voxel_frustum(prob: torch.Tensor, origin: torch.Tensor, resolution: float,
                  K: torch.Tensor, image_size: int, R: torch.Tensor, t: torch.Tensor,
                  scale: torch.Tensor, config: VoxelProjectionConfig,
                  depths: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """The rigid transformation layer: occupancy ``prob`` (B, X, Y, Z) of a cubic grid
    (``origin`` (3,) its minimum corner, ``resolution`` m per voxel) resampled in the crop
    camera's frustum -> (B, D, H, W), depth first.

    Args:
        prob: occupancy probabilities in [0, 1] (sigmoid of the decoder's logits).
        K: (B, 3, 3) intrinsics of the ``image_size`` x ``image_size`` crop image.
        R, t, scale: (B, 3, 3), (B, 3), (B,): ``X_cam = R (scale * Y) + t``.
        depths: (near, far), each (B,), to sample instead of the grid box's depth range
            (:func:`depth_range`). The range moves the samples along the rays and is not
            differentiated, so a gradient check in the pose holds it fixed.
    """
    b = prob.shape[0]
    size = prob.shape[1]
    _check('prob', prob, (b, size, size, size))
    _check('K', K, (b, 3, 3))
    _check('R', R, (b, 3, 3))
    _check('t', t, (b, 3))
    _check('scale', scale, (b,))
    origin = origin.to(prob.dtype)
    span = resolution * size
    near, far = depths if depths is not None else depth_range(origin, span, R, t, scale,
                                                              config.near_m)
    pts = frustum_points(K, image_size, near, far, config)
    # Y = R^T (X - t) / scale, then to grid_sample's [-1, 1] (align_corners=False: -1 and 1
    # are the outer faces of the first and last voxel).
    local = torch.einsum('bji,bdhwj->bdhwi', R, pts - t.view(b, 1, 1, 1, 3))
    local = local / scale.view(b, 1, 1, 1, 1)
    g = 2.0 * (local - origin) / span - 1.0
    # grid_sample's last coordinate indexes the input's last axis: (z, y, x) for [ix, iy, iz].
    g = g.flip(-1)
    out = functional.grid_sample(prob.unsqueeze(1), g, mode=config.mode, padding_mode='zeros',
                                 align_corners=False)
    return out.squeeze(1)


def max_projection(frustum: torch.Tensor) -> torch.Tensor:
    """(B, D, H, W) -> (B, H, W): the largest occupancy along each ray (the silhouette)."""
    return frustum.amax(dim=1)


def project_silhouette(prob: torch.Tensor, origin: torch.Tensor, resolution: float,
                       K: torch.Tensor, image_size: int, R: torch.Tensor, t: torch.Tensor,
                       scale: torch.Tensor, config: VoxelProjectionConfig | None = None,
                       depths: tuple[torch.Tensor, torch.Tensor] | None = None
                       ) -> torch.Tensor:
    """Silhouette probabilities (B, out_size, out_size) of ``prob`` seen by the crop camera:
    :func:`voxel_frustum` then :func:`max_projection`."""
    config = config or VoxelProjectionConfig()
    return max_projection(voxel_frustum(prob, origin, resolution, K, image_size, R, t, scale,
                                        config, depths))


def downsample_mask(mask: torch.Tensor, out_size: int) -> torch.Tensor:
    """(B, S, S) masks in {0, 1} -> (B, out_size, out_size) covered fractions (``S`` a
    multiple of ``out_size``), the target the silhouette is compared with."""
    s = mask.shape[-1]
    if s % out_size:
        raise ValueError(f'mask size {s} is not a multiple of out_size {out_size}')
    return functional.avg_pool2d(mask.unsqueeze(1).to(torch.float32 if not
                                                      mask.is_floating_point() else
                                                      mask.dtype), s // out_size).squeeze(1)


def silhouette_loss(silhouette: torch.Tensor, target: torch.Tensor,
                    eps: float = 1e-6) -> torch.Tensor:
    """The reprojection loss of seed 004: binary cross entropy of the projected silhouette
    (B, H, W) against the target mask (fractions in [0, 1]), mean over pixels and batch."""
    _check('target', target, tuple(silhouette.shape))
    p = silhouette.clamp(eps, 1.0 - eps)
    return functional.binary_cross_entropy(p, target.to(p.dtype))
