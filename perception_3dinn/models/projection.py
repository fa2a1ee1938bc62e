"""Projection layer (seed 000, Eq. 1) and rotation helpers, differentiable and ONNX-friendly.

``X = P(R Y + T)`` with ``Y = B_0 + sum_k alpha_k B_k`` and a pinhole ``P`` of focal ``f``
and principal point ``c``: ``u = f * x / z + c_u``, ``v = f * y / z + c_v``.
"""

import torch
from torch import nn


def _check(name: str, x: torch.Tensor, shape: tuple) -> None:
    """Raise ValueError unless ``x.shape`` matches ``shape`` (None matches any size).

    Skipped while tracing (ONNX export), where shapes are symbolic.
    """
    if torch.jit.is_tracing():
        return
    if x.dim() != len(shape) or any(s is not None and s != d for s, d in zip(shape, x.shape)):
        raise ValueError(f'{name} must have shape {shape}, got {tuple(x.shape)}')


def structure_from_alpha(alpha: torch.Tensor, bases: torch.Tensor) -> torch.Tensor:
    """3D keypoints in the object frame.

    Args:
        alpha: (B, K) deformation weights.
        bases: (K + 1, N, 3) mean shape then deformations.

    Returns:
        (B, N, 3) ``bases[0] + sum_k alpha_k bases[k]``.
    """
    _check('alpha', alpha, (None, bases.shape[0] - 1))
    _check('bases', bases, (None, None, 3))
    return bases[0].unsqueeze(0) + torch.einsum('bk,knd->bnd', alpha, bases[1:])


def project_points(points: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor,
                   focal: torch.Tensor, principal: torch.Tensor) -> torch.Tensor:
    """Pinhole projection of object-frame points.

    Args:
        points: (B, N, 3) object frame.
        rotation: (B, 3, 3) object -> camera.
        translation: (B, 3) camera frame.
        focal: (B,) pixels.
        principal: (2,) or (B, 2) pixels.

    Returns:
        (B, N, 2) pixel coordinates (u, v).
    """
    b = points.shape[0]
    _check('points', points, (b, None, 3))
    _check('rotation', rotation, (b, 3, 3))
    _check('translation', translation, (b, 3))
    _check('focal', focal, (b,))
    if principal.dim() == 1:
        _check('principal', principal, (2,))
        principal = principal.unsqueeze(0)
    else:
        _check('principal', principal, (b, 2))
    cam = torch.einsum('bij,bnj->bni', rotation, points) + translation.unsqueeze(1)
    uv = cam[..., :2] / cam[..., 2:3]
    return uv * focal.view(b, 1, 1) + principal.unsqueeze(1)


class ProjectionLayer(nn.Module):
    """Eq. 1 of seed 000: (alpha, R, T, f) -> 2D keypoints, with the bases as a buffer."""

    def __init__(self, bases: torch.Tensor) -> None:
        super().__init__()
        _check('bases', bases, (None, None, 3))
        self.register_buffer('bases', bases.clone())

    def forward(self, alpha: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor,
                focal: torch.Tensor, principal: torch.Tensor) -> torch.Tensor:
        """(B, K), (B, 3, 3), (B, 3), (B,), (2,) or (B, 2) -> (B, N, 2) pixels."""
        points = structure_from_alpha(alpha, self.bases.to(alpha.dtype))
        return project_points(points, rotation, translation, focal, principal)


def rotation_from_6d(x: torch.Tensor) -> torch.Tensor:
    """Gram-Schmidt of two 3-vectors into a rotation matrix (Zhou et al., CVPR 2019).

    Args:
        x: (B, 6): first and second column, unnormalised.

    Returns:
        (B, 3, 3) rotation matrices whose first two columns span ``x``.
    """
    _check('x', x, (None, 6))
    a1, a2 = x[:, 0:3], x[:, 3:6]
    b1 = a1 / torch.sqrt((a1 * a1).sum(-1, keepdim=True) + 1e-12)
    a2 = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
    b2 = a2 / torch.sqrt((a2 * a2).sum(-1, keepdim=True) + 1e-12)
    b3 = cross(b1, b2)
    return torch.stack([b1, b2, b3], dim=-1)


def rotation_to_6d(rotation: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) -> (B, 6): the first two columns."""
    _check('rotation', rotation, (None, 3, 3))
    return torch.cat([rotation[:, :, 0], rotation[:, :, 1]], dim=-1)


def cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cross product of (B, 3) vectors written with slices (exports to any ONNX opset)."""
    ax, ay, az = a[:, 0], a[:, 1], a[:, 2]
    bx, by, bz = b[:, 0], b[:, 1], b[:, 2]
    return torch.stack([ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx], dim=-1)
