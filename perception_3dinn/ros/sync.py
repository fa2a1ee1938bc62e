"""Input synchronisation of the node: stamp pairing, latest-wins hand-over, stamp checks.

Plain Python (no rclpy): the node feeds it stamps in integer nanoseconds and opaque items.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
import threading
from typing import Any


@dataclass
class PairerStats:
    """Counters of `StampPairer`.

    Attributes:
        pairs: image/detections pairs made.
        unmatched: items dropped because no partner came within the slop (or the queue
            overflowed).
        near_misses: dropped images that had detections within `near_ns` but beyond the slop
            (a detector stamping its detections a little off its images).
        last_near_miss_ns: how far the nearest partner of the latest near miss was.
    """

    pairs: int = 0
    unmatched: int = 0
    near_misses: int = 0
    last_near_miss_ns: int = 0


class StampPairer:
    """Pairs images with detections whose stamps differ by at most a slop.

    Each side keeps its last `queue_size` unmatched items. When an item arrives, the closest
    item of the other side within the slop makes a pair; everything older than that pair on
    either side can no longer be matched and is dropped (counted in `stats.unmatched`, and
    in `stats.near_misses` when the item's nearest partner was within `near_ns`: by default
    ten times the slop, at least 0.1 s).
    """

    def __init__(self, slop_ns: int, queue_size: int = 5, near_ns: int | None = None) -> None:
        if slop_ns < 0 or queue_size < 1:
            raise ValueError(f'need slop_ns >= 0 and queue_size >= 1, got {slop_ns}, '
                             f'{queue_size}')
        self.slop_ns = int(slop_ns)
        self.queue_size = int(queue_size)
        self.near_ns = int(near_ns) if near_ns is not None else max(10 * self.slop_ns,
                                                                     100_000_000)
        # Waiting items: [stamp, item, distance to the nearest item of the other side seen
        # while it waited, or None].
        self._queues: dict[str, deque[list[Any]]] = {'image': deque(), 'detections': deque()}
        self.stats = PairerStats()
        self._lock = threading.Lock()

    def add_image(self, stamp_ns: int, item: Any) -> tuple[int, Any, Any] | None:
        """Offer an image; returns (image stamp, image, detections) when paired."""
        return self._add('image', 'detections', stamp_ns, item)

    def add_detections(self, stamp_ns: int, item: Any) -> tuple[int, Any, Any] | None:
        """Offer detections; returns (image stamp, image, detections) when paired."""
        return self._add('detections', 'image', stamp_ns, item)

    def reset(self) -> None:
        """Forget every waiting item (not counted as dropped)."""
        with self._lock:
            for q in self._queues.values():
                q.clear()

    def drop_newer_than(self, stamp_ns: int) -> None:
        """After a backward clock jump to `stamp_ns`: forget items of the old timeline (stamps
        beyond `stamp_ns` + slop), keep those of the new one (not counted as dropped)."""
        limit = int(stamp_ns) + self.slop_ns
        with self._lock:
            for key, q in self._queues.items():
                self._queues[key] = deque(x for x in q if x[0] <= limit)

    def pending(self) -> tuple[int, int]:
        """(waiting images, waiting detections)."""
        with self._lock:
            return len(self._queues['image']), len(self._queues['detections'])

    def _add(self, side: str, other: str, stamp_ns: int,
             item: Any) -> tuple[int, Any, Any] | None:
        stamp_ns = int(stamp_ns)
        with self._lock:
            candidates = self._queues[other]
            best = None
            for k, (s, _, _) in enumerate(candidates):
                d = abs(s - stamp_ns)
                if d <= self.slop_ns and (best is None or d < best[0]):
                    best = (d, k)
            own = self._queues[side]
            if best is None:
                nearest = None
                for waiting in candidates:  # both sides learn how near they came
                    d = abs(waiting[0] - stamp_ns)
                    waiting[2] = d if waiting[2] is None else min(waiting[2], d)
                    nearest = d if nearest is None else min(nearest, d)
                own.append([stamp_ns, item, nearest])
                while len(own) > self.queue_size:
                    self._drop(own.popleft(), side)
                return None
            s_other, partner, _ = candidates[best[1]]
            for _ in range(best[1]):
                self._drop(candidates.popleft(), other)
            candidates.popleft()
            while own and own[0][0] <= stamp_ns:
                self._drop(own.popleft(), side)
            self.stats.pairs += 1
            if side == 'image':
                return stamp_ns, item, partner
            return s_other, partner, item

    def _drop(self, waiting: list[Any], side: str) -> None:
        self.stats.unmatched += 1
        nearest = waiting[2]
        if side == 'image' and nearest is not None and nearest <= self.near_ns:
            self.stats.near_misses += 1
            self.stats.last_near_miss_ns = int(nearest)


class LatestSlot:
    """A one-item mailbox between the subscriptions and the worker: the newest item wins.

    `put` replaces an item the worker has not taken yet (counted in `dropped`), so the work
    always starts on the newest frame and latency stays bounded when the camera is faster
    than inference.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._has_item = False
        self._closed = False
        self.dropped = 0

    def put(self, item: Any) -> bool:
        """Store `item`; True when it replaced an item that was never taken."""
        with self._cond:
            replaced = self._has_item
            if replaced:
                self.dropped += 1
            self._item, self._has_item = item, True
            self._cond.notify()
            return replaced

    def take(self, timeout_s: float | None = None) -> Any:
        """Wait for an item and take it; None on timeout or after `close`."""
        with self._cond:
            if not self._has_item and not self._closed:
                self._cond.wait(timeout_s)
            if not self._has_item:
                return None
            item, self._item, self._has_item = self._item, None, False
            return item

    def clear(self) -> None:
        """Drop a waiting item (not counted)."""
        with self._cond:
            self._item, self._has_item = None, False

    def close(self) -> None:
        """Wake a waiting `take` for good (the worker is stopping)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False


class StampGuard:
    """Classifies each image stamp against the last accepted one.

    Returns from `check`:
    - 'ok': newer, and less than `max_ahead_ns` ahead;
    - 'duplicate': the same stamp (dropped);
    - 'out_of_order': older by less than the jump threshold (dropped);
    - 'jump': older by at least the threshold (a clock jump such as a bag loop: the caller
      resets its state and the stamp is accepted);
    - 'ahead': more than `max_ahead_ns` newer than the last accepted stamp (dropped, so one
      stamp from the far future cannot make every later frame look like a jump back);
    - 'jump_ahead': the `confirm`-th stamp in a row that is 'ahead' while each is newer than
      the one before: the source's clock really moved forward; accepted, and the caller
      resets its state as for a jump back.
    `max_ahead_ns` <= 0 turns the forward check off.
    """

    def __init__(self, jump_threshold_ns: int, max_ahead_ns: int = 0, confirm: int = 3) -> None:
        self.jump_threshold_ns = int(jump_threshold_ns)
        self.max_ahead_ns = int(max_ahead_ns)
        self.confirm = max(int(confirm), 1)
        self.last_ns: int | None = None
        self._ahead: list[int] = []  # the 'ahead' stamps in a row, oldest first

    def check(self, stamp_ns: int) -> str:
        stamp_ns = int(stamp_ns)
        last = self.last_ns
        if last is not None and self.max_ahead_ns > 0 and stamp_ns - last > self.max_ahead_ns:
            if self._ahead and stamp_ns <= self._ahead[-1]:
                self._ahead = []
            self._ahead.append(stamp_ns)
            if len(self._ahead) < self.confirm:
                return 'ahead'
            self._ahead = []
            self.last_ns = stamp_ns
            return 'jump_ahead'
        self._ahead = []
        if last is None or stamp_ns > last:
            self.last_ns = stamp_ns
            return 'ok'
        if stamp_ns == last:
            return 'duplicate'
        if last - stamp_ns >= self.jump_threshold_ns:
            self.last_ns = stamp_ns
            return 'jump'
        return 'out_of_order'

    def reset(self) -> None:
        self.last_ns = None
        self._ahead = []
