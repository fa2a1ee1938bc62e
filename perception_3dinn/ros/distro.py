"""Which ROS 2 distribution this process runs on, and where its workspace installed our node.

The same code runs on a ROS 2 install (Humble, Jazzy, Kilted: `ROS_DISTRO` is set by its
setup.bash) and on PyPI's ROS 2 wheels (Jazzy or Kilted, one per venv, see
scripts/setup_env.sh), which set no variable: there the installed rclpy wheel says it.
"""

from __future__ import annotations

from importlib import metadata
import os
from pathlib import Path

from ament_index_python.packages import get_package_prefix

# Major version of rclpy in each distribution (rclpy's package.xml; the PyPI wheels carry it).
RCLPY_MAJOR = {3: 'humble', 4: 'iron', 7: 'jazzy', 9: 'kilted'}
PACKAGE = 'perception_3dinn'


def rclpy_version() -> str | None:
    """Version of the rclpy PyPI wheel (`ros-rclpy`), or None on a ROS install."""
    try:
        return metadata.version('ros-rclpy')
    except metadata.PackageNotFoundError:
        return None


def ros_distro() -> str:
    """Name of the running ROS 2 distribution, lower case ('jazzy', 'kilted', 'humble', ...).

    The rclpy wheel decides where there is one (a venv holds exactly one distribution's
    wheels, whatever a shell's ROS_DISTRO says); otherwise ROS_DISTRO.
    """
    version = rclpy_version()
    if version is not None:
        distro = RCLPY_MAJOR.get(int(version.split('.')[0]))
        if distro is not None:
            return distro
    distro = os.environ.get('ROS_DISTRO', '').strip().lower()
    if distro:
        return distro
    raise RuntimeError(
        'cannot tell the ROS 2 distribution: ROS_DISTRO is unset and rclpy '
        f'({version or "not a PyPI wheel"}) is of no known distribution; source your ROS 2 '
        'setup.bash or scripts/env.sh')


def install_prefix(package: str = PACKAGE) -> Path:
    """Install prefix of `package` in the sourced workspace (the ament index, as `ros2 run`
    finds it): `install-<distro>/perception_3dinn` here, `install/perception_3dinn` in a
    user's colcon workspace."""
    return Path(get_package_prefix(package))


def node_executable(name: str = 'chair_detector', package: str = PACKAGE) -> Path:
    """Path of an installed console script of `package` (lib/<package>/<name>)."""
    return install_prefix(package) / 'lib' / package / name
