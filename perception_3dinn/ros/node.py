"""The `chair_detector` lifecycle node: camera + 2D detections -> 3D object structure.

Thin ROS shell over `perception_3dinn.inference.Pipeline`:

- on_configure reads and validates the parameters, loads the category, creates the
  publishers and the diagnostics timer;
- on_activate loads the model (a clear error, not a traceback, when it cannot), starts the
  worker thread and subscribes to the inputs;
- on_deactivate unsubscribes, stops the worker and frees the model; on_cleanup destroys
  the publishers.

Images and detections are paired by stamp (`sync.StampPairer`), the newest pair waits in a
one-item mailbox (`sync.LatestSlot`, latest wins, drops counted) and a worker thread runs
the pipeline and publishes every output with the input image's stamp.

Run: ``chair_detector --ros-args --params-file config/chair_detector.yaml``.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from typing import Any

import rclpy
from rclpy.duration import Duration
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.exceptions import InvalidParameterValueException, ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    qos_policy_name_from_kind,
    QoSProfile,
    ReliabilityPolicy,
)
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage
from vision_msgs.msg import Detection2DArray, Detection3DArray
from visualization_msgs.msg import MarkerArray

from perception_3dinn.ros import convert, diagnostics, markers
from perception_3dinn.ros.memory import keep_large_buffers
from perception_3dinn.ros.params import declare_parameters, NodeSettings, read_settings
from perception_3dinn.ros.pm_qos import CpuWakeupLatency
from perception_3dinn.ros.pm_qos import DEVICE as PM_QOS_DEVICE
from perception_3dinn.ros.sync import LatestSlot, StampGuard, StampPairer
from perception_3dinn.skeleton import Category, load_category
from perception_3dinn.tf_buffer import floor_in_camera, TransformBuffer, TransformLookupError
from perception_3dinn_msgs.msg import ObjectStructureArray, SkeletonInfo, VoxelGridArray

NODE_NAME = 'chair_detector'
IMAGE_TOPIC = 'camera/image_raw'
CAMERA_INFO_TOPIC = 'camera/camera_info'
DETECTIONS_TOPIC = 'detections'
WARN_PERIOD_S = 5.0
# Outputs published first, as soon as they are built: what a grasping pipeline waits for.
PRIMARY_OUTPUTS = frozenset({'objects', 'tf'})
# Skip reasons of the pipeline that are configured filtering, not bad input; a NaN or -inf
# detector score is bad input although the pipeline reports it as below min_box_score.
_FILTER_WORDS = ('class', 'score', 'min_box_size_px', 'max_objects')
_BAD_SCORE_WORDS = ('score nan', 'score -inf')


def _is_bad_box(reason: str) -> bool:
    """True when the pipeline's skip `reason` means bad input rather than filtering."""
    return (not any(word in reason for word in _FILTER_WORDS)
            or any(word in reason for word in _BAD_SCORE_WORDS))


def _qos(reliability: str, depth: int) -> QoSProfile:
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
LATCHED_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                         reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)


class ChairDetector(LifecycleNode):
    """Lifecycle node publishing 3D skeletons, poses (TF), voxels and markers per object."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        declare_parameters(self)
        self.settings: NodeSettings | None = None
        self.category: Category | None = None
        self.stats = diagnostics.NodeStats()
        self._pipe: Any = None
        self._floor: Any = None  # FloorPlane from pose.floor_plane, or None
        self._tf: Any = None  # TransformBuffer when pose.floor_frame is set
        self._backend = ''
        self._slot = LatestSlot()
        self._pairer: StampPairer | None = None
        self._guard: StampGuard | None = None
        self._worker: threading.Thread | None = None
        self._running = threading.Event()
        self._reset_requested = threading.Event()
        self._intr_lock = threading.Lock()
        self._intrinsics: Any = None
        self._track_ids = convert.TrackIds()
        self._pubs: dict[str, Any] = {}
        self._subs: list[Any] = []
        self._diag_pub: Any = None
        self._diag_timer: Any = None
        self._warned: dict[str, tuple[float, int]] = {}
        self._active = False
        self._jump_handle: Any = None
        self._last_voxel_markers = -math.inf
        self._wakeup: CpuWakeupLatency | None = None  # system.cpu_dma_latency_us

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

    # ---------------------------------------------------------------- lifecycle

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        settings = read_settings(self)
        try:
            self.category = load_category(settings['category'])
            settings.pipeline_config()
            self._floor = settings.floor_plane()
        except (FileNotFoundError, ValueError) as err:
            self.get_logger().error(f'configure failed: {err}')
            return TransitionCallbackReturn.FAILURE
        manifest = settings.manifest_path()
        if not manifest.is_file():
            self.get_logger().error(
                f'configure failed: model manifest {manifest} does not exist; set '
                'model.manifest to a manifest.json written by training.export')
            return TransitionCallbackReturn.FAILURE
        self.settings = settings
        self._tf = TransformBuffer() if settings['pose.floor_frame'] else None
        if settings['input.keep_large_buffers'] and not keep_large_buffers():
            self.get_logger().info('input.keep_large_buffers: not glibc, left as it is')
        out_qos = _qos(settings['output.qos_reliability'], settings['output.qos_depth'])
        events = PublisherEventCallbacks(incompatible_qos=self._on_offered_incompatible)
        make = self.create_lifecycle_publisher
        self._pubs = {
            'objects': make(ObjectStructureArray, '~/objects', out_qos, event_callbacks=events),
            'markers': make(MarkerArray, '~/markers', out_qos, event_callbacks=events),
            'voxels': make(VoxelGridArray, '~/voxels', out_qos, event_callbacks=events),
            'detections3d': make(Detection3DArray, '~/detections_3d', out_qos,
                                 event_callbacks=events),
            'tf': make(TFMessage, '/tf', TF_QOS, event_callbacks=events),
            'skeleton': make(SkeletonInfo, '~/skeleton_info', LATCHED_QOS),
        }
        from diagnostic_msgs.msg import DiagnosticArray

        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._diag_timer = self.create_timer(settings['diagnostics.period_s'],
                                             self._publish_diagnostics)
        threshold = settings['input.clock_jump_threshold_s']
        self._pairer = StampPairer(int(settings['input.sync_slop_s'] * 1e9),
                                   settings['input.queue_size'])
        self._guard = StampGuard(int(threshold * 1e9))
        if threshold > 0:
            from rclpy.clock import JumpThreshold

            self._jump_handle = self.get_clock().create_jump_callback(
                JumpThreshold(min_forward=None,
                              min_backward=Duration(nanoseconds=-int(threshold * 1e9))),
                post_callback=self._on_clock_jump)
        self.get_logger().info(
            f'configured: category {self.category.name}, model {manifest}, backend '
            f'{settings["model.backend"]}')
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        settings = self.settings
        assert settings is not None
        try:
            from perception_3dinn.inference import load_manifest, Pipeline

            manifest = load_manifest(settings.manifest_path())
            self._pipe = Pipeline.from_manifest(
                settings.manifest_path(), backend=settings['model.backend'],
                config=settings.pipeline_config(model_crop_pad=manifest.crop_pad))
        except Exception as err:  # noqa: BLE001 - any engine error must end as a message
            self.get_logger().error(
                f'activate failed: cannot load model {settings.manifest_path()} with backend '
                f'{settings["model.backend"]}: {type(err).__name__}: {err}')
            self._pipe = None
            return TransitionCallbackReturn.FAILURE
        if self._pipe.category.name != settings['category']:
            self.get_logger().error(
                f'activate failed: model {settings.manifest_path()} is for category '
                f'{self._pipe.category.name!r}, parameter category is {settings["category"]!r}')
            self._free_pipeline()
            return TransitionCallbackReturn.FAILURE
        self._backend = f'{settings["model.backend"]}/{settings["model.device"]}'
        self._reset_inputs()
        self._running.set()
        self._slot.reopen()
        self._worker = threading.Thread(target=self._work, name='chair_detector_worker',
                                        daemon=True)
        self._worker.start()
        self._hold_wakeup_latency(settings['system.cpu_dma_latency_us'])
        self._subscribe(settings)
        result = super().on_activate(state)
        self._active = True
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id='')
        assert self.category is not None
        self._pubs['skeleton'].publish(convert.skeleton_info_msg(self.category, header))
        topics = ', '.join(s.topic_name for s in self._subs)
        self.get_logger().info(f'active: listening on {topics}')
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._unsubscribe()
        self._stop_worker()
        self._free_pipeline()
        self._release_wakeup_latency()
        self.get_logger().info('inactive: inputs unsubscribed, model freed')
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._destroy_outputs()
        self.settings = None
        self.get_logger().info('unconfigured')
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._unsubscribe()
        self._stop_worker()
        self._free_pipeline()
        self._release_wakeup_latency()
        self._destroy_outputs()
        return super().on_shutdown(state)

    def close(self) -> None:
        """Stop the worker and free the model (process exit without a lifecycle shutdown)."""
        self._active = False
        self._stop_worker()
        self._free_pipeline()
        self._release_wakeup_latency()

    def _hold_wakeup_latency(self, microseconds: int) -> None:
        """system.cpu_dma_latency_us: hold the PM QoS request while active (never fatal)."""
        self._release_wakeup_latency()
        if microseconds < 0:
            return
        try:
            self._wakeup = CpuWakeupLatency(microseconds)
        except OSError as err:
            reason = err.strerror or str(err)
            self.get_logger().warning(
                f'system.cpu_dma_latency_us: cannot write {PM_QOS_DEVICE} ({reason}): the '
                'CPUs keep their idle states. Run the node as root, give its user write access '
                '(udev rule), or set it system-wide (tuned-adm profile latency-performance); '
                '-1 silences this')
            return
        self.get_logger().info(f'holding a CPU wake-up latency of {microseconds} us '
                               f'({PM_QOS_DEVICE}) while active')

    def _release_wakeup_latency(self) -> None:
        wakeup, self._wakeup = self._wakeup, None
        if wakeup is not None:
            wakeup.close()

    def _free_pipeline(self) -> None:
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            pipe.close()

    def _destroy_outputs(self) -> None:
        for pub in self._pubs.values():
            self.destroy_lifecycle_publisher(pub)
        self._pubs = {}
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        if self._diag_pub is not None:
            self.destroy_publisher(self._diag_pub)
            self._diag_pub = None
        self._jump_handle = None

    # ---------------------------------------------------------------- subscriptions

    def _subscribe(self, settings: NodeSettings) -> None:
        img_qos = _qos(settings['input.image_qos_reliability'], settings['input.image_qos_depth'])

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
            det_qos = _qos(settings['input.detections_qos_reliability'],
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
        try:
            intr = convert.camera_info_to_intrinsics(msg)
        except convert.InputError as err:
            self.stats.count('bad.camera_info')
            self.warn_throttled(f'camera_info:{err.kind}',
                                f'{err}; keeping the last valid camera_info')
            return
        with self._intr_lock:
            self._intrinsics = intr

    def _on_tf(self, msg: TFMessage, static: bool) -> None:
        assert self._tf is not None and self.settings is not None and self.category is not None
        own = self.settings['output.frame_prefix'] + self.category.name + '_'
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
            self.warn_throttled(
                'floor', f'no floor for this image (pose.floor_frame {floor_frame!r} in '
                f'{camera_frame!r}): {err}; metric scale from the size model only')
            return None
        self.stats.count('floor.from_tf')
        return plane

    def _on_image(self, msg: Image | CompressedImage) -> None:
        self.stats.count('image')
        assert self._guard is not None and self._pairer is not None
        stamp_ns = convert.stamp_to_ns(msg.header.stamp)
        self.stats.add(input_delay_ms=(self._now_ns() - stamp_ns) * 1e-6)
        verdict = self._guard.check(stamp_ns)
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
        if self.settings is not None and self.settings['input.use_detections']:
            pair = self._pairer.add_image(stamp_ns, msg)
        else:
            pair = (stamp_ns, msg, None)
        if pair is not None:
            self._hand_over(pair)

    def _on_detections(self, msg: Detection2DArray) -> None:
        self.stats.count('detections')
        assert self._pairer is not None
        pair = self._pairer.add_detections(convert.stamp_to_ns(msg.header.stamp), msg)
        if pair is not None:
            self._hand_over(pair)

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
        self.get_logger().warning(f'{why}: resetting tracks and pairing (bag loop?)')
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

    # ---------------------------------------------------------------- worker

    def _stop_worker(self) -> None:
        self._running.clear()
        self._slot.close()
        if self._worker is not None:
            self._worker.join(timeout=10.0)
            self._worker = None
        self._slot.clear()

    def _work(self) -> None:
        while self._running.is_set():
            item = self._slot.take(timeout_s=0.2)
            if item is None or not self._running.is_set():
                continue
            try:
                if self._reset_requested.is_set():
                    self._reset_requested.clear()
                    self._pipe.reset()
                    self._track_ids = convert.TrackIds()
                    if self._pubs:
                        self._pubs['markers'].publish(markers.delete_all(Header()))
                self.process(*item)
            except Exception as err:  # noqa: BLE001 - keep the node alive, say why
                self.stats.count('errors')
                self.warn_throttled('error', f'frame failed: {type(err).__name__}: {err}')

    def process(self, stamp_ns: int, image_msg: Any, det_msg: Any,
                paired_ns: int | None = None) -> None:
        """Run the pipeline on one paired frame and publish every output with its stamp.

        Args:
            stamp_ns: the image stamp; image_msg, det_msg: the paired messages (det_msg None
                in no-detector mode); paired_ns: wall time the pair was complete.
        """
        settings, category, pipe = self.settings, self.category, self._pipe
        if settings is None or category is None or pipe is None:
            return
        with self._intr_lock:
            intr = self._intrinsics
        if intr is None:
            self.stats.count('dropped.no_camera_info')
            self.warn_throttled(
                'no_camera_info',
                f'no valid camera_info on {self.resolve_topic_name(CAMERA_INFO_TOPIC)} yet: '
                'frames are dropped until one arrives (check the topic and its QoS)')
            return
        t0 = time.perf_counter()
        try:
            rgb = convert.image_to_rgb(image_msg)
            t_image = time.perf_counter()
        except convert.InputError as err:
            self.stats.count('bad.image')
            self.warn_throttled(f'image:{err.kind}', f'image dropped: {err}')
            return
        h, w = rgb.shape[:2]
        if (w, h) != (intr.width, intr.height):
            self.stats.count('bad.camera_info_size')
            self.warn_throttled(
                'size', f'image is {w}x{h} but camera_info says {intr.width}x{intr.height}: '
                'frame dropped; publish the camera_info of this image')
            return
        if det_msg is not None:
            boxes = convert.detections_to_boxes(det_msg)
        else:
            classes = settings['filter.class_ids']
            boxes = [convert.no_detector_box(
                w, h, settings['input.no_detector_box'], settings['input.center_box_fraction'],
                classes[0] if classes else category.name)]
        frame = settings['output.camera_frame'] or image_msg.header.frame_id
        floor = self._floor
        if self._tf is not None and frame:
            floor = self._floor_at(settings, frame, stamp_ns)
        wanted = self._wanted_outputs(settings)
        # Voxels are made after the poses went out, and only when someone takes them.
        need_voxels = 'voxels' in wanted or ('markers' in wanted
                                              and settings['output.voxel_markers'])
        result = pipe.process(rgb, intr, boxes, stamp_ns * 1e-9, floor=floor, voxels=False)
        bad = [(i, r) for i, r in result.skipped if _is_bad_box(r)]
        if bad:
            self.stats.count('bad.boxes', len(bad))
            self.warn_throttled(
                'boxes', 'detection boxes skipped: ' + '; '.join(
                    f'#{i}: {r}' for i, r in bad[:5]))
        if not frame:
            self.stats.count('bad.frame_id')
            self.warn_throttled(
                'frame_id', 'image has an empty header.frame_id: outputs and /tf carry no '
                'parent frame, which TF listeners reject; set frame_id in the camera driver '
                'or the output.camera_frame parameter')
        header = Header(stamp=image_msg.header.stamp, frame_id=frame)
        # The poses (objects, TF) go out first; voxels, 3D detections and markers follow.
        kept, build_s, publish_s = self._build_and_publish(
            settings, result, header, category, wanted & PRIMARY_OUTPUTS)
        primary_ns = self._now_ns()
        rest = wanted - PRIMARY_OUTPUTS
        if need_voxels:
            pipe.add_voxels(result)
        if rest:
            _, more_build_s, more_publish_s = self._build_and_publish(
                settings, result, header, category, rest)
            build_s += more_build_s
            publish_s += more_publish_s
        done = time.perf_counter()
        self.stats.count('processed')
        self.stats.count('objects', len(kept))
        start_ns = time.time_ns() - int((done - t0) * 1e9)
        self.stats.add(
            latency_ms=(primary_ns - stamp_ns) * 1e-6,
            latency_all_ms=(self._now_ns() - stamp_ns) * 1e-6, processing_ms=(done - t0) * 1e3,
            pipeline_ms=float(result.timings_ms.get('total', float('nan'))),
            model_ms=float(result.timings_ms.get('network', float('nan'))),
            image_ms=(t_image - t0) * 1e3, build_ms=build_s * 1e3, publish_ms=publish_s * 1e3,
            queue_ms=(start_ns - paired_ns) * 1e-6 if paired_ns else float('nan'))

    def _build_and_publish(self, settings: NodeSettings, result: Any, header: Header,
                           category: Category, outputs: frozenset[str]) -> tuple[list, float,
                                                                                 float]:
        """Build and publish `outputs` of one frame: (kept objects, build s, publish s)."""
        t_build = time.perf_counter()
        msgs = convert.frame_messages(result, header, category, settings['output.frame_prefix'],
                                      self._track_ids, settings['filter.min_object_score'],
                                      outputs)
        t_publish = time.perf_counter()
        self._publish(settings, header, category, msgs, outputs)
        return msgs['kept'], t_publish - t_build, time.perf_counter() - t_publish

    _OUTPUT_PARAMS = {'objects': 'output.publish_structures', 'voxels': 'output.publish_voxels',
                      'detections3d': 'output.publish_detections3d', 'tf': 'output.publish_tf',
                      'markers': 'output.publish_markers'}

    def _wanted_outputs(self, settings: NodeSettings) -> frozenset[str]:
        """Outputs enabled by parameter that someone subscribes to (the others are not even
        built: markers and voxels cost real time)."""
        pubs = self._pubs
        return frozenset(key for key, param in self._OUTPUT_PARAMS.items()
                         if settings[param] and key in pubs
                         and pubs[key].get_subscription_count() > 0)

    def _publish(self, settings: NodeSettings, header: Header, category: Category,
                 msgs: dict[str, Any], wanted: frozenset[str]) -> None:
        pubs = self._pubs
        if not pubs:
            return
        if 'objects' in wanted:
            pubs['objects'].publish(msgs['objects'])
        if 'voxels' in wanted:
            pubs['voxels'].publish(msgs['voxels'])
        if 'detections3d' in wanted:
            pubs['detections3d'].publish(msgs['detections3d'])
        if 'tf' in wanted and msgs['tf'].transforms:
            pubs['tf'].publish(msgs['tf'])
        if 'markers' in wanted:
            # Voxel cubes are the costly markers: at most every voxel_marker_period_s, with
            # a lifetime that bridges the gap.
            threshold, period = None, settings['output.voxel_marker_period_s']
            now = time.monotonic()
            if settings['output.voxel_markers'] and now - self._last_voxel_markers >= period:
                threshold = settings['output.voxel_threshold']
                self._last_voxel_markers = now
            lifetime = settings['output.marker_lifetime_s']
            voxel_life = lifetime + period if lifetime > 0 else 0.0
            pubs['markers'].publish(markers.frame_markers(
                msgs['kept'], header, category, lifetime, threshold, voxel_life))

    def _now_ns(self) -> int:
        if self.get_parameter('use_sim_time').value:
            return self.get_clock().now().nanoseconds
        return time.time_ns()

    # ---------------------------------------------------------------- diagnostics

    def _publish_diagnostics(self) -> None:
        if self._diag_pub is None:
            return
        values: dict[str, Any] = dict(self.stats.snapshot())
        values['total.dropped.latest_wins'] = float(self._slot.dropped)
        if self._pairer is not None:
            values['total.dropped.unmatched'] = float(self._pairer.stats.unmatched)
        values['backend'] = self._backend or 'none'
        values['cpu_dma_latency_us'] = (str(self._wakeup.microseconds)
                                        if self._wakeup is not None else 'not held')
        if self.settings is not None:
            values['model'] = str(self.settings.manifest_path())
        level = diagnostics.assess(values, self._active)
        self._diag_pub.publish(diagnostics.diagnostic_array(
            self.get_clock().now().to_msg(), self.get_fully_qualified_name(),
            values['backend'], level, values))


def main(args: list[str] | None = None) -> int:
    """Console script `chair_detector`: run the node until shut down."""
    # The executor thread hands frames to the worker thread: a short GIL switch interval
    # keeps that hand-off from waiting up to the default 5 ms.
    sys.setswitchinterval(0.0005)
    rclpy.init(args=args)
    try:
        node = ChairDetector()
    except (ValueError, ParameterException, InvalidParameterValueException) as err:
        rclpy.logging.get_logger(NODE_NAME).error(f'bad parameters: {err}')
        rclpy.try_shutdown()
        return 1
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        if node.get_parameter('autostart').value:
            if node.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                node.trigger_activate()
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
