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
    """The colcon install folder of this checkout (built by `make setup`)."""
    prefix = REPO / 'install'
    if not (prefix / 'setup.bash').exists():
        pytest.fail('no colcon install found: run `make setup` (make test does it)')
    return prefix


def pytest_report_header(config: pytest.Config) -> str:
    return f'ROS_DOMAIN_ID={_DOMAIN_ID} python={sys.executable}'


@pytest.fixture(scope='session')
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chair model the node tests run: the packaged one, or a random-init export."""
    from node_harness import model_manifest

    return model_manifest(tmp_path_factory.mktemp('model'))
