"""Losses of the three 3D-INN training stages (seed 000, sec. 3.3)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812

from perception_3dinn.models.interpreter import Interpreter
from perception_3dinn.models.projection import project_points, structure_from_alpha

#: Weights of the interpreter loss terms.
INTERPRETER_WEIGHTS = {'alpha': 1.0, 'rotation': 2.0, 'centre': 1.0, 'scale': 1.0,
                       'focal': 0.3, 'points3d': 5.0, 'reprojection': 5.0}


def interpreter_targets(interp: Interpreter, batch: dict) -> torch.Tensor:
    """Raw-output targets (B, 10 + K) of a sampler batch (torch tensors, float32)."""
    cfg = interp.config
    f, t = batch['focal'], batch['translation']
    half = 0.5 * cfg.input_size
    u0 = (f * t[:, 0] / t[:, 2]) / half
    v0 = (f * t[:, 1] / t[:, 2]) / half
    log_s = (torch.log(f / t[:, 2]) - cfg.log_scale_mean) / cfg.log_scale_std
    log_f = (torch.log(f) - cfg.log_focal_mean) / cfg.log_focal_std
    rot6 = torch.cat([batch['rotation'][:, :, 0], batch['rotation'][:, :, 1]], dim=-1)
    return torch.cat([rot6, batch['alpha'] / interp.alpha_std,
                      torch.stack([u0, v0, log_s, log_f], dim=-1)], dim=-1)


def interpreter_loss(interp: Interpreter, raw: torch.Tensor, batch: dict,
                     bases: torch.Tensor, weights: dict | None = None) -> tuple:
    """Supervised loss of the interpreter on synthetic 3D ground truth.

    Args:
        interp: the interpreter (for its config and decoding).
        raw: (B, 10 + K) raw outputs.
        batch: torch tensors ``alpha (B, K)``, ``rotation (B, 3, 3)``, ``translation (B, 3)``,
            ``focal (B,)``, ``points3d (B, N, 3)``, ``keypoints (B, N, 2)``.
        bases: (K + 1, N, 3).

    Returns:
        total loss (scalar tensor), dict of float terms.
    """
    w = dict(INTERPRETER_WEIGHTS, **(weights or {}))
    k = interp.config.num_bases
    target = interpreter_targets(interp, batch)
    structure, rotation, translation, focal = interp.decode(raw)
    half = 0.5 * interp.config.input_size
    terms = {
        'alpha': F.smooth_l1_loss(raw[:, 6:6 + k], target[:, 6:6 + k], beta=0.1),
        'rotation': ((rotation - batch['rotation']) ** 2).sum((1, 2)).mean(),
        'centre': F.smooth_l1_loss(raw[:, 6 + k:8 + k], target[:, 6 + k:8 + k], beta=0.02),
        'scale': F.smooth_l1_loss(raw[:, 8 + k], target[:, 8 + k], beta=0.1),
        'focal': F.smooth_l1_loss(raw[:, 9 + k], target[:, 9 + k], beta=0.1),
    }
    y = structure_from_alpha(structure, bases)
    oriented = torch.einsum('bij,bnj->bni', rotation, y)
    oriented_gt = torch.einsum('bij,bnj->bni', batch['rotation'], batch['points3d'])
    terms['points3d'] = (oriented - oriented_gt).abs().mean()
    c = torch.full((2,), 0.5 * (interp.config.input_size - 1), dtype=raw.dtype,
                   device=raw.device)
    proj = project_points(y, rotation, translation, focal, c)
    terms['reprojection'] = ((proj - batch['keypoints']).abs() / half).clamp(max=1.0).mean()
    total = sum(w[name] * value for name, value in terms.items())
    return total, {name: float(value.detach()) for name, value in terms.items()}


def structure_loss(alpha: torch.Tensor, alpha_gt: torch.Tensor, alpha_std: torch.Tensor,
                   bases: torch.Tensor) -> torch.Tensor:
    """Shape loss against a known 3D structure, independent of the viewpoint.

    The interpreter loss's ``alpha`` term (smooth L1 on standardised coefficients) plus its
    ``points3d`` term on the canonical (unrotated) keypoints, with the same weights. The
    bases are mirror-symmetric, so the loss is unchanged by the horizontal-flip augmentation.

    Args:
        alpha, alpha_gt: (B, K) predicted and true structure coefficients.
        alpha_std: (K,) coefficient scale; bases: (K + 1, N, 3).
    """
    w = INTERPRETER_WEIGHTS
    alpha_gt = alpha_gt.to(alpha.dtype)
    coeff = F.smooth_l1_loss(alpha / alpha_std, alpha_gt / alpha_std, beta=0.1)
    points = (structure_from_alpha(alpha, bases) - structure_from_alpha(alpha_gt, bases))
    return w['alpha'] * coeff + w['points3d'] * points.abs().mean()


def heatmap_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                 foreground: float = 20.0) -> torch.Tensor:
    """Squared heatmap error (B, N, h, w), pixels weighted by ``1 + foreground * target``.

    The foreground weight makes the few peak pixels count against the many background ones;
    a plain MSE is almost minimised by all-zero maps and learns peaks far more slowly (after
    250 steps: PCK@0.1 0.34 weighted against 0.11 plain, docs/models/chair.md).
    Optionally weighted per keypoint (B, N).
    """
    err = (((pred - target) ** 2) * (1.0 + foreground * target)).mean((2, 3))
    if weight is not None:
        err = err * weight
    return err.mean() * 1000.0


def reprojection_loss(proj: torch.Tensor, keypoints: torch.Tensor, visible: torch.Tensor,
                      input_size: int) -> torch.Tensor:
    """Stage 3: L1 between projected and annotated 2D keypoints over visible ones.

    Args:
        proj, keypoints: (B, N, 2) crop pixels; visible: (B, N) bool.
    """
    err = ((proj - keypoints).abs().sum(-1) / (0.5 * input_size)).clamp(max=1.0)
    v = visible.to(err.dtype)
    return (err * v).sum() / v.sum().clamp(min=1.0)


def cosine_lr(step: int, total: int, base: float, warmup: int = 200) -> float:
    """Linear warm-up then cosine decay to 2 % of ``base``."""
    if step < warmup:
        return base * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * p)))
