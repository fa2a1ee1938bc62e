"""Rendered training images of one procedural object with full ground truth.

``render_sample(category, rng, config)`` samples an instance, a camera (intrinsics in
realistic ranges, viewpoint, distance so that the object fills a detection-like box),
lighting, materials, a background and occluders, renders it and returns a dict of numpy
arrays (see :data:`SAMPLE_FIELDS`). All randomness comes from ``rng``, so a seed fixes the
sample bit for bit.

Conventions (docs/interfaces.md): camera optical frame, ``X_cam = R @ Y + t`` with Y the
instance's keypoints in metres in its canonical frame; pixel centres at integers.
``structure`` is the least-squares alpha of the instance's size-normalised skeleton on the
category's bases; ``scale_m`` is the instance's keypoint-box diagonal (metres), so
``R @ (category.structure(alpha) * scale_m) + t`` approximates ``keypoints_3d``.
The voxel grid is the mesh rescaled to the category's size prior
(``mesh * size_prior_m / scale_m``) in the grid of ``perception_3dinn.voxels``
``grid_for_dimensions(category.dimensions_m)``, i.e. the frame of
``category.metric_structure(alpha)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from perception_3dinn.geometry import pose_from_viewpoint, viewpoint_from_rotation
from perception_3dinn.skeleton import Category
from perception_3dinn.symmetry import canonical_labels
from perception_3dinn.voxels import grid_for_dimensions
from training.synth import render
from training.synth.domains import (
    check_domain,
    shifted_background,
    shifted_colour,
    SHIFTED_HFOV_DEG,
    shifted_texture,
    shifted_tint,
)
from training.synth.procedural import ConvexPart, generate, keypoint_diagonal, Mesh, prism

VOXEL_SIZE = 32
MIN_DEPTH = 0.3  # metres: nearest allowed object point

# name -> (shape with S = image size, N keypoints, K bases, V voxels; dtype)
SAMPLE_FIELDS = {
    'image': (('S', 'S', 3), 'uint8'),
    'mask': (('S', 'S'), 'uint8'),
    'depth': (('S', 'S'), 'float16'),
    'keypoints_2d': (('N', 2), 'float32'),
    'visible': (('N',), 'bool'),
    'in_image': (('N',), 'bool'),
    'keypoints_3d': (('N', 3), 'float32'),
    'R': ((3, 3), 'float32'),
    't': ((3,), 'float32'),
    'structure': (('K',), 'float32'),
    'scale_m': ((), 'float32'),
    'box': ((4,), 'float32'),
    'box_visible': ((4,), 'float32'),
    'K': ((3, 3), 'float32'),
    'viewpoint': ((2,), 'float32'),
    'voxels': (('V', 'V', 'V'), 'bool'),
}


@dataclass
class ImageConfig:
    """Sampling ranges of the image synthesiser (angles in radians)."""

    size: int = 128
    elevation: tuple[float, float] = (0.0, 0.15 * np.pi)
    wide_elevation: tuple[float, float] = (-0.05 * np.pi, 0.3 * np.pi)
    wide_elevation_prob: float = 0.2
    in_plane_std: float = 0.05
    hfov_deg: tuple[float, float] = (40.0, 90.0)
    box_fraction: tuple[float, float] = (0.45, 0.9)
    truncation_prob: float = 0.1
    occluder_prob: float = 0.4
    background_dir: str | None = None
    voxels: bool = True
    domain: str = 'default'  # render style, training.synth.domains
    # user meshes instead of the procedural generator (training.synth.mesh_instances)
    mesh_dir: str | None = None
    mesh_keypoints: str | None = None
    mesh_up: str = 'auto'

    def __post_init__(self) -> None:
        check_domain(self.domain)
        if bool(self.mesh_dir) != bool(self.mesh_keypoints):
            raise ValueError('mesh_dir and mesh_keypoints go together (user meshes and the '
                             'keypoints.npz that training.discover_category wrote for them)')

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def sample_intrinsics(rng: np.random.Generator, width: int, height: int,
                      hfov_deg: tuple[float, float]) -> np.ndarray:
    """(3, 3) K: horizontal field of view in ``hfov_deg``, square-ish pixels, principal
    point within a few percent of the centre."""
    hfov = np.radians(rng.uniform(*hfov_deg))
    fx = 0.5 * width / np.tan(hfov / 2)
    fy = fx * rng.uniform(0.98, 1.02)
    cx = (width - 1) / 2 + rng.normal(0, 0.02 * width)
    cy = (height - 1) / 2 + rng.normal(0, 0.02 * height)
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])


def _project(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    return (points[:, :2] / points[:, 2:3]) * (K[0, 0], K[1, 1]) + (K[0, 2], K[1, 2])


def place_object(mesh: Mesh, K: np.ndarray, width: int, height: int,
                 rng: np.random.Generator, config: ImageConfig,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Pose (R, t) so that the object's box has a sampled size and lies in the image
    (or is truncated, with probability ``truncation_prob``)."""
    if rng.random() < config.wide_elevation_prob:
        el = rng.uniform(*config.wide_elevation)
    else:
        el = rng.uniform(*config.elevation)
    az = rng.uniform(-np.pi, np.pi)
    roll = rng.normal(0, config.in_plane_std) if rng.random() < 0.5 else 0.0
    lo, hi = mesh.bounds()
    target = np.array([0.0, 0.0, 0.5 * (lo[2] + hi[2])])
    verts = np.concatenate([p.vertices for p in mesh.parts])
    size_target = rng.uniform(*config.box_fraction) * min(width, height)
    dist = 3.0 * np.linalg.norm(hi - lo)
    for _ in range(3):
        R, t = pose_from_viewpoint(az, el, dist, roll, target)
        cam = verts @ R.T + t
        uv = _project(cam, K)
        ext = max(np.ptp(uv[:, 0]), np.ptp(uv[:, 1]))
        dist *= ext / size_target
    R, t = pose_from_viewpoint(az, el, dist, roll, target)
    z_min = float((verts @ R.T + t)[:, 2].min())
    if z_min < MIN_DEPTH:  # very wide lenses: keep the whole object in front of the camera
        R, t = pose_from_viewpoint(az, el, dist + MIN_DEPTH - z_min, roll, target)
    uv = _project(verts @ R.T + t, K)
    bx0, by0 = uv.min(0)
    bx1, by1 = uv.max(0)
    slack = 0.25 if rng.random() < config.truncation_prob else 0.0
    bw, bh = bx1 - bx0, by1 - by0
    lo_u, hi_u = -bx0 - slack * bw, (width - 1) - bx1 + slack * bw
    lo_v, hi_v = -by0 - slack * bh, (height - 1) - by1 + slack * bh
    du = rng.uniform(min(lo_u, hi_u), max(lo_u, hi_u))
    dv = rng.uniform(min(lo_v, hi_v), max(lo_v, hi_v))
    z = t[2]
    t = t + np.array([du / K[0, 0] * z, dv / K[1, 1] * z, 0.0])
    return R, t


def sample_occluders(rng: np.random.Generator, K: np.ndarray, box: np.ndarray,
                     z_near: float, count: int) -> list[ConvexPart]:
    """Flat convex slabs in front of the object (camera frame), overlapping its box."""
    parts = []
    bw, bh = box[2] - box[0], box[3] - box[1]
    for _ in range(count):
        z = rng.uniform(0.4, 0.9) * z_near
        z = max(z, 0.15)
        c = box[:2] + rng.uniform(0.1, 0.9, 2) * (bw, bh)
        r = rng.uniform(0.15, 0.45) * max(bw, bh)
        nv = int(rng.integers(3, 9))
        ang = np.sort(rng.uniform(0, 2 * np.pi, nv))
        rad = r * rng.uniform(0.5, 1.0, nv) * np.array([rng.uniform(0.4, 1.0), 1.0])[
            rng.integers(0, 2)]
        if rng.random() < 0.5:  # a bar or a post
            w = r * rng.uniform(0.15, 0.4)
            a = rng.uniform(0, np.pi)
            d = np.array([np.cos(a), np.sin(a)])
            n = np.array([-d[1], d[0]])
            poly = c + np.array([d * 3 * r + n * w, -d * 3 * r + n * w, -d * 3 * r - n * w,
                                 d * 3 * r - n * w])
        else:
            poly = c + np.stack([rad * np.cos(ang), rad * np.sin(ang)], -1)
            hull = np.asarray(_convex_hull(poly))
            poly = hull
        if len(poly) < 3:
            continue
        ray = np.column_stack([(poly[:, 0] - K[0, 2]) / K[0, 0],
                               (poly[:, 1] - K[1, 2]) / K[1, 1], np.ones(len(poly))])
        th = 0.01
        parts.append(prism(ray * z, ray * (z + th), material=4))
    return parts


def _convex_hull(points: np.ndarray) -> np.ndarray:
    import cv2

    hull = cv2.convexHull(points.astype(np.float32)).reshape(-1, 2)
    return hull.astype(np.float64)


def render_sample(category: Category, rng: np.random.Generator,
                  config: ImageConfig | None = None,
                  backgrounds: list[Path] | None = None,
                  return_scene: bool = False) -> dict:
    """Render one labelled image of a random instance of ``category``.

    Returns:
        dict of numpy arrays named and shaped as :data:`SAMPLE_FIELDS` (S = config.size,
        N keypoints, K bases, V = 32). With ``return_scene`` also ``_mesh`` (the
        instance), ``_occluders`` (camera-frame parts), ``_part_map`` (H, W) int (part per
        pixel, occluders after the object's parts, -1 none), ``_contact`` (N, P) bool
        (parts each keypoint lies on) and float64 ``_K64``, ``_R64``, ``_t64``.
    """
    config = config or ImageConfig()
    s = config.size
    if config.mesh_dir:
        from training.synth.mesh_instances import sample_instance

        mesh = sample_instance(config.mesh_dir, config.mesh_keypoints, config.mesh_up, rng)
    else:
        mesh = generate(category.name, rng)
    scale = float(keypoint_diagonal(mesh.keypoints))
    alpha = category.fit_structure(mesh.keypoints / scale)
    shifted = config.domain == 'shifted'
    K = sample_intrinsics(rng, s, s, SHIFTED_HFOV_DEG if shifted else config.hfov_deg)
    R, t = place_object(mesh, K, s, s, rng, config)

    obj = render.build_soup(mesh.parts, R, t)
    n_parts = len(mesh.parts)
    verts_cam = obj.vertices
    uv_all = _project(verts_cam, K)
    box = np.array([*uv_all.min(0), *uv_all.max(0)])
    occluders: list[ConvexPart] = []
    if rng.random() < config.occluder_prob:
        occluders = sample_occluders(rng, K, box, float(verts_cam[:, 2].min()),
                                     int(rng.integers(1, 3)))
    soups = [obj]
    if occluders:
        soups.append(render.build_soup(occluders, np.eye(3), np.zeros(3), n_parts))
    soup = render.merge_soups(soups)
    depth, face = render.rasterize(soup, K, s, s)
    part_map = np.where(face >= 0, soup.face_part[np.maximum(face, 0)], -1)

    # Appearance: materials per slot (frame, seat, back, arms, occluder).
    texture, colour = ((shifted_texture, shifted_colour) if shifted else
                       (render.texture_pattern, render.random_colour))
    textures = [texture(rng, s, s) for _ in range(3)]
    shared = rng.random() < 0.5
    base_col = colour(rng)
    slot_col = np.stack([base_col if (shared and m < 4) else colour(rng) for m in range(5)])
    slot_tex = rng.integers(0, len(textures), 5)
    part_mat = np.array([p.material for p in mesh.parts] + [p.material for p in occluders])
    light = render.Lighting.sample(rng, R[:, 2])
    shade = light.shade(soup.normals)
    face_mat = part_mat[soup.face_part]
    face_colour = slot_col[face_mat] * shade[:, None]
    if shifted:
        bg = shifted_background(rng, s, s)
    else:
        bg = render.background(rng, s, s, backgrounds)
    img = render.compose(bg, face, face_colour.astype(np.float32), slot_tex[face_mat], textures)
    if shifted:
        img = img * shifted_tint(rng)
    image = render.finish(img, rng)

    kp3 = mesh.keypoints @ R.T + t
    kp2 = _project(kp3, K)
    hs_obj = [p.halfspaces() for p in mesh.parts]
    contact = render.contact_parts(mesh.keypoints, hs_obj)
    hs_cam = [render.transform_halfspaces(h, R, t) for h in hs_obj]
    hs_cam += [p.halfspaces() for p in occluders]
    contact = np.concatenate([contact, np.zeros((len(kp3), len(occluders)), bool)], 1)
    visible, in_image = render.keypoint_visibility(kp3, hs_cam, contact, K, s, s)
    mask = (part_map >= 0) & (part_map < n_parts)
    rows, cols = np.nonzero(mask)
    box_vis = (np.array([cols.min(), rows.min(), cols.max(), rows.max()], np.float64)
               if len(rows) else np.zeros(4))
    box_clip = np.array([max(box[0], 0), max(box[1], 0), min(box[2], s - 1),
                         min(box[3], s - 1)])
    if config.voxels:
        res, origin = grid_for_dimensions(category.dimensions_m, VOXEL_SIZE)
        k = category.size_prior_m / scale
        vox = render.voxelize([p.transformed(k) for p in mesh.parts], res, origin,
                              VOXEL_SIZE)
    else:
        vox = np.zeros((VOXEL_SIZE,) * 3, bool)
    # Symmetric instances (a square table) get one label per look: the equivalent pose
    # whose viewing azimuth is nearest 0 (perception_3dinn.symmetry).
    R, lab = canonical_labels(R, mesh.keypoints, category.symmetry_elements,
                              {'kp2': kp2, 'kp3': kp3, 'visible': visible, 'in': in_image})
    kp2, kp3, visible, in_image = lab['kp2'], lab['kp3'], lab['visible'], lab['in']
    az, el = viewpoint_from_rotation(R)
    out = {
        'image': image,
        'mask': mask.astype(np.uint8),
        'depth': depth.astype(np.float16),
        'keypoints_2d': kp2.astype(np.float32),
        'visible': visible,
        'in_image': in_image,
        'keypoints_3d': kp3.astype(np.float32),
        'R': R.astype(np.float32),
        't': t.astype(np.float32),
        'structure': alpha.astype(np.float32),
        'scale_m': np.float32(scale),
        'box': box_clip.astype(np.float32),
        'box_visible': box_vis.astype(np.float32),
        'K': K.astype(np.float32),
        'viewpoint': np.array([az, el], np.float32),
        'voxels': vox,
    }
    if return_scene:
        out['_mesh'] = mesh
        out['_occluders'] = occluders
        out['_part_map'] = part_map
        out['_contact'] = contact
        out['_K64'] = K
        out['_R64'] = R
        out['_t64'] = t
    return out
