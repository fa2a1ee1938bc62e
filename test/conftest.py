"""Shared pytest fixtures.

ROS tests run real DDS participants. Each pytest process picks its own ROS_DOMAIN_ID (from
its pid, avoiding 0 and the default ranges people use) so parallel runs on one machine do not
hear each other; subprocesses (the node executable) inherit it through ``ros_env``.
"""

from __future__ import annotations

import os
from pathlib import Path
import sys

import pytest

REPO = Path(__file__).resolve().parents[1]
_DOMAIN_ID = 100 + os.getpid() % 100  # 100..199: valid Fast DDS domains, rarely used by hand
os.environ['ROS_DOMAIN_ID'] = str(_DOMAIN_ID)
os.environ.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')
# DDS over loopback only: tests never talk to other machines.
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')


@pytest.fixture(scope='session')
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope='session')
def ros_domain_id() -> int:
    """This test run's private ROS_DOMAIN_ID (already exported to os.environ)."""
    return _DOMAIN_ID


@pytest.fixture(scope='session')
def ros_env(ros_domain_id: int) -> dict[str, str]:
    """Environment for subprocesses that join this run's DDS domain (unbuffered Python)."""
    env = dict(os.environ)
    env['ROS_DOMAIN_ID'] = str(ros_domain_id)
    env['PYTHONUNBUFFERED'] = '1'
    return env


@pytest.fixture(scope='session')
def install_prefix() -> Path:
    """The colcon install folder of the sourced workspace (`make setup` builds this
    checkout's install-<distro>; the ament index says which one this environment has)."""
    from ament_index_python.packages import PackageNotFoundError

    from perception_3dinn.ros.distro import install_prefix as package_prefix

    try:
        prefix = package_prefix().parent
    except PackageNotFoundError:
        pytest.fail('perception_3dinn is not installed in this environment: run `make setup` '
                    'and `source scripts/env.sh` (make test does both)')
    if not (prefix / 'setup.bash').exists():
        pytest.fail(f'no colcon install at {prefix}: run `make setup` (make test does it)')
    return prefix


def _distro_line() -> str:
    try:
        from perception_3dinn.ros.distro import rclpy_version, ros_distro

        version = rclpy_version()
        return f'ROS 2 {ros_distro()} ({"rclpy " + version + " wheels" if version else "install"})'
    except Exception as exc:  # noqa: BLE001 - the header must not stop the run
        return f'ROS 2 distribution unknown ({exc})'


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [_distro_line(), f'ROS_DOMAIN_ID={_DOMAIN_ID} python={sys.executable}']


@pytest.fixture(scope='session')
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chair model the node tests run: the packaged one, or a random-init export."""
    from node_harness import model_manifest

    return model_manifest(tmp_path_factory.mktemp('model'))
