"""rosbag2 files with rclpy messages, through `rosbags` (no rosbag2 install needed).

Messages are serialised with rclpy (CDR, exactly what DDS carries) and written with the
message definitions of the installed packages, so the bags open in Foxglove, RViz
(`ros2 bag play`) and `rosbags` alike. Custom packages (vision_msgs, perception_3dinn_msgs)
are registered in the rosbags type store from their installed .msg files. The standard
definitions come from rosbags' store of the running distribution (`distro.ros_distro()`), so a
bag written under Jazzy carries Jazzy's definitions and type hashes, one under Kilted Kilted's;
a reader decodes by the definitions stored in the bag, so each distribution reads the other's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
import importlib
from pathlib import Path
from typing import Any

from ament_index_python.packages import get_package_share_directory, PackageNotFoundError
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.rosbag2 import Reader, Writer
from rosbags.typesys import get_types_from_msg, get_typestore, Stores

from perception_3dinn.ros.distro import ros_distro

# Topics of the demo bag and of the node's outputs.
IMAGE_TOPIC = '/camera/image_raw'
COMPRESSED_TOPIC = '/camera/image_raw/compressed'
CAMERA_INFO_TOPIC = '/camera/camera_info'
DETECTIONS_TOPIC = '/detections'
GROUND_TRUTH_TOPIC = '/ground_truth/objects'
TF_TOPIC = '/tf'
OUTPUT_TOPICS = {
    '/chair_detector/objects': 'perception_3dinn_msgs/msg/ObjectStructureArray',
    '/chair_detector/markers': 'visualization_msgs/msg/MarkerArray',
    '/chair_detector/voxels': 'perception_3dinn_msgs/msg/VoxelGridArray',
    '/chair_detector/detections_3d': 'vision_msgs/msg/Detection3DArray',
    '/chair_detector/skeleton_info': 'perception_3dinn_msgs/msg/SkeletonInfo',
    '/tf': 'tf2_msgs/msg/TFMessage',
    '/diagnostics': 'diagnostic_msgs/msg/DiagnosticArray',
}
_EXTRA_PACKAGES = ('vision_msgs', 'perception_3dinn_msgs', 'tf2_msgs')
# rosbags' type store of each distribution; a newer one than rosbags knows gets its latest.
TYPESTORES = {
    'humble': Stores.ROS2_HUMBLE,
    'iron': Stores.ROS2_IRON,
    'jazzy': Stores.ROS2_JAZZY,
    'kilted': Stores.ROS2_KILTED,
}


def type_name(msg_or_cls: Any) -> str:
    """'pkg/msg/Name' of an rclpy message (class or instance)."""
    cls = msg_or_cls if isinstance(msg_or_cls, type) else type(msg_or_cls)
    return f'{cls.__module__.split(".")[0]}/msg/{cls.__name__}'


def message_class(name: str) -> type:
    """rclpy message class of 'pkg/msg/Name'."""
    pkg, _, cls = name.split('/')
    return getattr(importlib.import_module(f'{pkg}.msg'), cls)


def make_typestore(distro: str | None = None) -> Any:
    """rosbags type store of `distro` (default: the running distribution) plus the installed
    definitions of our extra packages."""
    store = get_typestore(TYPESTORES.get(distro or ros_distro(), Stores.LATEST))
    types: dict = {}
    for pkg in _EXTRA_PACKAGES:
        try:
            share = Path(get_package_share_directory(pkg))
        except PackageNotFoundError:
            continue
        for path in sorted((share / 'msg').glob('*.msg')):
            types.update(get_types_from_msg(path.read_text(encoding='utf-8'),
                                            f'{pkg}/msg/{path.stem}'))
    store.register({k: v for k, v in types.items() if k not in store.types})
    return store


class BagWriter:
    """Writes rclpy messages into a rosbag2 (sqlite3) folder; connections made on first use."""

    def __init__(self, path: str | Path, typestore: Any | None = None) -> None:
        self.path = Path(path)
        self.typestore = typestore or make_typestore()
        self._writer = Writer(self.path, version=9)
        self._connections: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def __enter__(self) -> BagWriter:
        self._writer.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self._writer.close()

    def _connection(self, topic: str, msgtype: str) -> Any:
        conn = self._connections.get(topic)
        if conn is None:
            conn = self._writer.add_connection(topic, msgtype, typestore=self.typestore)
            self._connections[topic] = conn
        return conn

    def write(self, topic: str, msg: Any, t_ns: int) -> None:
        """Write an rclpy message at log time `t_ns`."""
        self.write_raw(topic, type_name(msg), serialize_message(msg), t_ns)

    def write_raw(self, topic: str, msgtype: str, data: bytes, t_ns: int) -> None:
        """Write an already serialised (CDR) message."""
        self._writer.write(self._connection(topic, msgtype), int(t_ns), bytes(data))
        self.counts[topic] = self.counts.get(topic, 0) + 1


def read_bag(path: str | Path, topics: Iterable[str] | None = None
             ) -> Iterator[tuple[str, int, Any]]:
    """(topic, log time ns, rclpy message) of a rosbag2 folder, in log time order."""
    wanted = set(topics) if topics is not None else None
    classes: dict[str, type] = {}
    with Reader(Path(path)) as reader:
        conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
        for conn, t_ns, raw in reader.messages(connections=conns):
            cls = classes.get(conn.msgtype)
            if cls is None:
                cls = classes[conn.msgtype] = message_class(conn.msgtype)
            yield conn.topic, t_ns, deserialize_message(bytes(raw), cls)


def bag_topics(path: str | Path) -> dict[str, tuple[str, int]]:
    """topic -> (message type, message count) of a rosbag2 folder."""
    with Reader(Path(path)) as reader:
        return {c.topic: (c.msgtype, c.msgcount) for c in reader.connections}
