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


class ImageLossMonitor:
    """Notices images lost on the way to the node (e.g. raw images too large for the DDS
    transport): a camera driver publishes one camera_info per image and a detector one
    detection array per image, so when those keep arriving and fewer images do, images are
    being lost before the node sees them.

    Fed the running totals at every diagnostics report; looks back over `window_s`.
    """

    def __init__(self, window_s: float = 5.0, min_messages: int = 20,
                 max_loss: float = 0.05) -> None:
        self.window_s = float(window_s)
        self.min_messages = int(min_messages)
        self.max_loss = float(max_loss)
        self._history: deque[tuple[float, float, float, float]] = deque()

    def update(self, now_s: float, images: float, camera_infos: float,
               detections: float) -> str | None:
        """None, or a message that says how many images were lost and what to do."""
        self._history.append((now_s, images, camera_infos, detections))
        while len(self._history) > 2 and now_s - self._history[1][0] >= self.window_s:
            self._history.popleft()
        t0, img0, info0, det0 = self._history[0]
        d_img, d_info, d_det = images - img0, camera_infos - info0, detections - det0
        expected = max(d_info, d_det)
        if expected < self.min_messages or d_img >= (1.0 - self.max_loss) * expected:
            return None
        source = 'camera_info' if d_info >= d_det else 'detection arrays'
        return (f'images are being lost before they reach the node: {expected:.0f} {source} '
                f'but {d_img:.0f} images in the last {now_s - t0:.1f} s '
                f'({1.0 - d_img / expected:.0%} lost). Raw images over Fast DDS need larger '
                'transport buffers: export FASTDDS_DEFAULT_PROFILES_FILE=<perception_3dinn '
                'share>/config/fastdds_large_images.xml for the camera driver and this node, '
                'subscribe reliably (input.image_qos_reliability), or use compressed images '
                '(input.compressed)')

    def reset(self) -> None:
        self._history.clear()


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


def assess(values: dict[str, float], active: bool,
           image_loss: str | None = None) -> tuple[int, str]:
    """(level, message) of the node's health from a snapshot of `NodeStats` (and the
    `ImageLossMonitor`'s message, if any)."""
    if not active:
        return _level('WARN'), 'inactive'
    if image_loss:
        return _level('WARN'), image_loss
    if values.get('rate_hz.image', 0.0) <= 0.0:
        return _level('WARN'), 'no images received'
    if values.get('rate_hz.processed', 0.0) <= 0.0:
        return _level('WARN'), ('images received but no frame processed (check camera_info, '
                                'detections and the warnings in the log)')
    return _level('OK'), 'ok'


def _level(name: str) -> int:
    v = getattr(DiagnosticStatus, name)
    return v[0] if isinstance(v, bytes) else int(v)
