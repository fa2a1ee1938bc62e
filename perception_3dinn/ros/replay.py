"""Replay a camera bag through DDS to a running chair_detector and record what it publishes.

`load_frames` groups a bag's messages into frames (image + camera_info + detections +
ground truth, by the image stamp). `LiveReplay` is a small rclpy participant that publishes
those frames at a chosen rate (re-stamped with the current time, so stamp-to-receipt is the
node's latency) and records every output of the node as serialised bytes with its receipt
time, ready to be written to an output bag.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
import threading
import time
from typing import Any

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from tf2_msgs.msg import TFMessage
from vision_msgs.msg import Detection2DArray

from perception_3dinn.ros import bagio
from perception_3dinn.ros.convert import ns_to_stamp, stamp_to_ns


@dataclass
class ReplayFrame:
    """One input frame of a bag, keyed by the image stamp.

    Attributes:
        index: frame number in the bag.
        stamp_ns: the image header stamp in the bag.
        image: sensor_msgs Image or CompressedImage.
        camera_info, detections, ground_truth: the messages with the same stamp (or the
            latest camera_info before it), None when the bag has none.
        tf: the /tf transforms with the image's stamp (TFMessage), None when none.
    """

    index: int
    stamp_ns: int
    image: Any
    camera_info: CameraInfo | None = None
    detections: Detection2DArray | None = None
    ground_truth: Any = None
    tf: TFMessage | None = None


def load_frames(path: str | Path) -> list[ReplayFrame]:
    """Frames of a bag written by `training.bag make-demo` (or any bag with those topics)."""
    topics = bagio.bag_topics(path)
    image_topic = (bagio.COMPRESSED_TOPIC if bagio.COMPRESSED_TOPIC in topics
                   else bagio.IMAGE_TOPIC)
    if image_topic not in topics:
        raise ValueError(f'{path}: no {bagio.IMAGE_TOPIC} or {bagio.COMPRESSED_TOPIC} topic '
                         f'(topics: {", ".join(sorted(topics))})')
    frames: dict[int, ReplayFrame] = {}
    by_stamp: dict[str, dict[int, Any]] = {'det': {}, 'gt': {}, 'tf': {}}
    infos: list[tuple[int, CameraInfo]] = []
    wanted = [image_topic, bagio.CAMERA_INFO_TOPIC, bagio.DETECTIONS_TOPIC,
              bagio.GROUND_TRUTH_TOPIC, bagio.TF_TOPIC]
    for topic, _, msg in bagio.read_bag(path, wanted):
        if topic == bagio.TF_TOPIC:
            for tr in msg.transforms:
                s = stamp_to_ns(tr.header.stamp)
                by_stamp['tf'].setdefault(s, TFMessage()).transforms.append(tr)
            continue
        s = stamp_to_ns(msg.header.stamp)
        if topic == image_topic:
            frames[s] = ReplayFrame(len(frames), s, msg)
        elif topic == bagio.CAMERA_INFO_TOPIC:
            infos.append((s, msg))
        elif topic == bagio.DETECTIONS_TOPIC:
            by_stamp['det'][s] = msg
        else:
            by_stamp['gt'][s] = msg
    infos.sort(key=lambda x: x[0])
    out = sorted(frames.values(), key=lambda f: f.stamp_ns)
    k = -1
    for i, f in enumerate(out):
        f.index = i
        while k + 1 < len(infos) and infos[k + 1][0] <= f.stamp_ns:
            k += 1
        f.camera_info = infos[k][1] if k >= 0 else None
        f.detections = by_stamp['det'].get(f.stamp_ns)
        f.ground_truth = by_stamp['gt'].get(f.stamp_ns)
        f.tf = by_stamp['tf'].get(f.stamp_ns)
    return out


@dataclass
class SentFrame:
    """What the player sent: frame index, the stamp it carried, wall time of publishing."""

    index: int
    stamp_ns: int
    sent_ns: int


@dataclass
class Recording:
    """Raw outputs of the node: (topic, type, receipt wall time ns, CDR bytes)."""

    messages: list[tuple[str, str, int, bytes]] = field(default_factory=list)

    def decoded(self, topic: str) -> list[tuple[int, Any]]:
        """(receipt ns, message) of one topic."""
        cls = bagio.message_class(bagio.OUTPUT_TOPICS[topic])
        return [(t, deserialize_message(data, cls)) for tp, _, t, data in self.messages
                if tp == topic]


class LiveReplay:
    """Publishes frames to the node's inputs and records all of its outputs."""

    def __init__(self, compressed: bool, node_name: str = 'chair_detector',
                 topics: Collection[str] | None = None) -> None:
        """`topics`: the outputs to subscribe and record (keys of `bagio.OUTPUT_TOPICS`);
        None: all. The node builds only the outputs somebody subscribes to."""
        objects_topic = '/chair_detector/objects'
        if topics is not None and objects_topic not in topics:
            raise ValueError(f'LiveReplay: topics must include {objects_topic}')
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('p3_bag_replay', context=self.context)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.compressed = compressed
        if compressed:
            self.pub_image = self.node.create_publisher(CompressedImage,
                                                        bagio.COMPRESSED_TOPIC, reliable)
        else:
            self.pub_image = self.node.create_publisher(Image, bagio.IMAGE_TOPIC, reliable)
        self.pub_info = self.node.create_publisher(CameraInfo, bagio.CAMERA_INFO_TOPIC,
                                                   reliable)
        self.pub_det = self.node.create_publisher(Detection2DArray, bagio.DETECTIONS_TOPIC,
                                                  reliable)
        self.pub_tf = self.node.create_publisher(
            TFMessage, bagio.TF_TOPIC, QoSProfile(depth=100,
                                                  reliability=ReliabilityPolicy.RELIABLE))
        self.recording = Recording()
        self._lock = threading.Lock()
        self._last_rx = time.monotonic()
        self._subs = []
        for topic, type_name in bagio.OUTPUT_TOPICS.items():
            if topics is not None and topic not in topics:
                continue
            topic = topic.replace('/chair_detector/', f'/{node_name}/')
            depth = 100 if topic == '/tf' else 50
            durability = (DurabilityPolicy.TRANSIENT_LOCAL if topic.endswith('skeleton_info')
                          else DurabilityPolicy.VOLATILE)
            qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE,
                             durability=durability)
            sub = self.node.create_subscription(
                bagio.message_class(type_name), topic,
                lambda data, topic=topic, type_name=type_name: self._store(topic, type_name,
                                                                          data),
                qos, raw=True)
            self._subs.append(sub)
            if topic.endswith('/objects'):
                self._objects_sub = sub
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._spinner = threading.Thread(target=self._spin, daemon=True)
        self._stop = threading.Event()
        self._spinner.start()

    def _spin(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def _store(self, topic: str, type_name: str, data: bytes) -> None:
        now = time.time_ns()
        with self._lock:
            self.recording.messages.append((topic, type_name, now, bytes(data)))
            if topic != '/diagnostics':  # periodic, not an answer to a frame
                self._last_rx = time.monotonic()

    def close(self) -> None:
        self._stop.set()
        self._spinner.join(timeout=5)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Wait until the node subscribes to every input and publishes its objects."""
        deadline = time.monotonic() + timeout_s
        pubs = (self.pub_image, self.pub_info, self.pub_det)
        while time.monotonic() < deadline:
            if (all(p.get_subscription_count() > 0 for p in pubs)
                    and self._objects_sub.get_publisher_count() > 0):
                return
            time.sleep(0.05)
        raise TimeoutError('the chair_detector node did not appear within '
                           f'{timeout_s:.0f} s (is it running and active, on this '
                           'ROS_DOMAIN_ID, with input.compressed matching the bag?)')

    def warm_up(self, frame: ReplayFrame, timeout_s: float = 30.0) -> None:
        """Send `frame` (re-stamped) every 0.5 s until the node answers one, then forget
        what was recorded (but the latched skeleton_info).

        A best-effort reader drops what arrives before it has matched this writer, which
        `wait_ready` cannot see from this side; without a warm-up the first frames of a run
        may be lost to discovery rather than to the node.
        """
        objects_topic = next(t for t, n in bagio.OUTPUT_TOPICS.items()
                             if n.endswith('ObjectStructureArray'))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            before = len(self.recording.messages)
            self.play([frame], rate_hz=2.0)
            t_end = time.monotonic() + 0.5
            while time.monotonic() < t_end:
                with self._lock:
                    got = any(m[0] == objects_topic
                              for m in self.recording.messages[before:])
                if got:
                    self.drain(idle_s=0.3, max_s=5.0)
                    with self._lock:
                        self.recording.messages = [
                            m for m in self.recording.messages
                            if m[0].endswith('skeleton_info')]
                    return
                time.sleep(0.02)
        raise TimeoutError(f'the node did not answer a frame within {timeout_s:.0f} s')

    def play(self, frames: Iterable[ReplayFrame], rate_hz: float, restamp: bool = True,
             progress: Callable[[], None] | None = None,
             stamp_shift_ns: int = 0) -> list[SentFrame]:
        """Publish frames at `rate_hz` (camera_info, detections, /tf, then the image).

        With `restamp`, every header gets the current wall time minus `stamp_shift_ns`, so
        receipt minus stamp (plus the shift) is the stamp-to-publish latency of the node plus
        transport; a larger shift than before makes the stamps jump back, as a bag that loops.
        """
        sent = []
        period = 1.0 / rate_hz
        t0 = time.monotonic()
        for k, frame in enumerate(frames):
            delay = t0 + k * period - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            now = time.time_ns()
            stamp = ns_to_stamp(now - stamp_shift_ns if restamp else frame.stamp_ns)
            if frame.camera_info is not None:
                frame.camera_info.header.stamp = stamp
                self.pub_info.publish(frame.camera_info)
            if frame.detections is not None:
                frame.detections.header.stamp = stamp
                for det in frame.detections.detections:
                    det.header.stamp = stamp
                self.pub_det.publish(frame.detections)
            if frame.tf is not None:
                for tr in frame.tf.transforms:
                    tr.header.stamp = stamp
                self.pub_tf.publish(frame.tf)
            frame.image.header.stamp = stamp
            self.pub_image.publish(frame.image)
            sent.append(SentFrame(frame.index, stamp_to_ns(stamp), now))
            if progress is not None:
                progress()
        return sent

    def take_recording(self) -> Recording:
        """What was recorded so far; the recording starts afresh (for long runs)."""
        with self._lock:
            taken, self.recording = self.recording, Recording()
        return taken

    def drain(self, idle_s: float = 1.5, max_s: float = 20.0) -> None:
        """Wait until no per-frame output arrived for `idle_s` (at most `max_s`)."""
        deadline = time.monotonic() + max_s
        while time.monotonic() < deadline:
            with self._lock:
                idle = time.monotonic() - self._last_rx
            if idle >= idle_s:
                return
            time.sleep(0.05)
