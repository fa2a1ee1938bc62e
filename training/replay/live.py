"""The bag through the real node over DDS: start it, play the frames (re-stamped with the
wall clock, so receipt minus stamp is the node's latency), record every output, measure,
and write output_bag/ (the inputs as sent plus the node's outputs)."""

from __future__ import annotations

from collections.abc import Mapping
import os
from pathlib import Path
import subprocess
from typing import Any

from tqdm import tqdm

from training.replay.accuracy import accuracy, image_size
from training.replay.report import percentiles

REPO = Path(__file__).resolve().parents[2]


def node_category_params(models: Mapping[str, Path]) -> list[str]:
    """`name:=value` overrides that make the node serve `models` (category -> manifest):
    the ``categories`` and ``model.manifests`` parameters (docs/node.md)."""
    names = ','.join(f"'{name}'" for name in models)
    manifests = ','.join(f"'{name}:{path}'" for name, path in models.items())
    return [f'categories:=[{names}]', f'model.manifests:=[{manifests}]']


def start_node(manifest: Path | None, backend: str, compressed: bool, log_path: Path,
               extra_params: tuple[str, ...] | list[str] = (),
               models: Mapping[str, Path] | None = None) -> subprocess.Popen:
    """Start the chair_detector executable (autostart) with the packaged config.

    Args:
        manifest: the model of the single category (default: the packaged one).
        extra_params: more `name:=value` parameter overrides.
        models: category -> manifest.json: serve these categories (`manifest` unused).
    """
    from perception_3dinn.ros.distro import node_executable

    args = [str(node_executable()), '--ros-args',
            '--params-file', str(REPO / 'config' / 'chair_detector.yaml'),
            '-p', 'autostart:=true', '-p', f'model.backend:={backend}',
            '-p', f'input.compressed:={"true" if compressed else "false"}']
    if models:
        for p in node_category_params(models):
            args += ['-p', p]
    elif manifest is not None:
        args += ['-p', f'model.manifest:={manifest}']
    for p in extra_params:
        args += ['-p', p]
    log = open(log_path, 'w')  # noqa: SIM115 - closed with the process by the caller
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, 'PYTHONUNBUFFERED': '1'})


def stop_node(proc: subprocess.Popen | None) -> None:
    """SIGINT, then kill after 15 s."""
    if proc is None:
        return
    proc.send_signal(2)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def evaluate_live(frames: list[Any], rate_hz: float, loops: int, out: Path,
                  ready_timeout_s: float = 60.0,
                  categories: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Play the frames through DDS to a running node; record, write output_bag, measure
    (accuracy per category with `categories`, name -> Category, for their symmetries)."""
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
    write_output_bag(out / 'output_bag', frames, sent, replay.recording, bagio)
    return {'frames_sent': len(sent), 'frames_answered': len(preds),
            'dropped': len(sent) - len(preds), 'rate_hz': rate_hz,
            'output_fps': len(preds) / duration if duration > 0 else float('nan'),
            'latency_ms': percentiles(latency),
            'accuracy': accuracy(pred_frames, gt_frames, image_size(frames), categories),
            '_latency_by_index': per_frame_latency, '_preds_by_stamp': preds, '_sent': sent}


def write_output_bag(path: Path, frames: list[Any], sent: list[Any], recording: Any,
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
