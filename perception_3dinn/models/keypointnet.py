"""KeypointNet of seed 003 (sec. 3.4): an image to N ordered 3D keypoints, no labels needed.

:class:`KeypointNet` is fully convolutional, so it is translation equivariant by design: a
stack of 3 x 3 dilated convolutions at stride 1 (the paper's 13 layers with dilations
1, 1, 2, 4, 8, 16, 1, 2, 4, 8, 16, 1, 1; batch norm and LeakyReLU on all but the last) ends
in ``2 N`` channels at the input resolution. The first N go through a spatial softmax to
distributions ``g_i(u, v)`` whose expected pixel is the keypoint ``(u_i, v_i)`` (eq. 3); the
last N, with no activation, are per-pixel depth maps ``d_i`` whose ``g_i``-weighted mean is
the keypoint's depth ``z_i`` (eq. 4). Pixel centres are at integer coordinates (the OpenCV
convention of docs/interfaces.md), so ``(u, v)`` are ordinary pixel coordinates and
:func:`lift` turns ``(u, v, z)`` into camera-frame 3D points with the intrinsics K.

:class:`OrientationNet` breaks symmetries (sec. 3.4, "Breaking symmetry"): the same stack at
half the width predicts, with two spatial-softmax channels, the pixels of the object points
``[1, 0, 0]`` (front) and ``[-1, 0, 0]`` (back), trained with an L2 loss to their true
projections. Its flag is 1 iff the front projects right of the back; it is exposed as a
2-way logit ``[-(u_f - u_b), u_f - u_b] / 2`` (so ``softmax[1] = sigmoid(u_f - u_b)``,
pixels). The flag reaches the keypoint network as a constant extra input channel (+1 or -1),
which keeps it fully convolutional. Training feeds the true flag (from the known pose);
:class:`KeypointNetModel` uses the predicted one when none is given.

Sizes are scaled down for CPU training (64 px images, 32 channels by default); the paper used
128 px and 64 channels. Images are float RGB in [0, 1], shape (B, 3, H, W).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from perception_3dinn.models.projection import _check

PAPER_DILATIONS = (1, 1, 2, 4, 8, 16, 1, 2, 4, 8, 16, 1, 1)


@dataclass
class KeypointNetConfig:
    """Hyper-parameters of the keypoint and orientation networks.

    Attributes:
        num_keypoints: N, keypoints per image.
        image_size: input side in pixels (square images).
        channels: width of the keypoint network (the paper: 64).
        orientation_channels: width of the orientation network (the paper: half).
        dilations: dilation of each 3 x 3 layer; the last layer is the output layer.
        slope: LeakyReLU negative slope.
        depth_init: initial bias of the depth maps (the cameras' typical distance, object
            units), so training starts at plausible depths.
    """

    num_keypoints: int = 10
    image_size: int = 64
    channels: int = 32
    orientation_channels: int = 16
    dilations: tuple = PAPER_DILATIONS
    slope: float = 0.2
    depth_init: float = 4.0

    def __post_init__(self) -> None:
        self.dilations = tuple(int(d) for d in self.dilations)
        if self.num_keypoints < 1:
            raise ValueError(f'num_keypoints must be >= 1, got {self.num_keypoints}')
        if len(self.dilations) < 2 or min(self.dilations) < 1:
            raise ValueError(f'dilations needs >= 2 positive values, got {self.dilations}')
        if self.image_size < 8 or self.channels < 1 or self.orientation_channels < 1:
            raise ValueError('image_size must be >= 8 and channels >= 1')

    def to_dict(self) -> dict:
        d = asdict(self)
        d['dilations'] = list(self.dilations)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> KeypointNetConfig:
        return cls(**d)


def dilated_stack(in_channels: int, channels: int, out_channels: int, dilations: tuple,
                  slope: float) -> nn.Sequential:
    """3 x 3 convolutions at stride 1 with the given dilations (same size out); batch norm and
    LeakyReLU after all but the last, which outputs ``out_channels`` raw maps."""
    layers: list[nn.Module] = []
    cin = in_channels
    for d in dilations[:-1]:
        layers += [nn.Conv2d(cin, channels, 3, padding=d, dilation=d, bias=False),
                   nn.BatchNorm2d(channels), nn.LeakyReLU(slope)]
        cin = channels
    d = dilations[-1]
    layers.append(nn.Conv2d(cin, out_channels, 3, padding=d, dilation=d))
    return nn.Sequential(*layers)


def spatial_softmax(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distributions over pixels and their expected pixel coordinates (eq. 3).

    Args:
        logits: (B, N, H, W).

    Returns:
        prob (B, N, H, W) summing to 1 over (H, W); uv (B, N, 2) expected (u, v), pixel
        centres at integers (u: column, v: row).
    """
    _check('logits', logits, (None, None, None, None))
    b, n, h, w = logits.shape
    prob = torch.softmax(logits.reshape(b, n, h * w), dim=-1).reshape(b, n, h, w)
    us = torch.arange(w, dtype=logits.dtype, device=logits.device)
    vs = torch.arange(h, dtype=logits.dtype, device=logits.device)
    u = (prob.sum(2) * us).sum(-1)
    v = (prob.sum(3) * vs).sum(-1)
    return prob, torch.stack([u, v], dim=-1)


def expected_depth(prob: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """(B, N) depth of each keypoint: its depth map weighted by its distribution (eq. 4).

    Args:
        prob: (B, N, H, W) distributions; depth: (B, N, H, W) per-pixel depths.
    """
    _check('depth', depth, tuple(prob.shape))
    return (prob * depth).sum((2, 3))


def lift(uv: torch.Tensor, z: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Camera-frame 3D points ``z * K^-1 [u, v, 1]`` (the paper's pi^-1, eq. 2).

    Args:
        uv: (B, N, 2) pixels; z: (B, N) depths along the optical axis; K: (B, 3, 3) or (3, 3).

    Returns:
        (B, N, 3).
    """
    _check('uv', uv, (None, None, 2))
    _check('z', z, tuple(uv.shape[:2]))
    K = K.to(uv.dtype).expand(uv.shape[0], 3, 3)
    fx, fy = K[:, 0, 0, None], K[:, 1, 1, None]
    cx, cy = K[:, 0, 2, None], K[:, 1, 2, None]
    x = (uv[..., 0] - cx) / fx * z
    y = (uv[..., 1] - cy) / fy * z
    return torch.stack([x, y, z], dim=-1)


def project(points: torch.Tensor, K: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels (B, N, 2) and depths (B, N) of camera-frame points (B, N, 3) (the paper's pi)."""
    _check('points', points, (None, None, 3))
    K = K.to(points.dtype).expand(points.shape[0], 3, 3)
    z = points[..., 2]
    u = K[:, 0, 0, None] * points[..., 0] / z + K[:, 0, 2, None]
    v = K[:, 1, 1, None] * points[..., 1] / z + K[:, 1, 2, None]
    return torch.stack([u, v], dim=-1), z


def _normalise(image: torch.Tensor, size: int) -> torch.Tensor:
    _check('image', image, (None, 3, size, size))
    return (image - 0.5) / 0.25


class OrientationNet(nn.Module):
    """Image (B, 3, S, S) -> pixels of the object's front and back points and the flag."""

    def __init__(self, config: KeypointNetConfig) -> None:
        super().__init__()
        self.config = config
        self.net = dilated_stack(3, config.orientation_channels, 2, config.dilations,
                                 config.slope)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Returns ``uv`` (B, 2, 2): predicted pixels of [1, 0, 0] then [-1, 0, 0];
        ``flag_logits`` (B, 2); ``flag`` (B,) long, 1 iff the front is right of the back."""
        _, uv = spatial_softmax(self.net(_normalise(image, self.config.image_size)))
        du = uv[:, 0, 0] - uv[:, 1, 0]
        logits = torch.stack([-0.5 * du, 0.5 * du], dim=-1)
        return {'uv': uv, 'flag_logits': logits, 'flag': (du > 0).long()}


class KeypointNet(nn.Module):
    """(image (B, 3, S, S), flag (B,)) -> N keypoints with depths and their distributions."""

    def __init__(self, config: KeypointNetConfig) -> None:
        super().__init__()
        self.config = config
        n = config.num_keypoints
        self.net = dilated_stack(4, config.channels, 2 * n, config.dilations, config.slope)
        with torch.no_grad():
            self.net[-1].bias[n:].fill_(config.depth_init)

    def forward(self, image: torch.Tensor, flag: torch.Tensor) -> dict[str, torch.Tensor]:
        """Returns ``uv`` (B, N, 2) pixels, ``z`` (B, N) depths, ``prob`` (B, N, S, S)
        distributions and ``depth`` (B, N, S, S) per-pixel depth maps."""
        s, n = self.config.image_size, self.config.num_keypoints
        x = _normalise(image, s)
        _check('flag', flag, (x.shape[0],))
        cond = (2.0 * flag.to(x.dtype) - 1.0)[:, None, None, None].expand(-1, 1, s, s)
        out = self.net(torch.cat([x, cond], dim=1))
        prob, uv = spatial_softmax(out[:, :n])
        depth = out[:, n:]
        return {'uv': uv, 'z': expected_depth(prob, depth), 'prob': prob, 'depth': depth}


class KeypointNetModel(nn.Module):
    """Orientation and keypoint networks together, as trained and deployed."""

    def __init__(self, config: KeypointNetConfig) -> None:
        super().__init__()
        self.config = config
        self.orientation = OrientationNet(config)
        self.keypoints = KeypointNet(config)

    def forward(self, image: torch.Tensor,
                flag: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Keypoints of ``image`` (B, 3, S, S) given ``flag`` (B,) or, when None, the
        orientation network's flag. Returns the keypoint outputs of :class:`KeypointNet`
        plus ``orient_uv`` (B, 2, 2), ``flag_logits`` (B, 2) and the ``flag`` used."""
        orient = self.orientation(image)
        used = orient['flag'] if flag is None else flag
        out = self.keypoints(image, used)
        out.update(orient_uv=orient['uv'], flag_logits=orient['flag_logits'], flag=used)
        return out
