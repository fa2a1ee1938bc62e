"""system.cpu_dma_latency_us: the PM QoS request the node holds while active.

The request class is checked on a regular file (the bytes the kernel reads) and on paths it
cannot open; the node test starts the real executable and reads the kernel's latency in force
from /dev/cpu_dma_latency while the node is active and after it is deactivated (root only:
the device is readable by root alone, so the test is skipped elsewhere).
"""

from __future__ import annotations

from pathlib import Path
import sys

from lifecycle_msgs.msg import Transition
from node_harness import Harness, NodeProcess, running_node
import pytest

from perception_3dinn.ros.pm_qos import CpuWakeupLatency, DEVICE, latency_in_force


def test_request_writes_a_native_int32_and_closes(tmp_path: Path) -> None:
    device = tmp_path / 'cpu_dma_latency'
    device.write_bytes(b'')
    request = CpuWakeupLatency(25, device=str(device))
    assert request.held
    assert device.read_bytes() == (25).to_bytes(4, sys.byteorder, signed=True)
    assert latency_in_force(str(device)) == 25
    request.close()
    request.close()  # closing twice is harmless
    assert not request.held


def test_request_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        CpuWakeupLatency(0, device=str(tmp_path / 'missing' / 'cpu_dma_latency'))
    with pytest.raises(ValueError, match='>= 0'):
        CpuWakeupLatency(-1, device=str(tmp_path / 'x'))
    assert latency_in_force(str(tmp_path / 'missing')) is None
    short = tmp_path / 'short'
    short.write_bytes(b'\x00\x01')
    assert latency_in_force(str(short)) is None


def _diagnostic(harness: Harness, key: str) -> str | None:
    for arr in reversed(harness.received['diagnostics']):
        for kv in arr.status[0].values:
            if kv.key == key:
                return kv.value
    return None


@pytest.fixture(scope='module')
def baseline() -> int:
    """The latency in force before the node starts (the test needs to read the device)."""
    value = latency_in_force()
    if value is None:
        pytest.skip(f'{DEVICE} is not readable here (root only)')
    if value == 0:
        pytest.skip('another process already holds a wake-up latency of 0 us')
    return value


@pytest.fixture(scope='module')
def node(baseline: int, ros_env: dict[str, str], manifest: Path) -> NodeProcess:
    yield from running_node(ros_env, 'autostart:=false', f'model.manifest:={manifest}',
                            'diagnostics.period_s:=0.2', 'system.cpu_dma_latency_us:=0')


@pytest.fixture(scope='module')
def harness(node: NodeProcess) -> Harness:
    h = Harness()
    yield h
    h.close()


@pytest.mark.ros
def test_node_holds_the_request_only_while_active(baseline: int, node: NodeProcess,
                                                  harness: Harness) -> None:
    assert harness.transition(Transition.TRANSITION_CONFIGURE)
    assert latency_in_force() == baseline  # configured is not active
    assert harness.transition(Transition.TRANSITION_ACTIVATE)
    assert latency_in_force() == 0
    harness.wait_for(lambda: _diagnostic(harness, 'cpu_dma_latency_us') == '0')
    assert 'holding a CPU wake-up latency of 0 us' in node.log_since(0)
    assert harness.transition(Transition.TRANSITION_DEACTIVATE)
    assert latency_in_force() == baseline
    harness.wait_for(lambda: _diagnostic(harness, 'cpu_dma_latency_us') == 'not held')
