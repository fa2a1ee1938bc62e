"""The ROS 2 distribution under the tests (Jazzy or Kilted wheels, or a ROS install).

One distribution's ros-* wheels per venv; bags written with that distribution's type store
(definitions and type hashes as its rclpy has them), and readable on the other distribution
from the definitions stored in the bag.
"""

from __future__ import annotations

from importlib import metadata
import os
from pathlib import Path
import shlex
import subprocess
import sys

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
import pytest
import rclpy
from rosbags.rosbag2 import Reader
from rosbags.typesys import get_types_from_msg, get_typestore, Stores

from perception_3dinn.ros import bagio
from perception_3dinn.ros.distro import RCLPY_MAJOR, rclpy_version, ros_distro

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ros_messages import diff, message_class, sample  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WHEEL_DISTROS = ('jazzy', 'kilted')
# What the package writes into bags: the demo bag's inputs and the node's outputs.
BAG_TYPES = sorted({
    'sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage', 'sensor_msgs/msg/CameraInfo',
    'vision_msgs/msg/Detection2DArray', *bagio.OUTPUT_TOPICS.values(),
})
SEED = 20


def _samples() -> dict[str, object]:
    return {name: sample(message_class(name), SEED + i) for i, name in enumerate(BAG_TYPES)}


def _write(path: Path, distro: str) -> None:
    with bagio.BagWriter(path, bagio.make_typestore(distro)) as bag:
        for i, (name, msg) in enumerate(_samples().items()):
            bag.write(f'/p3test/{name}', msg, 1_000 + i)


def _check_bag(path: Path) -> None:
    """Decoded by this distribution's rclpy, and by rosbags from the stored definitions only."""
    want = _samples()
    got = {topic.removeprefix('/p3test/'): msg for topic, _, msg in bagio.read_bag(path)}
    assert sorted(got) == BAG_TYPES
    for name in BAG_TYPES:
        assert diff(got[name], want[name]) == [], name
    with Reader(path) as reader:
        for conn, _, raw in reader.messages():
            store = get_typestore(Stores.EMPTY)
            store.register(get_types_from_msg(conn.msgdef.data, conn.msgtype))
            decoded = store.deserialize_cdr(raw, conn.msgtype)
            header = getattr(decoded, 'header', None)
            if header is not None:
                assert header.frame_id == want[conn.msgtype].header.frame_id


def test_ros_distro_is_the_one_set_up() -> None:
    distro = ros_distro()
    version = rclpy_version()
    if version is None:  # a ROS install: its setup.bash says
        assert distro == os.environ['ROS_DISTRO']
        return
    assert distro in WHEEL_DISTROS, (distro, version)
    assert RCLPY_MAJOR[int(version.split('.')[0])] == distro
    # make test and scripts/env.sh export these for the distribution they set up.
    assert os.environ.get('ROS_WHEELS', distro) == distro
    assert os.environ.get('ROS_DISTRO', distro) == distro


def test_ros_wheels_are_of_one_distribution() -> None:
    """Every ros-* wheel's pins on the others hold (Jazzy's come from the ros-jazzy-* meta
    packages): a venv never mixes two distributions' versions."""
    dists = {canonicalize_name(d.metadata['Name']): d for d in metadata.distributions()
             if canonicalize_name(d.metadata['Name']).startswith('ros-')}
    if rclpy_version() is None:
        pytest.skip('rclpy of a ROS install, not of PyPI wheels')
    broken = []
    for name, dist in sorted(dists.items()):
        extras = [''] + (dist.metadata.get_all('Provides-Extra') or [])
        for line in dist.requires or []:
            req = Requirement(line)
            dep = dists.get(canonicalize_name(req.name))
            if dep is None or not canonicalize_name(req.name).startswith('ros-'):
                continue
            if req.marker is not None and not any(req.marker.evaluate({'extra': e})
                                                  for e in extras):
                continue
            if not req.specifier.contains(dep.version, prereleases=True):
                broken.append(f'{name} wants {req}, has {dep.version}')
    assert broken == []
    metas = [n for n in dists if n.startswith('ros-jazzy-')]
    if ros_distro() == 'jazzy':
        assert 'ros-jazzy-rclpy' in metas
        assert dists['ros-rclpy'].version == dists['ros-jazzy-rclpy'].version
    else:
        assert metas == []


def test_typestore_is_the_running_distributions() -> None:
    """make_typestore(): rosbags' store of this distribution plus our installed packages."""
    store = bagio.make_typestore()
    ref = get_typestore(bagio.TYPESTORES.get(ros_distro(), Stores.LATEST))
    assert set(ref.types) <= set(store.types)
    extra = {name.split('/')[0] for name in set(store.types) - set(ref.types)}
    assert extra <= set(bagio._EXTRA_PACKAGES)
    assert 'perception_3dinn_msgs' in extra and 'vision_msgs' in extra
    # The stores differ (Kilted added nav_msgs/msg/Goals), so the choice is visible.
    jazzy, kilted = (get_typestore(s).types for s in (Stores.ROS2_JAZZY, Stores.ROS2_KILTED))
    assert set(jazzy) != set(kilted)


@pytest.mark.ros
def test_bag_type_hashes_are_what_rclpy_announces(tmp_path: Path, ros_domain_id: int) -> None:
    """Each connection of a bag written here carries the type hash that this distribution's
    rclpy announces on DDS for the installed type (what `ros2 bag play` and Foxglove match)."""
    _write(tmp_path / 'bag', ros_distro())
    with Reader(tmp_path / 'bag') as reader:
        stored = {c.msgtype: c.digest for c in reader.connections}
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node('p3test_type_hashes', context=context)
    try:
        for i, name in enumerate(BAG_TYPES):
            topic = f'/p3test_type_hash_{i}'
            node.create_publisher(message_class(name), topic, 1)
            info = node.get_publishers_info_by_topic(topic)
            assert len(info) == 1
            if not hasattr(info[0], 'topic_type_hash'):
                pytest.skip('this rclpy has no type hashes (before Iron)')
            assert str(info[0].topic_type_hash) == stored[name], name
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)


@pytest.mark.parametrize('writer', WHEEL_DISTROS)
def test_bag_with_either_distributions_types_reads_here(tmp_path: Path, writer: str) -> None:
    _write(tmp_path / 'bag', writer)
    _check_bag(tmp_path / 'bag')


@pytest.mark.ros
@pytest.mark.parametrize('writer', WHEEL_DISTROS)
def test_bag_written_by_the_other_distribution_reads_here(tmp_path: Path, writer: str) -> None:
    """A bag written by the other distribution's own environment (its venv and workspace, when
    `make setup` has made them in this checkout, as .ci/run does) reads here."""
    if writer == ros_distro():
        pytest.skip(f'{writer} is the running distribution')
    if not (REPO / f'install-{writer}' / 'setup.bash').is_file():
        pytest.skip(f'no {writer} environment in this checkout (ROS_WHEELS={writer} make setup)')
    script = ('import sys; sys.path.insert(0, "test"); from test_ros_distro import _write; '
              'from perception_3dinn.ros.distro import ros_distro; '
              'from pathlib import Path; _write(Path(sys.argv[1]), ros_distro()); '
              'print(ros_distro())')
    cmd = (f'ROS_WHEELS={writer} source scripts/env.sh && '
           f'python -c {shlex.quote(script)} {shlex.quote(str(tmp_path / "bag"))}')
    run = subprocess.run(['bash', '-c', cmd], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.split()[-1] == writer
    _check_bag(tmp_path / 'bag')
