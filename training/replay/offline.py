"""The bag through the pipeline in-process: the node's settings, no ROS transport.

One category served as the node serves ``category`` alone: a `Pipeline` (its class filter
included); several (or one other than the chair) as the node serves ``categories``: a
`MultiPipeline` whose default class map routes each detection to the categories of its
class, each model with its own crop pad.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
import time
from typing import Any

from tqdm import tqdm

from training.replay.accuracy import accuracy, image_size
from training.replay.report import percentiles


def _runtime(manifest: Path | None, models: Mapping[str, Path] | None, backend: str,
             num_threads: int) -> Any:
    """`Pipeline` of `manifest` (default: the packaged chair), or with `models` a
    `MultiPipeline` over them."""
    from perception_3dinn.inference import load_manifest, Pipeline, PipelineConfig
    from perception_3dinn.inference.manifest import default_model_dir
    from perception_3dinn.inference.multi import ClassMap, MultiPipeline

    if not models:
        path = manifest or default_model_dir('chair') / 'manifest.json'
        man = load_manifest(path)
        return Pipeline.from_manifest(path, backend=backend, config=PipelineConfig(
            num_threads=num_threads, crop_pad=man.crop_pad))
    pipes: dict[str, Any] = {}
    try:
        for name, path in models.items():
            man = load_manifest(path)
            pipes[name] = Pipeline.from_manifest(path, backend=backend, config=PipelineConfig(
                num_threads=num_threads, crop_pad=man.crop_pad, class_ids=()))
        return MultiPipeline(pipes, ClassMap.default(list(pipes)))
    except BaseException:
        for pipe in pipes.values():
            pipe.close()
        raise


def records(result: Any) -> list[Any]:
    """ObjectRecords of a FrameResult (what the node would publish)."""
    from perception_3dinn.ros.bagdata import ObjectRecord

    return [ObjectRecord(
        track_id=int(o.track_id) if str(o.track_id).isdigit() else 0,
        detection_id=o.box.detection_id or '', score=o.score, R=o.R, t=o.t,
        structure=o.structure, keypoints_2d=o.keypoints_2d, confidences=o.confidences,
        keypoints_3d=o.keypoints_3d, box=o.box.as_array(), covariance=o.covariance,
        category=o.category) for o in result.objects]


def evaluate_offline(frames: list[Any], manifest: Path | None, backend: str,
                     num_threads: int, floor_frame: str = '', period_s: float = 0.0,
                     models: Mapping[str, Path] | None = None) -> dict[str, Any]:
    """Run the pipeline on every frame of the bag (the node's settings, no ROS transport).

    With `floor_frame`, the floor comes from the bag's /tf at each image stamp (as the node
    does with pose.floor_frame, within the default pose.tf_tolerance_s); frames without it
    use the size model alone. With `period_s`, frames start that far apart (as from a
    camera) instead of back to back. With `models` (category -> manifest.json) the frames
    go through a `MultiPipeline` of those categories instead of the `manifest` alone.
    """
    from perception_3dinn.ros import convert, inputs
    from perception_3dinn.ros.bagdata import records_from_msg
    from perception_3dinn.ros.params import SPECS
    from perception_3dinn.tf_buffer import floor_in_camera, TransformBuffer, TransformLookupError

    pipe = _runtime(manifest, models, backend, num_threads)
    categories = dict(getattr(pipe, 'categories', {pipe.category.name: pipe.category}))
    preds, gts, total_ms, network_ms, results = [], [], [], [], []
    tf, floors = TransformBuffer(), 0
    tolerance_ns = int(SPECS['pose.tf_tolerance_s'].default * 1e9)
    t_start = time.perf_counter()
    for k, f in enumerate(tqdm(frames, desc='offline' + (' (floor from TF)' if floor_frame
                                                        else ''), unit='frame')):
        if period_s > 0:
            time.sleep(max(0.0, t_start + k * period_s - time.perf_counter()))
        t0 = time.perf_counter()
        intr = inputs.camera_info_to_intrinsics(f.camera_info)
        rgb = inputs.image_to_rgb(f.image, (intr.width, intr.height))
        boxes = inputs.detections_to_boxes(f.detections) if f.detections else []
        floor = None
        if floor_frame and f.tf is not None:
            convert.store_tf_message(tf, f.tf, static=False)
            try:
                floor = floor_in_camera(tf, f.image.header.frame_id, floor_frame, f.stamp_ns,
                                        tolerance_ns)
                floors += 1
            except (TransformLookupError, ValueError):
                pass
        res = pipe.process(rgb, intr, boxes, f.stamp_ns * 1e-9, floor=floor)
        total_ms.append((time.perf_counter() - t0) * 1e3)
        network_ms.append(res.timings_ms.get('network', float('nan')))
        preds.append(records(res))
        gts.append(records_from_msg(f.ground_truth) if f.ground_truth else [])
        results.append(res)
    pipe.close()
    return {'frames': len(frames), 'objects': sum(len(p) for p in preds),
            'categories': list(categories), 'floor_frame': floor_frame,
            'frames_with_floor': floors,
            'accuracy': accuracy(preds, gts, image_size(frames), categories),
            'frame_ms': percentiles(total_ms),
            'network_ms': percentiles(network_ms), '_preds': preds, '_frame_ms': total_ms,
            '_categories': categories}
