"""User meshes in (seed 003): load, check, normalise, and render pairs of views.

A user brings a folder of meshes (OBJ, PLY, GLB/GLTF, STL, OFF) of one category. Each file is
read with trimesh (``trimesh.load(path, force='mesh')``, scenes are merged into one mesh),
checked, and normalised as in the paper (sec. 4): rotated so that its up axis is +z (our
object frame: z up), then scaled and shifted so that the longest side of its axis-aligned
bounding box spans exactly [-1, 1] and the box is centred at the origin.

Checks, one clear message per file (:class:`MeshReport`):

- rejected (skipped and counted): unreadable or empty file, non-finite vertices, zero
  surface area, more than ``max_faces`` faces (no decimation: say so and let the user
  simplify the mesh with a tool made for it);
- warnings (the mesh is kept): not watertight or non-manifold edges (the renderer draws
  faces independently and two-sided, so it needs neither a closed nor a manifold surface),
  suspicious units: the raw longest side is more than 100 times
  or less than 1e-3 times the user's ``metric_size`` (metres), which usually means
  millimetres or a broken export. ``units='skip'`` rejects those instead. The shape is
  normalised either way; the metric size is only the category's size prior.

Up axis: given (``'x'``, ``'-x'``, ``'y'``, ``'-y'``, ``'z'``, ``'-z'``), or ``'auto'``: the
largest-support heuristic. For each of the six axis directions d, the support area is the
total area of the convex hull's faces whose outward normal lies within 10 degrees of -d
(the face the object would stand on with d up). The direction with the largest support area
is up; near ties (within 5 %) go to the first of +z, +y, -z, -y, +x, -x (z-up CAD, then y-up
OBJ/glTF). It gets tables, stools, cars and monitors right; an object whose side is wider
than its base (a chair with a tall flat back) can come out lying on it, so a folder of one
category should pass its ``up`` explicitly (meshes of one source share one convention).

Views (:func:`render_pair`): two cameras on the upper hemisphere, as in the paper: random
azimuth, elevation in ``ViewConfig.elevation_deg`` above the horizon, zero roll, at a distance
in ``distance`` from the origin, looking at the origin plus a small random shift, with a fixed
field of view. Each view is drawn by our z-buffer rasteriser (:mod:`training.synth.render`,
triangles are convex faces) with two-sided faces (normals turned towards the camera, so
meshes with inconsistent winding render whole), one random material colour per pair shaded
with the renderer's Lambert lighting and screen-space texture, a random background, and the
renderer's camera degradations. Poses are object -> camera, ``X_cam = R @ X_obj + t``; the
pair carries the relative transform ``X_b = R_ab @ X_a + t_ab``. The rasteriser loops over
faces in Python (about 20 us a face), so meshes of a few thousand faces render in a fraction
of a second; simplify large scans first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.synth import render

MESH_SUFFIXES = ('.obj', '.ply', '.glb', '.gltf', '.stl', '.off')

UP_ROTATIONS = {  # proper rotations taking the named axis to +z
    'z': np.eye(3),
    '-z': np.diag([1.0, -1.0, -1.0]),
    'y': np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]]),
    '-y': np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]),
    'x': np.array([[0.0, 0, -1], [0, 1, 0], [1, 0, 0]]),
    '-x': np.array([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]]),
}
_AXIS_ORDER = ('z', 'y', '-z', '-y', 'x', '-x')
_AXIS_VECTORS = {'z': (0, 0, 1), 'y': (0, 1, 0), 'x': (1, 0, 0),
                 '-z': (0, 0, -1), '-y': (0, -1, 0), '-x': (-1, 0, 0)}


class MeshError(ValueError):
    """A mesh file that cannot be used; the message says why and what to do."""


@dataclass
class UserMesh:
    """A normalised user mesh (object frame: z up, longest bounding-box side [-1, 1]).

    Attributes:
        name: file name.
        vertices: (V, 3) float64 normalised vertices.
        faces: (F, 3) int64 triangles.
        normals: (F, 3) unit face normals (winding as in the file).
        up: the up axis of the file (given or detected).
        scale: normalised = scale * (UP_ROTATIONS[up] @ raw - centre).
        raw_extent: (3,) bounding-box sides in file units, after the up rotation.
        warnings: messages for this file (kept anyway).
        centre: (3,) bounding-box centre in file units, after the up rotation.
    """

    name: str
    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray
    up: str
    scale: float
    raw_extent: np.ndarray
    warnings: list[str] = field(default_factory=list)
    centre: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def normalise(self, raw: np.ndarray) -> np.ndarray:
        """(..., 3) points in file coordinates -> this mesh's normalised object frame."""
        return self.scale * (np.asarray(raw, np.float64) @ UP_ROTATIONS[self.up].T
                             - self.centre)


@dataclass
class MeshReport:
    """What :func:`load_mesh_folder` did with each file."""

    loaded: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f'{len(self.loaded)} meshes loaded, {len(self.skipped)} skipped, '
                 f'{len(self.warnings)} warnings']
        lines += [f'  skipped {name}: {why}' for name, why in self.skipped]
        lines += [f'  warning {name}: {why}' for name, why in self.warnings]
        return '\n'.join(lines)


def detect_up(vertices: np.ndarray, angle_deg: float = 10.0) -> str:
    """Up axis by the largest-support heuristic (see the module docstring)."""
    import trimesh

    try:
        hull = trimesh.Trimesh(vertices=vertices, process=True).convex_hull
    except Exception:  # flat or degenerate point sets have no 3D hull
        return 'z'
    cos = np.cos(np.radians(angle_deg))
    areas = {}
    for name in _AXIS_ORDER:
        d = np.asarray(_AXIS_VECTORS[name], np.float64)
        areas[name] = float(hull.area_faces[hull.face_normals @ -d >= cos].sum())
    best = max(areas.values())
    return next(n for n in _AXIS_ORDER if areas[n] >= 0.95 * best)


def load_mesh(path: str | Path, up: str = 'auto', metric_size: float | None = None,
              max_faces: int = 500_000, units: str = 'warn') -> UserMesh:
    """Read, check and normalise one mesh file.

    Args:
        path: mesh file (any format trimesh reads).
        up: up axis of the file (a key of :data:`UP_ROTATIONS`) or ``'auto'``.
        metric_size: expected longest side in metres, for the units check (None: no check).
        max_faces: more faces than this are rejected.
        units: ``'warn'`` or ``'skip'`` for suspicious units.

    Raises:
        MeshError: the file is unusable (the message says why).
    """
    import trimesh

    path = Path(path)
    if up != 'auto' and up not in UP_ROTATIONS:
        raise ValueError(f'up must be auto or one of {sorted(UP_ROTATIONS)}, got {up!r}')
    if units not in ('warn', 'skip'):
        raise ValueError(f'units must be warn or skip, got {units!r}')
    if not path.is_file() or path.stat().st_size == 0:
        raise MeshError('empty file (0 bytes)' if path.is_file() else 'no such file')
    try:
        mesh = trimesh.load(str(path), force='mesh', process=False)
    except Exception as e:  # trimesh raises many types for broken files
        raise MeshError(f'cannot be read ({type(e).__name__}: {e})') from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0 or len(mesh.vertices) == 0:
        raise MeshError('empty: no triangles found (is it a point cloud or an empty scene?)')
    vertices = np.asarray(mesh.vertices, np.float64)
    faces = np.asarray(mesh.faces, np.int64)
    if not np.all(np.isfinite(vertices)):
        bad = int(np.sum(~np.all(np.isfinite(vertices), axis=1)))
        raise MeshError(f'{bad} vertices are NaN or infinite (broken export)')
    if len(faces) > max_faces:
        raise MeshError(f'{len(faces)} faces, more than max_faces={max_faces}: simplify it '
                        '(e.g. quadric decimation in Blender or MeshLab) or raise max_faces')
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=True)  # merge duplicates
    vertices = np.asarray(mesh.vertices, np.float64)
    faces = np.asarray(mesh.faces, np.int64)
    used = vertices[np.unique(faces)]
    keep = mesh.area_faces > 0
    if not keep.any() or np.ptp(used, axis=0).max() <= 0:
        raise MeshError('zero surface area: every triangle is degenerate')
    warnings = []
    if not mesh.is_watertight:
        warnings.append('not watertight (kept: the renderer does not need a closed surface)')
    _, uses = np.unique(mesh.edges_sorted, axis=0, return_counts=True)
    if np.any(uses > 2):
        warnings.append(f'{int(np.sum(uses > 2))} non-manifold edges (shared by more than two '
                        'faces; kept: the renderer draws faces independently)')
    up_axis = detect_up(used) if up == 'auto' else up
    rot = UP_ROTATIONS[up_axis]
    v = vertices @ rot.T
    lo, hi = v[np.unique(faces)].min(0), v[np.unique(faces)].max(0)
    extent = hi - lo
    if metric_size is not None:
        ratio = float(extent.max()) / float(metric_size)
        if ratio > 100 or ratio < 1e-3:
            msg = (f'suspicious units: longest side {extent.max():.4g} file units is '
                   f'{ratio:.3g} x the metric size {metric_size} m (millimetres? a broken '
                   'scale?); the shape is normalised anyway')
            if units == 'skip':
                raise MeshError(msg)
            warnings.append(msg)
    scale = 2.0 / float(extent.max())
    centre = 0.5 * (lo + hi)
    v = (v - centre) * scale
    faces = faces[keep]
    normals = np.asarray(mesh.face_normals, np.float64)[keep] @ rot.T
    return UserMesh(path.name, v, faces, normals, up_axis, scale, extent, warnings, centre)


def load_mesh_folder(folder: str | Path, up: str = 'auto', metric_size: float | None = None,
                     max_faces: int = 500_000,
                     units: str = 'warn') -> tuple[list[UserMesh], MeshReport]:
    """Every mesh file under ``folder`` (sorted), with a report of what was skipped and why.

    Arguments as :func:`load_mesh`. Files with other suffixes are ignored.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f'mesh folder {folder} does not exist')
    meshes, report = [], MeshReport()
    for path in sorted(p for p in folder.rglob('*') if p.suffix.lower() in MESH_SUFFIXES):
        name = str(path.relative_to(folder))
        try:
            m = load_mesh(path, up, metric_size, max_faces, units)
        except MeshError as e:
            report.skipped.append((name, str(e)))
            continue
        meshes.append(m)
        report.loaded.append(name)
        report.warnings.extend((name, w) for w in m.warnings)
    return meshes, report


# ------------------------------------------------------------------------------ views
@dataclass
class ViewConfig:
    """Cameras of the view pairs (object units: the mesh spans [-1, 1]).

    Attributes:
        size: image side in pixels (square images).
        fov_deg: horizontal and vertical field of view.
        distance: (min, max) camera distance from the origin.
        elevation_deg: (min, max) elevation above the horizon.
        shift: standard deviation of the random shift of the look-at point (object units).
    """

    size: int = 64
    fov_deg: float = 50.0
    distance: tuple = (3.6, 4.4)
    elevation_deg: tuple = (5.0, 60.0)
    shift: float = 0.08

    def intrinsics(self) -> np.ndarray:
        f = 0.5 * self.size / np.tan(np.radians(0.5 * self.fov_deg))
        c = 0.5 * (self.size - 1)  # pixel centres at integers
        return np.array([[f, 0.0, c], [0.0, f, c], [0.0, 0.0, 1.0]])


@dataclass
class View:
    """One rendered view: image (H, W, 3) uint8 RGB, mask (H, W) bool, depth (H, W) float32
    (0 off the object), K (3, 3), pose R (3, 3), t (3,) with ``X_cam = R @ X_obj + t``."""

    image: np.ndarray
    mask: np.ndarray
    depth: np.ndarray
    K: np.ndarray
    R: np.ndarray
    t: np.ndarray


@dataclass
class ViewPair:
    """Two views of one mesh and their relative transform ``X_b = R_ab @ X_a + t_ab``."""

    a: View
    b: View
    R_ab: np.ndarray
    t_ab: np.ndarray


def look_at(centre: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Object -> camera (R, t) of a zero-roll camera at ``centre`` looking at ``target``
    (optical frame: x right, y down, z forward; object z up)."""
    fwd = np.asarray(target, np.float64) - np.asarray(centre, np.float64)
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    if np.linalg.norm(right) < 1e-9:
        raise ValueError('look_at: the camera looks straight down or up (roll undefined)')
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    R = np.stack([right, down, fwd])
    return R, -R @ np.asarray(centre, np.float64)


def sample_camera(rng: np.random.Generator, config: ViewConfig) -> tuple[np.ndarray, np.ndarray]:
    """Random (R, t) on the upper hemisphere (see :class:`ViewConfig`)."""
    az = rng.uniform(0.0, 2.0 * np.pi)
    el = np.radians(rng.uniform(*config.elevation_deg))
    d = rng.uniform(*config.distance)
    centre = d * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    return look_at(centre, rng.normal(0.0, config.shift, 3))


def relative_pose(R_a, t_a, R_b, t_b) -> tuple[np.ndarray, np.ndarray]:
    """(R_ab, t_ab) with ``X_b = R_ab @ X_a + t_ab`` for object -> camera poses a and b."""
    R_ab = np.asarray(R_b) @ np.asarray(R_a).T
    return R_ab, np.asarray(t_b) - R_ab @ np.asarray(t_a)


def render_view(mesh: UserMesh, R: np.ndarray, t: np.ndarray, K: np.ndarray, size: int,
                rng: np.random.Generator, colour: np.ndarray | None = None,
                backgrounds: list[Path] | None = None) -> View:
    """Draw ``mesh`` seen from (R, t) with our rasteriser, shading and backgrounds."""
    v = mesh.vertices @ np.asarray(R).T + np.asarray(t)
    n = mesh.normals @ np.asarray(R).T
    faces = mesh.faces
    facing_away = np.einsum('ij,ij->i', n, v[faces[:, 0]]) > 0
    n = np.where(facing_away[:, None], -n, n)  # two-sided faces
    soup = render.FaceSoup(v, list(faces), n, np.zeros(len(faces), np.int64))
    depth, face = render.rasterize(soup, K, size, size)
    colour = render.random_colour(rng) if colour is None else colour
    light = render.Lighting.sample(rng, np.asarray(R)[:, 2])
    shaded = colour[None, :] * light.shade(n)[:, None]
    bg = render.background(rng, size, size, backgrounds)
    img = render.compose(bg, face, shaded.astype(np.float32), np.zeros(len(faces), np.int64),
                         [render.texture_pattern(rng, size, size)])
    return View(render.finish(img, rng), face >= 0, depth, np.asarray(K, np.float64).copy(),
                np.asarray(R, np.float64), np.asarray(t, np.float64))


def render_pair(mesh: UserMesh, rng: np.random.Generator, config: ViewConfig | None = None,
                backgrounds: list[Path] | None = None) -> ViewPair:
    """Two random views of ``mesh`` with one material and their relative pose."""
    config = config or ViewConfig()
    K = config.intrinsics()
    colour = render.random_colour(rng)
    views = []
    for _ in range(2):
        R, t = sample_camera(rng, config)
        views.append(render_view(mesh, R, t, K, config.size, rng, colour, backgrounds))
    R_ab, t_ab = relative_pose(views[0].R, views[0].t, views[1].R, views[1].t)
    return ViewPair(views[0], views[1], R_ab, t_ab)
