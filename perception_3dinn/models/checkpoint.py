"""Checkpoints that carry their config, category and normalisation beside the weights.

A checkpoint is a ``torch.save`` dict::

    format: 'perception_3dinn.inn3d', version: 1,
    config: INNConfig.to_dict(), category: {name, keypoint_names, edges, bases, alpha_std,
    size_prior_m}, normalisation: {mean, std, colour_order: 'RGB'}, stage, step,
    state_dict, optimizer (optional, for resuming), metrics (optional),
    weights: 'fp16' (optional: float16 state written by ``training.export --weights fp16``)

so export and runtime rebuild the model from the file alone (``load_checkpoint``).

A shape-space checkpoint (seed 004, ``save_voxel_checkpoint``) has ``format:
'perception_3dinn.voxel_shape'``, a ``VoxelDecoderConfig`` as ``config``, the category
record, ``grid: {size, resolution, origin}`` (the canonical grid, metres at the size prior)
and the state of a ``VoxelAutoEncoder`` (``encoder.*`` and ``decoder.*``). A shape-model
checkpoint (``save_shape_checkpoint``: image -> style -> voxels) has ``format:
'perception_3dinn.shape_model'``, a ``ShapeModelConfig`` and the same category and grid.
"""

from pathlib import Path

import numpy as np
import torch

from perception_3dinn.models.inn import INN3D, INNConfig
from perception_3dinn.models.style_encoder import ShapeModel, ShapeModelConfig
from perception_3dinn.models.voxel_decoder import VoxelAutoEncoder, VoxelDecoderConfig

FORMAT = 'perception_3dinn.inn3d'
VERSION = 1
VOXEL_FORMAT = 'perception_3dinn.voxel_shape'
VOXEL_VERSION = 1
SHAPE_FORMAT = 'perception_3dinn.shape_model'
SHAPE_VERSION = 1


def category_record(category) -> dict:
    """JSON-able summary of a ``skeleton.Category`` stored in checkpoints."""
    return {
        'name': category.name,
        'keypoint_names': list(category.keypoint_names),
        'edges': np.asarray(category.edges).tolist(),
        'bases': np.asarray(category.bases, dtype=np.float64).tolist(),
        'alpha_std': np.asarray(category.alpha_std, dtype=np.float64).tolist(),
        'size_prior_m': float(category.size_prior_m),
    }


def save_checkpoint(path: str | Path, model: INN3D, category: dict, stage: str = '',
                    step: int = 0, optimizer: torch.optim.Optimizer | None = None,
                    metrics: dict | None = None, extra: dict | None = None) -> Path:
    """Write ``model`` with everything needed to rebuild it; atomic (tmp + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    payload = {
        'format': FORMAT, 'version': VERSION,
        'config': cfg.to_dict(),
        'category': category,
        'normalisation': {'mean': list(cfg.mean), 'std': list(cfg.std), 'colour_order': 'RGB'},
        'stage': stage, 'step': int(step),
        'state_dict': {k: v.detach().cpu() for k, v in model.state_dict().items()},
        'metrics': metrics or {},
    }
    if optimizer is not None:
        payload['optimizer'] = optimizer.state_dict()
    if extra:
        payload['extra'] = extra
    return write_checkpoint(path, payload)


def write_checkpoint(path: str | Path, payload: dict) -> Path:
    """Write a checkpoint dict atomically (tmp + rename)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + '.tmp')
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def read_checkpoint(path: str | Path) -> dict:
    """The raw checkpoint dict, checked for format and version."""
    payload = torch.load(Path(path), map_location='cpu', weights_only=False)
    if not isinstance(payload, dict) or payload.get('format') != FORMAT:
        raise ValueError(f'{path} is not a perception_3dinn INN3D checkpoint')
    if payload.get('version') != VERSION:
        raise ValueError(f'{path}: unsupported checkpoint version {payload.get("version")}')
    return payload


def load_checkpoint(path: str | Path) -> tuple:
    """Rebuild the model: returns ``(model (eval mode), payload dict)``."""
    payload = read_checkpoint(path)
    cfg = INNConfig.from_dict(payload['config'])
    bases = torch.tensor(payload['category']['bases'], dtype=torch.float32)
    model = INN3D(cfg, bases)
    model.load_state_dict(payload['state_dict'])
    model.eval()
    return model, payload


def _grid_payload(fmt: str, version: int, model: torch.nn.Module, category: dict,
                  grid: dict, stage: str, step: int,
                  optimizer: torch.optim.Optimizer | None, metrics: dict | None,
                  extra: dict | None) -> dict:
    """The checkpoint dict of a model that lives on a canonical voxel grid."""
    payload = {
        'format': fmt, 'version': version,
        'config': model.config.to_dict(),
        'category': category,
        'grid': {'size': int(grid['size']), 'resolution': float(grid['resolution']),
                 'origin': [float(v) for v in grid['origin']]},
        'stage': stage, 'step': int(step),
        'state_dict': {k: v.detach().cpu() for k, v in model.state_dict().items()},
        'metrics': metrics or {},
    }
    if optimizer is not None:
        payload['optimizer'] = optimizer.state_dict()
    if extra:
        payload['extra'] = extra
    return payload


def _read_format(path: str | Path, fmt: str, version: int, what: str) -> dict:
    """``torch.load`` a checkpoint and check its format and version."""
    payload = torch.load(Path(path), map_location='cpu', weights_only=False)
    if not isinstance(payload, dict) or payload.get('format') != fmt:
        raise ValueError(f'{path} is not a perception_3dinn {what} checkpoint')
    if payload.get('version') != version:
        raise ValueError(f'{path}: unsupported {what} checkpoint version '
                         f'{payload.get("version")}')
    return payload


def save_voxel_checkpoint(path: str | Path, model: VoxelAutoEncoder, category: dict,
                          grid: dict, stage: str = 'voxels', step: int = 0,
                          optimizer: torch.optim.Optimizer | None = None,
                          metrics: dict | None = None, extra: dict | None = None) -> Path:
    """Write a shape-space auto-encoder with its config, category and grid; atomic."""
    return write_checkpoint(path, _grid_payload(VOXEL_FORMAT, VOXEL_VERSION, model, category,
                                                grid, stage, step, optimizer, metrics, extra))


def read_voxel_checkpoint(path: str | Path) -> dict:
    """The raw shape-space checkpoint dict, checked for format and version."""
    return _read_format(path, VOXEL_FORMAT, VOXEL_VERSION, 'voxel shape')


def load_voxel_checkpoint(path: str | Path) -> tuple:
    """Rebuild the auto-encoder: returns ``(model (eval mode), payload dict)``."""
    payload = read_voxel_checkpoint(path)
    model = VoxelAutoEncoder(VoxelDecoderConfig.from_dict(payload['config']))
    model.load_state_dict(payload['state_dict'])
    model.eval()
    return model, payload


def save_shape_checkpoint(path: str | Path, model: ShapeModel, category: dict, grid: dict,
                          stage: str = 'shape', step: int = 0,
                          optimizer: torch.optim.Optimizer | None = None,
                          metrics: dict | None = None, extra: dict | None = None) -> Path:
    """Write a shape model (style encoder + voxel decoder) with its category and grid."""
    return write_checkpoint(path, _grid_payload(SHAPE_FORMAT, SHAPE_VERSION, model, category,
                                                grid, stage, step, optimizer, metrics, extra))


def read_shape_checkpoint(path: str | Path) -> dict:
    """The raw shape-model checkpoint dict, checked for format and version."""
    return _read_format(path, SHAPE_FORMAT, SHAPE_VERSION, 'shape model')


def load_shape_checkpoint(path: str | Path) -> tuple:
    """Rebuild the shape model: returns ``(model (eval mode), payload dict)``."""
    payload = read_shape_checkpoint(path)
    model = ShapeModel(ShapeModelConfig.from_dict(payload['config']))
    model.load_state_dict(payload['state_dict'])
    model.eval()
    return model, payload
