"""A Linux PM QoS request on the CPUs' wake-up latency (/dev/cpu_dma_latency).

An idle CPU sleeps in a state that takes time to leave: on our development machines (KVM
guests, cpuidle driver `haltpoll`) a core that idled for the 100 ms between two camera frames
runs the next frame's work slower: in 18 alternating bench_node runs the node's
stamp-to-poses p50 had a median of 6.74 ms without a request and 5.70 ms with 0 us (table
and commands in docs/node.md). While a process keeps a request of N microseconds open, the
kernel keeps idle CPUs in states that wake within N us (0: they poll). It is what tuned's
latency-performance profile sets system-wide; it costs power, so nothing here holds it unless
asked to.

Writing the device needs root (or write access given by a udev rule); reading it gives the
latency in force, the smallest of all open requests (2000000000 when there is none).
"""

from __future__ import annotations

import os
import sys

DEVICE = '/dev/cpu_dma_latency'


class CpuWakeupLatency:
    """Holds a CPU wake-up latency request of `microseconds` until `close()`.

    Raises:
        OSError: the device cannot be opened for writing (not Linux, no permission).
        ValueError: a negative latency.
    """

    def __init__(self, microseconds: int, device: str = DEVICE) -> None:
        if microseconds < 0:
            raise ValueError(f'wake-up latency must be >= 0 us, got {microseconds}')
        self.microseconds = int(microseconds)
        self._fd: int | None = os.open(device, os.O_WRONLY)
        try:
            os.write(self._fd, self.microseconds.to_bytes(4, sys.byteorder, signed=True))
        except OSError:
            self.close()
            raise

    @property
    def held(self) -> bool:
        return self._fd is not None

    def close(self) -> None:
        """Withdraw the request (the kernel drops it when the file closes)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def latency_in_force(device: str = DEVICE) -> int | None:
    """The wake-up latency in force, us; None where the device cannot be read."""
    try:
        with open(device, 'rb') as f:
            data = f.read(4)
    except OSError:
        return None
    return int.from_bytes(data, sys.byteorder, signed=True) if len(data) == 4 else None
