"""Ground truth of a synthetic video: what each object is (category, structure, scale,
voxels, which parts its keypoints lie on) and what each frame shows of it (2D/3D keypoints,
visibility, pose, boxes, presence).

A video of one category has arrays of that category's N keypoints and K bases. A video of
several categories (``VideoConfig.categories``) pads them to the largest N and K of its
categories and adds two fields: ``object_category`` (M,) int32, the index of each object's
category in the video's ``categories`` list (-1 for unused slots), and ``keypoint_valid``
(M, N) bool, which keypoints the object's category has (padding is zero / False). Voxels
are in each object's own category grid (``grid_for_dimensions`` of its dimensions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from perception_3dinn.skeleton import Category
from perception_3dinn.voxels import grid_for_dimensions
from training.synth import render
from training.synth.images import VOXEL_SIZE
from training.synth.procedural import keypoint_diagonal

MIXED_FIELDS = ('object_category', 'keypoint_valid')


def draw_categories(rng: np.random.Generator, n_categories: int, objects: int) -> np.ndarray:
    """(objects,) category index of each object: every category once (in random order) while
    there are objects left, the rest uniformly at random."""
    first = rng.permutation(n_categories)[:objects]
    rest = rng.integers(0, n_categories, max(0, objects - n_categories))
    return np.concatenate([first, rest]).astype(np.int64)


@dataclass
class StaticLabels:
    """Per-object data fixed over a video (slots beyond the M objects stay zero).

    Attributes:
        structure: (M_max, K) float32 structure of each object (its category's bases).
        scale_m: (M_max,) float32 keypoint bounding-box diagonal, metres.
        voxels: (M_max, V, V, V) bool occupancy in the object's category grid.
        halfspaces: per object, per part the (normals, offsets) of its convex part.
        contact: (M, N, P) bool, keypoint k of object i lies on scene part j.
        part_ranges: per object the [a, b) range of its parts among all scene parts.
        num_keypoints: per object its category's keypoint count.
    """

    structure: np.ndarray
    scale_m: np.ndarray
    voxels: np.ndarray
    halfspaces: list
    contact: np.ndarray
    part_ranges: list
    num_keypoints: list

    @property
    def num_parts(self) -> int:
        return self.part_ranges[-1][1] if self.part_ranges else 0


def static_labels(categories: Sequence[Category], meshes: list, m_max: int, n_max: int,
                  k_max: int, voxels: bool) -> StaticLabels:
    """Static labels of objects ``meshes`` whose categories are ``categories`` (one each)."""
    scales = np.array([keypoint_diagonal(mm.keypoints) for mm in meshes])
    structure = np.zeros((m_max, k_max), np.float32)
    scale_m = np.zeros(m_max, np.float32)
    vox = np.zeros((m_max,) + (VOXEL_SIZE,) * 3, bool)
    grids: dict[str, tuple] = {}
    hs_obj, contacts, part_ranges = [], [], []
    n_parts = 0
    for i, (cat, mm) in enumerate(zip(categories, meshes)):
        structure[i, :cat.num_bases] = cat.fit_structure(mm.keypoints / scales[i])
        scale_m[i] = scales[i]
        if voxels:
            if cat.name not in grids:
                grids[cat.name] = grid_for_dimensions(cat.dimensions_m, VOXEL_SIZE)
            res, origin = grids[cat.name]
            k = cat.size_prior_m / scales[i]
            vox[i] = render.voxelize([p.transformed(k) for p in mm.parts], res, origin,
                                     VOXEL_SIZE)
        hs = [p.halfspaces() for p in mm.parts]
        hs_obj.append(hs)
        contacts.append(render.contact_parts(mm.keypoints, hs))
        part_ranges.append((n_parts, n_parts + len(mm.parts)))
        n_parts += len(mm.parts)
    contact_all = np.zeros((len(meshes), n_max, n_parts), bool)
    for i, (a, b) in enumerate(part_ranges):
        contact_all[i, :len(contacts[i]), a:b] = contacts[i]
    return StaticLabels(structure, scale_m, vox, hs_obj, contact_all, part_ranges,
                        [c.num_keypoints for c in categories])


def empty_video(frames: int, height: int, width: int, m_max: int, n_max: int,
                static: StaticLabels, K: np.ndarray, trajectory: int) -> dict:
    """The video's arrays, per-frame ones zero (filled by :func:`write_object_frame`)."""
    T, H, W = frames, height, width
    return {
        'frames': np.zeros((T, H, W, 3), np.uint8),
        'instance': np.zeros((T, H, W), np.uint8),
        'depth': np.zeros((T, H, W), np.float16),
        'K': K.astype(np.float32),
        'camera_R': np.zeros((T, 3, 3), np.float32),
        'camera_t': np.zeros((T, 3), np.float32),
        'object_id': np.full(m_max, -1, np.int32),
        'object_valid': np.zeros(m_max, bool),
        'object_R_world': np.zeros((m_max, 3, 3), np.float32),
        'object_t_world': np.zeros((m_max, 3), np.float32),
        'structure': static.structure,
        'scale_m': static.scale_m,
        'voxels': static.voxels,
        'keypoints_2d': np.zeros((T, m_max, n_max, 2), np.float32),
        'keypoints_3d': np.zeros((T, m_max, n_max, 3), np.float32),
        'visible': np.zeros((T, m_max, n_max), bool),
        'in_image': np.zeros((T, m_max, n_max), bool),
        'R': np.zeros((T, m_max, 3, 3), np.float32),
        't': np.zeros((T, m_max, 3), np.float32),
        'box': np.zeros((T, m_max, 4), np.float32),
        'box_visible': np.zeros((T, m_max, 4), np.float32),
        'present': np.zeros((T, m_max), bool),
        'trajectory': np.int32(trajectory),
    }


def add_mixed_fields(out: dict, kinds: np.ndarray, static: StaticLabels, m_max: int,
                     n_max: int) -> None:
    """``object_category`` and ``keypoint_valid`` of a video of several categories."""
    out['object_category'] = np.full(m_max, -1, np.int32)
    out['object_category'][:len(kinds)] = kinds
    out['keypoint_valid'] = np.zeros((m_max, n_max), bool)
    for i, n in enumerate(static.num_keypoints):
        out['keypoint_valid'][i, :n] = True


def write_object_frame(out: dict, fi: int, i: int, keypoints: np.ndarray, R: np.ndarray,
                       t: np.ndarray, K: np.ndarray, size: tuple[int, int], hs_cam: list,
                       contact: np.ndarray, soup: render.FaceSoup | None,
                       inst: np.ndarray) -> None:
    """Labels of object ``i`` in frame ``fi``.

    Args:
        keypoints: (n, 3) the object's keypoints in its own frame.
        R, t: object -> camera.
        size: (W, H) of the image.
        hs_cam: half-spaces of every scene part in the camera frame.
        contact: (n, P) parts each keypoint lies on (ignored when testing its visibility).
        soup: the object's faces in the camera frame, None when it is not drawn.
        inst: (H, W) object index per pixel (-1 none) of the frame.
    """
    W, H = size
    n = len(keypoints)
    out['R'][fi, i], out['t'][fi, i] = R, t
    kp3 = keypoints @ R.T + t
    out['keypoints_3d'][fi, i, :n] = kp3
    z = np.where(kp3[:, 2] > 1e-6, kp3[:, 2], 1e-6)
    out['keypoints_2d'][fi, i, :n] = (kp3[:, :2] / z[:, None]) * (K[0, 0], K[1, 1]) + \
        (K[0, 2], K[1, 2])
    vis, inimg = render.keypoint_visibility(kp3, hs_cam, contact, K, W, H)
    if soup is None:
        vis[:] = False
    out['visible'][fi, i, :n], out['in_image'][fi, i, :n] = vis, inimg
    rows, cols = np.nonzero(inst == i)
    if len(rows):
        out['present'][fi, i] = True
        out['box_visible'][fi, i] = [cols.min(), rows.min(), cols.max(), rows.max()]
    if soup is not None:
        v = soup.vertices
        uv = v[:, :2] / v[:, 2:3] * (K[0, 0], K[1, 1]) + (K[0, 2], K[1, 2])
        lo, hi = uv.min(0), uv.max(0)
        bx = [max(lo[0], 0), max(lo[1], 0), min(hi[0], W - 1), min(hi[1], H - 1)]
        if bx[0] <= bx[2] and bx[1] <= bx[3]:
            out['box'][fi, i] = bx


def field_shapes(frames: int, height: int, width: int, m_max: int, n_max: int, k_max: int,
                 mixed: bool) -> dict[str, list[int]]:
    """Shapes of a video's fields (for the data set manifest)."""
    T, H, W, M, N, K = frames, height, width, m_max, n_max, k_max
    shapes = {
        'frames': [T, H, W, 3], 'instance': [T, H, W], 'depth': [T, H, W], 'K': [3, 3],
        'camera_R': [T, 3, 3], 'camera_t': [T, 3], 'object_id': [M], 'object_valid': [M],
        'object_R_world': [M, 3, 3], 'object_t_world': [M, 3], 'structure': [M, K],
        'scale_m': [M], 'voxels': [M, 32, 32, 32], 'keypoints_2d': [T, M, N, 2],
        'keypoints_3d': [T, M, N, 3], 'visible': [T, M, N], 'in_image': [T, M, N],
        'R': [T, M, 3, 3], 't': [T, M, 3], 'box': [T, M, 4], 'box_visible': [T, M, 4],
        'present': [T, M], 'trajectory': [],
    }
    if mixed:
        shapes.update({'object_category': [M], 'keypoint_valid': [M, N]})
    return shapes
