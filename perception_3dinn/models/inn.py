"""The end-to-end 3D Interpreter Network (seed 000): image crop -> heatmaps -> 3D parameters.

``forward(image)`` follows the ONNX contract of docs/interfaces.md: input ``image``
``(B, 3, S, S)`` normalised RGB; outputs, in order, ``heatmaps (B, N, S/4, S/4)``,
``structure (B, K)``, ``rotation (B, 3, 3)``, ``translation (B, 3)`` (crop camera, normalised
shape units), ``focal (B,)`` (crop pixels). The projection layer (Eq. 1) is kept beside it for
stage-3 fine-tuning and is not part of the exported graph.
"""

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from perception_3dinn.models.interpreter import Interpreter, InterpreterConfig
from perception_3dinn.models.keypoint_net import KeypointNet, KeypointNetConfig
from perception_3dinn.models.projection import ProjectionLayer
from perception_3dinn.models.refine import RefineBottleneck, RefineConfig

INPUT_NAMES = ('image',)
OUTPUT_NAMES = ('heatmaps', 'structure', 'rotation', 'translation', 'focal')


@dataclass
class INNConfig:
    """Everything needed to rebuild an :class:`INN3D` (stored in checkpoints)."""

    category: str = 'chair'
    input_size: int = 128
    stride: int = 4
    sigma: float = 1.5       # heatmap Gaussian sigma in heatmap pixels (codec)
    mean: tuple = (0.485, 0.456, 0.406)
    std: tuple = (0.229, 0.224, 0.225)
    keypoint: KeypointNetConfig = field(default_factory=KeypointNetConfig)
    refine: RefineConfig | None = None
    interpreter: InterpreterConfig = field(default_factory=InterpreterConfig)

    @property
    def heatmap_size(self) -> int:
        """Side of the heatmaps, ``input_size / stride``."""
        return self.input_size // self.stride

    def to_dict(self) -> dict:
        """Plain dict (JSON-able) of the config."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> 'INNConfig':
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d['mean'] = tuple(d['mean'])
        d['std'] = tuple(d['std'])
        d['keypoint'] = KeypointNetConfig(**d['keypoint'])
        d['refine'] = RefineConfig(**d['refine']) if d.get('refine') else None
        icfg = dict(d['interpreter'])
        for key in ('conv_channels', 'hidden', 'coord_hidden', 'alpha_std'):
            if key in icfg:
                icfg[key] = tuple(icfg[key])
        d['interpreter'] = InterpreterConfig(**icfg)
        return cls(**d)

    def validate(self) -> None:
        """Raise ValueError when the sub-configs disagree."""
        n = self.keypoint.num_keypoints
        if self.interpreter.num_keypoints != n:
            raise ValueError('keypoint and interpreter configs disagree on num_keypoints')
        if self.keypoint.input_size != self.input_size or \
                self.interpreter.input_size != self.input_size:
            raise ValueError('sub-configs disagree on input_size')
        if self.interpreter.heatmap_size != self.heatmap_size:
            raise ValueError('interpreter heatmap_size must be input_size / stride')
        if self.refine is not None and (self.refine.num_keypoints != n or
                                        self.refine.heatmap_size != self.heatmap_size):
            raise ValueError('refine config disagrees with the keypoint config')
        if self.stride != 4:
            raise ValueError('the keypoint net has a fixed stride of 4')
        if self.input_size % (4 * 2 ** self.keypoint.depth):
            raise ValueError(f'input_size {self.input_size} must be divisible by '
                             f'{4 * 2 ** self.keypoint.depth}')


def make_config(category: str, num_keypoints: int, alpha_std, input_size: int = 128,
                refine: bool = False, **interpreter_kwargs) -> INNConfig:
    """A consistent :class:`INNConfig` for a category with N keypoints and K bases."""
    alpha_std = tuple(float(a) for a in alpha_std)
    hsize = input_size // 4
    cfg = INNConfig(
        category=category, input_size=input_size,
        keypoint=KeypointNetConfig(num_keypoints=num_keypoints, input_size=input_size),
        refine=RefineConfig(num_keypoints=num_keypoints, heatmap_size=hsize) if refine else None,
        interpreter=InterpreterConfig(num_keypoints=num_keypoints, num_bases=len(alpha_std),
                                      heatmap_size=hsize, input_size=input_size,
                                      alpha_std=alpha_std, **interpreter_kwargs))
    cfg.validate()
    return cfg


class INN3D(nn.Module):
    """Keypoint net (+ optional refinement) + 3D interpreter; projection layer for training."""

    def __init__(self, config: INNConfig, bases: torch.Tensor) -> None:
        """``bases`` (K + 1, N, 3) in normalised units (Category.bases)."""
        super().__init__()
        config.validate()
        k, n = config.interpreter.num_bases, config.keypoint.num_keypoints
        if tuple(bases.shape) != (k + 1, n, 3):
            raise ValueError(f'bases must be ({k + 1}, {n}, 3), got {tuple(bases.shape)}')
        self.config = config
        self.keypoint_net = KeypointNet(config.keypoint)
        self.refine = RefineBottleneck(config.refine) if config.refine is not None else None
        self.interpreter = Interpreter(config.interpreter)
        self.projection = ProjectionLayer(torch.as_tensor(bases, dtype=torch.float32))

    def add_refine(self, config: RefineConfig | None = None) -> RefineBottleneck:
        """Add a refinement bottleneck to a model without one, as an exact identity at first
        (its last layer starts at zero), so that a trained keypoint net can be continued with
        it and compared with the same net continued without it."""
        if self.refine is not None:
            raise ValueError('the model has a refinement bottleneck already')
        kcfg = self.config.keypoint
        config = config or RefineConfig(num_keypoints=kcfg.num_keypoints,
                                        heatmap_size=self.config.heatmap_size)
        refine = RefineBottleneck(config)
        last = refine.decoder[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.config.refine = config
        self.config.validate()
        self.refine = refine
        return refine

    def heatmaps(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` -> ``(B, N, S/4, S/4)`` (refined when configured)."""
        s = self.config.input_size
        if not torch.jit.is_tracing() and (image.dim() != 4 or
                                           tuple(image.shape[1:]) != (3, s, s)):
            raise ValueError(f'image must be (B, 3, {s}, {s}), got {tuple(image.shape)}')
        hm = self.keypoint_net(image)
        return self.refine(hm) if self.refine is not None else hm

    def forward(self, image: torch.Tensor) -> tuple:
        """``image (B, 3, S, S)`` -> (heatmaps, structure, rotation, translation, focal)."""
        hm = self.heatmaps(image)
        structure, rotation, translation, focal = self.interpreter(hm)
        return hm, structure, rotation, translation, focal

    def project(self, structure: torch.Tensor, rotation: torch.Tensor,
                translation: torch.Tensor, focal: torch.Tensor) -> torch.Tensor:
        """Projection layer in the crop camera: -> (B, N, 2) crop pixels."""
        c = 0.5 * (self.config.input_size - 1)
        principal = torch.full((2,), c, dtype=structure.dtype, device=structure.device)
        return self.projection(structure, rotation, translation, focal, principal)

    def normalise(self, image_uint8: torch.Tensor) -> torch.Tensor:
        """``(B, S, S, 3)`` uint8 RGB -> ``(B, 3, S, S)`` float network input."""
        x = image_uint8.permute(0, 3, 1, 2).float() / 255.0
        mean = torch.tensor(self.config.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.config.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std
