"""3D interpreter (seed 000, Fig. 3c): keypoint heatmaps -> structure, rotation, T, focal.

A small conv encoder over the heatmaps (robust to several hypotheses per keypoint, as the
paper argues for heatmaps over coordinates) plus a soft-argmax summary (expected location and
peak value of each heatmap), followed by fully connected layers (the paper uses
2048-512-128-|S|; the default here is a smaller 256-256 head, see docs/models/chair.md).
Optionally (``coord_hidden``) a coordinate branch, an MLP over the soft-argmax keypoints with
their position and size normalised away (:func:`normalised_coordinates`), adds its features
to the fully connected layers' input.

Outputs are decoded inside the graph so that the ONNX contract holds:

* structure ``alpha = alpha_std * raw``;
* rotation from a 6D representation by Gram-Schmidt;
* the crop camera projection of the object origin ``(u0, v0)``, the image scale
  ``s = f / t_z`` and the focal ``f`` give ``t = ((u0 - c) / s, (v0 - c) / s, f / s)``,
  which separates what one image fixes well (where the object is and how big it looks) from
  what it barely fixes (``f`` versus depth, only through perspective).
"""

from dataclasses import dataclass, field

import torch
from torch import nn

from perception_3dinn.models.projection import rotation_from_6d


@dataclass
class InterpreterConfig:
    """Hyper-parameters and output normalisation of :class:`Interpreter`."""

    num_keypoints: int = 10
    num_bases: int = 4
    heatmap_size: int = 32
    input_size: int = 128
    conv_channels: tuple = (32, 48, 64)
    hidden: tuple = (256, 256)
    coord_hidden: tuple = ()
    soft_argmax_beta: float = 20.0
    alpha_std: tuple = field(default_factory=lambda: (1.0, 1.0, 1.0, 1.0))
    log_focal_mean: float = 5.5
    log_focal_std: float = 0.5
    log_scale_mean: float = 4.0
    log_scale_std: float = 0.3


def soft_argmax(heatmaps: torch.Tensor, beta: float) -> torch.Tensor:
    """Expected location and peak of each heatmap.

    Args:
        heatmaps: (B, N, h, w).
        beta: softmax inverse temperature.

    Returns:
        (B, N, 3): x, y in [-1, 1] over the heatmap extent and the max value.
    """
    b, n, h, w = heatmaps.shape
    flat = heatmaps.reshape(b, n, h * w)
    prob = torch.softmax(flat * beta, dim=-1).reshape(b, n, h, w)
    xs = torch.linspace(-1.0, 1.0, w, dtype=heatmaps.dtype, device=heatmaps.device)
    ys = torch.linspace(-1.0, 1.0, h, dtype=heatmaps.dtype, device=heatmaps.device)
    ex = (prob.sum(2) * xs).sum(-1)
    ey = (prob.sum(3) * ys).sum(-1)
    peak = flat.max(dim=-1).values
    return torch.stack([ex, ey, peak], dim=-1)


def normalised_coordinates(coords: torch.Tensor) -> torch.Tensor:
    """Soft-argmax coordinates in a frame fixed by the keypoints themselves.

    The x, y of :func:`soft_argmax` minus their peak-weighted centroid, divided by their
    peak-weighted RMS spread: the projected shape with its position and size removed (what
    the structure and rotation depend on), followed by the peaks, the centroid and the log
    spread (what the translation and scale depend on).

    Args:
        coords: (B, N, 3) from :func:`soft_argmax`.

    Returns:
        (B, 3 N + 3).
    """
    xy, peak = coords[..., :2], coords[..., 2:]
    w = peak.clamp(min=0.0) + 1e-3
    centre = (w * xy).sum(1, keepdim=True) / w.sum(1, keepdim=True)
    spread = torch.sqrt((w * (xy - centre) ** 2).sum((1, 2), keepdim=True) /
                        w.sum(1, keepdim=True) + 1e-6)
    rel = (xy - centre) / spread
    return torch.cat([rel.flatten(1), peak.flatten(1), centre.flatten(1),
                      torch.log(spread).flatten(1)], dim=1)


class Interpreter(nn.Module):
    """Heatmaps ``(B, N, h, w)`` -> structure (B, K), rotation (B, 3, 3), translation (B, 3),
    focal (B,)."""

    def __init__(self, config: InterpreterConfig) -> None:
        super().__init__()
        if len(config.alpha_std) != config.num_bases:
            raise ValueError('alpha_std must have num_bases entries')
        self.config = config
        layers: list[nn.Module] = []
        cin, size = config.num_keypoints, config.heatmap_size
        for i, c in enumerate(config.conv_channels):
            stride = 1 if i == 0 else 2
            layers += [nn.Conv2d(cin, c, 3, stride=stride, padding=1), nn.ReLU(inplace=True)]
            cin, size = c, (size if stride == 1 else (size + 1) // 2)
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        width = cin * size * size + 3 * config.num_keypoints
        coord: list[nn.Module] = []
        cwidth = 3 * config.num_keypoints + 3
        for hdim in config.coord_hidden:
            coord += [nn.Linear(cwidth, hdim), nn.ReLU(inplace=True)]
            cwidth = hdim
        self.coord = nn.Sequential(*coord) if coord else None
        if coord:
            width += cwidth
        fc: list[nn.Module] = []
        for hdim in config.hidden:
            fc += [nn.Linear(width, hdim), nn.ReLU(inplace=True)]
            width = hdim
        self.fc = nn.Sequential(*fc)
        self.out = nn.Linear(width, self.num_raw)
        self.register_buffer('alpha_std', torch.tensor(config.alpha_std, dtype=torch.float32))
        with torch.no_grad():
            self.out.weight.mul_(0.1)
            self.out.bias.zero_()
            self.out.bias[0] = 1.0    # 6D identity-ish start: columns (1,0,0), (0,1,0)
            self.out.bias[4] = 1.0

    @property
    def num_raw(self) -> int:
        """6 rotation + K structure + u0, v0, log scale, log focal."""
        return 6 + self.config.num_bases + 4

    def forward_raw(self, heatmaps: torch.Tensor) -> torch.Tensor:
        """``(B, N, h, w)`` -> unnormalised outputs ``(B, 10 + K)``."""
        coords = soft_argmax(heatmaps, self.config.soft_argmax_beta)
        parts = [self.encoder(heatmaps), coords.flatten(1)]
        if self.coord is not None:
            parts.append(self.coord(normalised_coordinates(coords)))
        return self.out(self.fc(torch.cat(parts, dim=1)))

    def decode(self, raw: torch.Tensor) -> tuple:
        """Raw ``(B, 10 + K)`` -> (structure (B, K), rotation (B, 3, 3), translation (B, 3),
        focal (B,))."""
        cfg = self.config
        k = cfg.num_bases
        rotation = rotation_from_6d(raw[:, 0:6])
        structure = raw[:, 6:6 + k] * self.alpha_std
        half = 0.5 * cfg.input_size
        centre = 0.5 * (cfg.input_size - 1)
        u0 = centre + half * raw[:, 6 + k]
        v0 = centre + half * raw[:, 7 + k]
        scale = torch.exp(cfg.log_scale_mean + cfg.log_scale_std * raw[:, 8 + k])
        focal = torch.exp(cfg.log_focal_mean + cfg.log_focal_std * raw[:, 9 + k])
        translation = torch.stack([(u0 - centre) / scale, (v0 - centre) / scale,
                                   focal / scale], dim=-1)
        return structure, rotation, translation, focal

    def forward(self, heatmaps: torch.Tensor) -> tuple:
        """``(B, N, h, w)`` -> (structure, rotation, translation, focal)."""
        cfg = self.config
        if not torch.jit.is_tracing() and (heatmaps.dim() != 4 or
                                           heatmaps.shape[1] != cfg.num_keypoints):
            raise ValueError(f'heatmaps must be (B, {cfg.num_keypoints}, h, w), '
                             f'got {tuple(heatmaps.shape)}')
        return self.decode(self.forward_raw(heatmaps))
