"""Synthetic videos: static procedural objects in a room, filmed along smooth camera paths.

A scene holds 1..M objects standing on the floor of a box-shaped room (world frame: z up,
floor z = 0), all of one category, or with ``VideoConfig.categories`` each of one of
several (mixed scenes: a chair beside a table and a sofa). The camera follows one of four
smooth trajectories, always with a little low-pass "hand-held" shake:

- ``orbit``: circles part-way around the group at a slowly varying height;
- ``approach``: moves towards the group (objects grow, leave the frame edges);
- ``handheld``: stands still apart from a stronger shake;
- ``pan_exit``: pans sideways so that objects partially leave the frame.

Everything static is textured in world or object coordinates (floor planks/tiles, wood
grain), so appearance is consistent from frame to frame. Objects keep their ids over the
whole video. Per frame and object: 2D/3D keypoints, visibility (exact depth test as for
images), pose (R, t) object -> camera, boxes and presence; per object: structure, scale,
voxels. Frames, depth and an instance map (0 background, i + 1 object i) come per frame.
Mixed videos add ``object_category`` and ``keypoint_valid`` and pad the keypoints
(:mod:`training.synth.video_labels`); the room, placement and shading are in
:mod:`training.synth.video_scene`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from perception_3dinn.geometry import look_at
from perception_3dinn.skeleton import Category, load_category
from perception_3dinn.voxels import grid_for_dimensions
from training.synth import dataset, render
from training.synth.domains import check_domain, SHIFTED_HFOV_DEG
from training.synth.images import VOXEL_SIZE
from training.synth.procedural import generate
from training.synth.video_labels import (
    add_mixed_fields,
    draw_categories,
    empty_video,
    field_shapes,
    MIXED_FIELDS,  # noqa: F401 (public here, beside VIDEO_FIELDS)
    static_labels,
    write_object_frame,
)
from training.synth.video_scene import (  # noqa: F401 (NEAR, make_room, ...: training.synth.scenes)
    make_room,
    NEAR,
    place_objects,
    room_soup,
    sample_appearance,
    shade_frame,
    shift_video_look,
)

TRAJECTORIES = ('orbit', 'approach', 'handheld', 'pan_exit')


@dataclass
class VideoConfig:
    """Video sampling ranges (metres, radians).

    ``categories``: empty, every object is of the category passed to :func:`render_video`;
    else each object draws one of these (every one once while objects are left, then at
    random) and the video has the mixed layout (:mod:`training.synth.video_labels`).
    """

    width: int = 256
    height: int = 192
    frames: int = 48
    fps: float = 15.0
    objects: tuple[int, int] = (1, 3)
    hfov_deg: tuple[float, float] = (50.0, 80.0)
    camera_height: tuple[float, float] = (0.5, 1.6)
    voxels: bool = True
    domain: str = 'default'  # render style (training.synth.domains; see shift_video_look)
    categories: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_domain(self.domain)
        if isinstance(self.categories, str):
            self.categories = tuple(c for c in self.categories.split(',') if c.strip())
        self.categories = tuple(str(c).strip() for c in self.categories)
        if '' in self.categories or len(set(self.categories)) != len(self.categories):
            raise ValueError(f'VideoConfig.categories {self.categories}: names must be unique '
                             'and non-empty')

    def to_dict(self) -> dict:
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        if not self.categories:  # single-category manifests stay as they were
            del d['categories']
        return d


def video_categories(category: Category | str | None, config: VideoConfig) -> list[Category]:
    """The categories a video draws its objects from: ``config.categories``, else the one
    given."""
    if config.categories:
        return [load_category(name) for name in config.categories]
    if category is None:
        raise ValueError('render_video needs a category (or VideoConfig.categories)')
    return [load_category(category) if isinstance(category, str) else category]


def smooth_noise(rng: np.random.Generator, frames: int, dims: int, knots_every: int = 10,
                 amplitude: float = 1.0) -> np.ndarray:
    """(T, dims) smooth random signal: Gaussian knots every few frames, cubic-interpolated."""
    n = max(2, frames // knots_every + 2)
    knots = rng.normal(0, amplitude, (n, dims)).astype(np.float32)
    out = cv2.resize(knots, (dims, frames), interpolation=cv2.INTER_CUBIC)
    return out.astype(np.float64)


def camera_path(rng: np.random.Generator, kind: str, frames: int, centre: np.ndarray,
                spread: float, config: VideoConfig) -> tuple[np.ndarray, np.ndarray,
                                                              np.ndarray]:
    """Camera positions (T, 3), look-at targets (T, 3) and rolls (T,) in the world frame."""
    s = np.linspace(0.0, 1.0, frames)
    # Smooth start and stop; motions are sized for 48 frames and shrink for shorter clips so
    # that camera speeds stay physical.
    ease = (0.5 - 0.5 * np.cos(np.pi * s)) * min(1.0, frames / 48.0)
    az0 = rng.uniform(-np.pi, np.pi)
    h0 = rng.uniform(*config.camera_height)
    r0 = spread + rng.uniform(1.2, 2.6)
    target = np.tile(centre + [0, 0, rng.uniform(0.3, 0.6)], (frames, 1))
    if kind == 'orbit':
        az = az0 + rng.choice([-1, 1]) * rng.uniform(0.6, 1.8) * ease
        r = np.full(frames, r0)
        h = h0 + 0.2 * np.sin(2 * np.pi * s * rng.uniform(0.3, 1.0))
    elif kind == 'approach':
        az = az0 + rng.uniform(-0.3, 0.3) * ease
        r1 = spread + rng.uniform(1.0, 1.5)
        r = r0 + 1.5 + (r1 - r0 - 1.5) * ease
        h = h0 + np.zeros(frames)
    elif kind == 'handheld':
        az = np.full(frames, az0)
        r = np.full(frames, r0)
        h = np.full(frames, h0)
    elif kind == 'pan_exit':
        az = np.full(frames, az0)
        r = np.full(frames, r0)
        h = np.full(frames, h0)
        side = np.array([-np.sin(az0), np.cos(az0), 0.0])
        swing = rng.choice([-1, 1]) * rng.uniform(0.5, 0.8) * r0
        target = target + np.outer(-swing / 2 + swing * ease, side)
    else:
        raise ValueError(f'unknown trajectory {kind!r}; choose from {TRAJECTORIES}')
    pos = np.column_stack([centre[0] + r * np.cos(az), centre[1] + r * np.sin(az),
                           np.maximum(h, 0.3)])
    amp = 0.05 if kind == 'handheld' else 0.015
    pos = pos + smooth_noise(rng, frames, 3, 8, amp)
    target = target + smooth_noise(rng, frames, 3, 8, 2 * amp)
    roll = smooth_noise(rng, frames, 1, 10, np.radians(1.5))[:, 0]
    return pos, target, roll


def render_video(category: Category | str | None, rng: np.random.Generator,
                 config: VideoConfig | None = None, return_scene: bool = False) -> dict:
    """Render one video of ``category`` (or of ``config.categories``; category then unused).

    Returns:
        dict of arrays named in :data:`VIDEO_FIELDS` (shapes in the data set manifest), for
        several categories also :data:`MIXED_FIELDS` and ``_categories`` (their names, what
        ``object_category`` indexes). With ``return_scene`` also ``_part_map`` (T, H, W)
        int32 (scene part per pixel, -1 none, room parts after the objects') and
        ``_contact`` (M, N, P) bool (parts each object's keypoints lie on).
    """
    config = config or VideoConfig()
    cats = video_categories(category, config)
    T, W, H = config.frames, config.width, config.height
    m_max = config.objects[1]
    m = int(rng.integers(config.objects[0], config.objects[1] + 1))
    mixed = bool(config.categories)
    kinds = draw_categories(rng, len(cats), m) if mixed else np.zeros(m, np.int64)
    obj_cats = [cats[k] for k in kinds]
    meshes = [generate(c.name, rng) for c in obj_cats]
    poses = place_objects(rng, meshes, 0.6 + 0.25 * m)
    centre = np.mean([p for _, p in poses], axis=0)
    spread = max(float(np.linalg.norm(p - centre)) for _, p in poses) + 0.6
    room = make_room(rng, spread + 4.0)
    kind = str(rng.choice(TRAJECTORIES))
    cam_pos, targets, rolls = camera_path(rng, kind, T, centre, spread, config)
    shifted = config.domain == 'shifted'
    hfov = np.radians(rng.uniform(*(SHIFTED_HFOV_DEG if shifted else config.hfov_deg)))
    f = 0.5 * W / np.tan(hfov / 2)
    K = np.array([[f, 0, (W - 1) / 2 + rng.normal(0, 0.01 * W)],
                  [0, f * rng.uniform(0.99, 1.01), (H - 1) / 2 + rng.normal(0, 0.01 * H)],
                  [0, 0, 1.0]])

    # Per-object static data (padded to the largest keypoint and basis counts).
    n_max = max(c.num_keypoints for c in cats)
    static = static_labels(obj_cats, meshes, m_max, n_max, max(c.num_bases for c in cats),
                           config.voxels)
    part_ranges, n_parts = static.part_ranges, static.num_parts

    look = sample_appearance(rng, m)  # fixed over the video
    if shifted:
        shift_video_look(rng, look, room)
    slot_cols, grain = look.slot_colours, look.grain
    light_w, ambient, key = look.light_world, look.ambient, look.key

    out = empty_video(T, H, W, m_max, n_max, static, K, TRAJECTORIES.index(kind))
    ids = rng.permutation(1000)[:m]
    out['object_id'][:m] = ids
    out['object_valid'][:m] = True
    for i, (Rw, pw) in enumerate(poses):
        out['object_R_world'][i] = Rw
        out['object_t_world'][i] = pw
    if mixed:
        add_mixed_fields(out, kinds, static, m_max, n_max)
        out['_categories'] = tuple(c.name for c in cats)

    part_maps = np.zeros((T, H, W), np.int32) if return_scene else None
    for fi in range(T):
        Rc, tc = look_at(cam_pos[fi], targets[fi], rolls[fi])
        out['camera_R'][fi], out['camera_t'][fi] = Rc, tc
        soups, hs_cam, obj_of_part = [], [], []
        obj_pose = []
        for i, mm in enumerate(meshes):
            Rw, pw = poses[i]
            R = Rc @ Rw
            t = Rc @ pw + tc
            obj_pose.append((R, t))
            soup = render.build_soup(mm.parts, R, t, part_ranges[i][0])
            if soup.vertices[:, 2].min() < NEAR:  # behind or at the camera: not drawn
                soups.append(None)
            else:
                soups.append(soup)
            hs_cam += [render.transform_halfspaces(h, R, t) for h in static.halfspaces[i]]
            obj_of_part += [i] * len(mm.parts)
        walls = room_soup(room, Rc, tc, n_parts)
        drawn = [s for s in soups if s is not None]
        scene = render.merge_soups(drawn + ([walls] if walls.faces else []))
        depth, face = render.rasterize(scene, K, W, H, near=NEAR)
        part_map = np.where(face >= 0, scene.face_part[np.maximum(face, 0)], -1)
        if return_scene:
            part_maps[fi] = part_map
        obj_map = np.full(n_parts + 8, -1)
        obj_map[:n_parts] = obj_of_part
        inst = np.where(part_map >= 0, obj_map[np.maximum(part_map, 0)], -1)
        out['instance'][fi] = (inst + 1).astype(np.uint8)
        out['depth'][fi] = depth.astype(np.float16)
        img = shade_frame(scene, face, part_map, depth, K, Rc, tc, n_parts, meshes, obj_pose,
                          part_ranges, slot_cols, grain, room, light_w, ambient, key)
        out['frames'][fi] = look.finish(img, rng)
        for i, mm in enumerate(meshes):
            n = static.num_keypoints[i]
            write_object_frame(out, fi, i, mm.keypoints, *obj_pose[i], K, (W, H), hs_cam,
                               static.contact[i, :n], soups[i], inst)
    if return_scene:
        out['_part_map'] = part_maps
        out['_contact'] = static.contact
    return out


VIDEO_FIELDS = ('frames', 'instance', 'depth', 'K', 'camera_R', 'camera_t', 'object_id',
                'object_valid', 'object_R_world', 'object_t_world', 'structure', 'scale_m',
                'voxels', 'keypoints_2d', 'keypoints_3d', 'visible', 'in_image', 'R', 't',
                'box', 'box_visible', 'present', 'trajectory')


def _video_shard_job(args: tuple) -> tuple[int, int, str]:
    category, seed, index, count, config, out = args
    cv2.setNumThreads(1)
    cat = None if config.categories else load_category(category)
    rng = dataset.shard_rng(seed, index)
    videos = [render_video(cat, rng, config) for _ in range(count)]
    sha = dataset.write_npz(Path(out) / dataset.shard_name(index),
                            dataset.stack_samples(videos))
    return index, count, sha


def _voxel_grid(cat: Category) -> dict:
    res, origin = grid_for_dimensions(cat.dimensions_m, VOXEL_SIZE)
    return {'resolution': res, 'origin': origin.tolist()}


def generate_video_dataset(category: str, count: int, out: str | Path, seed: int,
                           config: VideoConfig | None = None, shard_size: int = 4,
                           workers: int = 1, progress: bool = True) -> dict:
    """Render ``count`` videos into ``out`` (shards of ``shard_size`` videos + manifest).

    With ``config.categories`` (mixed scenes; ``category`` is then unused) the manifest's
    ``category`` is their names joined by '+', ``categories`` lists them (what
    ``object_category`` indexes) with their keypoint names and voxel grids, and
    ``category_sha256`` maps each name to its file's digest.
    """
    from training.synth.generate import _category_sha, manifest_head, render_shards

    config = config or VideoConfig()
    out = Path(out)
    cats = video_categories(category, config)
    label = '+'.join(c.name for c in cats) if config.categories else category
    shards = render_shards(_video_shard_job, label, count, out, seed, config, shard_size,
                           workers, progress, 'videos', 'video')
    T, H, W, M = config.frames, config.height, config.width, config.objects[1]
    N, K = max(c.num_keypoints for c in cats), max(c.num_bases for c in cats)
    mixed = bool(config.categories)
    shapes = field_shapes(T, H, W, M, N, K, mixed)
    frame = 'object frame, mesh rescaled to size_prior_m / scale_m'
    head = manifest_head('videos', 'training.synth.videos', cats[0].name if mixed else category,
                         seed, count, shard_size)
    if mixed:
        head['category'] = label
        head['category_sha256'] = {c.name: _category_sha(c.name) for c in cats}
        about = {'categories': [{'name': c.name, 'keypoint_names': list(c.keypoint_names),
                                 'num_bases': c.num_bases, 'voxel_grid': _voxel_grid(c)}
                                for c in cats]}
        grid = {'size': VOXEL_SIZE, 'frame': frame + "; resolution and origin: those of the "
                "object's category (categories[object_category].voxel_grid)"}
    else:
        about = {'keypoint_names': list(cats[0].keypoint_names)}
        grid = {'size': VOXEL_SIZE, **_voxel_grid(cats[0]), 'frame': frame}
    notes = ('instance: 0 background, i + 1 object slot i; object_id stable over the video (-1 '
             'for unused slots); camera_R/t map world -> camera; R/t map object -> camera; '
             'world frame z up, floor z = 0')
    if mixed:
        notes += ('; object_category: index into categories (-1 for unused slots); keypoints '
                  'and structure padded to the largest count, keypoint_valid marks the '
                  "keypoints of the object's category")
    manifest = {
        **head,
        **about,
        'config': config.to_dict(),
        'trajectories': list(TRAJECTORIES),
        'fields': {k: {'shape': v} for k, v in shapes.items()},
        'notes': notes,
        'voxel_grid': grid,
        'shards': shards,
    }
    dataset.write_manifest(out, manifest)
    return manifest


def video_tiles(video: dict, category: Category | Sequence[Category], every: int = 6,
                tile_width: int = 256) -> list[np.ndarray]:
    """Annotated frames of one video (every ``every``-th), all objects drawn; for a mixed
    video ``category`` lists the categories ``object_category`` indexes, and each object is
    labelled with its category's name."""
    from training.synth.preview import draw_annotations

    cats = [category] if isinstance(category, Category) else list(category)
    kinds = video.get('object_category')
    tiles = []
    for fi in range(0, len(video['frames']), every):
        img = video['frames'][fi]
        for i in np.nonzero(video['object_valid'])[0]:
            if not video['in_image'][fi, i].any():
                continue
            cat = cats[int(kinds[i])] if kinds is not None else cats[0]
            n = cat.num_keypoints
            box = video['box'][fi, i]
            img = draw_annotations(img, video['keypoints_2d'][fi, i, :n],
                                   video['visible'][fi, i, :n], cat, box, label=None)
            if kinds is not None:  # mixed: the category's name on the box
                cv2.putText(img, cat.name, (int(box[0]) + 1, max(8, int(box[1]) - 2)),
                            cv2.FONT_HERSHEY_SIMPLEX, 0.3, (255, 255, 255), 1, cv2.LINE_AA)
        cv2.putText(img, f'{fi} {TRAJECTORIES[int(video["trajectory"])]}', (3, 12),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
        if img.shape[1] != tile_width:
            img = cv2.resize(img, (tile_width, tile_width * img.shape[0] // img.shape[1]))
        tiles.append(img)
    return tiles


def preview_video(category: str | None, seed: int, config: VideoConfig, path: str | Path,
                  videos: int = 3) -> Path:
    """Contact sheet of the first videos of a data set with this seed (one row each)."""
    from training.synth.preview import contact_sheet, write_png

    cats = video_categories(category, config)
    rng = dataset.shard_rng(seed, 0)
    tiles = []
    cols = 6
    for _ in range(videos):
        v = render_video(cats[0] if not config.categories else None, rng, config)
        every = max(1, config.frames // cols)
        tiles += video_tiles(v, cats, every)[:cols]
    return write_png(path, contact_sheet(tiles, cols=cols))
