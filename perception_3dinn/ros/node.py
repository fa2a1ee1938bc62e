"""The `chair_detector` lifecycle node: camera + 2D detections -> 3D object structure.

Thin ROS shell over `perception_3dinn.inference.Pipeline`:

- on_configure reads and validates the parameters, loads the category, creates the
  publishers and the diagnostics timer;
- on_activate loads the model (a clear error, not a traceback, when it cannot), starts the
  worker thread and subscribes to the inputs;
- on_deactivate unsubscribes, stops the worker and frees the model; on_cleanup destroys
  the publishers.

The input side (subscriptions, callbacks, checks and their warnings) is the `NodeInputs`
mixin in `node_inputs.py`. Images and detections are paired by stamp (`sync.StampPairer`),
the newest pair waits in a one-item mailbox (`sync.LatestSlot`, latest wins, drops
counted) and a worker thread runs each frame (`NodeFrames` in `node_frames.py`: the pipeline,
then every output with the input image's stamp).

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
from rclpy.event_handler import PublisherEventCallbacks
from rclpy.exceptions import InvalidParameterValueException, ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage
from vision_msgs.msg import Detection3DArray
from visualization_msgs.msg import MarkerArray

from perception_3dinn.ros import convert, diagnostics, inputs, markers, node_categories
from perception_3dinn.ros.memory import keep_large_buffers, peak_rss_mb, rss_mb
from perception_3dinn.ros.node_frames import NodeFrames
from perception_3dinn.ros.node_inputs import (
    latched_qos,
    NodeInputs,
    qos_profile,
    TF_QOS,
)
from perception_3dinn.ros.params import declare_parameters, NodeSettings, read_settings
from perception_3dinn.ros.pm_qos import CpuWakeupLatency
from perception_3dinn.ros.pm_qos import DEVICE as PM_QOS_DEVICE
from perception_3dinn.ros.sync import LatestSlot, StampGuard, StampPairer
from perception_3dinn.skeleton import Category, load_category
from perception_3dinn.tf_buffer import TransformBuffer
from perception_3dinn_msgs.msg import ObjectStructureArray, SkeletonInfo, VoxelGridArray

NODE_NAME = 'chair_detector'

class ChairDetector(NodeInputs, NodeFrames, LifecycleNode):
    """Lifecycle node publishing 3D skeletons, poses (TF), voxels and markers per object."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        declare_parameters(self)
        self.settings: NodeSettings | None = None
        self.category: Category | None = None  # the first served category
        self.categories: dict[str, Category] = {}
        self._models: dict[str, Any] = {}  # category -> manifest path
        self._class_map: Any = None  # ClassMap with several categories, else None
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
        self._said_once: set[str] = set()
        self._near_misses_seen = 0
        self._image_loss = diagnostics.ImageLossMonitor()
        self._active = False
        self._jump_handle: Any = None
        self._last_voxel_markers = -math.inf
        self._wakeup: CpuWakeupLatency | None = None  # system.cpu_dma_latency_us

    # ---------------------------------------------------------------- lifecycle

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        settings = read_settings(self)
        try:
            if settings['categories']:  # several categories, one model each
                self._models = node_categories.served_models(settings)
                self.categories = node_categories.load_served(self._models)
                self._class_map = node_categories.class_map(settings, list(self.categories))
                self.category = next(iter(self.categories.values()))
            else:
                self.category = load_category(settings['category'])
                self.categories = {self.category.name: self.category}
                self._models = {self.category.name: settings.manifest_path()}
                self._class_map = None
            config = settings.pipeline_config()
            self._floor = settings.floor_plane()
            for name in self.categories:
                _check_output_frames(settings, name)
        except (FileNotFoundError, ValueError) as err:
            self.get_logger().error(f'configure failed: {err}')
            return TransitionCallbackReturn.FAILURE
        from perception_3dinn.inference.learned_shape import shape_graph_problem

        for manifest in self._models.values():
            if not manifest.is_file():
                self.get_logger().error(
                    f'configure failed: model manifest {manifest} does not exist; set '
                    'model.manifest to a manifest.json written by training.export')
                return TransitionCallbackReturn.FAILURE
            problem = shape_graph_problem(manifest, config.voxel_source
                                          if config.compute_voxels else 'skeleton')
            if problem is not None:
                self.get_logger().error(
                    f'configure failed: {problem} (output.voxel_source {config.voxel_source}; '
                    "'skeleton' publishes skeleton voxels without the shape graph)")
                return TransitionCallbackReturn.FAILURE
        self.settings = settings
        self._tf = TransformBuffer() if settings['pose.floor_frame'] else None
        if settings['input.keep_large_buffers'] and not keep_large_buffers():
            self.get_logger().info('input.keep_large_buffers: not glibc, left as it is')
        out_qos = qos_profile(settings['output.qos_reliability'], settings['output.qos_depth'])
        events = PublisherEventCallbacks(incompatible_qos=self._on_offered_incompatible)
        make = self.create_lifecycle_publisher
        self._pubs = {
            'objects': make(ObjectStructureArray, '~/objects', out_qos, event_callbacks=events),
            'markers': make(MarkerArray, '~/markers', out_qos, event_callbacks=events),
            'voxels': make(VoxelGridArray, '~/voxels', out_qos, event_callbacks=events),
            'detections3d': make(Detection3DArray, '~/detections_3d', out_qos,
                                 event_callbacks=events),
            'tf': make(TFMessage, '/tf', TF_QOS, event_callbacks=events),
            'skeleton': make(SkeletonInfo, '~/skeleton_info',
                             latched_qos(len(self.categories))),
        }
        from diagnostic_msgs.msg import DiagnosticArray

        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._diag_timer = self.create_timer(settings['diagnostics.period_s'],
                                             self._publish_diagnostics)
        threshold = settings['input.clock_jump_threshold_s']
        self._pairer = StampPairer(int(settings['input.sync_slop_s'] * 1e9),
                                   settings['input.queue_size'])
        self._guard = StampGuard(int(threshold * 1e9),
                                 int(settings['input.max_stamp_ahead_s'] * 1e9))
        if threshold > 0:
            from rclpy.clock import JumpThreshold

            self._jump_handle = self.get_clock().create_jump_callback(
                JumpThreshold(min_forward=None,
                              min_backward=Duration(nanoseconds=-int(threshold * 1e9))),
                post_callback=self._on_clock_jump)
        served = ', '.join(f'{n} ({m})' for n, m in self._models.items())
        self.get_logger().info(
            f'configured: {"categories" if len(self._models) > 1 else "category"} {served}, '
            f'backend {settings["model.backend"]}'
            + (f', class map {self._class_map.entries()}' if self._class_map else ''))
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        settings = self.settings
        assert settings is not None
        try:
            self._pipe = node_categories.make_pipeline(settings, self._models, self._class_map)
        except Exception as err:  # noqa: BLE001 - any engine error must end as a message
            self.get_logger().error(f'activate failed: {type(err).__name__}: {err}')
            self._pipe = None
            return TransitionCallbackReturn.FAILURE
        wanted = list(self.categories)
        if list(getattr(self._pipe, 'categories', None) or [self._pipe.category.name]) != wanted:
            self.get_logger().error(
                f'activate failed: model {next(iter(self._models.values()))} is for category '
                f'{self._pipe.category.name!r}, parameter category is {wanted[0]!r}')
            self._free_pipeline()
            return TransitionCallbackReturn.FAILURE
        if self._pipe.voxel_note:
            self.get_logger().warning(self._pipe.voxel_note)
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
        for cat in self.categories.values():
            self._pubs['skeleton'].publish(convert.skeleton_info_msg(cat, header))
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
            values['total.dropped.sync_near_miss'] = float(self._pairer.stats.near_misses)
        values['memory.rss_mb'] = rss_mb()
        values['memory.peak_rss_mb'] = peak_rss_mb()
        counts = self.stats.counts
        loss = self._image_loss.update(time.monotonic(), counts['image'], counts['camera_info'],
                                       counts['detections']) if self._active else None
        if loss:
            self.warn_throttled('image_loss', loss)
        values['backend'] = self._backend or 'none'
        values['cpu_dma_latency_us'] = (str(self._wakeup.microseconds)
                                        if self._wakeup is not None else 'not held')
        if self.settings is not None:
            values['model'] = ', '.join(str(m) for m in self._models.values())
            values['categories'] = ', '.join(self.categories)
        level = diagnostics.assess(values, self._active, loss)
        self._diag_pub.publish(diagnostics.diagnostic_array(
            self.get_clock().now().to_msg(), self.get_fully_qualified_name(),
            values['backend'], level, values))


def _check_output_frames(settings: NodeSettings, category: str) -> None:
    """Raise ValueError when output.camera_frame or output.frame_prefix make no valid TF frame
    name."""
    for name, frame in (('output.camera_frame', settings['output.camera_frame']),
                        ('output.frame_prefix', settings['output.frame_prefix']
                         + convert.child_frame('', category, 1))):
        problem = inputs.frame_id_problem(frame)
        if problem is not None:
            raise ValueError(f'{name}: {problem}')


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
