"""RViz markers of the detected objects: skeleton lines, keypoint spheres, labels, voxels.

Marker ids are the objects' track ids, so a track keeps its markers from frame to frame;
markers have a lifetime, so those of a lost track disappear on their own. Skeleton lines
are coloured per category (:func:`category_colour`), so a chair and its table differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
import zlib

from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point, Vector3
import numpy as np
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from perception_3dinn.inference.types import ObjectEstimate
from perception_3dinn.ros.convert import category_of, pose_msg
from perception_3dinn.skeleton import Category

NAMESPACES = ('skeleton', 'keypoints', 'labels', 'voxels')
# Colour map of the voxel cubes over occupancy threshold..255 (purple, teal, yellow: viridis'
# ends and middle), alpha rising with the probability.
VOXEL_COLOURS = np.array([[0.27, 0.00, 0.33], [0.13, 0.57, 0.55], [0.99, 0.91, 0.14]])
# Skeleton colours: the five furniture categories fixed, any other by a hash of its name.
CATEGORY_COLOURS = {'chair': (0.1, 0.6, 1.0), 'table': (1.0, 0.55, 0.1),
                    'sofa': (0.85, 0.25, 0.85), 'bed': (0.2, 0.85, 0.45),
                    'swivel_chair': (0.95, 0.9, 0.2)}
_PALETTE = ((0.55, 0.35, 1.0), (0.0, 0.8, 0.8), (1.0, 0.4, 0.4), (0.6, 0.8, 0.2),
            (0.9, 0.6, 0.75), (0.5, 0.5, 0.5))


def category_colour(name: str) -> ColorRGBA:
    """The skeleton colour of a category (stable across runs and machines)."""
    rgb = CATEGORY_COLOURS.get(name) or _PALETTE[zlib.crc32(name.encode()) % len(_PALETTE)]
    return ColorRGBA(r=rgb[0], g=rgb[1], b=rgb[2], a=1.0)


def confidence_color(confidence: float) -> ColorRGBA:
    """Red (0) -> yellow (0.5) -> green (1)."""
    c = float(np.clip(confidence if np.isfinite(confidence) else 0.0, 0.0, 1.0))
    return ColorRGBA(r=float(min(1.0, 2.0 * (1.0 - c))), g=float(min(1.0, 2.0 * c)), b=0.1,
                     a=1.0)


def occupancy_colours(occupancy: np.ndarray, threshold: int) -> list[ColorRGBA]:
    """Colours of voxels of `occupancy` (uint8, >= `threshold`): `VOXEL_COLOURS` from the
    threshold (least likely) to 255 (certain); alpha 0.25 to 0.6."""
    span = max(255.0 - float(threshold), 1.0)
    u = np.clip((np.asarray(occupancy, np.float64) - threshold) / span, 0.0, 1.0)
    x = u * (len(VOXEL_COLOURS) - 1)
    lo = np.minimum(np.floor(x).astype(np.int64), len(VOXEL_COLOURS) - 2)
    rgb = VOXEL_COLOURS[lo] + (x - lo)[:, None] * (VOXEL_COLOURS[lo + 1] - VOXEL_COLOURS[lo])
    alpha = 0.25 + 0.35 * u
    return [ColorRGBA(r=float(c[0]), g=float(c[1]), b=float(c[2]), a=float(a))
            for c, a in zip(rgb, alpha)]


def _duration(seconds: float) -> Duration:
    ns = int(round(seconds * 1e9))
    return Duration(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def _marker(header: Header, ns: str, track_id: int, kind: int, lifetime: Duration) -> Marker:
    m = Marker()
    m.header = header
    m.ns = ns
    m.id = int(track_id)
    m.type = kind
    m.action = Marker.ADD
    m.pose.orientation.w = 1.0
    m.lifetime = lifetime
    return m


def object_markers(obj: ObjectEstimate, track_id: int, header: Header, category: Category,
                   lifetime_s: float, voxel_threshold: int | None = 128,
                   voxel_lifetime_s: float | None = None) -> list[Marker]:
    """Markers of one object, in the header (camera optical) frame.

    Args:
        obj: the object; its keypoints_3d `(N, 3)` are in the header frame, metres.
        track_id: marker id (stable per track).
        voxel_threshold: draw voxels with occupancy >= this; None: no voxel marker.
        voxel_lifetime_s: lifetime of the voxel marker (None: `lifetime_s`).
    """
    life = _duration(lifetime_s)
    pts = np.asarray(obj.keypoints_3d, np.float64)
    conf = np.asarray(obj.confidences, np.float64).reshape(-1)
    out = []

    lines = _marker(header, 'skeleton', track_id, Marker.LINE_LIST, life)
    lines.scale.x = 0.01
    lines.color = category_colour(obj.category or category.name)
    for a, b in category.edges:
        lines.points.append(Point(x=float(pts[a, 0]), y=float(pts[a, 1]), z=float(pts[a, 2])))
        lines.points.append(Point(x=float(pts[b, 0]), y=float(pts[b, 1]), z=float(pts[b, 2])))
    out.append(lines)

    spheres = _marker(header, 'keypoints', track_id, Marker.SPHERE_LIST, life)
    spheres.scale = Vector3(x=0.03, y=0.03, z=0.03)
    spheres.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
    for i, p in enumerate(pts):
        spheres.points.append(Point(x=float(p[0]), y=float(p[1]), z=float(p[2])))
        spheres.colors.append(confidence_color(conf[i] if i < conf.size else 0.0))
    out.append(spheres)

    label = _marker(header, 'labels', track_id, Marker.TEXT_VIEW_FACING, life)
    top = pts[np.argmin(pts[:, 1])] if len(pts) else np.asarray(obj.t, np.float64)
    label.pose.position = Point(x=float(top[0]), y=float(top[1]) - 0.1, z=float(top[2]))
    label.scale.z = 0.08
    label.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
    label.text = f'{obj.category} {track_id} ({obj.score:.2f})'
    out.append(label)

    grid = obj.voxels
    if voxel_threshold is not None and grid is not None:
        vlife = life if voxel_lifetime_s is None else _duration(voxel_lifetime_s)
        cubes = voxel_marker(grid, header, track_id, obj.R, obj.t, voxel_threshold, vlife)
        if cubes is not None:
            out.append(cubes)
    return out


def voxel_marker(grid: Any, header: Header, track_id: int, R: np.ndarray, t: np.ndarray,
                 threshold: int, lifetime: Duration) -> Marker | None:
    """Occupied voxels as a CUBE_LIST posed like the object (no TF lookup needed), each
    cube coloured by its occupancy probability (`occupancy_colours`)."""
    occ = np.asarray(grid.occupancy)
    idx = np.argwhere(occ >= threshold)
    if idx.size == 0:
        return None
    res = float(grid.resolution)
    centres = np.asarray(grid.origin, np.float64) + (idx + 0.5) * res
    m = _marker(header, 'voxels', track_id, Marker.CUBE_LIST, lifetime)
    m.pose = pose_msg(R, t)
    m.scale = Vector3(x=res, y=res, z=res)
    m.color = ColorRGBA(r=0.9, g=0.5, b=0.1, a=0.35)  # for viewers that ignore colors
    m.points = [Point(x=float(c[0]), y=float(c[1]), z=float(c[2])) for c in centres]
    m.colors = occupancy_colours(occ[tuple(idx.T)], threshold)
    return m


def frame_markers(kept: list[tuple[int, str, ObjectEstimate]], header: Header,
                  category: Category | Mapping[str, Category], lifetime_s: float,
                  voxel_threshold: int | None,
                  voxel_lifetime_s: float | None = None) -> MarkerArray:
    """MarkerArray of all published objects of a frame (`kept` from frame_messages); each
    object drawn with its own category's skeleton (``category``: one, or all by name)."""
    out = MarkerArray()
    for tid, _, obj in kept:
        out.markers.extend(object_markers(obj, tid, header, category_of(obj, category),
                                          lifetime_s,
                                          voxel_threshold, voxel_lifetime_s))
    return out


def delete_all(header: Header) -> MarkerArray:
    """A MarkerArray that clears every marker of this node (after a reset)."""
    m = Marker()
    m.header = header
    m.action = Marker.DELETEALL
    return MarkerArray(markers=[m])
