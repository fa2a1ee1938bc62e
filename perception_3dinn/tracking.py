"""Detection-to-track association and online temporal smoothing (seed 001, online half).

Per frame the pipeline hands the tracker one `Observation` per interpreted object. The
tracker associates them with its tracks (by the detector's id when it has one, else by box
overlap with `scipy.optimize.linear_sum_assignment`), and per track keeps

- the structure as the median of the last `structure_window` estimates (the video paper's
  per-video structure latent, solved online by the median since a rigid object's structure
  does not change);
- the rotation with an alpha-beta (constant angular velocity) filter on SO(3): predict with the
  track's angular velocity, correct in the tangent space of the prediction;
- the translation with the same alpha-beta filter in R^3, which has no lag on constant
  velocity motion (the low-lag filter of DESIGN.md step 6).

An observation of a rotationally symmetric instance (a square table) carries the turns
about z under which it looks the same (`Observation.equivalents`); the tracker turns each
measurement to the equivalent rotation nearest its prediction, so the frame does not jump
between equivalent poses (:mod:`perception_3dinn.symmetry`).

A measurement far from the prediction (a symmetric flip, a PnP outlier) is ignored and the
prediction kept, unless `outlier_frames` such measurements come in a row (the object really
moved, or a new object sits under an old box): then the track re-initialises on the latest.
Tracks not seen for `max_age_s` expire; a backward clock jump resets all.
Plain numpy/scipy: no torch, no ROS.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
import itertools

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from perception_3dinn.symmetry import closest_turn


@dataclass
class TrackerConfig:
    """Parameters of `Tracker` (all exposed as node parameters).

    Attributes:
        iou_threshold: minimum box IoU for a box-overlap association.
        max_age_s: a track not updated for longer expires.
        structure_window: number of recent structure estimates whose median is kept.
        rotation_alpha: weight of the rotation innovation in the estimate (1 = no smoothing).
        rotation_beta: weight of the rotation innovation in the angular velocity (0 = constant
            rotation model).
        translation_alpha: as rotation_alpha, for the translation.
        translation_beta: as rotation_beta, for the translation.
        rotation_reset_rad: a rotation innovation larger than this makes the measurement an
            outlier.
        translation_reset_ratio: a translation innovation larger than this fraction of the
            camera distance makes the measurement an outlier.
        outlier_frames: this many outliers in a row re-initialise the track's pose on the
            latest one (1: every outlier re-initialises at once).
        max_dt_s: a frame gap longer than this re-initialises the velocities.
        time_jump_tolerance_s: a stamp earlier than the last one by more than this resets all.
    """

    iou_threshold: float = 0.3
    max_age_s: float = 1.0
    structure_window: int = 15
    rotation_alpha: float = 0.45
    rotation_beta: float = 0.08
    translation_alpha: float = 0.5
    translation_beta: float = 0.1
    rotation_reset_rad: float = 1.0
    translation_reset_ratio: float = 0.5
    outlier_frames: int = 3
    max_dt_s: float = 0.5
    time_jump_tolerance_s: float = 1e-3

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting."""
        checks = [
            (0.0 <= self.iou_threshold <= 1.0, 'iou_threshold must be in [0, 1]'),
            (self.max_age_s > 0, 'max_age_s must be > 0'),
            (self.structure_window >= 1, 'structure_window must be >= 1'),
            (0.0 < self.rotation_alpha <= 1.0, 'rotation_alpha must be in (0, 1]'),
            (0.0 <= self.rotation_beta <= 1.0, 'rotation_beta must be in [0, 1]'),
            (0.0 < self.translation_alpha <= 1.0, 'translation_alpha must be in (0, 1]'),
            (0.0 <= self.translation_beta <= 1.0, 'translation_beta must be in [0, 1]'),
            (self.rotation_reset_rad > 0, 'rotation_reset_rad must be > 0'),
            (self.translation_reset_ratio > 0, 'translation_reset_ratio must be > 0'),
            (self.outlier_frames >= 1, 'outlier_frames must be >= 1'),
            (self.max_dt_s > 0, 'max_dt_s must be > 0'),
            (self.time_jump_tolerance_s >= 0, 'time_jump_tolerance_s must be >= 0'),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f'TrackerConfig: {message}')


@dataclass
class Observation:
    """One object seen in one frame.

    Attributes:
        box: `(4,)` x_min, y_min, x_max, y_max in pixels.
        R: `(3, 3)` rotation object -> camera.
        t: `(3,)` translation, camera frame (metres).
        structure: `(K,)` structure parameters.
        category: category name; tracks never switch category.
        detection_id: the detector's track id, or None.
        log_scale: log of the object's metric scale measured in this frame (e.g. from the
            floor), or None; the track keeps the median over the structure window.
        equivalents: `(G, 3, 3)` turns S (object frame) with the same image, `R S`, or None.
    """

    box: np.ndarray
    R: np.ndarray
    t: np.ndarray
    structure: np.ndarray
    category: str = ''
    detection_id: str | None = None
    log_scale: float | None = None
    equivalents: np.ndarray | None = None


@dataclass
class TrackEstimate:
    """The smoothed state of the track an observation was assigned to.

    Attributes:
        track_id: stable id of the track.
        R: `(3, 3)` smoothed rotation.
        t: `(3,)` smoothed translation.
        structure: `(K,)` median structure over the window.
        hits: number of observations the track has had.
        is_new: True on the track's first frame (or after a re-initialisation).
        outlier: True when this frame's measurement was rejected (pose = prediction).
        scale: exp(median of the window's measured log scales), None when none was given.
    """

    track_id: str
    R: np.ndarray
    t: np.ndarray
    structure: np.ndarray
    hits: int
    is_new: bool
    outlier: bool = False
    scale: float | None = None


@dataclass
class _Track:
    track_id: str
    category: str
    detection_id: str | None
    box: np.ndarray
    stamp_s: float
    rot: np.ndarray  # (3, 3)
    omega: np.ndarray
    t: np.ndarray
    v: np.ndarray
    structures: deque = field(default_factory=deque)
    log_scales: deque = field(default_factory=deque)
    hits: int = 1
    outliers: int = 0


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union of boxes.

    Args:
        a: `(M, 4)` boxes x_min, y_min, x_max, y_max.
        b: `(N, 4)` boxes.

    Returns:
        `(M, N)` IoU in [0, 1] (0 for empty boxes).
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid='ignore', divide='ignore'):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return iou


class Tracker:
    """Associates observations with tracks and smooths them over time."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self.config.validate()
        self._tracks: list[_Track] = []
        self._ids = itertools.count(1)
        self._last_stamp: float | None = None

    @property
    def num_tracks(self) -> int:
        return len(self._tracks)

    def reset(self) -> None:
        """Forget all tracks (a backward clock jump, a new bag, a re-activation)."""
        self._tracks.clear()
        self._last_stamp = None

    def update(self, stamp_s: float, observations: list[Observation]) -> list[TrackEstimate]:
        """Associate this frame's observations and return one smoothed estimate per observation.

        Args:
            stamp_s: frame stamp in seconds.
            observations: this frame's objects.

        Returns:
            list of TrackEstimate, in the order of `observations`.
        """
        stamp_s = float(stamp_s)
        if not np.isfinite(stamp_s):
            raise ValueError(f'Tracker.update: stamp must be finite, got {stamp_s}')
        for i, obs in enumerate(observations):
            _check_observation(i, obs)
        cfg = self.config
        if (self._last_stamp is not None
                and stamp_s < self._last_stamp - cfg.time_jump_tolerance_s):
            self.reset()
        self._last_stamp = stamp_s
        self._tracks = [tr for tr in self._tracks if stamp_s - tr.stamp_s <= cfg.max_age_s]

        assignment = self._associate(observations)
        results: list[TrackEstimate] = []
        for i, obs in enumerate(observations):
            ti = assignment.get(i)
            if ti is None:
                track = self._new_track(obs, stamp_s)
                self._tracks.append(track)
                is_new, outlier = True, False
            else:
                track = self._tracks[ti]
                is_new, outlier = self._correct(track, obs, stamp_s)
            results.append(TrackEstimate(
                track_id=track.track_id, R=track.rot.copy(), t=track.t.copy(),
                structure=np.median(np.stack(track.structures), axis=0),
                hits=track.hits, is_new=is_new, outlier=outlier,
                scale=(float(np.exp(np.median(track.log_scales))) if track.log_scales
                       else None)))
        return results

    def _associate(self, observations: list[Observation]) -> dict[int, int]:
        """Observation index -> track index."""
        assignment: dict[int, int] = {}
        taken: set[int] = set()
        by_id = {(tr.category, tr.detection_id): k for k, tr in enumerate(self._tracks)
                 if tr.detection_id is not None}
        for i, obs in enumerate(observations):
            if obs.detection_id is None:
                continue
            k = by_id.get((obs.category, obs.detection_id))
            if k is not None and k not in taken:
                assignment[i] = k
                taken.add(k)
        rest_obs = [i for i in range(len(observations)) if i not in assignment]
        rest_tracks = [k for k in range(len(self._tracks)) if k not in taken]
        if not rest_obs or not rest_tracks:
            return assignment
        iou = box_iou(np.stack([observations[i].box for i in rest_obs]),
                      np.stack([self._tracks[k].box for k in rest_tracks]))
        for a, i in enumerate(rest_obs):
            for b, k in enumerate(rest_tracks):
                tr = self._tracks[k]
                obs = observations[i]
                if tr.category != obs.category or (
                        obs.detection_id is not None and tr.detection_id is not None):
                    # different categories, or both carry (different) detector ids
                    iou[a, b] = 0.0
        rows, cols = linear_sum_assignment(-iou)
        for a, b in zip(rows, cols):
            if iou[a, b] >= self.config.iou_threshold:
                assignment[rest_obs[a]] = rest_tracks[b]
        return assignment

    def _new_track(self, obs: Observation, stamp_s: float) -> _Track:
        track = _Track(
            track_id=str(next(self._ids)), category=obs.category,
            detection_id=obs.detection_id, box=np.asarray(obs.box, dtype=np.float64).copy(),
            stamp_s=stamp_s, rot=_project_so3(obs.R), omega=np.zeros(3),
            t=np.asarray(obs.t, dtype=np.float64).copy(), v=np.zeros(3),
            structures=deque(maxlen=self.config.structure_window),
            log_scales=deque(maxlen=self.config.structure_window))
        _remember_shape(track, obs)
        return track

    def _correct(self, track: _Track, obs: Observation, stamp_s: float) -> tuple[bool, bool]:
        """Alpha-beta update of one track; returns (re-initialised, measurement rejected)."""
        cfg = self.config
        dt = stamp_s - track.stamp_s
        if dt > cfg.max_dt_s:
            track.omega[:] = 0.0
            track.v[:] = 0.0
            dt_pred = 0.0
        else:
            dt_pred = max(dt, 0.0)
        rot_pred = _exp(track.omega * dt_pred) @ track.rot
        t_pred = track.t + track.v * dt_pred
        rot_meas = _project_so3(obs.R)
        if obs.equivalents is not None and len(obs.equivalents) > 1:
            turns = np.asarray(obs.equivalents, np.float64)
            rot_meas = rot_meas @ turns[closest_turn(rot_meas, rot_pred, turns)]
        t_meas = np.asarray(obs.t, dtype=np.float64)
        r_innov = _log(rot_meas @ rot_pred.T)
        t_innov = t_meas - t_pred
        distance = max(float(np.linalg.norm(t_meas)), 1e-6)
        far = (np.linalg.norm(r_innov) > cfg.rotation_reset_rad
               or np.linalg.norm(t_innov) > cfg.translation_reset_ratio * distance)
        track.outliers = track.outliers + 1 if far else 0
        reinit = far and track.outliers >= cfg.outlier_frames
        outlier = far and not reinit
        if reinit:
            track.rot = rot_meas
            track.t = t_meas.copy()
            track.omega[:] = 0.0
            track.v[:] = 0.0
            track.outliers = 0
        elif outlier:  # keep the prediction
            track.rot = _project_so3(rot_pred)
            track.t = t_pred
        else:
            track.rot = _project_so3(_exp(cfg.rotation_alpha * r_innov) @ rot_pred)
            track.t = t_pred + cfg.translation_alpha * t_innov
            if dt_pred > 0:
                track.omega = track.omega + cfg.rotation_beta * r_innov / dt_pred
                track.v = track.v + cfg.translation_beta * t_innov / dt_pred
        _remember_shape(track, obs)
        track.box = np.asarray(obs.box, dtype=np.float64).copy()
        track.stamp_s = stamp_s
        track.hits += 1
        if obs.detection_id is not None:
            track.detection_id = obs.detection_id
        return bool(reinit), bool(outlier)

    def share_ids(self, ids: Iterator[int]) -> None:
        """Draw new track ids from ``ids``: one counter shared by the trackers of several
        categories keeps track ids (and message ids) unique across them."""
        self._ids = ids

    def drop(self, track_id: str) -> bool:
        """Forget the track `track_id` (an observation that should not have made one, e.g. a
        box another category's model explained better); True when there was such a track."""
        for k, track in enumerate(self._tracks):
            if track.track_id == track_id:
                del self._tracks[k]
                return True
        return False


# SO(3) exponential and logarithm maps (rotation vectors, world-frame increments) through
# cv2.Rodrigues, a few microseconds per call.
def _exp(rotvec: np.ndarray) -> np.ndarray:
    """(3,) rotation vector -> (3, 3) rotation."""
    return cv2.Rodrigues(np.asarray(rotvec, np.float64).reshape(3, 1))[0]


def _log(R: np.ndarray) -> np.ndarray:
    """(3, 3) rotation -> (3,) rotation vector, angle in [0, pi]."""
    return cv2.Rodrigues(np.ascontiguousarray(R, np.float64))[0].reshape(3)


def _project_so3(R: np.ndarray) -> np.ndarray:
    """Nearest rotation to a (3, 3) matrix (removes round-off drift), via SVD."""
    u, _, vt = np.linalg.svd(np.asarray(R, np.float64))
    return u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt


def _remember_shape(track: _Track, obs: Observation) -> None:
    track.structures.append(np.asarray(obs.structure, dtype=np.float64).copy())
    if obs.log_scale is not None:
        track.log_scales.append(float(obs.log_scale))


def _check_observation(i: int, obs: Observation) -> None:
    shapes = {'box': (4,), 'R': (3, 3), 't': (3,)}
    for name, shape in shapes.items():
        value = np.asarray(getattr(obs, name))
        if value.shape != shape:
            raise ValueError(f'Observation {i}: {name} must have shape {shape}, '
                             f'got {value.shape}')
        if not np.all(np.isfinite(value)):
            raise ValueError(f'Observation {i}: {name} has non-finite values')
    if np.asarray(obs.structure).ndim != 1:
        raise ValueError(f'Observation {i}: structure must have shape (K,)')
    eq = obs.equivalents
    if eq is not None and (np.asarray(eq).ndim != 3 or np.asarray(eq).shape[1:] != (3, 3)
                           or not np.all(np.isfinite(eq))):
        raise ValueError(f'Observation {i}: equivalents must be finite (G, 3, 3) or None')
    if obs.log_scale is not None and not np.isfinite(obs.log_scale):
        raise ValueError(f'Observation {i}: log_scale must be finite or None')
