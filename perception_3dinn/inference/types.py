"""Plain data types of the inference runtime (no torch, no ROS).

`Box2D` is what a detector gives the pipeline, `PipelineConfig` its settings, and
`ObjectEstimate` / `FrameResult` what `Pipeline.process` returns (docs/interfaces.md, Runtime).
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math
from typing import Any

import numpy as np

from perception_3dinn.tracking import TrackerConfig


@dataclass(frozen=True)
class Box2D:
    """A 2D detection in full-image pixels (OpenCV convention, see docs/interfaces.md).

    Attributes:
        x_min, y_min, x_max, y_max: box corners in pixels.
        class_id: the detector's class label (e.g. 'chair' or '56').
        score: detector confidence in [0, 1].
        detection_id: the detector's track id when it tracks, else None.
    """

    x_min: float
    y_min: float
    x_max: float
    y_max: float
    class_id: str = ''
    score: float = 1.0
    detection_id: str | None = None

    @property
    def width(self) -> float:
        return float(self.x_max) - float(self.x_min)

    @property
    def height(self) -> float:
        return float(self.y_max) - float(self.y_min)

    @property
    def center(self) -> tuple[float, float]:
        return (0.5 * (float(self.x_min) + float(self.x_max)),
                0.5 * (float(self.y_min) + float(self.y_max)))

    def is_finite(self) -> bool:
        """True when all four corners are finite numbers."""
        try:
            return all(math.isfinite(float(v))
                       for v in (self.x_min, self.y_min, self.x_max, self.y_max))
        except (TypeError, ValueError):
            return False

    def as_array(self) -> np.ndarray:
        """Corners as a float64 array `(4,)` (x_min, y_min, x_max, y_max)."""
        return np.array([self.x_min, self.y_min, self.x_max, self.y_max], dtype=np.float64)

    @classmethod
    def from_center(cls, cx: float, cy: float, width: float, height: float,
                    class_id: str = '', score: float = 1.0,
                    detection_id: str | None = None) -> Box2D:
        """Box from centre and size (the vision_msgs BoundingBox2D layout)."""
        return cls(cx - 0.5 * width, cy - 0.5 * height, cx + 0.5 * width, cy + 0.5 * height,
                   class_id=class_id, score=score, detection_id=detection_id)


@dataclass
class PipelineConfig:
    """Settings of `Pipeline` (defaults are the ones config/*.yaml ships).

    Attributes:
        class_ids: detector class labels accepted (case-insensitive); empty accepts all.
        min_box_size_px: boxes whose clipped width or height is smaller are skipped.
        min_box_score: boxes with a lower detector score are skipped.
        max_objects: at most this many boxes (highest score first) per frame.
        crop_pad: crop side = max(w, h) * (1 + crop_pad) (docs/interfaces.md, Crops).
        min_keypoint_confidence: keypoints at or above it take part in PnP.
        min_pnp_keypoints: fewer confident keypoints -> interpreter pose fallback.
        max_pnp_reproj_px: PnP results whose RMS reprojection error (image px) exceeds it, or
            whose depth is not positive, are rejected in favour of the interpreter pose.
        covariance_inflation: factor on the pose covariance (calibrated on the full-frame
            selection sets, docs/evaluation.md).
        truncation_sigma: relative range uncertainty added (in quadrature, as a scale
            uncertainty) to the covariance of an object whose box reaches an image edge: the
            part outside the image leaves its pose less determined than the fit says.
        border_margin: keypoints decoded within this fraction of the box size of an image
            edge that the box touches (or beyond it) are left out of PnP: the part of a
            truncated object outside the image pulls its keypoints onto the border; 0 keeps
            them.
        pnp_refine: polish with cv2.solvePnPRefineLM after the iterative (already
            Levenberg-Marquardt) PnP; off by default: it rarely moves the result.
        size_from_structure: metric scale = size prior x the manifest's size model of the
            structure (instance size given its shape), when the manifest has one; else the
            category's size prior alone.
        size_sigma: standard deviation of the log metric scale from the size model (or the
            size prior), used to weigh it against the floor's scale when a floor is given.
        floor_max_tilt_deg: with a floor plane, objects whose up axis leans more than this
            from the floor normal keep the size-model scale.
        floor_min_depression_deg: with a floor plane, objects seen closer than this to the
            horizon keep the size-model scale (the floor intersection is ill-conditioned).
        compute_voxels: fill `ObjectEstimate.voxels` from the structure.
        voxel_size: voxels per axis of the occupancy grid.
        voxel_radius_m: radius of the skeleton tubes rasterised into the grid; 0 -> a radius
            from the category's dimensions.
        voxel_source: 'learned' (the manifest's shape graph on the crops; skeleton voxels,
            with a warning, when the manifest has none), 'skeleton' (tubes of the structure)
            or 'auto' (learned when the manifest has a shape graph, else skeleton).
        smoothing: run the tracker (association + temporal smoothing).
        tracker: parameters of the tracker.
        num_threads: CPU threads of the engine (ONNX Runtime intra-op, torch).
        device: 'cpu' or 'cuda' (ONNX Runtime CUDA provider / torch device) where present.
        engine_cache_dir: where TensorRT engines are cached ('' -> beside the ONNX file).
    """

    class_ids: tuple[str, ...] = ('chair',)
    min_box_size_px: float = 16.0
    min_box_score: float = 0.0
    max_objects: int = 16
    crop_pad: float = 0.15
    min_keypoint_confidence: float = 0.3
    min_pnp_keypoints: int = 6
    max_pnp_reproj_px: float = 20.0
    border_margin: float = 0.0
    covariance_inflation: float = 1.52  # bench/results/covariance_calibration.json
    truncation_sigma: float = 0.158
    pnp_refine: bool = False
    size_from_structure: bool = True
    size_sigma: float = 0.08
    floor_max_tilt_deg: float = 20.0
    floor_min_depression_deg: float = 3.0
    compute_voxels: bool = True
    voxel_size: int = 32
    voxel_radius_m: float = 0.0
    voxel_source: str = 'auto'
    smoothing: bool = True
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    num_threads: int = 1
    device: str = 'cpu'
    engine_cache_dir: str = ''

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting."""
        checks = [
            (self.min_box_size_px >= 0, 'min_box_size_px must be >= 0'),
            (0.0 <= self.min_box_score <= 1.0, 'min_box_score must be in [0, 1]'),
            (self.max_objects >= 1, 'max_objects must be >= 1'),
            (0.0 <= self.crop_pad <= 2.0, 'crop_pad must be in [0, 2]'),
            (0.0 <= self.min_keypoint_confidence <= 1.0,
             'min_keypoint_confidence must be in [0, 1]'),
            (self.min_pnp_keypoints >= 4, 'min_pnp_keypoints must be >= 4 (PnP needs 4)'),
            (self.max_pnp_reproj_px > 0, 'max_pnp_reproj_px must be > 0'),
            (0.0 <= self.border_margin <= 0.5, 'border_margin must be in [0, 0.5]'),
            (0.0 < self.covariance_inflation <= 1e4, 'covariance_inflation must be in (0, 1e4]'),
            (0.0 <= self.truncation_sigma <= 10.0, 'truncation_sigma must be in [0, 10]'),
            (0.0 < self.size_sigma <= 2.0, 'size_sigma must be in (0, 2]'),
            (0.0 <= self.floor_max_tilt_deg <= 90.0, 'floor_max_tilt_deg must be in [0, 90]'),
            (0.0 <= self.floor_min_depression_deg < 90.0,
             'floor_min_depression_deg must be in [0, 90)'),
            (2 <= self.voxel_size <= 256, 'voxel_size must be in [2, 256]'),
            (self.voxel_radius_m >= 0, 'voxel_radius_m must be >= 0'),
            (self.voxel_source in ('auto', 'learned', 'skeleton'),
             "voxel_source must be 'auto', 'learned' or 'skeleton'"),
            (self.num_threads >= 0, 'num_threads must be >= 0 (0: library default)'),
            (self.device in ('cpu', 'cuda'), "device must be 'cpu' or 'cuda'"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f'PipelineConfig: {message}')
        self.tracker.validate()


@dataclass
class ObjectEstimate:
    """One interpreted object of a frame (docs/interfaces.md, Runtime).

    Attributes:
        track_id: stable id over frames ('' when smoothing is off: then the box index).
        category: category name, e.g. 'chair'.
        score: object score in [0, 1] (keypoint confidence x reprojection agreement x box).
        R: `(3, 3)` rotation, object -> camera optical frame.
        t: `(3,)` translation in metres, camera optical frame.
        structure: `(K,)` deformation weights alpha.
        focal: interpreter focal length in crop pixels.
        keypoints_2d: `(N, 2)` decoded keypoints in full-image pixels.
        confidences: `(N,)` keypoint confidences.
        keypoints_3d: `(N, 3)` skeleton in the camera frame, metres
            (`R @ category.structure(structure) * scale_m + t`).
        voxels: VoxelGrid of the shape in the object frame, or None.
        box: the (clipped) input box.
        box_index: index of the box in the `boxes` argument of `process`.
        pose_source: 'pnp' or 'interpreter'.
        reproj_error_px: RMS reprojection error of the confident keypoints, image px.
        num_pnp_keypoints: keypoints used by PnP (0 for the interpreter pose).
        scale_m: metres per normalised shape unit used for this object (the category's size
            prior, or the size model's estimate from the structure).
        covariance: `(6, 6)` covariance of the pose, (x, y, z, rotation about x, y, z) in the
            camera optical frame, metres and radians (`inference.uncertainty`).
        crop: `(3, S, S)` normalised network input of the object (what learned voxels are
            made from), or None.
        candidates: the categories whose models ran on this box when its detector class maps
            to several (`inference.multi.MultiPipeline`; the best fit, `category`, was kept);
            empty otherwise.
    """

    track_id: str
    category: str
    score: float
    R: np.ndarray
    t: np.ndarray
    structure: np.ndarray
    focal: float
    keypoints_2d: np.ndarray
    confidences: np.ndarray
    keypoints_3d: np.ndarray
    voxels: Any
    box: Box2D
    box_index: int = -1
    pose_source: str = 'interpreter'
    reproj_error_px: float = float('nan')
    num_pnp_keypoints: int = 0
    scale_m: float = float('nan')
    covariance: np.ndarray | None = None
    crop: np.ndarray | None = field(default=None, repr=False)
    candidates: tuple[str, ...] = ()


@dataclass
class FrameResult:
    """Everything `Pipeline.process` found in one frame.

    Attributes:
        stamp_s: the input stamp, seconds.
        objects: the objects, in box order.
        skipped: (box index, reason) for each box that gave no object.
        timings_ms: stage name -> milliseconds ('boxes', 'crops', 'network', 'decode',
            'pose', 'tracking', 'voxels', 'total').
    """

    stamp_s: float
    objects: list[ObjectEstimate] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
