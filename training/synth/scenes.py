"""Full-frame scenes: several objects at 1-6 m in one camera frame, as a robot sees a room.

The image benchmark renders 128 px images in which the object fills the frame, so it cannot
show how the error depends on an object's size in a real camera image. A scene here is one
frame of a real camera size (640x480 with fx = 615, as a RealSense colour stream, or
1280x720 with fx = 910) with an off-centre principal point. The camera stands at a robot's
height (0.5-1.5 m) in a room, looks ahead with a small downward pitch, and objects stand on
the floor at distances drawn uniformly between 1 and 6 m, any yaw (front, side and back
views), some of them at the image border (truncated) and some behind others (occluded).

Per object the scene records, besides the labels of a video frame (keypoints, visibility,
pose, boxes): ``distance`` (metres, camera to object origin), ``truncation`` (the fraction
of the object's silhouette outside the image, from a rasterisation of the object alone on
a canvas that holds all of it), ``occlusion`` (the fraction of its in-image silhouette
hidden by other objects) and ``box_height`` (pixels, of the visible box a detector gives).
World frame: z up, floor z = 0, camera at the origin's vertical.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from perception_3dinn.geometry import look_at, rotation_about_z
from perception_3dinn.skeleton import Category, load_category
from training.synth import dataset, render
from training.synth.procedural import generate, keypoint_diagonal
from training.synth.videos import make_room, NEAR, room_soup, sample_appearance, shade_frame

# name -> (width, height, fx): the camera presets of the full-frame benchmark
CAMERAS = {'640x480': (640, 480, 615.0), '1280x720': (1280, 720, 910.0)}
TRUNCATION_CANVAS_PX = 400  # longest side of the canvas the truncation is measured on


@dataclass
class SceneConfig:
    """Scene sampling ranges (metres, degrees)."""

    width: int = 640
    height: int = 480
    fx: float = 615.0
    principal_offset_px: tuple[float, float] = (30.0, 20.0)  # max |c - centre| in x, y
    objects: tuple[int, int] = (2, 5)
    distance_m: tuple[float, float] = (1.0, 6.0)
    camera_height_m: tuple[float, float] = (0.5, 1.5)
    pitch_deg: tuple[float, float] = (-5.0, 15.0)  # downward
    border_prob: float = 0.2  # objects placed across the left/right image border

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def preset(cls, camera: str, **kwargs) -> SceneConfig:
        if camera not in CAMERAS:
            raise ValueError(f'unknown camera {camera!r}; choose from {sorted(CAMERAS)}')
        w, h, fx = CAMERAS[camera]
        return cls(width=w, height=h, fx=fx, **kwargs)


def _place(rng: np.random.Generator, meshes: list, config: SceneConfig, cam_h: float,
           half_fov: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Floor poses (R, p) of the meshes in front of the camera, footprints apart."""
    placed: list[tuple[np.ndarray, float]] = []
    poses = []
    for mesh in meshes:
        lo, hi = mesh.bounds()
        rad = float(np.hypot(max(-lo[0], hi[0]), max(-lo[1], hi[1])))
        p = None
        for _ in range(200):
            d = rng.uniform(*config.distance_m)
            r = np.sqrt(max(d * d - cam_h * cam_h, 0.0))
            if r < 0.6:
                continue
            if rng.random() < config.border_prob:
                bearing = rng.choice([-1, 1]) * half_fov * rng.uniform(0.85, 1.15)
            else:
                bearing = rng.uniform(-0.85, 0.85) * half_fov
            q = r * np.array([np.cos(bearing), np.sin(bearing)])
            if all(np.linalg.norm(q - o) > rad + ro + 0.05 for o, ro in placed):
                p = q
                break
        if p is None:
            continue
        placed.append((p, rad))
        poses.append((rotation_about_z(rng.uniform(-np.pi, np.pi)), np.array([p[0], p[1], 0.0])))
    return poses


def _project(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    z = np.maximum(points[:, 2], 1e-6)
    return points[:, :2] / z[:, None] * (K[0, 0], K[1, 1]) + (K[0, 2], K[1, 2])


def silhouette_truncation(soup: render.FaceSoup, K: np.ndarray, width: int,
                          height: int) -> float:
    """Fraction of an object's silhouette outside a (width, height) image.

    The object alone is rasterised on a canvas that holds all of its projection (scaled to
    at most TRUNCATION_CANVAS_PX on its longest side); canvas pixels are mapped back to the
    image and counted inside or outside it.
    """
    uv = _project(soup.vertices, K)
    lo, hi = uv.min(0) - 1, uv.max(0) + 1
    s = min(1.0, TRUNCATION_CANVAS_PX / float(max(hi - lo)))
    cw, ch = int(np.ceil((hi[0] - lo[0]) * s)) + 1, int(np.ceil((hi[1] - lo[1]) * s)) + 1
    Kc = np.array([[K[0, 0] * s, 0, (K[0, 2] - lo[0]) * s],
                   [0, K[1, 1] * s, (K[1, 2] - lo[1]) * s], [0, 0, 1.0]])
    _, face = render.rasterize(soup, Kc, cw, ch, near=NEAR)
    rows, cols = np.nonzero(face >= 0)
    if len(rows) == 0:
        return 1.0
    u, v = cols / s + lo[0], rows / s + lo[1]
    inside = (u >= -0.5) & (u < width - 0.5) & (v >= -0.5) & (v < height - 0.5)
    return float(1.0 - inside.mean())


def render_scene(category: Category, rng: np.random.Generator,
                 config: SceneConfig | None = None) -> dict:
    """Render one full-frame scene; arrays of :data:`SCENE_FIELDS` (objects padded to
    ``config.objects[1]``, ``object_valid`` marks the real ones)."""
    config = config or SceneConfig()
    W, H, M = config.width, config.height, config.objects[1]
    n_kp, k_b = category.num_keypoints, category.num_bases
    cam_h = rng.uniform(*config.camera_height_m)
    pitch = np.radians(rng.uniform(*config.pitch_deg))
    K = np.array([[config.fx, 0, (W - 1) / 2 + rng.uniform(-1, 1) * config.principal_offset_px[0]],
                  [0, config.fx * rng.uniform(0.995, 1.005),
                   (H - 1) / 2 + rng.uniform(-1, 1) * config.principal_offset_px[1]],
                  [0, 0, 1.0]])
    half_fov = float(np.arctan2(W / 2, config.fx))
    m = int(rng.integers(config.objects[0], config.objects[1] + 1))
    meshes = [generate(category.name, rng) for _ in range(m)]
    poses = _place(rng, meshes, config, cam_h, half_fov)
    meshes = meshes[:len(poses)]
    m = len(meshes)
    room = make_room(rng, config.distance_m[1] + 2.0)
    cam_pos = np.array([0.0, 0.0, cam_h])
    Rc, tc = look_at(cam_pos, cam_pos + [np.cos(pitch), 0.0, -np.sin(pitch)],
                     rng.normal(0, np.radians(1.0)))
    look = sample_appearance(rng, m)

    soups, hs_cam, part_ranges, obj_pose, contacts = [], [], [], [], []
    n_parts = 0
    for mm, (Rw, pw) in zip(meshes, poses):
        R, t = Rc @ Rw, Rc @ pw + tc
        obj_pose.append((R, t))
        soups.append(render.build_soup(mm.parts, R, t, n_parts))
        hs_obj = [p.halfspaces() for p in mm.parts]
        contacts.append(render.contact_parts(mm.keypoints, hs_obj))
        hs_cam += [render.transform_halfspaces(h, R, t) for h in hs_obj]
        part_ranges.append((n_parts, n_parts + len(mm.parts)))
        n_parts += len(mm.parts)
    walls = room_soup(room, Rc, tc, n_parts)
    scene = render.merge_soups(soups + ([walls] if walls.faces else []))
    depth, face = render.rasterize(scene, K, W, H, near=NEAR)
    part_map = np.where(face >= 0, scene.face_part[np.maximum(face, 0)], -1)
    obj_of_part = np.full(n_parts + 8, -1)
    for i, (a, b) in enumerate(part_ranges):
        obj_of_part[a:b] = i
    inst = np.where(part_map >= 0, obj_of_part[np.maximum(part_map, 0)], -1)
    img = shade_frame(scene, face, part_map, depth, K, Rc, tc, n_parts, meshes, obj_pose,
                      part_ranges, look.slot_colours, look.grain, room, look.light_world,
                      look.ambient, look.key)

    out = {
        'image': look.finish(img, rng),
        'instance': (inst + 1).astype(np.uint8),
        'K': K.astype(np.float32),
        'camera_R': Rc.astype(np.float32), 'camera_t': tc.astype(np.float32),
        'object_valid': np.zeros(M, bool),
        'structure': np.zeros((M, k_b), np.float32), 'scale_m': np.zeros(M, np.float32),
        'keypoints_2d': np.zeros((M, n_kp, 2), np.float32),
        'keypoints_3d': np.zeros((M, n_kp, 3), np.float32),
        'visible': np.zeros((M, n_kp), bool), 'in_image': np.zeros((M, n_kp), bool),
        'R': np.zeros((M, 3, 3), np.float32), 't': np.zeros((M, 3), np.float32),
        'box': np.zeros((M, 4), np.float32), 'box_visible': np.zeros((M, 4), np.float32),
        'distance': np.zeros(M, np.float32), 'truncation': np.zeros(M, np.float32),
        'occlusion': np.zeros(M, np.float32), 'visible_pixels': np.zeros(M, np.int32),
    }
    contact_all = np.zeros((m, n_kp, n_parts), bool)
    for i, (a, b) in enumerate(part_ranges):
        contact_all[i, :, a:b] = contacts[i]
    for i, mm in enumerate(meshes):
        R, t = obj_pose[i]
        scale = keypoint_diagonal(mm.keypoints)
        out['object_valid'][i] = True
        out['structure'][i] = category.fit_structure(mm.keypoints / scale)
        out['scale_m'][i] = scale
        out['R'][i], out['t'][i] = R, t
        kp3 = mm.keypoints @ R.T + t
        out['keypoints_3d'][i] = kp3
        out['keypoints_2d'][i] = _project(kp3, K)
        out['visible'][i], out['in_image'][i] = render.keypoint_visibility(
            kp3, hs_cam, contact_all[i], K, W, H)
        out['distance'][i] = np.linalg.norm(t)
        uv = _project(soups[i].vertices, K)
        lo, hi = uv.min(0), uv.max(0)
        out['box'][i] = [max(lo[0], 0), max(lo[1], 0), min(hi[0], W - 1), min(hi[1], H - 1)]
        out['truncation'][i] = silhouette_truncation(soups[i], K, W, H)
        _, solo = render.rasterize(soups[i], K, W, H, near=NEAR)
        solo = solo >= 0
        seen = solo & (inst == i)
        out['occlusion'][i] = 1.0 - seen.sum() / solo.sum() if solo.any() else 1.0
        out['visible_pixels'][i] = int(seen.sum())
        rows, cols = np.nonzero(seen)
        if len(rows):
            out['box_visible'][i] = [cols.min(), rows.min(), cols.max(), rows.max()]
    return out


SCENE_FIELDS = ('image', 'instance', 'K', 'camera_R', 'camera_t', 'object_valid', 'structure',
                'scale_m', 'keypoints_2d', 'keypoints_3d', 'visible', 'in_image', 'R', 't',
                'box', 'box_visible', 'distance', 'truncation', 'occlusion', 'visible_pixels')


def _scene_shard_job(args: tuple) -> tuple[int, int, str]:
    category, seed, index, count, config, out = args
    cv2.setNumThreads(1)
    cat = load_category(category)
    rng = dataset.shard_rng(seed, index)
    scenes = [render_scene(cat, rng, config) for _ in range(count)]
    sha = dataset.write_npz(Path(out) / dataset.shard_name(index),
                            dataset.stack_samples(scenes))
    return index, count, sha


def generate_scene_dataset(category: str, count: int, out: str | Path, seed: int,
                           config: SceneConfig | None = None, shard_size: int = 20,
                           workers: int = 1, progress: bool = True) -> dict:
    """Render ``count`` full-frame scenes into ``out`` (shards + manifest.json)."""
    from training.synth.generate import manifest_head, render_shards

    config = config or SceneConfig()
    out = Path(out)
    cat = load_category(category)
    shards = render_shards(_scene_shard_job, category, count, out, seed, config, shard_size,
                           workers, progress, 'scenes', 'scene')
    H, W, M, N, K = config.height, config.width, config.objects[1], cat.num_keypoints, \
        cat.num_bases
    shapes = {
        'image': [H, W, 3], 'instance': [H, W], 'K': [3, 3], 'camera_R': [3, 3],
        'camera_t': [3], 'object_valid': [M], 'structure': [M, K], 'scale_m': [M],
        'keypoints_2d': [M, N, 2], 'keypoints_3d': [M, N, 3], 'visible': [M, N],
        'in_image': [M, N], 'R': [M, 3, 3], 't': [M, 3], 'box': [M, 4], 'box_visible': [M, 4],
        'distance': [M], 'truncation': [M], 'occlusion': [M], 'visible_pixels': [M],
    }
    manifest = {
        **manifest_head('scenes', 'training.synth.scenes', category, seed, count, shard_size),
        'keypoint_names': list(cat.keypoint_names),
        'config': config.to_dict(),
        'fields': {k: {'shape': v} for k, v in shapes.items()},
        'notes': 'instance: 0 background, i + 1 object slot i; camera_R/t map world -> '
                 'camera; R/t map object -> camera; box: projection of the whole object '
                 'clipped to the image; box_visible: box of its visible pixels (what a '
                 'detector sees); truncation: fraction of the silhouette outside the image; '
                 'occlusion: fraction of the in-image silhouette hidden by other objects',
        'shards': shards,
    }
    dataset.write_manifest(out, manifest)
    return manifest
