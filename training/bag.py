"""Bag tools: write the demo rosbag from a synthetic video; evaluate a bag offline and live.

    python -m training.bag make-demo [--out out/demo/chair_demo] [--seed 7] [--frames 90]
    python -m training.bag evaluate --bag out/demo/chair_demo --out out/demo/eval \\
        [--offline] [--live [--start-node]] [--rate 15] [--loops 1] [--floor-frame floor]

make-demo renders one synthetic video (training.synth.videos, deterministic for a seed) and
writes /camera/image_raw/compressed (JPEG; --raw for sensor_msgs/Image), /camera/camera_info,
/detections (ground-truth boxes with realistic noise, misses and false positives),
/ground_truth/objects and /tf `floor -> camera_optical_frame` (the camera's pose above the
floor, as a robot's TF tree gives it, with a fixed calibration error of 1 deg tilt and 2 cm
height by default).

evaluate replays the bag (a) offline through the pipeline and (b) live through the node over
DDS (re-stamped with the wall clock, so receipt minus stamp is the node's latency), and writes
into --out: metrics.json (accuracy against ground truth, latency percentiles, drops, ROS
overhead = live latency - offline pipeline time), plots (latency.png, errors.png), an
annotated video (annotated.mp4: skeleton and axes) and output_bag/ (inputs as sent plus every
output of the node; open it in Foxglove or RViz).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
import json
import os
from pathlib import Path
import subprocess
import sys
import time
from typing import Any

import numpy as np
from tqdm import tqdm

from training import binned
from training.bag_accuracy import accuracy, match_objects  # noqa: F401 (public here)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BAG = REPO / 'out' / 'demo' / 'chair_demo'
DEFAULT_EVAL = REPO / 'out' / 'demo' / 'eval'


# ---------------------------------------------------------------------------------------------
# make-demo


@dataclass
class DetectionNoise:
    """How the simulated detector deviates from the ground-truth boxes.

    Attributes:
        jitter: std of each box side's shift as a fraction of the box size.
        miss_prob: probability that a present object is not detected in a frame.
        false_positive_prob: probability of one spurious box per frame.
        min_visible_px: objects whose visible box is smaller are not detected.
    """

    jitter: float = 0.03
    miss_prob: float = 0.05
    false_positive_prob: float = 0.05
    min_visible_px: float = 12.0


def noisy_detections(boxes: np.ndarray, ids: np.ndarray, width: int, height: int,
                     rng: np.random.Generator, noise: DetectionNoise) -> list[Any]:
    """Detections of one frame from visible ground-truth boxes.

    Args:
        boxes: (M, 4) visible boxes x_min, y_min, x_max, y_max of the present objects.
        ids: (M,) their object ids (used as detection ids, as a tracking detector would).

    Returns:
        list of perception_3dinn.ros.bagdata.Detection.
    """
    from perception_3dinn.ros.bagdata import Detection

    out = []
    for box, oid in zip(np.asarray(boxes, np.float64).reshape(-1, 4), ids):
        w, h = box[2] - box[0], box[3] - box[1]
        if min(w, h) < noise.min_visible_px or rng.random() < noise.miss_prob:
            continue
        b = box + rng.normal(0.0, noise.jitter, 4) * np.array([w, h, w, h])
        b = np.clip(b, 0, [width - 1, height - 1, width - 1, height - 1])
        if b[2] - b[0] < 2 or b[3] - b[1] < 2:
            continue
        out.append(Detection(b, 'chair', float(rng.uniform(0.6, 0.95)), str(int(oid))))
    if rng.random() < noise.false_positive_prob:
        w, h = rng.uniform(0.1, 0.3) * width, rng.uniform(0.15, 0.4) * height
        x0, y0 = rng.uniform(0, width - w), rng.uniform(0, height - h)
        out.append(Detection(np.array([x0, y0, x0 + w, y0 + h]), 'chair',
                             float(rng.uniform(0.3, 0.6)), ''))
    return out


def camera_in_floor(video: dict, frame: int, tilt_bias_deg: float = 0.0,
                    height_bias_m: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The camera's pose (R, p) in the floor frame (the video's world: z up, floor z = 0),
    optionally with a fixed calibration error: the orientation tilted by `tilt_bias_deg`
    about a horizontal axis and the height off by `height_bias_m` (same for every frame)."""
    from scipy.spatial.transform import Rotation

    Rc = np.asarray(video['camera_R'][frame], np.float64)  # world -> camera
    tc = np.asarray(video['camera_t'][frame], np.float64)
    R, p = Rc.T, -Rc.T @ tc
    if tilt_bias_deg or height_bias_m:
        heading = np.random.default_rng([seed, 2]).uniform(0.0, 2.0 * np.pi)
        axis = np.array([np.cos(heading), np.sin(heading), 0.0])
        R = Rotation.from_rotvec(np.radians(tilt_bias_deg) * axis).as_matrix() @ R
        p = p + np.array([0.0, 0.0, height_bias_m])
    return R, p


def video_frames(video: dict, noise: DetectionNoise, seed: int, tilt_bias_deg: float = 0.0,
                 height_bias_m: float = 0.0) -> list[Any]:
    """DemoFrames of one rendered video (training.synth.videos.render_video output), with
    the camera's pose above the floor (and the given calibration error) for /tf."""
    from perception_3dinn.camera import CameraIntrinsics
    from perception_3dinn.ros.bagdata import DemoFrame, GroundTruthObject

    frames = video['frames']
    T, H, W = frames.shape[:3]
    intr = CameraIntrinsics.from_matrix(np.asarray(video['K'], np.float64), W, H)
    rng = np.random.default_rng([seed, 1])
    valid = np.asarray(video['object_valid'], bool)
    out = []
    for f in range(T):
        objects, vis_boxes, ids = [], [], []
        for i in np.flatnonzero(valid):
            if not video['present'][f, i]:
                continue
            oid = int(video['object_id'][i])
            objects.append(GroundTruthObject(
                object_id=oid, R=np.asarray(video['R'][f, i], np.float64),
                t=np.asarray(video['t'][f, i], np.float64),
                structure=np.asarray(video['structure'][i], np.float64),
                keypoints_2d=np.asarray(video['keypoints_2d'][f, i], np.float64),
                visible=np.asarray(video['visible'][f, i], bool),
                keypoints_3d=np.asarray(video['keypoints_3d'][f, i], np.float64),
                box=np.asarray(video['box'][f, i], np.float64)))
            vis_boxes.append(video['box_visible'][f, i])
            ids.append(oid)
        dets = noisy_detections(np.asarray(vis_boxes).reshape(-1, 4), np.asarray(ids), W, H,
                                rng, noise)
        out.append(DemoFrame(frames[f], intr, objects, dets, camera_in_floor(
            video, f, tilt_bias_deg, height_bias_m, seed)))
    return out


def make_demo(out: Path, seed: int, frames: int, width: int, fps: float, compressed: bool,
              noise: DetectionNoise, objects: tuple[int, int] = (1, 3),
              tilt_bias_deg: float = 1.0, height_bias_m: float = 0.02,
              domain: str = 'default') -> dict[str, int]:
    """Render a synthetic video (render `domain`, training.synth.domains) and write it as
    the demo bag at `out`."""
    from perception_3dinn.ros.bagdata import write_demo_bag
    from perception_3dinn.skeleton import load_category
    from training.synth.videos import render_video, VideoConfig

    cat = load_category('chair')
    config = VideoConfig(width=width, height=width * 3 // 4, frames=frames, fps=fps,
                         objects=objects, voxels=False, domain=domain)
    print(f'rendering {frames} frames of {config.width}x{config.height} (seed {seed})',
          flush=True)
    video = render_video(cat, np.random.default_rng(seed), config)
    demo = video_frames(video, noise, seed, tilt_bias_deg, height_bias_m)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tqdm(total=len(demo), desc='writing bag', unit='frame') as bar:
        return write_demo_bag(demo, out, cat, fps, compressed=compressed, progress=bar.update)


# ---------------------------------------------------------------------------------------------
# evaluate


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    a = np.asarray(values, np.float64)
    return {'p50': float(np.percentile(a, 50)), 'p95': float(np.percentile(a, 95)),
            'max': float(a.max()), 'mean': float(a.mean()), 'count': int(a.size)}


def evaluate_offline(frames: list[Any], manifest: Path | None, backend: str,
                     num_threads: int, floor_frame: str = '',
                     period_s: float = 0.0) -> dict[str, Any]:
    """Run the pipeline on every frame of the bag (the node's settings, no ROS transport).

    With `floor_frame`, the floor comes from the bag's /tf at each image stamp (as the node
    does with pose.floor_frame, within the default pose.tf_tolerance_s); frames without it
    use the size model alone. With `period_s`, frames start that far apart (as from a
    camera) instead of back to back.
    """
    from perception_3dinn.inference import load_manifest, Pipeline, PipelineConfig
    from perception_3dinn.inference.manifest import default_model_dir
    from perception_3dinn.ros import convert, inputs
    from perception_3dinn.ros.bagdata import ObjectRecord, records_from_msg
    from perception_3dinn.ros.params import SPECS
    from perception_3dinn.tf_buffer import floor_in_camera, TransformBuffer, TransformLookupError

    path = manifest or default_model_dir('chair') / 'manifest.json'
    man = load_manifest(path)
    pipe = Pipeline.from_manifest(path, backend=backend, config=PipelineConfig(
        num_threads=num_threads, crop_pad=man.crop_pad))
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
        preds.append([ObjectRecord(
            track_id=int(o.track_id) if str(o.track_id).isdigit() else 0,
            detection_id=o.box.detection_id or '', score=o.score, R=o.R, t=o.t,
            structure=o.structure, keypoints_2d=o.keypoints_2d, confidences=o.confidences,
            keypoints_3d=o.keypoints_3d, box=o.box.as_array(), covariance=o.covariance)
            for o in res.objects])
        gts.append(records_from_msg(f.ground_truth) if f.ground_truth else [])
        results.append(res)
    pipe.close()
    return {'frames': len(frames), 'objects': sum(len(p) for p in preds),
            'floor_frame': floor_frame, 'frames_with_floor': floors,
            'accuracy': accuracy(preds, gts, _image_size(frames)),
            'frame_ms': _percentiles(total_ms),
            'network_ms': _percentiles(network_ms), '_preds': preds, '_frame_ms': total_ms}


def start_node(manifest: Path | None, backend: str, compressed: bool, log_path: Path,
               extra_params: tuple[str, ...] | list[str] = ()) -> subprocess.Popen:
    """Start the chair_detector executable (autostart) with the packaged config.

    Args:
        extra_params: more `name:=value` parameter overrides.
    """
    from perception_3dinn.ros.distro import node_executable

    args = [str(node_executable()), '--ros-args',
            '--params-file', str(REPO / 'config' / 'chair_detector.yaml'),
            '-p', 'autostart:=true', '-p', f'model.backend:={backend}',
            '-p', f'input.compressed:={"true" if compressed else "false"}']
    if manifest is not None:
        args += ['-p', f'model.manifest:={manifest}']
    for p in extra_params:
        args += ['-p', p]
    log = open(log_path, 'w')  # noqa: SIM115 - closed with the process by the caller
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, 'PYTHONUNBUFFERED': '1'})


def evaluate_live(frames: list[Any], rate_hz: float, loops: int, out: Path,
                  ready_timeout_s: float = 60.0) -> dict[str, Any]:
    """Play the frames through DDS to a running node; record, write output_bag, measure."""
    from perception_3dinn.ros import bagio
    from perception_3dinn.ros.bagdata import records_from_msg
    from perception_3dinn.ros.convert import stamp_to_ns
    from perception_3dinn.ros.replay import LiveReplay

    compressed = hasattr(frames[0].image, 'format')
    replay = LiveReplay(compressed=compressed)
    try:
        replay.wait_ready(ready_timeout_s)
        replay.warm_up(frames[0], ready_timeout_s)
        with tqdm(total=len(frames) * loops, desc='live', unit='frame') as bar:
            sent = []
            for _ in range(loops):
                # Inputs are logged as sent (re-stamped), for the output bag.
                sent += replay.play(frames, rate_hz, restamp=True, progress=bar.update)
        replay.drain()
    finally:
        replay.close()
    by_stamp = {s.stamp_ns: s for s in sent}
    latency, preds, per_frame_latency = [], {}, {}
    for rx, msg in replay.recording.decoded('/chair_detector/objects'):
        s = by_stamp.get(stamp_to_ns(msg.header.stamp))
        if s is None:
            continue
        latency.append((rx - s.stamp_ns) * 1e-6)
        per_frame_latency.setdefault(s.index, []).append(latency[-1])
        preds[s.stamp_ns] = records_from_msg(msg)
    frame_of = {f.index: f for f in frames}
    pred_frames, gt_frames = [], []
    for s in sent:
        if s.stamp_ns in preds:
            f = frame_of[s.index]
            pred_frames.append(preds[s.stamp_ns])
            gt_frames.append(records_from_msg(f.ground_truth) if f.ground_truth else [])
    duration = (sent[-1].sent_ns - sent[0].sent_ns) * 1e-9 if len(sent) > 1 else 0.0
    _write_output_bag(out / 'output_bag', frames, sent, replay.recording, bagio)
    return {'frames_sent': len(sent), 'frames_answered': len(preds),
            'dropped': len(sent) - len(preds), 'rate_hz': rate_hz,
            'output_fps': len(preds) / duration if duration > 0 else float('nan'),
            'latency_ms': _percentiles(latency),
            'accuracy': accuracy(pred_frames, gt_frames, _image_size(frames)),
            '_latency_by_index': per_frame_latency, '_preds_by_stamp': preds, '_sent': sent}


def _write_output_bag(path: Path, frames: list[Any], sent: list[Any], recording: Any,
                      bagio: Any) -> None:
    """Inputs as they were sent (re-stamped) and every output of the node, by receipt time."""
    from perception_3dinn.ros.convert import ns_to_stamp

    if path.exists():
        import shutil

        shutil.rmtree(path)
    frame_of = {f.index: f for f in frames}
    image_topic = (bagio.COMPRESSED_TOPIC if hasattr(frames[0].image, 'format')
                   else bagio.IMAGE_TOPIC)
    with bagio.BagWriter(path) as bag:
        for s in sent:
            f = frame_of[s.index]
            stamp = ns_to_stamp(s.stamp_ns)
            for topic, msg in ((bagio.CAMERA_INFO_TOPIC, f.camera_info),
                               (bagio.DETECTIONS_TOPIC, f.detections),
                               (bagio.GROUND_TRUTH_TOPIC, f.ground_truth),
                               (image_topic, f.image)):
                if msg is not None:
                    msg.header.stamp = stamp
                    bag.write(topic, msg, s.sent_ns)
        for topic, type_name, rx, data in sorted(recording.messages, key=lambda m: m[2]):
            bag.write_raw(topic, type_name, data, rx)


def plots(out: Path, offline: dict | None, live: dict | None) -> list[Path]:
    """latency.png (live latency and offline pipeline time per frame), errors.png."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    written = []
    fig, ax = plt.subplots(figsize=(7, 3.5))
    if live and live['_latency_by_index']:
        idx = sorted(live['_latency_by_index'])
        ax.plot(idx, [min(live['_latency_by_index'][i]) for i in idx], '.', ms=3,
                label='node stamp-to-receipt (live)')
    if offline:
        ax.plot(offline['_frame_ms'], '-', lw=1, label='pipeline per frame (offline)')
    ax.set_xlabel('frame')
    ax.set_ylabel('ms')
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / 'latency.png', dpi=110)
    plt.close(fig)
    written.append(out / 'latency.png')
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for name, res in (('offline', offline), ('live', live)):
        acc = (res or {}).get('accuracy', {}).get('per_object')
        if acc:
            axes[0].hist(acc['geodesic_deg'], bins=30, alpha=0.5, label=name)
            axes[1].hist(acc['translation_m'], bins=30, alpha=0.5, label=name)
    axes[0].set_xlabel('rotation error (deg)')
    axes[1].set_xlabel('translation error (m)')
    for a in axes:
        a.legend()
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / 'errors.png', dpi=110)
    plt.close(fig)
    written.append(out / 'errors.png')
    return written


def annotated_video(path: Path, frames: list[Any], preds: list[list[Any]], fps: float,
                    edges: np.ndarray) -> Path:
    """MP4 of the frames with each object's skeleton (2D keypoints) and 3D axes drawn."""
    import cv2

    # drawFrameAxes warns on every axis that leaves the image; clipping is expected here.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    from perception_3dinn.ros import inputs

    writer = None
    for f, objs in zip(frames, preds):
        img = cv2.cvtColor(inputs.image_to_rgb(f.image), cv2.COLOR_RGB2BGR)
        intr = inputs.camera_info_to_intrinsics(f.camera_info)
        for o in objs:
            kp = o.keypoints_2d
            for a, b in edges:
                cv2.line(img, tuple(int(v) for v in kp[a]), tuple(int(v) for v in kp[b]),
                         (255, 160, 30), 2, cv2.LINE_AA)
            for p, c in zip(kp, o.confidences):
                cv2.circle(img, (int(p[0]), int(p[1])), 3,
                           (0, int(255 * c), int(255 * (1 - c))), -1, cv2.LINE_AA)
            if o.t[2] > 0.05:
                rvec, _ = cv2.Rodrigues(o.R)
                cv2.drawFrameAxes(img, intr.K, np.zeros(5), rvec, o.t.reshape(3, 1), 0.3, 2)
            x0, y0 = int(o.box[0]), int(o.box[1])
            cv2.putText(img, f'#{o.track_id} {o.score:.2f}', (x0, max(12, y0 - 4)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        if writer is None:
            h, w = img.shape[:2]
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), fps, (w, h))
        writer.write(img)
    if writer is not None:
        writer.release()
    return path


def _image_size(frames: list[Any]) -> tuple[int, int] | None:
    """(W, H) of a bag's camera_info, None without one."""
    info = frames[0].camera_info if frames else None
    return (int(info.width), int(info.height)) if info is not None else None


def _public(d: dict | None) -> dict | None:
    if d is None:
        return None
    return {k: v for k, v in d.items() if not k.startswith('_')}


def evaluate(bag: Path, out: Path, offline: bool, live: bool, start: bool, rate_hz: float,
             loops: int, manifest: Path | None, backend: str, num_threads: int,
             floor_frame: str = '') -> dict:
    """Offline and/or live evaluation of a bag; writes metrics.json, plots, video, bag.

    With `floor_frame` the offline run takes the floor from the bag's /tf (and so does a
    node started here); the offline run is then repeated without it, for comparison.
    """
    from perception_3dinn.ros.replay import load_frames
    from perception_3dinn.skeleton import load_category

    out.mkdir(parents=True, exist_ok=True)
    frames = load_frames(bag)
    if not frames:
        raise SystemExit(f'{bag}: no frames')
    result: dict[str, Any] = {'bag': str(bag), 'frames': len(frames), 'backend': backend,
                              'floor_frame': floor_frame}
    off = (evaluate_offline(frames, manifest, backend, num_threads, floor_frame)
           if offline else None)
    if offline and floor_frame:
        result['offline_without_floor'] = _public(
            evaluate_offline(frames, manifest, backend, num_threads))
    liv = None
    if live:
        proc = None
        if start:
            proc = start_node(manifest, backend, hasattr(frames[0].image, 'format'),
                              out / 'node.log',
                              [f'pose.floor_frame:={floor_frame}'] if floor_frame else [])
        try:
            liv = evaluate_live(load_frames(bag), rate_hz, loops, out)
        finally:
            if proc is not None:
                proc.send_signal(2)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
    result['offline'] = _public(off)
    result['live'] = _public(liv)
    if off and liv and liv['latency_ms'] and off['frame_ms']:
        diffs = [min(v) - off['_frame_ms'][i] for i, v in liv['_latency_by_index'].items()
                 if i < len(off['_frame_ms'])]
        result['ros_overhead_ms'] = _percentiles(diffs)
    files = plots(out, off, liv)
    for name, run in (('offline', off), ('live', liv)):
        table = (run or {}).get('accuracy', {}).get('binned')
        if table:
            files.append(binned.plot(table, out / f'binned_{name}.png', f'{bag.name}, {name}'))
            (out / f'binned_{name}.md').write_text(binned.markdown(table, f'{bag.name}, {name}')
                                                   + '\n')
            files.append(out / f'binned_{name}.md')
    cat = load_category('chair')
    if liv:
        preds_by_index = {s.index: liv['_preds_by_stamp'].get(s.stamp_ns, [])
                          for s in liv['_sent'][:len(frames)]}
        preds = [preds_by_index.get(f.index, []) for f in frames]
    else:
        preds = off['_preds'] if off else [[] for _ in frames]
    fps = rate_hz if rate_hz > 0 else 15.0
    files.append(annotated_video(out / 'annotated.mp4', frames, preds, fps, cat.edges))
    if liv:
        files.append(out / 'output_bag')
    (out / 'metrics.json').write_text(json.dumps(result, indent=1) + '\n', encoding='utf-8')
    files.insert(0, out / 'metrics.json')
    result['files'] = [str(f) for f in files]
    return result


def summary(result: dict) -> str:
    """A few lines for a person: objects, accuracy, latency, fps, files."""
    floor = result.get('floor_frame')
    lines = [f'bag {result["bag"]}: {result["frames"]} frames, backend {result["backend"]}, '
             + (f'floor from TF frame {floor!r}' if floor else 'no floor (size model only)')]
    for name in ('offline', 'offline_without_floor', 'live'):
        r = result.get(name)
        if not r:
            continue
        acc = r['accuracy']
        label = 'no floor' if name == 'offline_without_floor' else name
        text = (f'{label:8s} objects {acc["predicted_objects"]} (ground truth '
                f'{acc["ground_truth_objects"]}, matched {acc["matched"]})')
        if 'rotation' in acc:
            text += (f'; rotation median {acc["rotation"]["median_deg"]:.1f} deg, translation '
                     f'median {acc["translation_m"]["median"]:.3f} m '
                     f'({100 * acc["translation_rel_distance_median"]:.1f} % of distance)')
            if 'pck@0.1' in acc:
                text += f', PCK@0.1 {acc["pck@0.1"]:.2f}'
        lines.append(text)
        if name == 'offline_without_floor':
            continue
        if name == 'offline':
            lines.append(f'         pipeline {r["frame_ms"]["p50"]:.1f} ms/frame p50 '
                         f'(network {r["network_ms"]["p50"]:.1f} ms)')
        else:
            lat = r['latency_ms']
            if lat:
                lines.append(f'         latency p50 {lat["p50"]:.1f} ms, p95 {lat["p95"]:.1f} '
                             f'ms; {r["frames_answered"]}/{r["frames_sent"]} frames answered '
                             f'({r["dropped"]} dropped), {r["output_fps"]:.1f} fps out')
    if result.get('ros_overhead_ms'):
        lines.append(f'ROS overhead (live - offline) p50 {result["ros_overhead_ms"]["p50"]:.1f}'
                     ' ms/frame')
    return '\n'.join(lines)


# ---------------------------------------------------------------------------------------------
# CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='python -m training.bag', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest='command', required=True)
    m = sub.add_parser('make-demo', help='write the demo bag from a synthetic video')
    m.add_argument('--out', type=Path, default=DEFAULT_BAG, help='rosbag2 folder to write')
    m.add_argument('--seed', type=int, default=7, help='seed of the video and the detector')
    m.add_argument('--frames', type=int, default=90, help='number of frames')
    m.add_argument('--width', type=int, default=640, help='image width (height = 3/4)')
    m.add_argument('--fps', type=float, default=15.0, help='frame rate of the stamps')
    m.add_argument('--raw', action='store_true', help='sensor_msgs/Image instead of JPEG')
    m.add_argument('--force', action='store_true', help='overwrite an existing bag')
    m.add_argument('--tf-tilt-bias-deg', type=float, default=1.0,
                   help='calibration error of the /tf floor -> camera pose: tilt, degrees')
    m.add_argument('--tf-height-bias-m', type=float, default=0.02,
                   help='calibration error of the /tf floor -> camera pose: height, metres')
    m.add_argument('--domain', default='default', choices=('default', 'shifted'),
                   help='render style: shifted = colours, lighting, floor and lens never '
                        'used in training (training.synth.videos.shift_video_look)')
    e = sub.add_parser('evaluate', help='evaluate a bag offline and/or live through the node')
    e.add_argument('--bag', type=Path, default=DEFAULT_BAG, help='input rosbag2 folder')
    e.add_argument('--out', type=Path, default=DEFAULT_EVAL, help='output folder')
    e.add_argument('--offline', action='store_true', help='run the pipeline in-process')
    e.add_argument('--live', action='store_true', help='play the bag to the node over DDS')
    e.add_argument('--start-node', action='store_true',
                   help='start the chair_detector node for --live (else it must be running)')
    e.add_argument('--rate', type=float, default=15.0, help='live playback rate, frames/s')
    e.add_argument('--loops', type=int, default=1, help='live playback loops')
    e.add_argument('--model', type=Path, default=None, help='manifest.json (default: packaged)')
    e.add_argument('--backend', default='onnxruntime', choices=('onnxruntime', 'torch',
                                                                'tensorrt'))
    e.add_argument('--threads', type=int, default=1, help='engine threads (offline)')
    e.add_argument('--floor-frame', default='',
                   help='TF frame of the floor in the bag (make-demo writes "floor"): the '
                        'floor plane then fixes the metric scale, offline and in a node started '
                        'with --start-node (give a running node pose.floor_frame yourself)')
    return p


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == 'make-demo':
        if args.out.exists():
            if not args.force:
                sys.exit(f'{args.out} exists (use --force to overwrite)')
            import shutil

            shutil.rmtree(args.out)
        counts = make_demo(args.out, args.seed, args.frames, args.width, args.fps,
                           not args.raw, DetectionNoise(), tilt_bias_deg=args.tf_tilt_bias_deg,
                           height_bias_m=args.tf_height_bias_m, domain=args.domain)
        size = sum(p.stat().st_size for p in args.out.rglob('*') if p.is_file())
        print(f'wrote {args.out} ({size / 1e6:.1f} MB): '
              + ', '.join(f'{t} {n}' for t, n in sorted(counts.items())))
        return
    if not (args.offline or args.live):
        args.offline = args.live = True
    result = evaluate(args.bag, args.out, args.offline, args.live, args.start_node, args.rate,
                      args.loops, args.model, args.backend, args.threads, args.floor_frame)
    print(summary(result))
    print('wrote: ' + ', '.join(result['files']))


if __name__ == '__main__':
    main()
