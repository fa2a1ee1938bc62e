"""Image -> style code, and the shape model that turns a crop into voxels (seed 004, sec. 3.3).

Seed 004 predicts from the image the style vector of its learned shape space and decodes it,
with the pose kept apart, into an aligned voxel shape. Here the structure parameters
``alpha`` come from the 3D-INN (:class:`perception_3dinn.models.inn.INN3D`), so the
:class:`StyleEncoder` only regresses the style code of
:class:`perception_3dinn.models.voxel_decoder.VoxelDecoder`: a small CNN on the same
normalised crop the INN sees. Its trunk is either strided convolutions on the image
(``trunk='conv'``) or the INN keypoint net's stem and hourglass, initialised from the INN
(``trunk='keypoint'``, the default of ``training.shape_stage``): trained from scratch the conv
trunk learned nothing of the style in a 600-step probe (R^2 at most 0.01 per code dimension,
against 0.11-0.42 with the keypoint trunk: bench/probe_style_trunk.py, docs/shape.md). Its
head either averages the last feature map (``head='pool'``) or keeps where the features are
(``head='flatten'``: the map through a hidden fully connected layer), as the style is about
where the material is (a slatted or solid back, thick or thin legs).

:class:`ShapeModel` is the exported graph of the learned shape: inputs ``image``
``(B, 3, S, S)`` (normalised as the INN's input) and ``structure`` ``(B, K)`` (the INN's
output), output ``occupancy`` ``(B, V, V, V)`` probabilities in the category's canonical grid
(:func:`perception_3dinn.voxels.grid_for_dimensions`, indexed ``[ix, iy, iz]``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from perception_3dinn.models.keypoint_net import KeypointNet, KeypointNetConfig
from perception_3dinn.models.projection import _check
from perception_3dinn.models.voxel_decoder import VoxelDecoder, VoxelDecoderConfig

SHAPE_INPUT_NAMES = ('image', 'structure')
SHAPE_OUTPUT_NAMES = ('occupancy',)


@dataclass
class StyleEncoderConfig:
    """Hyper-parameters of :class:`StyleEncoder`.

    Attributes:
        input_size: crop side in pixels (the INN's).
        channels: output channels of the stride-2 convolutions (one per halving).
        style_dim: length of the style code (the decoder's).
        extra_convs: stride-1 3x3 convolutions after each stride-2 one.
        head: ``'pool'`` (global mean, then linear) or ``'flatten'`` (the last map, flattened,
            through ``hidden`` units, then linear).
        hidden: width of the flatten head's hidden layer.
        dropout: dropout before the flatten head's output layer (training only).
        trunk: ``'conv'`` (the strided convolutions straight on the image) or ``'keypoint'``
            (first the stem and hourglass of a :class:`KeypointNet` of ``keypoint``, made to
            be initialised from the category's 3D-INN: features that already know where the
            parts are; ``channels`` then continue from its stride-4 output).
        keypoint: the keypoint net's config (``trunk='keypoint'`` only).
    """

    input_size: int = 128
    channels: tuple = (16, 32, 64, 96, 128)
    style_dim: int = 8
    extra_convs: int = 0
    head: str = 'pool'
    hidden: int = 256
    dropout: float = 0.0
    trunk: str = 'conv'
    keypoint: KeypointNetConfig | None = None

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        if isinstance(self.keypoint, dict):
            self.keypoint = KeypointNetConfig(**self.keypoint)
        if self.trunk not in ('conv', 'keypoint'):
            raise ValueError(f"trunk must be 'conv' or 'keypoint', got {self.trunk!r}")
        if self.trunk == 'keypoint' and self.keypoint is None:
            raise ValueError("trunk 'keypoint' needs the keypoint net's config")
        if not self.channels:
            raise ValueError('channels must not be empty')
        if self.input_size % (2 ** (len(self.channels) + self.trunk_halvings)):
            raise ValueError(f'input_size {self.input_size} must be divisible by '
                             f'{2 ** (len(self.channels) + self.trunk_halvings)}')
        if self.head not in ('pool', 'flatten'):
            raise ValueError(f"head must be 'pool' or 'flatten', got {self.head!r}")
        if self.extra_convs < 0 or self.hidden < 1 or not 0.0 <= self.dropout < 1.0:
            raise ValueError('extra_convs >= 0, hidden >= 1 and 0 <= dropout < 1 required')

    @property
    def trunk_halvings(self) -> int:
        """Halvings of the trunk before ``channels`` (the keypoint net's stride 4)."""
        return 2 if self.trunk == 'keypoint' else 0

    @property
    def feature_side(self) -> int:
        """Side of the last feature map."""
        return self.input_size // 2 ** (len(self.channels) + self.trunk_halvings)

    def to_dict(self) -> dict:
        d = asdict(self)
        d['channels'] = list(self.channels)
        return d


class StyleEncoder(nn.Module):
    """Normalised crop (B, 3, S, S) -> style code (B, style_dim)."""

    def __init__(self, config: StyleEncoderConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        cin = 3
        self.trunk = None
        if config.trunk == 'keypoint':
            kp = KeypointNet(config.keypoint)
            self.trunk = nn.Sequential(kp.stem, kp.hourglass)
            cin = config.keypoint.channels
        for cout in config.channels:
            for stride in (2,) + (1,) * config.extra_convs:
                layers += [nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                           nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
                cin = cout
        self.conv = nn.Sequential(*layers)
        if config.head == 'pool':
            self.fc = nn.Linear(cin, config.style_dim)
        else:
            self.fc = nn.Sequential(
                nn.Flatten(), nn.Linear(cin * config.feature_side ** 2, config.hidden),
                nn.ReLU(inplace=True), nn.Dropout(config.dropout),
                nn.Linear(config.hidden, config.style_dim))

    def init_trunk(self, keypoint_net: KeypointNet) -> None:
        """Copy the stem and hourglass weights of a trained keypoint net into the trunk."""
        if self.trunk is None:
            raise ValueError("the style encoder has no keypoint trunk (trunk='conv')")
        self.trunk.load_state_dict(nn.Sequential(keypoint_net.stem,
                                                 keypoint_net.hourglass).state_dict())

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        s = self.config.input_size
        _check('image', image, (None, 3, s, s))
        features = self.conv(image if self.trunk is None else self.trunk(image))
        if self.config.head == 'pool':
            return self.fc(features.mean(dim=(2, 3)))
        return self.fc(features)


@dataclass
class ShapeModelConfig:
    """A :class:`StyleEncoder` and a :class:`VoxelDecoder` (stored in shape checkpoints)."""

    category: str = 'chair'
    style: StyleEncoderConfig = field(default_factory=StyleEncoderConfig)
    decoder: VoxelDecoderConfig = field(default_factory=VoxelDecoderConfig)

    def __post_init__(self) -> None:
        if self.style.style_dim != self.decoder.style_dim:
            raise ValueError(f'style encoder and decoder disagree on style_dim: '
                             f'{self.style.style_dim} != {self.decoder.style_dim}')

    def to_dict(self) -> dict:
        return {'category': self.category, 'style': self.style.to_dict(),
                'decoder': self.decoder.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> ShapeModelConfig:
        return cls(category=d['category'], style=StyleEncoderConfig(**d['style']),
                   decoder=VoxelDecoderConfig.from_dict(d['decoder']))


class ShapeModel(nn.Module):
    """(image (B, 3, S, S), structure (B, K)) -> occupancy probabilities (B, V, V, V)."""

    def __init__(self, config: ShapeModelConfig) -> None:
        super().__init__()
        self.config = config
        self.style_encoder = StyleEncoder(config.style)
        self.decoder = VoxelDecoder(config.decoder)

    def logits(self, image: torch.Tensor, structure: torch.Tensor) -> torch.Tensor:
        """Occupancy logits (B, V, V, V)."""
        return self.decoder(structure, self.style_encoder(image))

    def forward(self, image: torch.Tensor, structure: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(image, structure))
