"""Learned shape space of seed 004 (sec. 3.3, appendix I.a): structure + style -> voxels.

:class:`VoxelDecoder` maps the structure parameters ``alpha`` (K = ``category.num_bases``,
divided by the category's ``alpha_std`` inside the model) and a style code ``s``
(``style_dim``) to occupancy logits on the category's canonical grid
(``perception_3dinn.voxels.grid_for_dimensions(category.dimensions_m, size)``: object frame,
metres at the category's size prior, ``(B, X, Y, Z)`` indexed ``[ix, iy, iz]`` as
``VoxelGrid.occupancy``). The layers follow the paper's aligned-shape generator, scaled down:
a fully connected layer to a ``4^3`` seed, then 3D transposed convolutions (kernel 4, stride
2), batch norm and LeakyReLU, up to ``size^3`` with one channel of logits.

:class:`VoxelEncoder` is the paper's variational encoder (3D convolutions, stride 2) from a
grid ``(B, X, Y, Z)`` to the mean and log variance of the style code. Together they form an
auto-encoder whose code is the style an image network later predicts (``training.voxel_stage``).

Why the style is small (8 by default): ``alpha`` already gives the decoder the skeleton (leg,
seat and back positions and proportions), so the code only carries what the skeleton does not:
part thickness, slats, panel shapes. A short code keeps the space dense enough that a regressor
from images can land in it, and it is what the KL term of the auto-encoder keeps near N(0, I).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
import math

import torch
from torch import nn

from perception_3dinn.models.projection import _check


@dataclass
class VoxelDecoderConfig:
    """Hyper-parameters of the shape space (decoder and encoder).

    Attributes:
        num_bases: K, structure parameters of the category.
        alpha_std: (K,) the category's alpha standard deviations (input normalisation).
        style_dim: length of the style code.
        size: voxels per axis, ``4 * 2^n``.
        channels: decoder channels at the 4^3 seed and after each up-sampling but the last
            (``log2(size / 4)`` values); the encoder uses them in reverse.
        slope: LeakyReLU negative slope.
    """

    num_bases: int = 5
    alpha_std: tuple = field(default_factory=lambda: (1.0,) * 5)
    style_dim: int = 8
    size: int = 32
    channels: tuple = (32, 16, 8)
    slope: float = 0.2

    def __post_init__(self) -> None:
        self.alpha_std = tuple(float(v) for v in self.alpha_std)
        self.channels = tuple(int(v) for v in self.channels)
        levels = math.log2(self.size / 4) if self.size >= 4 else -1
        if levels < 1 or levels != int(levels):
            raise ValueError(f'size must be 4 * 2^n with n >= 1, got {self.size}')
        if len(self.channels) != int(levels):
            raise ValueError(f'channels needs {int(levels)} values for size {self.size}, '
                             f'got {self.channels}')
        if len(self.alpha_std) != self.num_bases or min(self.alpha_std) <= 0:
            raise ValueError(f'alpha_std must be {self.num_bases} positive numbers, '
                             f'got {self.alpha_std}')
        if self.style_dim < 1:
            raise ValueError(f'style_dim must be >= 1, got {self.style_dim}')

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> VoxelDecoderConfig:
        return cls(**d)


class VoxelDecoder(nn.Module):
    """(alpha (B, K), style (B, style_dim)) -> occupancy logits (B, size, size, size)."""

    def __init__(self, config: VoxelDecoderConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        self.register_buffer('alpha_std', torch.tensor(config.alpha_std, dtype=torch.float32))
        self.fc = nn.Linear(config.num_bases + config.style_dim, c[0] * 64)
        self.fc_norm = nn.BatchNorm3d(c[0])
        layers: list[nn.Module] = []
        for cin, cout in zip(c[:-1], c[1:]):
            layers += [nn.ConvTranspose3d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm3d(cout),
                       nn.LeakyReLU(config.slope)]
        layers.append(nn.ConvTranspose3d(c[-1], 1, 4, 2, 1))
        self.up = nn.Sequential(*layers)
        self.act = nn.LeakyReLU(config.slope)

    def forward(self, alpha: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """Occupancy logits (B, S, S, S) in the canonical grid; sigmoid -> probabilities."""
        cfg = self.config
        _check('alpha', alpha, (None, cfg.num_bases))
        _check('style', style, (alpha.shape[0], cfg.style_dim))
        x = torch.cat([alpha / self.alpha_std.to(alpha.dtype), style], dim=1)
        x = self.fc(x).view(-1, cfg.channels[0], 4, 4, 4)
        x = self.act(self.fc_norm(x))
        return self.up(x).squeeze(1)


class VoxelEncoder(nn.Module):
    """Occupancy (B, S, S, S) in [0, 1] -> style mean and log variance, each (B, style_dim)."""

    def __init__(self, config: VoxelDecoderConfig) -> None:
        super().__init__()
        self.config = config
        c = tuple(reversed(config.channels))
        layers: list[nn.Module] = [nn.Conv3d(1, c[0], 4, 2, 1), nn.LeakyReLU(config.slope)]
        for cin, cout in zip(c[:-1], c[1:]):
            layers += [nn.Conv3d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm3d(cout),
                       nn.LeakyReLU(config.slope)]
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Linear(c[-1] * 64, 2 * config.style_dim)

    def forward(self, voxels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S, S, S) -> (mean, log variance), each (B, style_dim)."""
        s = self.config.size
        _check('voxels', voxels, (None, s, s, s))
        h = self.conv(voxels.unsqueeze(1)).flatten(1)
        mean, log_var = self.fc(h).chunk(2, dim=1)
        return mean, log_var.clamp(-10.0, 5.0)


class VoxelAutoEncoder(nn.Module):
    """Encoder and decoder of one shape space, trained together (``training.voxel_stage``)."""

    def __init__(self, config: VoxelDecoderConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = VoxelEncoder(config)
        self.decoder = VoxelDecoder(config)

    def forward(self, voxels: torch.Tensor, alpha: torch.Tensor,
                sample: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruct ``voxels`` (B, S, S, S) given ``alpha`` (B, K).

        Returns:
            logits (B, S, S, S), style mean and log variance (B, style_dim); with ``sample``
            the decoder sees ``mean + exp(log_var / 2) * N(0, I)`` (training), else the mean.
        """
        mean, log_var = self.encoder(voxels)
        style = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var) if sample else mean
        return self.decoder(alpha, style), mean, log_var


def parameter_bytes(module: nn.Module, bytes_per_value: int = 2) -> int:
    """Size of the module's parameters and buffers at ``bytes_per_value`` (2: float16)."""
    values = sum(p.numel() for p in module.parameters())
    values += sum(b.numel() for b in module.buffers() if b.is_floating_point())
    return values * bytes_per_value
