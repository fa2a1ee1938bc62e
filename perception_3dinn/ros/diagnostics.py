"""Counters and latency statistics of the node, reported on /diagnostics."""

from __future__ import annotations

from collections import Counter, deque
import threading
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
import numpy as np


class NodeStats:
    """Thread-safe counters (inputs, outputs, drops, bad inputs) and latency windows."""

    def __init__(self, window: int = 300) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.window = int(window)
        self.samples: dict[str, deque[float]] = {}
        self._last_counts: Counter[str] = Counter()
        self._last_time = time.monotonic()

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    def add(self, **values_ms: float) -> None:
        """Add one sample to each named window, e.g. add(latency_ms=12.0)."""
        with self._lock:
            for name, value in values_ms.items():
                if name not in self.samples:
                    self.samples[name] = deque(maxlen=self.window)
                self.samples[name].append(float(value))

    def snapshot(self) -> dict[str, float]:
        """Totals, rates since the last snapshot (Hz) and latency percentiles (ms)."""
        with self._lock:
            now = time.monotonic()
            dt = max(now - self._last_time, 1e-6)
            out: dict[str, float] = {f'total.{k}': float(v) for k, v in self.counts.items()}
            for key in ('image', 'detections', 'camera_info', 'processed'):
                out[f'rate_hz.{key}'] = (self.counts[key] - self._last_counts[key]) / dt
            self._last_counts = Counter(self.counts)
            self._last_time = now
            for name, values in self.samples.items():
                values = [v for v in values if np.isfinite(v)]
                if values:
                    arr = np.asarray(values)
                    out[f'{name}.p50'] = float(np.percentile(arr, 50))
                    out[f'{name}.p95'] = float(np.percentile(arr, 95))
            return out


def diagnostic_array(stamp: Any, node_name: str, hardware_id: str, level_message: tuple[int, str],
                     values: dict[str, float | str]) -> DiagnosticArray:
    """One DiagnosticStatus named after the node, with `values` as key/value pairs."""
    level, message = level_message
    status = DiagnosticStatus(level=bytes([level]), name=f'{node_name}: pipeline',
                              message=message, hardware_id=hardware_id)
    for key in sorted(values):
        v = values[key]
        text = f'{v:.3f}' if isinstance(v, float) else str(v)
        status.values.append(KeyValue(key=key, value=text))
    arr = DiagnosticArray()
    arr.header.stamp = stamp
    arr.status = [status]
    return arr


def assess(values: dict[str, float], active: bool) -> tuple[int, str]:
    """(level, message) of the node's health from a snapshot of `NodeStats`."""
    if not active:
        return _level('WARN'), 'inactive'
    if values.get('rate_hz.image', 0.0) <= 0.0:
        return _level('WARN'), 'no images received'
    if values.get('rate_hz.processed', 0.0) <= 0.0:
        return _level('WARN'), ('images received but no frame processed (check camera_info, '
                                'detections and the warnings in the log)')
    return _level('OK'), 'ok'


def _level(name: str) -> int:
    v = getattr(DiagnosticStatus, name)
    return v[0] if isinstance(v, bytes) else int(v)
