"""Helpers of the node tests: start the real `chair_detector` executable and talk to it over DDS.

`NodeProcess` runs the installed console script in a subprocess (on the test run's private
ROS_DOMAIN_ID) and collects its log lines; `Harness` is an rclpy node in the test process with
publishers for the node's inputs, subscriptions to all of its outputs, and lifecycle service
clients. Waiting is always by polling a condition with a deadline, never a fixed sleep.
"""

from __future__ import annotations

from array import array
from collections import defaultdict
from collections.abc import Callable, Iterator
import os
from pathlib import Path
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
import numpy as np
from rcl_interfaces.srv import SetParameters
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from tf2_msgs.msg import TFMessage
from vision_msgs.msg import (
    Detection2D,
    Detection2DArray,
    Detection3DArray,
    ObjectHypothesisWithPose,
)
from visualization_msgs.msg import MarkerArray

from perception_3dinn.ros.distro import node_executable
from perception_3dinn_msgs.msg import ObjectStructureArray, SkeletonInfo, VoxelGridArray

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / 'config' / 'chair_detector.yaml'
WIDTH, HEIGHT = 320, 240
FRAME = 'camera_optical_frame'
OUTPUTS = {
    'objects': ('/chair_detector/objects', ObjectStructureArray),
    'markers': ('/chair_detector/markers', MarkerArray),
    'voxels': ('/chair_detector/voxels', VoxelGridArray),
    'detections3d': ('/chair_detector/detections_3d', Detection3DArray),
    'tf': ('/tf', TFMessage),
    'diagnostics': ('/diagnostics', DiagnosticArray),
}


def model_manifest(tmp_dir: Path) -> Path:
    """The packaged chair model, or a randomly initialised export when none is shipped yet."""
    from perception_3dinn.inference.manifest import default_model_dir

    shipped = default_model_dir('chair') / 'manifest.json'
    if shipped.is_file():
        return shipped
    out = tmp_dir / 'random_chair'
    subprocess.run([sys.executable, '-m', 'training.export', '--random-init', '--category',
                    'chair', '--out', str(out)], cwd=REPO, check=True, capture_output=True,
                   env={**os.environ, 'OMP_NUM_THREADS': '1'})
    return out / 'manifest.json'


class NodeProcess:
    """The chair_detector executable in a subprocess, with its output kept line by line."""

    def __init__(self, env: dict[str, str], *params: str) -> None:
        args = [str(node_executable()), '--ros-args', '--params-file', str(CONFIG)]
        for p in params:
            args += ['-p', p]
        self.lines: list[str] = []
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip('\n'))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_since(self, index: int) -> str:
        return '\n'.join(self.lines[index:])

    def stop(self) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._reader.join(timeout=5)
        return self.proc.returncode


def running_node(env: dict[str, str], *params: str) -> Iterator[NodeProcess]:
    """Body of a node fixture (`yield from running_node(...)`): the node while the tests run,
    then SIGINT and an asserted clean exit (code 0, the log in the message)."""
    proc = NodeProcess(env, *params)
    yield proc
    code = proc.stop()
    assert code == 0, proc.log_since(0)


def stamp(seconds: float) -> Time:
    ns = int(round(seconds * 1e9))
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def chair_image(seed: int = 0) -> np.ndarray:
    """(HEIGHT, WIDTH, 3) uint8: a dark chair-like silhouette on a textured background."""
    rng = np.random.default_rng(seed)
    img = rng.integers(90, 160, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    img[80:130, 110:210] = (60, 40, 30)   # seat
    img[20:80, 190:210] = (60, 40, 30)    # back
    img[130:200, 115:122] = (50, 30, 20)  # legs
    img[130:200, 198:205] = (50, 30, 20)
    return img


def image_msg(t: float, img: np.ndarray | None = None, encoding: str = 'rgb8') -> Image:
    img = chair_image() if img is None else img
    msg = Image(height=img.shape[0], width=img.shape[1], encoding=encoding,
                step=img.shape[1] * 3)
    msg.header.stamp, msg.header.frame_id = stamp(t), FRAME
    msg.data = array('B', img.tobytes())  # no per-byte check in the message setter
    return msg


def camera_info_msg(t: float, fx: float = 280.0) -> CameraInfo:
    msg = CameraInfo(width=WIDTH, height=HEIGHT, distortion_model='plumb_bob')
    msg.header.stamp, msg.header.frame_id = stamp(t), FRAME
    msg.k = [fx, 0.0, (WIDTH - 1) / 2, 0.0, 280.0, (HEIGHT - 1) / 2, 0.0, 0.0, 1.0]
    msg.p = [fx, 0.0, (WIDTH - 1) / 2, 0.0, 0.0, 280.0, (HEIGHT - 1) / 2, 0.0, 0.0, 0.0, 1.0,
             0.0]
    msg.d = [0.0] * 5
    return msg


def detections_msg(t: float, boxes: list[tuple[float, float, float, float]] | None = None,
                   class_id: str = 'chair') -> Detection2DArray:
    """Boxes as (centre x, centre y, width, height); default one box around the chair."""
    boxes = [(160.0, 110.0, 120.0, 190.0)] if boxes is None else boxes
    msg = Detection2DArray()
    msg.header.stamp, msg.header.frame_id = stamp(t), FRAME
    for i, (cx, cy, w, h) in enumerate(boxes):
        det = Detection2D(id=str(i + 1))
        det.header = msg.header
        det.bbox.center.position.x, det.bbox.center.position.y = cx, cy
        det.bbox.size_x, det.bbox.size_y = w, h
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id, hyp.hypothesis.score = class_id, 0.9
        det.results.append(hyp)
        msg.detections.append(det)
    return msg


class Harness:
    """Test-side DDS participant: publishes inputs, records outputs, drives the lifecycle."""

    def __init__(self, node_name: str = 'chair_detector') -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('p3test_node_harness', context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_image = self.node.create_publisher(Image, '/camera/image_raw', reliable)
        self.pub_info = self.node.create_publisher(CameraInfo, '/camera/camera_info', reliable)
        self.pub_det = self.node.create_publisher(Detection2DArray, '/detections', reliable)
        self.received: dict[str, list[Any]] = defaultdict(list)
        self._lock = threading.Lock()
        self.subs = {}
        for key, (topic, cls) in OUTPUTS.items():
            qos = QoSProfile(depth=100 if key == 'tf' else 50,
                             reliability=ReliabilityPolicy.RELIABLE)
            self.subs[key] = self.node.create_subscription(
                cls, topic, lambda msg, key=key: self._store(key, msg), qos)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.subs['skeleton'] = self.node.create_subscription(
            SkeletonInfo, f'/{node_name}/skeleton_info',
            lambda msg: self._store('skeleton', msg), latched)
        self.change_state = self.node.create_client(ChangeState, f'/{node_name}/change_state')
        self.get_state = self.node.create_client(GetState, f'/{node_name}/get_state')
        self.set_params = self.node.create_client(SetParameters,
                                                  f'/{node_name}/set_parameters')

    def _store(self, key: str, msg: Any) -> None:
        with self._lock:
            self.received[key].append(msg)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)

    # ---------------------------------------------------------------- waiting

    def wait_for(self, condition: Callable[[], Any], timeout_s: float = 30.0) -> Any:
        """Spin until `condition()` is truthy; returns its value (or fails the test)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            self.executor.spin_once(timeout_sec=0.05)
        raise AssertionError(f'timed out after {timeout_s} s waiting for {condition}')

    def call(self, client: Any, request: Any, timeout_s: float = 30.0) -> Any:
        self.wait_for(lambda: client.service_is_ready(), timeout_s)
        future = client.call_async(request)
        self.wait_for(future.done, timeout_s)
        return future.result()

    def state(self) -> str:
        return self.call(self.get_state, GetState.Request()).current_state.label

    def transition(self, transition_id: int) -> bool:
        req = ChangeState.Request()
        req.transition = Transition(id=transition_id)
        return self.call(self.change_state, req).success

    def set_parameter(self, name: str, value: Any) -> Any:
        req = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        return self.call(self.set_params, req).results[0]

    def wait_inputs_matched(self, use_detections: bool = True) -> None:
        pubs = [self.pub_image, self.pub_info] + ([self.pub_det] if use_detections else [])
        self.wait_for(lambda: all(p.get_subscription_count() > 0 for p in pubs))
        self.wait_for(lambda: self.subs['objects'].get_publisher_count() > 0)

    def with_stamp(self, key: str, t: float) -> list[Any]:
        want = stamp(t)
        with self._lock:
            return [m for m in self.received[key] if _stamp_of(m) == want]

    def send_frame(self, t: float, image: Image | None = None, info: CameraInfo | None = None,
                   detections: Detection2DArray | None = None, send_info: bool = True,
                   send_detections: bool = True) -> None:
        if send_info:
            self.pub_info.publish(info or camera_info_msg(t))
        if send_detections:
            self.pub_det.publish(detections or detections_msg(t))
        self.pub_image.publish(image or image_msg(t))

    def first_frame(self, t: float, keys: tuple[str, ...] = ('objects',),
                    timeout_s: float = 60.0) -> tuple[float, dict[str, Any]]:
        """Send frames t, t + 0.001, ... every 2 s until one is answered (a best-effort reader
        drops what arrives before it has matched the writer). Returns (stamp, outputs)."""
        deadline = time.monotonic() + timeout_s
        k = 0
        while time.monotonic() < deadline:
            self.send_frame(t + 0.001 * k)
            try:
                for j in range(k + 1):
                    tj = t + 0.001 * j
                    if all(self.with_stamp(key, tj) for key in keys):
                        return tj, {key: self.with_stamp(key, tj)[0] for key in keys}
                return t + 0.001 * k, self.frame_outputs(t + 0.001 * k, keys, timeout_s=2.0)
            except AssertionError:
                k += 1
        raise AssertionError(f'no answer to frames at {t} s within {timeout_s} s')

    def frame_outputs(self, t: float, keys: tuple[str, ...] = ('objects',),
                      timeout_s: float = 30.0) -> dict[str, Any]:
        """Wait until every output in `keys` arrived with stamp `t`; returns the first of each."""
        self.wait_for(lambda: all(self.with_stamp(k, t) for k in keys), timeout_s)
        return {k: self.with_stamp(k, t)[0] for k in keys}


def _stamp_of(msg: Any) -> Time | None:
    if isinstance(msg, TFMessage):
        return msg.transforms[0].header.stamp if msg.transforms else None
    if isinstance(msg, MarkerArray):
        return msg.markers[0].header.stamp if msg.markers else None
    return msg.header.stamp
