"""Torch models of perception_3dinn (training and the torch engine only).

One network per file with a dataclass config; :class:`INN3D` is the end-to-end model whose
``forward`` is the ONNX contract of docs/interfaces.md.
"""

from perception_3dinn.models.checkpoint import (
    category_record,
    load_checkpoint,
    load_voxel_checkpoint,
    read_checkpoint,
    save_checkpoint,
    save_voxel_checkpoint,
)
from perception_3dinn.models.inn import INN3D, INNConfig, INPUT_NAMES, make_config, OUTPUT_NAMES
from perception_3dinn.models.interpreter import Interpreter, InterpreterConfig, soft_argmax
from perception_3dinn.models.keypoint_net import KeypointNet, KeypointNetConfig
from perception_3dinn.models.projection import (
    project_points,
    ProjectionLayer,
    rotation_from_6d,
    rotation_to_6d,
    structure_from_alpha,
)
from perception_3dinn.models.refine import RefineBottleneck, RefineConfig
from perception_3dinn.models.voxel_decoder import (
    VoxelAutoEncoder,
    VoxelDecoder,
    VoxelDecoderConfig,
    VoxelEncoder,
)

__all__ = [
    'INN3D', 'INNConfig', 'INPUT_NAMES', 'Interpreter', 'InterpreterConfig', 'KeypointNet',
    'KeypointNetConfig', 'OUTPUT_NAMES', 'ProjectionLayer', 'RefineBottleneck', 'RefineConfig',
    'VoxelAutoEncoder', 'VoxelDecoder', 'VoxelDecoderConfig', 'VoxelEncoder',
    'category_record', 'load_checkpoint', 'load_voxel_checkpoint', 'make_config',
    'project_points', 'read_checkpoint', 'rotation_from_6d', 'rotation_to_6d',
    'save_checkpoint', 'save_voxel_checkpoint', 'soft_argmax', 'structure_from_alpha',
]
