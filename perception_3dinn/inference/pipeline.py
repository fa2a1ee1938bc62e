"""The per-frame pipeline (DESIGN.md, data flow steps 2-7): boxes -> objects with metric poses.

    pipe = Pipeline.from_manifest(path, backend='onnxruntime', config=PipelineConfig())
    result = pipe.process(image_rgb, intrinsics, boxes, stamp_s)

Per frame: box handling (class filter, score, clipping to the image, minimum size, at most
`max_objects`), one batch of square crops (`crops.Crop`, padded to the network's aspect), the
engine, sub-pixel heatmap decoding (`codec.HeatmapCodec`) into image pixels, the interpreter's
structure and crop-space pose, the metric pose (PnP on confident keypoints started from the
interpreter, else the interpreter's pose with the size prior), the object score, tracking and
temporal smoothing (`tracking.Tracker`), and voxels of the shape: the manifest's learned shape
graph on the crops (`learned_shape`) or tubes of the (smoothed) structure (`shape`).
No torch unless the torch backend is chosen, no ROS.
"""

from __future__ import annotations

from collections.abc import Sequence
import hashlib
import math
from pathlib import Path
import time

import numpy as np

from perception_3dinn.camera import CameraIntrinsics
from perception_3dinn.codec import HeatmapCodec
from perception_3dinn.crops import Crop
from perception_3dinn.inference.boxes import (  # noqa: F401 - is_filtered re-exported
    crop_roi,
    FILTER_REASON_STARTS,
    is_filtered,
    prepare_boxes,
)
from perception_3dinn.inference.engines import create_engine, Engine
from perception_3dinn.inference.learned_shape import fill_voxels, make_voxelizer
from perception_3dinn.inference.manifest import (
    category_source,
    default_model_dir,
    load_manifest,
    ManifestError,
    ModelManifest,
)
from perception_3dinn.inference.pose import (
    border_keypoints,
    floor_log_scale,
    FloorPlane,
    fuse_log_scales,
    interpreter_pose,
    metric_pose,
    object_score,
    touched_edges,
)
from perception_3dinn.inference.shape import StructureVoxelizer
from perception_3dinn.inference.types import Box2D, FrameResult, ObjectEstimate, PipelineConfig
from perception_3dinn.inference.uncertainty import pose_covariance
from perception_3dinn.skeleton import Category, load_category
from perception_3dinn.symmetry import equivalent_turns
from perception_3dinn.tracking import Observation, Tracker

# Objects nearer than this along the optical axis are not published (behind the camera).
MIN_DEPTH_M = 1e-3


def bases_sha256(category: Category) -> str:
    """Fingerprint of a category's base shapes (recorded in manifests at export)."""
    data = np.ascontiguousarray(np.round(category.bases, 6), dtype=np.float64)
    return hashlib.sha256(data.tobytes()).hexdigest()


def _in_front(R: np.ndarray, t: np.ndarray) -> bool:
    """A finite pose whose origin lies at least MIN_DEPTH_M in front of the camera."""
    return bool(np.all(np.isfinite(R)) and np.all(np.isfinite(t)) and t[2] >= MIN_DEPTH_M)


# Image noise assumed for an object's foot point when the pose has no reprojection error
# (interpreter fallback with no usable keypoints): it weighs the floor's scale down.
UNKNOWN_FOOT_NOISE_PX = 5.0


class Pipeline:
    """Crops -> network -> keypoints, structure, metric pose, tracking, voxels."""

    def __init__(self, engine: Engine, manifest: ModelManifest, category: Category,
                 config: PipelineConfig | None = None) -> None:
        self.config = config or PipelineConfig()
        self.config.validate()
        if (category.num_keypoints != manifest.num_keypoints
                or category.num_bases != manifest.num_bases):
            raise ManifestError(
                f'model {manifest.path} has {manifest.num_keypoints} keypoints / '
                f'{manifest.num_bases} bases, category {category.name} has '
                f'{category.num_keypoints} / {category.num_bases}')
        recorded = manifest.raw.get('category_bases_sha256')
        if recorded and recorded != bases_sha256(category):
            raise ManifestError(f'model {manifest.path} was trained with other {category.name} '
                                'base shapes than perception_3dinn/categories holds; re-export '
                                'the model or restore the category file')
        self.engine = engine
        self.manifest = manifest
        self.category = category
        self.codec = HeatmapCodec(manifest.input_size, manifest.stride, manifest.sigma)
        self._mean = np.asarray(manifest.mean, np.float32) * 255.0
        self._inv_std = 1.0 / (np.asarray(manifest.std, np.float32) * 255.0)
        self.tracker = Tracker(self.config.tracker)
        self.voxelizer = (StructureVoxelizer(category, size=self.config.voxel_size,
                                             radius_m=self.config.voxel_radius_m)
                          if self.config.compute_voxels else None)
        self.learned_voxelizer, self.voxel_note = (
            make_voxelizer(manifest, category, self.config.voxel_source, self.config.voxel_size,
                           self.config.num_threads, self.config.device)
            if self.config.compute_voxels else (None, None))

    @classmethod
    def from_manifest(cls, path: str | Path | None = None, backend: str = 'onnxruntime',
                      config: PipelineConfig | None = None,
                      checkpoint: str | Path | None = None,
                      precision: str = 'fp16') -> Pipeline:
        """Load the model of `path` (manifest.json or its directory; None: the chair model
        shipped with the package) on `backend` ('onnxruntime', 'tensorrt' or 'torch'). The
        category is the model folder's own category.json when it has one, else the shipped
        file of the manifest's category (`manifest.category_source`).

        Raises:
            ManifestError: missing/invalid manifest or a model file that does not match it.
            RuntimeError: the backend cannot run here (the message says why).
        """
        config = config or PipelineConfig()
        config.validate()
        manifest = load_manifest(path if path is not None else default_model_dir('chair'))
        source = category_source(manifest)
        category = load_category(source)
        if category.name != manifest.category:
            raise ManifestError(f'{source}: category {category.name!r}, but the model manifest '
                                f'{manifest.path} is for {manifest.category!r}')
        engine = create_engine(manifest, backend=backend, num_threads=config.num_threads,
                               device=config.device,
                               engine_cache_dir=config.engine_cache_dir or None,
                               checkpoint=checkpoint, precision=precision)
        return cls(engine, manifest, category, config)

    def scale_m(self, structure: np.ndarray) -> float:
        """Metres per normalised unit for an object of structure `(K,)`.

        The category's size prior times the manifest's size model exp(bias + weights . alpha)
        (clipped to a factor 1.5 either way) when there is one and it is enabled.
        """
        prior = self.category.size_prior_m
        model = self.manifest.size_model
        if model is None or not self.config.size_from_structure:
            return prior
        bias, weights = model
        log_ratio = bias + float(np.dot(weights, structure))
        return prior * float(np.exp(np.clip(log_ratio, -0.405, 0.405)))

    def reset(self) -> None:
        """Forget all tracks (backward clock jump, new bag, re-activation)."""
        self.tracker.reset()

    def close(self) -> None:
        self.engine.close()

    def normalise(self, crops: np.ndarray) -> np.ndarray:
        """`(B, S, S, 3)` uint8 RGB -> `(B, 3, S, S)` float32 network input.

        Written channel by channel into the NCHW array: a fifth of the time of converting the
        whole NHWC batch and transposing it (bench_pipeline's crops stage).
        """
        out = np.empty((crops.shape[0], 3, *crops.shape[1:3]), np.float32)
        for ch in range(3):
            np.subtract(crops[..., ch], self._mean[ch], out=out[:, ch], dtype=np.float32)
            out[:, ch] *= self._inv_std[ch]
        return out

    def process(self, image: np.ndarray, intrinsics: CameraIntrinsics, boxes: Sequence[Box2D],
                stamp_s: float, floor: FloorPlane | None = None,
                voxels: bool = True) -> FrameResult:
        """Interpret the objects in the boxes of one frame.

        Args:
            image: `(H, W, 3)` uint8 RGB.
            intrinsics: the camera of this image (size must match the image).
            boxes: detections; bad ones are skipped with a reason, never raised on.
            stamp_s: frame time in seconds (a backward jump resets the tracks).
            floor: the floor in the camera optical frame, when known: the metric scale of
                upright objects seen from above is then fused from the floor and the size
                model (`floor_log_scale`); None keeps the size model alone.
            voxels: fill `ObjectEstimate.voxels` (with `config.compute_voxels`); False leaves
                them None for this frame (nobody takes voxels, or `add_voxels` later).

        Returns:
            FrameResult with objects, skipped boxes and per-stage timings.

        Raises:
            ValueError: the image, intrinsics or stamp cannot be used (the message says why).
        """
        t_start = time.perf_counter()
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f'image must be (H, W, 3) uint8 RGB, got {image.shape} '
                             f'{image.dtype}')
        if not isinstance(intrinsics, CameraIntrinsics):
            raise ValueError(f'intrinsics must be a CameraIntrinsics, got '
                             f'{type(intrinsics).__name__}')
        intrinsics.validate()
        height, width = image.shape[:2]
        if (intrinsics.width, intrinsics.height) != (width, height):
            raise ValueError(f'camera intrinsics are for {intrinsics.width}x'
                             f'{intrinsics.height} images, the image is {width}x{height}')
        stamp_s = float(stamp_s)
        if not math.isfinite(stamp_s):
            raise ValueError(f'stamp must be finite, got {stamp_s}')
        cfg = self.config
        result = FrameResult(stamp_s=stamp_s)
        timings = result.timings_ms

        t0 = time.perf_counter()
        kept, result.skipped = prepare_boxes(list(boxes), width, height, cfg)
        timings['boxes'] = _ms(t0)

        t0 = time.perf_counter()
        S = self.manifest.input_size
        crops = [Crop.from_box(box.as_array(), S, pad=cfg.crop_pad) for _, box in kept]
        if crops:
            patches = np.stack([crop_roi(image, c) for c in crops])
            batch = self.normalise(patches)
            rows = {i: j for j, (i, _) in enumerate(kept)}
        timings['crops'] = _ms(t0)

        t0 = time.perf_counter()
        outputs = self.engine.run(batch) if crops else {}
        timings['network'] = _ms(t0)

        t0 = time.perf_counter()
        if crops:
            kp_crop, conf = self.codec.decode(outputs['heatmaps'])
        timings['decode'] = _ms(t0)

        t0 = time.perf_counter()
        candidates = []
        for j, ((i, box), crop) in enumerate(zip(kept, crops)):
            alpha = outputs['structure'][j].astype(np.float64)
            R_c = outputs['rotation'][j].astype(np.float64)
            t_c = outputs['translation'][j].astype(np.float64)
            focal = float(outputs['focal'][j])
            if not (np.all(np.isfinite(alpha)) and np.all(np.isfinite(R_c))
                    and np.all(np.isfinite(t_c)) and math.isfinite(focal) and focal > 0
                    and t_c[2] > 0):
                result.skipped.append((i, 'network output not usable (non-finite, focal <= 0 '
                                          'or object behind the camera)'))
                continue
            keypoints = crop.from_crop(kp_crop[j])
            scale = self.scale_m(alpha)
            R_i, t_i = interpreter_pose(R_c, t_c, focal, crop, intrinsics, scale)
            skeleton_m = self.category.structure(alpha) * scale
            pnp_conf = np.where(border_keypoints(keypoints, box.as_array(), width, height,
                                                 cfg.border_margin), 0.0, conf[j])
            pose = metric_pose(keypoints, pnp_conf, skeleton_m, R_i, t_i, intrinsics,
                               cfg.min_keypoint_confidence, cfg.min_pnp_keypoints,
                               cfg.max_pnp_reproj_px, refine=cfg.pnp_refine)
            if not _in_front(pose.R, pose.t):
                result.skipped.append((i, 'pose not usable (non-finite or behind the camera: '
                                          'check camera_info)'))
                continue
            score = object_score(conf[j], pose.reproj_error_px, max(box.width, box.height),
                                 box.score)
            log_scale, log_scale_sigma = None, cfg.size_sigma
            if floor is not None:
                noise = (pose.reproj_error_px if math.isfinite(pose.reproj_error_px)
                         else UNKNOWN_FOOT_NOISE_PX)
                from_floor = floor_log_scale(
                    pose.R, pose.t / scale, floor, intrinsics.fy, noise,
                    math.radians(cfg.floor_max_tilt_deg),
                    math.radians(cfg.floor_min_depression_deg))
                estimates = [(math.log(scale), cfg.size_sigma)]
                log_scale, log_scale_sigma = fuse_log_scales(
                    estimates + ([from_floor] if from_floor else []))
            used = (pnp_conf >= cfg.min_keypoint_confidence) & np.all(np.isfinite(keypoints), 1)
            if cfg.truncation_sigma > 0 and any(touched_edges(box.as_array(), width, height)):
                log_scale_sigma = math.hypot(log_scale_sigma, cfg.truncation_sigma)
            fit = (skeleton_m[used], pose.reproj_error_px, max(box.width, box.height),
                   log_scale_sigma)
            candidates.append((i, box, alpha, focal, keypoints, conf[j], pose, score, scale,
                               log_scale, fit))
        timings['pose'] = _ms(t0)

        t0 = time.perf_counter()
        # PnP with a skeleton scaled by s gives s * t: the tracker smooths the scale-free
        # t / s, and the result is scaled by the size of the track's median structure.
        elements = self.category.symmetry_elements  # turns an instance may look the same
        observations = [Observation(box=box.as_array(), R=pose.R, t=pose.t / scale,
                                    structure=alpha, category=self.category.name,
                                    detection_id=box.detection_id, log_scale=log_scale,
                                    equivalents=(equivalent_turns(self.category.structure(alpha),
                                                                  elements)
                                                 if len(elements) > 1 else None))
                        for _, box, alpha, _, _, _, pose, _, scale, log_scale, _ in candidates]
        tracks = self.tracker.update(stamp_s, observations)
        timings['tracking'] = _ms(t0)

        t0 = time.perf_counter()
        for cand, track in zip(candidates, tracks):
            (i, box, alpha, focal, keypoints, confidences, pose, score, pnp_scale, log_scale,
             fit) = cand
            if cfg.smoothing:
                structure = track.structure
                scale = track.scale if track.scale is not None else self.scale_m(structure)
                R, t = track.R, track.t * scale
            else:
                scale = math.exp(log_scale) if log_scale is not None else pnp_scale
                R, t, structure = pose.R, pose.t * (scale / pnp_scale), alpha
            if not _in_front(R, t):  # a smoothed pose is checked again before it goes out
                result.skipped.append((i, 'smoothed pose not usable (non-finite or behind the '
                                          'camera)'))
                continue
            skeleton = self.category.structure(structure) * scale
            fit_points, rms, box_px, log_sigma = fit
            covariance = pose_covariance(R, t, fit_points * (scale / pnp_scale), intrinsics,
                                         rms, box_px, log_sigma, cfg.covariance_inflation)
            result.objects.append(ObjectEstimate(
                track_id=track.track_id, category=self.category.name, score=score,
                R=R, t=t, structure=structure, focal=focal, keypoints_2d=keypoints,
                confidences=np.asarray(confidences, np.float64),
                keypoints_3d=skeleton @ R.T + t,
                voxels=None, crop=batch[rows[i]], box=box, box_index=i, pose_source=pose.source,
                reproj_error_px=pose.reproj_error_px, num_pnp_keypoints=pose.num_keypoints,
                scale_m=scale, covariance=covariance))
        if voxels and self.voxelizer is not None:
            fill_voxels(result.objects, self.learned_voxelizer, self.voxelizer)
        timings['voxels'] = _ms(t0)
        result.skipped.sort()
        timings['total'] = _ms(t_start)
        return result

    def add_voxels(self, result: FrameResult) -> None:
        """Fill the voxels `process(..., voxels=False)` left out (with `config.compute_voxels`):
        the node publishes the poses first and voxelises after. Adds
        `timings_ms['voxels_added']` and to 'total'."""
        if self.voxelizer is None:
            return
        t0 = time.perf_counter()
        fill_voxels(result.objects, self.learned_voxelizer, self.voxelizer)
        added = _ms(t0)
        result.timings_ms['voxels_added'] = added
        result.timings_ms['total'] = result.timings_ms.get('total', 0.0) + added


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3
