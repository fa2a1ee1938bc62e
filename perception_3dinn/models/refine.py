"""Keypoint refinement bottleneck (seed 000, Fig. 3b), as a small convolutional auto-encoder.

The paper refines heatmaps with fully connected layers 8192-4096-8192; an information
bottleneck that forces the keypoints to agree with each other. Here the heatmaps are squeezed
to ``bottleneck`` numbers through strided convs and a linear layer, expanded back and added
to the input heatmaps as a residual correction, which keeps the cost low on a CPU.
"""

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class RefineConfig:
    """Hyper-parameters of :class:`RefineBottleneck`."""

    num_keypoints: int = 10
    heatmap_size: int = 32
    channels: int = 32
    bottleneck: int = 128


class RefineBottleneck(nn.Module):
    """Heatmaps ``(B, N, h, w)`` -> refined heatmaps ``(B, N, h, w)``."""

    def __init__(self, config: RefineConfig) -> None:
        super().__init__()
        if config.heatmap_size % 4 != 0:
            raise ValueError('heatmap_size must be divisible by 4')
        self.config = config
        n, c, s4 = config.num_keypoints, config.channels, config.heatmap_size // 4
        self.encoder = nn.Sequential(
            nn.Conv2d(n, c, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Flatten(), nn.Linear(c * s4 * s4, config.bottleneck), nn.ReLU(inplace=True))
        self.decoder = nn.Sequential(
            nn.Linear(config.bottleneck, c * s4 * s4), nn.ReLU(inplace=True),
            nn.Unflatten(1, (c, s4, s4)),
            nn.ConvTranspose2d(c, c, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(c, n, 4, stride=2, padding=1))

    def forward(self, heatmaps: torch.Tensor) -> torch.Tensor:
        """``(B, N, h, w)`` -> ``(B, N, h, w)``."""
        return heatmaps + self.decoder(self.encoder(heatmaps))
