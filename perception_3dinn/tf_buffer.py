"""A small transform buffer with tf2's lookup semantics (no ROS imports).

tf2_ros is not on PyPI (../shared/ROS_ENV.md), and the node needs one thing from TF: the
floor frame (e.g. `base_footprint`, z up, z = 0 on the ground) expressed in the camera
optical frame at an image's stamp. This buffer keeps the transforms of /tf (a time window
per edge) and /tf_static (latest only), and answers `lookup(target, source, stamp)` like
`tf2_ros.Buffer.lookup_transform`: the transform that maps points in `source` into
`target`, composed through the frames' nearest common ancestor, with rotations slerped and
translations interpolated linearly between the two stored samples around the stamp.
A stamp of 0 means "the latest common time"; a stamp outside a dynamic edge's samples is
answered from the nearest sample only within `tolerance_ns`, otherwise refused with a
message that says by how much.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
import threading

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from perception_3dinn.inference.pose import FloorPlane

#: Longest parent chain followed before a loop in the tree is assumed.
MAX_DEPTH = 64


class TransformLookupError(LookupError):
    """A transform that the buffer cannot give, with the reason in words."""


@dataclass
class _Edge:
    """Samples of one parent -> child transform (child's pose in the parent)."""

    parent: str
    static: bool
    stamps: list[int] = field(default_factory=list)
    quats: list[np.ndarray] = field(default_factory=list)  # x, y, z, w (ROS and scipy order)
    trans: list[np.ndarray] = field(default_factory=list)


def _as_matrix(quat: np.ndarray) -> np.ndarray:
    return Rotation.from_quat(quat).as_matrix()


class TransformBuffer:
    """Transforms by child frame; thread safe (callbacks add, a worker looks up).

    Args:
        cache_ns: how long dynamic samples are kept behind the newest one of their edge.
    """

    def __init__(self, cache_ns: int = 10_000_000_000) -> None:
        self.cache_ns = int(cache_ns)
        self._edges: dict[str, _Edge] = {}
        self._lock = threading.Lock()

    def set_transform(self, parent: str, child: str, stamp_ns: int, quat_xyzw, translation,
                      static: bool = False) -> None:
        """Store `child`'s pose in `parent` (x_parent = R x_child + t) at `stamp_ns`.

        Raises:
            ValueError: empty or equal frame names, non-finite numbers or a zero quaternion.
        """
        parent, child = parent.lstrip('/'), child.lstrip('/')
        if not parent or not child or parent == child:
            raise ValueError(f'transform needs two different, non-empty frames (got parent '
                             f'{parent!r}, child {child!r})')
        q = np.asarray(quat_xyzw, np.float64).reshape(4)
        t = np.asarray(translation, np.float64).reshape(3)
        norm = float(np.linalg.norm(q))
        if not (np.all(np.isfinite(q)) and np.all(np.isfinite(t)) and norm > 1e-9):
            raise ValueError(f'transform {parent} -> {child}: non-finite translation or '
                             f'rotation, or a zero quaternion')
        q = q / norm
        with self._lock:
            edge = self._edges.get(child)
            if edge is None or edge.static != static or edge.parent != parent:
                edge = self._edges[child] = _Edge(parent, static)
            if static:
                edge.stamps, edge.quats, edge.trans = [int(stamp_ns)], [q], [t]
                return
            if edge.stamps and stamp_ns < edge.stamps[-1] - self.cache_ns:
                # Time went back by more than the window (a bag loop): start the edge anew.
                edge.stamps, edge.quats, edge.trans = [], [], []
            i = bisect_left(edge.stamps, int(stamp_ns))
            if i < len(edge.stamps) and edge.stamps[i] == int(stamp_ns):
                edge.quats[i], edge.trans[i] = q, t
            else:
                edge.stamps.insert(i, int(stamp_ns))
                edge.quats.insert(i, q)
                edge.trans.insert(i, t)
            old = bisect_left(edge.stamps, edge.stamps[-1] - self.cache_ns)
            if old:
                del edge.stamps[:old], edge.quats[:old], edge.trans[:old]

    def clear(self, static: bool = False) -> None:
        """Forget the dynamic transforms (and the static ones too with `static`)."""
        with self._lock:
            self._edges = {c: e for c, e in self._edges.items() if e.static and not static}

    def frames(self) -> set[str]:
        """Every frame named by a stored transform."""
        with self._lock:
            return set(self._edges) | {e.parent for e in self._edges.values()}

    def lookup(self, target: str, source: str, stamp_ns: int = 0,
               tolerance_ns: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(R, t) with x_target = R x_source + t at `stamp_ns` (0: latest common time).

        Raises:
            TransformLookupError: unknown frames, no common ancestor, or a stamp outside the
                stored samples by more than `tolerance_ns`.
        """
        target, source = target.lstrip('/'), source.lstrip('/')
        eye = (np.eye(3), np.zeros(3))
        if target == source:
            return eye
        with self._lock:
            up_source = self._chain(source)
            up_target = self._chain(target)
            above_source = [frame for frame, _ in up_source]
            common = next((f for f in [target] + [p for p, _ in up_target]
                           if f == source or f in above_source), None)
            if common is None:
                raise TransformLookupError(
                    f'no TF path between {target!r} and {source!r}: '
                    f'{self._describe(source, up_source)}; {self._describe(target, up_target)}')
            source_path = self._until(up_source, common)
            target_path = self._until(up_target, common)
            if stamp_ns == 0:
                stamp_ns = self._latest_common(source_path + target_path)
            # Pose of source and target in the common ancestor's frame.
            R_s, t_s = self._compose(source_path, stamp_ns, tolerance_ns)
            R_t, t_t = self._compose(target_path, stamp_ns, tolerance_ns)
        R = R_t.T @ R_s
        return R, R_t.T @ (t_s - t_t)

    # ---------------------------------------------------------------- internals

    def _chain(self, frame: str) -> list[tuple[str, str]]:
        """[(parent, child), ...] from `frame` up to its root."""
        out, child = [], frame
        while child in self._edges:
            if len(out) >= MAX_DEPTH:
                raise TransformLookupError(f'TF tree above {frame!r} has a loop')
            parent = self._edges[child].parent
            out.append((parent, child))
            child = parent
        return out

    @staticmethod
    def _until(chain: list[tuple[str, str]], common: str) -> list[tuple[str, str]]:
        out = []
        for parent, child in chain:
            if child == common:
                break
            out.append((parent, child))
        return out

    def _describe(self, frame: str, chain: list[tuple[str, str]]) -> str:
        if not chain:
            known = ', '.join(sorted(set(self._edges) | {e.parent for e in self._edges.values()}))
            return f'{frame!r} is not in the tree (known frames: {known or "none"})'
        return f'{frame!r} has root {chain[-1][0]!r}'

    def _latest_common(self, path: list[tuple[str, str]]) -> int:
        dynamic = [self._edges[child].stamps[-1] for _, child in path
                   if not self._edges[child].static]
        return min(dynamic) if dynamic else 0

    def _compose(self, path: list[tuple[str, str]], stamp_ns: int,
                 tolerance_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """Pose of the path's first child in its last parent's frame."""
        R, t = np.eye(3), np.zeros(3)
        for parent, child in path:
            R_e, t_e = self._sample(parent, child, stamp_ns, tolerance_ns)
            R, t = R_e @ R, R_e @ t + t_e
        return R, t

    def _sample(self, parent: str, child: str, stamp_ns: int,
                tolerance_ns: int) -> tuple[np.ndarray, np.ndarray]:
        edge = self._edges[child]
        stamps = edge.stamps
        if edge.static or len(stamps) == 1 and stamps[0] == stamp_ns:
            return _as_matrix(edge.quats[-1]), edge.trans[-1].copy()
        if stamp_ns <= stamps[0] or stamp_ns >= stamps[-1]:
            k = 0 if stamp_ns <= stamps[0] else len(stamps) - 1
            gap = abs(stamp_ns - stamps[k])
            if gap > tolerance_ns:
                side = 'before the oldest' if stamp_ns < stamps[0] else 'after the newest'
                raise TransformLookupError(
                    f'TF {parent} -> {child}: stamp {stamp_ns * 1e-9:.3f} s is '
                    f'{gap * 1e-9:.3f} s {side} sample (tolerance {tolerance_ns * 1e-9:.3f} s)')
            return _as_matrix(edge.quats[k]), edge.trans[k].copy()
        i = bisect_left(stamps, stamp_ns)
        t0, t1 = stamps[i - 1], stamps[i]
        w = (stamp_ns - t0) / (t1 - t0)
        slerp = Slerp([0.0, 1.0], Rotation.from_quat([edge.quats[i - 1], edge.quats[i]]))
        R = slerp([w]).as_matrix()[0]
        return R, (1.0 - w) * edge.trans[i - 1] + w * edge.trans[i]


def floor_in_camera(buffer: TransformBuffer, camera_frame: str, floor_frame: str,
                    stamp_ns: int, tolerance_ns: int = 0) -> FloorPlane:
    """The z = 0 plane of `floor_frame` (z up, e.g. base_footprint) in `camera_frame`.

    Raises:
        TransformLookupError: no transform between the frames at `stamp_ns`.
        ValueError: the camera is not above that floor.
    """
    R, t = buffer.lookup(camera_frame, floor_frame, stamp_ns, tolerance_ns)
    return FloorPlane.from_object_pose(R, t)
