"""Inference runtime: engines, the per-frame pipeline and its data types (no torch, no ROS).

    from perception_3dinn.inference import Box2D, Pipeline, PipelineConfig

    pipe = Pipeline.from_manifest(path, backend='onnxruntime', config=PipelineConfig())
    result = pipe.process(image_rgb, intrinsics, boxes, stamp_s)

See docs/interfaces.md (Runtime). The torch engine imports torch only when chosen; the
TensorRT engine imports tensorrt only when chosen.
"""

from perception_3dinn.inference.engine_cache import EngineCacheError, EngineKey
from perception_3dinn.inference.engines import (
    BACKENDS,
    create_engine,
    Engine,
    OnnxRuntimeEngine,
)
from perception_3dinn.inference.manifest import (
    default_model_dir,
    load_manifest,
    ManifestError,
    ModelManifest,
)
from perception_3dinn.inference.multi import ClassMap, MultiPipeline
from perception_3dinn.inference.pipeline import Pipeline, prepare_boxes
from perception_3dinn.inference.pose import FloorPlane
from perception_3dinn.inference.types import Box2D, FrameResult, ObjectEstimate, PipelineConfig
from perception_3dinn.tracking import TrackerConfig

__all__ = [
    'BACKENDS', 'Box2D', 'ClassMap', 'Engine', 'EngineCacheError', 'EngineKey', 'FloorPlane',
    'FrameResult', 'ManifestError', 'ModelManifest', 'MultiPipeline', 'ObjectEstimate',
    'OnnxRuntimeEngine', 'Pipeline', 'PipelineConfig', 'TrackerConfig', 'create_engine',
    'default_model_dir', 'load_manifest', 'prepare_boxes',
]
