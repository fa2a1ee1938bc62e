"""The input side of the `chair_detector` node: subscriptions, their callbacks, checks and
warnings.

`NodeInputs` is a mixin of `perception_3dinn.ros.node.ChairDetector` (it uses the state that
the node's __init__ creates: settings, stats, pairer, guard, slot, TF buffer, intrinsics).
Every message is checked at arrival (`perception_3dinn.ros.inputs`); what cannot be used is
counted in /diagnostics and warned about, throttled per kind, and the node goes on.
"""

from __future__ import annotations

import math
import time
from typing import Any

from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    qos_policy_name_from_kind,
    QoSProfile,
    ReliabilityPolicy,
)
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from tf2_msgs.msg import TFMessage
from vision_msgs.msg import Detection2DArray

from perception_3dinn.ros import convert, inputs
from perception_3dinn.ros.params import NodeSettings
from perception_3dinn.tf_buffer import floor_in_camera, TransformLookupError

IMAGE_TOPIC = 'camera/image_raw'
CAMERA_INFO_TOPIC = 'camera/camera_info'
DETECTIONS_TOPIC = 'detections'
WARN_PERIOD_S = 5.0


def qos_profile(reliability: str, depth: int) -> QoSProfile:
    """KEEP_LAST, volatile QoS of the given reliability ('reliable' or 'best_effort')."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=int(depth),
        reliability=(ReliabilityPolicy.RELIABLE if reliability == 'reliable'
                     else ReliabilityPolicy.BEST_EFFORT),
        durability=DurabilityPolicy.VOLATILE)


TF_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                    reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)
TF_STATIC_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                           reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)
def latched_qos(depth: int = 1) -> QoSProfile:
    """Reliable, transient-local QoS keeping the last ``depth`` messages (skeleton_info: one
    per served category)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=max(1, depth),
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


class NodeInputs:
    """Subscriptions and input callbacks of the node (a mixin of ChairDetector)."""

    # ---------------------------------------------------------------- logging helpers

    def warn_throttled(self, key: str, text: str) -> None:
        """Warn at most once per WARN_PERIOD_S per `key`, saying how many were suppressed."""
        now = time.monotonic()
        last, suppressed = self._warned.get(key, (-math.inf, 0))
        if now - last < WARN_PERIOD_S:
            self._warned[key] = (last, suppressed + 1)
            return
        extra = f' ({suppressed} similar in the last {WARN_PERIOD_S:.0f} s)' if suppressed else ''
        self._warned[key] = (now, 0)
        self.get_logger().warning(text + extra)

    def warn_once(self, key: str, text: str) -> None:
        """Warn the first time `key` comes up in this process's life, never again."""
        if key not in self._said_once:
            self._said_once.add(key)
            self.get_logger().warning(text + ' (said once)')

    def _say_notes(self, notes: inputs.Notes, counter: str) -> None:
        """Input fields that were not used as sent: counted, and said once per kind."""
        for kind, text in notes:
            self.stats.count(f'{counter}.{kind}')
            self.warn_once(f'{counter}:{kind}', text)

    # ---------------------------------------------------------------- subscriptions

    def _subscribe(self, settings: NodeSettings) -> None:
        img_qos = qos_profile(settings['input.image_qos_reliability'],
                              settings['input.image_qos_depth'])

        def events(topic: str, param: str) -> SubscriptionEventCallbacks:
            return SubscriptionEventCallbacks(
                incompatible_qos=lambda info: self._on_requested_incompatible(topic, param, info))

        if settings['input.compressed']:
            topic = IMAGE_TOPIC + '/compressed'
            self._subs.append(self.create_subscription(
                CompressedImage, topic, self._on_image, img_qos,
                event_callbacks=events(topic, 'input.image_qos_reliability')))
        else:
            self._subs.append(self.create_subscription(
                Image, IMAGE_TOPIC, self._on_image, img_qos,
                event_callbacks=events(IMAGE_TOPIC, 'input.image_qos_reliability')))
        self._subs.append(self.create_subscription(
            CameraInfo, CAMERA_INFO_TOPIC, self._on_camera_info, img_qos,
            event_callbacks=events(CAMERA_INFO_TOPIC, 'input.image_qos_reliability')))
        if settings['input.use_detections']:
            det_qos = qos_profile(settings['input.detections_qos_reliability'],
                           settings['input.detections_qos_depth'])
            self._subs.append(self.create_subscription(
                Detection2DArray, DETECTIONS_TOPIC, self._on_detections, det_qos,
                event_callbacks=events(DETECTIONS_TOPIC, 'input.detections_qos_reliability')))
        if self._tf is not None:
            self._subs.append(self.create_subscription(
                TFMessage, '/tf', lambda msg: self._on_tf(msg, False), TF_QOS))
            self._subs.append(self.create_subscription(
                TFMessage, '/tf_static', lambda msg: self._on_tf(msg, True), TF_STATIC_QOS))

    def _unsubscribe(self) -> None:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []

    def _on_requested_incompatible(self, topic: str, param: str, info: Any) -> None:
        policy = qos_policy_name_from_kind(info.last_policy_kind)
        self.stats.count('qos_incompatible')
        self.warn_throttled(
            f'qos:{topic}',
            f'incompatible QoS on {self.resolve_topic_name(topic)}: a publisher does not offer '
            f'the {policy} this node requests, so none of its messages arrive '
            f'({info.total_count} such publishers so far); set {param} to match the '
            'publisher (best_effort accepts both)')

    def _on_offered_incompatible(self, info: Any) -> None:
        policy = qos_policy_name_from_kind(info.last_policy_kind)
        self.stats.count('qos_incompatible')
        self.warn_throttled(
            f'qos_out:{policy}',
            f"incompatible QoS: a subscriber to one of this node's outputs requests a "
            f'{policy} the node does not offer; it receives nothing. Set '
            'output.qos_reliability / output.qos_depth, or change the subscriber')

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.stats.count('camera_info')
        notes: inputs.Notes = []
        max_pixels = self.settings['input.max_image_pixels'] if self.settings else 0
        try:
            intr = inputs.camera_info_to_intrinsics(msg, notes, max_pixels)
        except inputs.InputError as err:
            self.stats.count('bad.camera_info')
            self.warn_throttled(f'camera_info:{err.kind}',
                                f'{err}; keeping the last valid camera_info')
            return
        self._say_notes(notes, 'ignored.camera_info')
        with self._intr_lock:
            self._intrinsics = intr

    def _on_tf(self, msg: TFMessage, static: bool) -> None:
        assert self._tf is not None and self.settings is not None and self.category is not None
        prefix = self.settings['output.frame_prefix']
        own = tuple(prefix + name + '_' for name in self.categories)
        _, errors = convert.store_tf_message(self._tf, msg, static, skip_prefix=own)
        if errors:
            self.stats.count('bad.tf', len(errors))
            self.warn_throttled('tf', f'transforms ignored: {"; ".join(errors[:3])}')

    def _floor_at(self, settings: NodeSettings, camera_frame: str, stamp_ns: int) -> Any:
        """The floor plane in the camera frame at `stamp_ns` from TF, None if unavailable."""
        floor_frame = settings['pose.floor_frame']
        try:
            plane = floor_in_camera(self._tf, camera_frame, floor_frame, stamp_ns,
                                    int(settings['pose.tf_tolerance_s'] * 1e9))
        except (TransformLookupError, ValueError) as err:
            self.stats.count('floor.unavailable')
            if floor_frame not in self._tf.frames():
                self.stats.count('floor.frame_missing')
                self.warn_throttled(
                    'floor_missing', f'pose.floor_frame {floor_frame!r} is not in TF (no '
                    f'transform received names it): no floor, metric scale from the size '
                    f'model only, which is less accurate with distance (README, "Using the '
                    f'floor"). Publish the floor frame, name another one (launch argument '
                    f"floor_frame), or set it to '' to go without")
                return None
            self.warn_throttled(
                'floor', f'no floor for this image (pose.floor_frame {floor_frame!r} in '
                f'{camera_frame!r}): {err}; metric scale from the size model only')
            return None
        self.stats.count('floor.from_tf')
        return plane

    def _on_image(self, msg: Image | CompressedImage) -> None:
        self.stats.count('image')
        assert self._guard is not None and self._pairer is not None
        try:
            stamp_ns = inputs.header_stamp_ns(msg.header.stamp, 'image')
        except inputs.InputError as err:
            self.stats.count('bad.stamp')
            self.warn_throttled('stamp:invalid', f'{err}: frame dropped')
            return
        self.stats.add(input_delay_ms=(self._now_ns() - stamp_ns) * 1e-6)
        verdict = self._guard.check(stamp_ns)
        if verdict == 'ahead':
            self.stats.count('dropped.ahead')
            self.warn_throttled(
                'stamp:ahead',
                f'image stamp {stamp_ns * 1e-9:.6f} s is more than input.max_stamp_ahead_s = '
                f'{self.settings["input.max_stamp_ahead_s"]:g} s ahead of the last one '
                f'({(self._guard.last_ns or 0) * 1e-9:.6f} s): frame dropped (accepted as a '
                f'forward clock jump after {self._guard.confirm} such frames in a row)')
            return
        if verdict in ('duplicate', 'out_of_order'):
            self.stats.count(f'dropped.{verdict}')
            self.warn_throttled(
                f'stamp:{verdict}',
                f'image stamp {stamp_ns * 1e-9:.6f} s is {verdict.replace("_", " ")} (last '
                f'{(self._guard.last_ns or 0) * 1e-9:.6f} s): frame dropped. Give every image '
                'a new, increasing stamp')
            return
        if verdict == 'jump':
            self._request_reset(f'image stamps jumped back to {stamp_ns * 1e-9:.3f} s',
                                stamp_ns)
        elif verdict == 'jump_ahead':
            self._request_reset(f'image stamps jumped ahead to {stamp_ns * 1e-9:.3f} s',
                                stamp_ns)
        if self.settings is not None and self.settings['input.use_detections']:
            pair = self._pairer.add_image(stamp_ns, msg)
            self._check_near_misses()
        else:
            pair = (stamp_ns, msg, None)
        if pair is not None:
            self._hand_over(pair)

    def _on_detections(self, msg: Detection2DArray) -> None:
        self.stats.count('detections')
        assert self._pairer is not None
        try:
            stamp_ns = inputs.header_stamp_ns(msg.header.stamp, 'detections')
        except inputs.InputError as err:
            self.stats.count('bad.stamp')
            self.warn_throttled('stamp:invalid_detections', f'{err}: detections dropped')
            return
        pair = self._pairer.add_detections(stamp_ns, msg)
        self._check_near_misses()
        if pair is not None:
            self._hand_over(pair)

    def _check_near_misses(self) -> None:
        """Warn when images were dropped whose detections came a little beyond the slop."""
        assert self._pairer is not None and self.settings is not None
        stats = self._pairer.stats
        if stats.near_misses > self._near_misses_seen:
            self._near_misses_seen = stats.near_misses
            self.warn_throttled(
                'sync:near_miss',
                f'image dropped: its nearest detections were {stats.last_near_miss_ns * 1e-3:.0f}'
                f' us away, more than input.sync_slop_s = {self.settings["input.sync_slop_s"]:g}'
                ' s. Give detections the stamp of their image, or raise input.sync_slop_s')

    def _hand_over(self, pair: tuple[int, Any, Any]) -> None:
        if self._slot.put((*pair, time.time_ns())):
            self.stats.count('dropped.latest_wins')
        # Give up the GIL now, so the worker starts on the frame at once instead of after
        # the executor's next wait-set rebuild (bench_node: queue p50 0.25-0.32 -> 0.08 ms).
        time.sleep(0)

    def _on_clock_jump(self, jump: Any) -> None:
        self._request_reset('the ROS clock jumped back')

    def _request_reset(self, why: str, stamp_ns: int | None = None) -> None:
        self.stats.count('clock_jumps')
        self.warn_throttled('clock_jump', f'{why}: resetting tracks and pairing (bag loop?)')
        if self._pairer is not None:
            if stamp_ns is None:
                self._pairer.reset()
            else:
                self._pairer.drop_newer_than(stamp_ns)
        self._slot.clear()
        self._reset_requested.set()

    def _reset_inputs(self) -> None:
        if self._pairer is not None:
            self._pairer.reset()
        if self._guard is not None:
            self._guard.reset()
        self._slot.clear()
        with self._intr_lock:
            self._intrinsics = None
        self._track_ids = convert.TrackIds()
        self._last_voxel_markers = -math.inf
        self._near_misses_seen = self._pairer.stats.near_misses if self._pairer else 0
        self._image_loss.reset()

    def _say_detection_notes(self, notes: inputs.Notes) -> None:
        """Invalid hypotheses are bad input (counted, throttled); a rotated box is used as its
        axis-aligned hull (counted, said once)."""
        for kind, text in notes:
            if kind == 'hypothesis':
                self.stats.count('bad.hypotheses')
                self.warn_throttled('hypothesis', text)
            else:
                self.stats.count(f'ignored.detections.{kind}')
                self.warn_once(f'detections:{kind}', text)
