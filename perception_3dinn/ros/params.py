"""Parameters of the `chair_detector` node, declared from one table.

Every parameter has a type, a description and a range or a set of choices
(`rcl_interfaces/ParameterDescriptor`); defaults match ``config/chair_detector.yaml``.
Values are validated when declared and on every set (a bad value is refused with the reason);
they are read into a `NodeSettings` in ``on_configure``, so a change takes effect at the next
configure transition.
"""

from __future__ import annotations

import array
from dataclasses import dataclass
import math
from pathlib import Path
from typing import Any

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter

from perception_3dinn.inference.pose import FloorPlane
from perception_3dinn.inference.types import PipelineConfig
from perception_3dinn.tracking import TrackerConfig

BACKENDS = ('onnxruntime', 'tensorrt', 'torch')
RELIABILITY = ('reliable', 'best_effort')
NO_DETECTOR_BOXES = ('full', 'center')

_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
    list: ParameterType.PARAMETER_STRING_ARRAY,
}


@dataclass(frozen=True)
class ParamSpec:
    """One declared parameter: name, default, description and its allowed values.

    Attributes:
        name: dotted parameter name (nested keys in YAML).
        default: default value; its Python type is the parameter type (list = string array).
        description: what it does, in one sentence, with its unit.
        low, high: inclusive range for numbers (None: unbounded on that side).
        choices: allowed strings for a string parameter.
    """

    name: str
    default: Any
    description: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()

    def descriptor(self) -> ParameterDescriptor:
        """The ParameterDescriptor declared with this parameter."""
        kind = type(self.default)
        ptype = (ParameterType.PARAMETER_DOUBLE_ARRAY if self.is_double_array
                 else _TYPES[kind])
        desc = ParameterDescriptor(name=self.name, type=ptype, description=self.description)
        if self.choices:
            desc.additional_constraints = 'one of: ' + ', '.join(self.choices)
        if kind is float and (self.low is not None or self.high is not None):
            desc.floating_point_range = [FloatingPointRange(
                from_value=float(self.low if self.low is not None else -1e308),
                to_value=float(self.high if self.high is not None else 1e308), step=0.0)]
        elif kind is int and (self.low is not None or self.high is not None):
            desc.integer_range = [IntegerRange(
                from_value=int(self.low if self.low is not None else -(2 ** 62)),
                to_value=int(self.high if self.high is not None else 2 ** 62), step=0)]
        return desc

    @property
    def is_double_array(self) -> bool:
        """A list default of floats declares a double array (of that fixed length)."""
        return isinstance(self.default, list) and bool(self.default) and all(
            isinstance(v, float) for v in self.default)

    def check(self, value: Any) -> str | None:
        """None when `value` is allowed, else the reason it is refused."""
        kind = type(self.default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if self.is_double_array:
            n = len(self.default)
            if isinstance(value, array.array):  # how rclpy hands over double arrays
                value = value.tolist()
            if (not isinstance(value, (list, tuple)) or len(value) != n
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                               and math.isfinite(v) for v in value)):
                return f'{self.name} must be a list of {n} finite numbers'
            return None
        if kind is list:
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str)
                                                               for v in value):
                return f'{self.name} must be a list of strings'
            return None
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return f'{self.name} must be {kind.__name__}, got {type(value).__name__}'
        if self.choices and value not in self.choices:
            return f'{self.name} must be one of {", ".join(self.choices)}, got {value!r}'
        if self.low is not None and value < self.low:
            return f'{self.name} must be >= {self.low}, got {value}'
        if self.high is not None and value > self.high:
            return f'{self.name} must be <= {self.high}, got {value}'
        return None


_T = TrackerConfig()
_P = PipelineConfig()

PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec('autostart', False,
              'configure and activate right after start-up (no lifecycle manager needed)'),
    # Model and engine.
    ParamSpec('model.manifest', '',
              'path of the model manifest.json; empty: the packaged default model of '
              '`category`'),
    ParamSpec('model.backend', 'onnxruntime', 'inference engine', choices=BACKENDS),
    ParamSpec('model.device', 'cpu', 'device of the engine (cuda: ONNX Runtime CUDA '
              'provider or torch CUDA, where present)', choices=('cpu', 'cuda')),
    ParamSpec('model.num_threads', 1, 'CPU threads of the engine (0: library default)',
              0, 64),
    ParamSpec('model.engine_cache_dir', '',
              'TensorRT engine cache directory; empty: beside the ONNX file'),
    ParamSpec('category', 'chair', 'object category (perception_3dinn/categories/<name>.json)'),
    ParamSpec('categories', [],
              "categories served at once, each with its model; ['all']: every installed "
              'model; empty: `category` alone'),
    ParamSpec('model.manifests', [],
              "'category:path' model of a served category (default: its packaged model); a "
              'model folder with a category.json brings its category'),
    ParamSpec('class_map', [],
              "'label:cat1,cat2' detector class -> candidate categories, over the defaults "
              '(COCO chair, couch, dining table, bed and every category name); with '
              '`categories` set it replaces filter.class_ids'),
    # Inputs.
    ParamSpec('input.compressed', False,
              'subscribe to <image topic>/compressed (sensor_msgs/CompressedImage)'),
    ParamSpec('input.use_detections', True,
              'pair images with vision_msgs/Detection2DArray; false: no-detector mode'),
    ParamSpec('input.no_detector_box', 'full',
              'box used in no-detector mode: the whole image or a centred box',
              choices=NO_DETECTOR_BOXES),
    ParamSpec('input.center_box_fraction', 0.6,
              'side of the centred no-detector box as a fraction of the image size', 0.05, 1.0),
    ParamSpec('input.sync_slop_s', 0.02,
              'largest stamp difference between an image and its detections, seconds',
              0.0, 1.0),
    ParamSpec('input.queue_size', 5,
              'images/detections kept while waiting for their partner', 1, 100),
    ParamSpec('input.clock_jump_threshold_s', 1.0,
              'a stamp this much older than the last one is a clock jump (bag loop): '
              'reset all tracks; smaller steps back are dropped as out of order, seconds',
              0.0, 3600.0),
    ParamSpec('input.max_stamp_ahead_s', 600.0,
              'an image stamp this much newer than the last accepted one is dropped (one '
              'stamp from the far future would make every later frame a jump back), until '
              '3 such stamps in a row confirm that the clock moved forward; 0: no check, '
              'seconds', 0.0, 1e9),
    ParamSpec('input.max_image_pixels', 4096 * 4096,
              'largest image (width x height) accepted: a camera_info announcing more is '
              'rejected, and no image is decoded unless its header matches the camera_info '
              'size, pixels', 1, 2 ** 31),
    ParamSpec('input.image_qos_reliability', 'best_effort',
              'reliability of the image and camera_info subscriptions (sensor data: '
              'best_effort)', choices=RELIABILITY),
    ParamSpec('input.image_qos_depth', 5, 'history depth of the image subscriptions', 1, 100),
    ParamSpec('input.detections_qos_reliability', 'reliable',
              'reliability of the detections subscription', choices=RELIABILITY),
    ParamSpec('input.detections_qos_depth', 10, 'history depth of the detections subscription',
              1, 100),
    ParamSpec('input.keep_large_buffers', True,
              'glibc malloc keeps image-sized buffers in the heap (process-wide, from configure '
              'on): about 1 ms less image transport latency for 640x480, up to 64 MB of freed '
              'memory kept'),
    # Detection filter and pose.
    ParamSpec('filter.class_ids', list(_P.class_ids),
              'detector class labels accepted (case-insensitive); empty: all'),
    ParamSpec('filter.min_box_size_px', _P.min_box_size_px,
              'boxes smaller than this (clipped width or height) are skipped, pixels',
              0.0, 10000.0),
    ParamSpec('filter.min_box_score', _P.min_box_score,
              'boxes with a lower detector score are skipped', 0.0, 1.0),
    ParamSpec('filter.max_objects', _P.max_objects, 'most boxes processed per frame', 1, 256),
    ParamSpec('filter.crop_pad', -1.0,
              'crop side = max(box w, h) * (1 + crop_pad); negative: the pad the model was '
              'trained with (its manifest)', -1.0, 2.0),
    ParamSpec('filter.min_object_score', 0.0,
              'objects with a lower score are not published', 0.0, 1.0),
    ParamSpec('pose.min_keypoint_confidence', _P.min_keypoint_confidence,
              'keypoints at or above this confidence take part in PnP', 0.0, 1.0),
    ParamSpec('pose.min_pnp_keypoints', _P.min_pnp_keypoints,
              'fewer confident keypoints: use the interpreter pose', 4, 64),
    ParamSpec('pose.max_pnp_reproj_px', _P.max_pnp_reproj_px,
              'PnP poses with a larger RMS reprojection error are rejected, pixels',
              0.1, 1000.0),
    ParamSpec('pose.border_margin', _P.border_margin,
              'keypoints within this fraction of the box size of an image edge the box '
              'touches are left out of PnP (truncated objects); 0: kept', 0.0, 0.5),
    ParamSpec('pose.covariance_inflation', _P.covariance_inflation,
              'factor on the published pose covariance (calibrated on the full-frame '
              'selection sets, docs/evaluation.md)', 0.01, 1e4),
    ParamSpec('pose.truncation_sigma', _P.truncation_sigma,
              'relative range uncertainty added to the covariance of an object whose box '
              'touches an image edge', 0.0, 10.0),
    ParamSpec('pose.size_from_structure', _P.size_from_structure,
              'metric scale from the structure (size model of the manifest) rather than the '
              'bare category size prior'),
    ParamSpec('pose.floor_plane', [0.0, 0.0, 0.0, 0.0],
              'the floor in the camera optical frame, [a, b, c, d] with a x + b y + c z + d = '
              '0, normal pointing up, d the camera height in metres: the metric scale of '
              'upright objects is then also measured from the floor; all zeros: unknown'),
    ParamSpec('pose.floor_frame', '',
              'TF frame whose z = 0 plane is the floor, z up (e.g. base_footprint): the floor '
              'is looked up from /tf and /tf_static at every image stamp, for cameras that '
              'move; empty: not used (exclusive with pose.floor_plane)'),
    ParamSpec('pose.tf_tolerance_s', 0.1,
              'how far an image stamp may lie outside the stored transforms of a TF edge and '
              'still use the nearest one, seconds', 0.0, 10.0),
    # Smoothing (tracking.TrackerConfig).
    ParamSpec('smoothing.enabled', _P.smoothing, 'track objects and smooth them over time'),
    ParamSpec('smoothing.iou_threshold', _T.iou_threshold,
              'minimum box IoU to associate a box with a track', 0.0, 1.0),
    ParamSpec('smoothing.max_age_s', _T.max_age_s,
              'a track not seen for longer expires, seconds', 0.01, 3600.0),
    ParamSpec('smoothing.structure_window', _T.structure_window,
              'frames in the median of the structure parameters', 1, 1000),
    ParamSpec('smoothing.rotation_alpha', _T.rotation_alpha,
              'rotation innovation weight (1: no smoothing)', 0.001, 1.0),
    ParamSpec('smoothing.rotation_beta', _T.rotation_beta,
              'angular velocity innovation weight (0: constant rotation)', 0.0, 1.0),
    ParamSpec('smoothing.translation_alpha', _T.translation_alpha,
              'translation innovation weight (1: no smoothing)', 0.001, 1.0),
    ParamSpec('smoothing.translation_beta', _T.translation_beta,
              'velocity innovation weight (0: constant position)', 0.0, 1.0),
    ParamSpec('smoothing.rotation_reset_rad', _T.rotation_reset_rad,
              'a larger rotation innovation re-initialises the track, radians', 0.01, 3.2),
    ParamSpec('smoothing.translation_reset_ratio', _T.translation_reset_ratio,
              'a larger translation innovation (fraction of the distance) re-initialises '
              'the track', 0.01, 10.0),
    ParamSpec('smoothing.outlier_frames', _T.outlier_frames,
              'this many outlier poses in a row restart the track on the latest one',
              1, 1000),
    # Outputs.
    ParamSpec('output.frame_prefix', '',
              'prefix of the object TF frames: <prefix><category>_<track id>'),
    ParamSpec('output.camera_frame', '',
              'frame of the outputs; empty: the image header frame_id (an optical frame)'),
    ParamSpec('output.publish_structures', True, 'publish ObjectStructureArray on ~/objects'),
    ParamSpec('output.publish_markers', True, 'publish MarkerArray on ~/markers'),
    ParamSpec('output.publish_tf', True, 'publish camera -> object transforms on /tf'),
    ParamSpec('output.publish_voxels', True, 'publish VoxelGridArray on ~/voxels'),
    ParamSpec('output.voxel_source', 'learned',
              "learned: occupancy probabilities of the model's shape graph (skeleton tubes, "
              'with a warning, when the model has none); skeleton: tubes of the structure',
              choices=('learned', 'skeleton')),
    ParamSpec('output.publish_detections3d', True,
              'publish vision_msgs/Detection3DArray on ~/detections_3d'),
    ParamSpec('output.voxel_markers', True, 'draw occupied voxels as cubes in ~/markers'),
    ParamSpec('output.voxel_marker_period_s', 1.0,
              'voxel cubes are drawn at most this often (they are the costly markers), '
              'seconds; 0: every frame', 0.0, 60.0),
    ParamSpec('output.voxel_threshold', 128,
              'voxels with occupancy >= this (0..255) are drawn', 1, 255),
    ParamSpec('output.marker_lifetime_s', 0.5,
              'lifetime of the markers, seconds (0: forever)', 0.0, 60.0),
    ParamSpec('output.qos_reliability', 'reliable', 'reliability of the output topics',
              choices=RELIABILITY),
    ParamSpec('output.qos_depth', 10, 'history depth of the output topics', 1, 1000),
    ParamSpec('diagnostics.period_s', 1.0, 'period of /diagnostics, seconds', 0.1, 60.0),
    # System.
    ParamSpec('system.cpu_dma_latency_us', -1,
              'while active, hold a Linux PM QoS request (/dev/cpu_dma_latency; needs root '
              'or write access) that idle CPUs wake within this many microseconds (0: they '
              'poll; about 1 ms less latency on machines whose idle cores sleep deeply, more '
              'power); -1: leave the system as it is', -1, 1000000),
)

SPECS: dict[str, ParamSpec] = {p.name: p for p in PARAMS}


def declare_parameters(node: Node) -> None:
    """Declare every parameter of `PARAMS` on `node` and validate later sets.

    Raises:
        ValueError: when a value given at start-up (params file, --ros-args) is refused.
    """
    for spec in PARAMS:
        # An empty list would be declared as a byte array: declare the type instead.
        default = (Parameter.Type.STRING_ARRAY if spec.default == [] else spec.default)
        param = node.declare_parameter(spec.name, default, spec.descriptor())
        value = param.value
        if isinstance(spec.default, list):
            value = list(value or [])
        reason = spec.check(value)
        if reason is not None:
            raise ValueError(f'parameter {reason}')
    node.add_on_set_parameters_callback(validate_parameters)


def validate_parameters(params: list[Parameter]) -> SetParametersResult:
    """on-set callback: refuse values outside their range or choices, with the reason."""
    for param in params:
        spec = SPECS.get(param.name)
        if spec is None:
            continue
        reason = spec.check(param.value)
        if reason is not None:
            return SetParametersResult(successful=False, reason=reason)
    return SetParametersResult(successful=True)


@dataclass(frozen=True)
class NodeSettings:
    """Parameter values read in on_configure (see `PARAMS` for their meaning)."""

    values: dict[str, Any]

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def manifest_path(self) -> Path:
        """Model manifest: the parameter, or the packaged default model of the category."""
        path = str(self['model.manifest'])
        if path:
            return Path(path).expanduser()
        return default_manifest(str(self['category']))

    def floor_plane(self) -> FloorPlane | None:
        """pose.floor_plane as a FloorPlane, None when all zeros (raises ValueError if bad)."""
        coefficients = [float(v) for v in self['pose.floor_plane']]
        if not any(coefficients):
            return None
        if self['pose.floor_frame']:
            raise ValueError('pose.floor_plane and pose.floor_frame are both set: give the '
                             'floor either as a fixed plane or as a TF frame, not both (the '
                             'launch file sets pose.floor_frame to base_footprint unless '
                             "floor_frame:='' is given)")
        try:
            return FloorPlane.from_coefficients(coefficients)
        except ValueError as err:
            raise ValueError(f'pose.floor_plane: {err}') from None

    def pipeline_config(self, model_crop_pad: float | None = None) -> PipelineConfig:
        """The runtime's PipelineConfig from these settings (raises ValueError if invalid).

        Args:
            model_crop_pad: the manifest's crop pad, used when filter.crop_pad is negative.
        """
        v = self.values
        crop_pad = v['filter.crop_pad']
        if crop_pad < 0:
            crop_pad = PipelineConfig.crop_pad if model_crop_pad is None else model_crop_pad
        tracker = TrackerConfig(
            iou_threshold=v['smoothing.iou_threshold'], max_age_s=v['smoothing.max_age_s'],
            structure_window=v['smoothing.structure_window'],
            rotation_alpha=v['smoothing.rotation_alpha'],
            rotation_beta=v['smoothing.rotation_beta'],
            translation_alpha=v['smoothing.translation_alpha'],
            translation_beta=v['smoothing.translation_beta'],
            rotation_reset_rad=v['smoothing.rotation_reset_rad'],
            translation_reset_ratio=v['smoothing.translation_reset_ratio'],
            outlier_frames=v['smoothing.outlier_frames'])
        config = PipelineConfig(
            class_ids=tuple(v['filter.class_ids']) if v['input.use_detections'] else (),
            min_box_size_px=v['filter.min_box_size_px'],
            min_box_score=v['filter.min_box_score'], max_objects=v['filter.max_objects'],
            crop_pad=crop_pad,
            min_keypoint_confidence=v['pose.min_keypoint_confidence'],
            min_pnp_keypoints=v['pose.min_pnp_keypoints'],
            max_pnp_reproj_px=v['pose.max_pnp_reproj_px'],
            border_margin=v['pose.border_margin'],
            covariance_inflation=v['pose.covariance_inflation'],
            truncation_sigma=v['pose.truncation_sigma'],
            size_from_structure=v['pose.size_from_structure'],
            compute_voxels=bool(v['output.publish_voxels'] or v['output.voxel_markers']),
            voxel_source=v['output.voxel_source'],
            smoothing=v['smoothing.enabled'], tracker=tracker,
            num_threads=v['model.num_threads'], device=v['model.device'],
            engine_cache_dir=v['model.engine_cache_dir'])
        config.validate()
        return config


def default_manifest(category: str) -> Path:
    """The packaged default model of `category` (perception_3dinn/data/models/<category>/)."""
    from perception_3dinn.inference.manifest import default_model_dir

    return default_model_dir(category) / 'manifest.json'


def read_settings(node: Node) -> NodeSettings:
    """Read every declared parameter of `node` into NodeSettings."""
    values = {}
    for spec in PARAMS:
        try:
            value = node.get_parameter(spec.name).value
        except ParameterUninitializedException:  # an empty list default, declared by type
            value = []
        if isinstance(spec.default, list):
            value = list(value or [])
        elif isinstance(spec.default, float):
            value = float(value)
        values[spec.name] = value
    return NodeSettings(values)
