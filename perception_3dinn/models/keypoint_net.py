"""Keypoint heatmap network: a small one-stack hourglass for 2 CPU cores.

The image crop ``(B, 3, S, S)`` goes through a stride-4 stem and a residual hourglass
(seed 001 uses a one-stack hourglass; seed 000 a multi-scale CNN, both merge several scales)
and returns ``(B, N, S/4, S/4)`` heatmaps whose pixel ``j`` is centred on crop coordinate
``4 * j + 1.5`` (see ``perception_3dinn.codec``).
"""

from dataclasses import dataclass

import torch
from torch import nn
import torch.nn.functional as F  # noqa: N812


@dataclass
class KeypointNetConfig:
    """Hyper-parameters of :class:`KeypointNet`."""

    num_keypoints: int = 10
    input_size: int = 128
    stem_channels: int = 16
    channels: int = 32
    depth: int = 3          # hourglass levels below the 1/4 resolution (32 -> 16 -> 8 -> 4)
    blocks_per_level: int = 1


def conv_bn_relu(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    """Conv, batch norm, ReLU with 'same' padding."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ResidualBlock(nn.Module):
    """Two 3x3 convs with an identity (or 1x1) shortcut."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = conv_bn_relu(cin, cout)
        self.conv2 = nn.Sequential(
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout))
        self.skip = (nn.Identity() if cin == cout else
                     nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.conv1(x)) + self.skip(x))


class Hourglass(nn.Module):
    """Recursive hourglass: skip branch at this scale + down/recurse/up branch."""

    def __init__(self, depth: int, channels: int, blocks: int) -> None:
        super().__init__()
        self.skip = nn.Sequential(*[ResidualBlock(channels, channels) for _ in range(blocks)])
        self.down = nn.Sequential(*[ResidualBlock(channels, channels) for _ in range(blocks)])
        self.inner = (Hourglass(depth - 1, channels, blocks) if depth > 1 else
                      nn.Sequential(*[ResidualBlock(channels, channels)
                                      for _ in range(blocks)]))
        self.up = nn.Sequential(*[ResidualBlock(channels, channels) for _ in range(blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = F.max_pool2d(x, 2)
        low = self.up(self.inner(self.down(low)))
        return self.skip(x) + F.interpolate(low, scale_factor=2.0, mode='nearest')


class KeypointNet(nn.Module):
    """Crop ``(B, 3, S, S)`` -> heatmaps ``(B, N, S/4, S/4)``."""

    def __init__(self, config: KeypointNetConfig) -> None:
        super().__init__()
        if config.input_size % (4 * 2 ** config.depth) != 0:
            raise ValueError(f'input_size {config.input_size} must be divisible by '
                             f'{4 * 2 ** config.depth} for depth {config.depth}')
        self.config = config
        c = config.channels
        self.stem = nn.Sequential(
            conv_bn_relu(3, config.stem_channels, 3, stride=2),
            ResidualBlock(config.stem_channels, config.stem_channels),
            conv_bn_relu(config.stem_channels, c, 3, stride=2),
        )
        self.hourglass = Hourglass(config.depth, c, config.blocks_per_level)
        self.head = nn.Sequential(conv_bn_relu(c, c, 1),
                                  nn.Conv2d(c, config.num_keypoints, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``image (B, 3, S, S)`` normalised -> ``heatmaps (B, N, S/4, S/4)``."""
        return self.head(self.hourglass(self.stem(image)))
