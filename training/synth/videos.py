"""Synthetic videos: static procedural objects in a room, filmed along smooth camera paths.

A scene holds 1..M objects of one category standing on the floor of a box-shaped room
(world frame: z up, floor z = 0). The camera follows one of four smooth trajectories,
always with a little low-pass "hand-held" shake:

- ``orbit``: circles part-way around the group at a slowly varying height;
- ``approach``: moves towards the group (objects grow, leave the frame edges);
- ``handheld``: stands still apart from a stronger shake;
- ``pan_exit``: pans sideways so that objects partially leave the frame.

Everything static is textured in world or object coordinates (floor planks/tiles, wood
grain), so appearance is consistent from frame to frame. Objects keep their ids over the
whole video. Per frame and object: 2D/3D keypoints, visibility (exact depth test as for
images), pose (R, t) object -> camera, boxes and presence; per object: structure, scale,
voxels. Frames, depth and an instance map (0 background, i + 1 object i) come per frame.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from perception_3dinn.geometry import look_at, rotation_about_z
from perception_3dinn.skeleton import Category, load_category
from perception_3dinn.voxels import grid_for_dimensions
from training.synth import dataset, render
from training.synth.domains import check_domain, shifted_colour, SHIFTED_HFOV_DEG, shifted_tint
from training.synth.images import VOXEL_SIZE
from training.synth.procedural import generate, keypoint_diagonal

TRAJECTORIES = ('orbit', 'approach', 'handheld', 'pan_exit')
NEAR = 0.1


@dataclass
class VideoConfig:
    """Video sampling ranges (metres, radians)."""

    width: int = 256
    height: int = 192
    frames: int = 48
    fps: float = 15.0
    objects: tuple[int, int] = (1, 3)
    hfov_deg: tuple[float, float] = (50.0, 80.0)
    camera_height: tuple[float, float] = (0.5, 1.6)
    voxels: bool = True
    domain: str = 'default'  # render style (training.synth.domains; see shift_video_look)

    def __post_init__(self) -> None:
        check_domain(self.domain)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass
class Appearance:
    """Materials, lighting and camera response of one scene (fixed over a video)."""

    slot_colours: list  # per object (4, 3) colours of its material slots
    grain: list  # per object (direction (3,), frequency, amplitude) of the wood grain
    light_world: np.ndarray  # (3,) unit direction towards the key light, world frame
    ambient: float
    key: float
    gain: np.ndarray  # (3,) per-channel gain
    blur: float  # Gaussian sigma in pixels, 0: none
    noise: float  # pixel noise sigma (0-1 intensities)

    def finish(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Shaded float image (H, W, 3) -> uint8 RGB with gain, blur and noise."""
        img = img * self.gain
        if self.blur:
            img = cv2.GaussianBlur(img, (0, 0), self.blur)
        img = img + rng.normal(0, self.noise, img.shape)
        return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)


def sample_appearance(rng: np.random.Generator, objects: int) -> Appearance:
    """Random materials of `objects` objects, lighting and camera response."""
    slot_cols = [np.stack([render.random_colour(rng) for _ in range(4)])
                 for _ in range(objects)]
    for sc in slot_cols:
        if rng.random() < 0.5:
            sc[:] = sc[0]
    grain = [(rng.normal(size=3), rng.uniform(5, 25), rng.uniform(0.03, 0.15))
             for _ in range(objects)]
    light_w = np.array([rng.normal(), rng.normal(), rng.uniform(1.0, 2.0)])
    light_w /= np.linalg.norm(light_w)
    ambient, key = rng.uniform(0.3, 0.55), rng.uniform(0.4, 0.8)
    gain = rng.uniform(0.8, 1.2) * rng.uniform(0.92, 1.08, 3)
    blur = rng.uniform(0.3, 0.9) if rng.random() < 0.5 else 0.0
    noise = rng.uniform(0.003, 0.02)
    return Appearance(slot_cols, grain, light_w, float(ambient), float(key), gain, float(blur),
                      float(noise))


def shift_video_look(rng: np.random.Generator, look: Appearance, room: dict) -> None:
    """The ``shifted`` render domain for videos (in place): every object slot, the walls and
    the floor take the domain's saturated turquoise-to-violet colours, the floor becomes
    fine checkers (a 4-10 cm period), and a coloured key light tints the whole frame. The
    field of view comes from ``SHIFTED_HFOV_DEG`` (see :func:`render_video`)."""
    for sc in look.slot_colours:
        sc[:] = np.stack([shifted_colour(rng) for _ in range(len(sc))])
    room['floor_kind'] = 'tiles'
    room['floor_colour'], room['floor_colour2'] = shifted_colour(rng), shifted_colour(rng) * 0.3
    room['wall_colour'] = shifted_colour(rng) * 0.6 + 0.2
    room['period'] = float(rng.uniform(0.04, 0.10))
    look.gain = look.gain * shifted_tint(rng)


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


def _clip_near(poly: np.ndarray, near: float) -> np.ndarray:
    """Clip a convex camera-frame polygon (M, 3) to z >= near (Sutherland-Hodgman)."""
    out = []
    m = len(poly)
    for i in range(m):
        a, b = poly[i], poly[(i + 1) % m]
        ina, inb = a[2] >= near, b[2] >= near
        if ina:
            out.append(a)
        if ina != inb:
            w = (near - a[2]) / (b[2] - a[2])
            out.append(a + w * (b - a))
    return np.array(out).reshape(-1, 3)


def room_soup(room: dict, R: np.ndarray, t: np.ndarray, part_offset: int) -> render.FaceSoup:
    """Floor and walls (inward-facing quads) in the camera frame, clipped at the near plane."""
    verts, faces, normals, owner = [], [], [], []
    base = 0
    for i, (quad, n) in enumerate(zip(room['quads'], room['normals'])):
        poly = _clip_near(quad @ R.T + t, NEAR + 1e-3)
        if len(poly) < 3:
            continue
        verts.append(poly)
        faces.append(np.arange(len(poly)) + base)
        normals.append(R @ n)
        owner.append(part_offset + i)
        base += len(poly)
    if not verts:
        return render.FaceSoup(np.zeros((0, 3)), [], np.zeros((0, 3)), np.zeros(0, np.int64))
    return render.FaceSoup(np.concatenate(verts), faces, np.array(normals),
                           np.array(owner, np.int64))


def make_room(rng: np.random.Generator, half: float) -> dict:
    h = rng.uniform(2.4, 3.0)
    a, b = half * rng.uniform(1.0, 1.4), half * rng.uniform(1.0, 1.4)
    c = [(a, b), (-a, b), (-a, -b), (a, -b)]
    quads = [np.array([[x, y, 0.0] for x, y in c])]  # floor, CCW from above: normal +z
    normals = [np.array([0.0, 0.0, 1.0])]
    for i in range(4):
        (x0, y0), (x1, y1) = c[i], c[(i + 1) % 4]
        quads.append(np.array([[x0, y0, 0], [x0, y0, h], [x1, y1, h], [x1, y1, 0]], float))
        n = -np.array([(x0 + x1) / 2, (y0 + y1) / 2, 0.0])
        normals.append(n / np.linalg.norm(n))
    quads.append(np.array([[x, y, h] for x, y in c[::-1]]))  # ceiling, normal -z
    normals.append(np.array([0.0, 0.0, -1.0]))
    return {'quads': quads, 'normals': normals,
            'floor_kind': str(rng.choice(['planks', 'tiles', 'carpet'])),
            'floor_colour': render.random_colour(rng), 'floor_colour2': render.random_colour(rng),
            'wall_colour': render.random_colour(rng) * 0.5 + 0.45,
            'period': float(rng.uniform(0.12, 0.5)), 'angle': float(rng.uniform(0, np.pi))}


def _place_objects(rng: np.random.Generator, meshes: list, max_radius: float) -> list:
    """Non-overlapping floor positions and yaws; returns [(R (3, 3), p (3,))]."""
    placed: list[tuple[np.ndarray, float]] = []
    poses = []
    for mesh in meshes:
        lo, hi = mesh.bounds()
        rad = float(np.hypot(max(-lo[0], hi[0]), max(-lo[1], hi[1])))
        for _ in range(100):
            p = rng.uniform(-max_radius, max_radius, 2) if placed else np.zeros(2)
            if all(np.linalg.norm(p - q) > rad + r + 0.05 for q, r in placed):
                break
            max_radius *= 1.05
        placed.append((p, rad))
        poses.append((rotation_about_z(rng.uniform(-np.pi, np.pi)), np.array([p[0], p[1], 0.0])))
    return poses


def render_video(category: Category, rng: np.random.Generator,
                 config: VideoConfig | None = None, return_scene: bool = False) -> dict:
    """Render one video.

    Returns:
        dict of arrays named in :data:`VIDEO_FIELDS` (shapes in the data set manifest).
        With ``return_scene`` also ``_part_map`` (T, H, W) int32 (scene part per pixel,
        -1 none, room parts after the objects') and ``_contact`` (M, N, P) bool (parts each
        object's keypoints lie on).
    """
    config = config or VideoConfig()
    T, W, H = config.frames, config.width, config.height
    m_max = config.objects[1]
    m = int(rng.integers(config.objects[0], config.objects[1] + 1))
    meshes = [generate(category.name, rng) for _ in range(m)]
    poses = _place_objects(rng, meshes, 0.6 + 0.25 * m)
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

    # Per-object static data.
    n_kp, k_b = category.num_keypoints, category.num_bases
    scales = np.array([keypoint_diagonal(mm.keypoints) for mm in meshes])
    structure = np.zeros((m_max, k_b), np.float32)
    scale_m = np.zeros(m_max, np.float32)
    vox = np.zeros((m_max,) + (VOXEL_SIZE,) * 3, bool)
    res, origin = grid_for_dimensions(category.dimensions_m, VOXEL_SIZE)
    hs_obj, contacts, part_ranges = [], [], []
    n_parts = 0
    for i, mm in enumerate(meshes):
        structure[i] = category.fit_structure(mm.keypoints / scales[i])
        scale_m[i] = scales[i]
        if config.voxels:
            k = category.size_prior_m / scales[i]
            vox[i] = render.voxelize([p.transformed(k) for p in mm.parts], res, origin,
                                     VOXEL_SIZE)
        hs = [p.halfspaces() for p in mm.parts]
        hs_obj.append(hs)
        contacts.append(render.contact_parts(mm.keypoints, hs))
        part_ranges.append((n_parts, n_parts + len(mm.parts)))
        n_parts += len(mm.parts)

    look = sample_appearance(rng, m)  # fixed over the video
    if shifted:
        shift_video_look(rng, look, room)
    slot_cols, grain = look.slot_colours, look.grain
    light_w, ambient, key = look.light_world, look.ambient, look.key

    out = {
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
        'structure': structure,
        'scale_m': scale_m,
        'voxels': vox,
        'keypoints_2d': np.zeros((T, m_max, n_kp, 2), np.float32),
        'keypoints_3d': np.zeros((T, m_max, n_kp, 3), np.float32),
        'visible': np.zeros((T, m_max, n_kp), bool),
        'in_image': np.zeros((T, m_max, n_kp), bool),
        'R': np.zeros((T, m_max, 3, 3), np.float32),
        't': np.zeros((T, m_max, 3), np.float32),
        'box': np.zeros((T, m_max, 4), np.float32),
        'box_visible': np.zeros((T, m_max, 4), np.float32),
        'present': np.zeros((T, m_max), bool),
        'trajectory': np.int32(TRAJECTORIES.index(kind)),
    }
    ids = rng.permutation(1000)[:m]
    out['object_id'][:m] = ids
    out['object_valid'][:m] = True
    for i, (Rw, pw) in enumerate(poses):
        out['object_R_world'][i] = Rw
        out['object_t_world'][i] = pw

    part_maps = np.zeros((T, H, W), np.int32) if return_scene else None
    contact_all = np.zeros((m, n_kp, n_parts), bool)
    for i in range(m):
        a, b = part_ranges[i]
        contact_all[i, :, a:b] = contacts[i]
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
            hs_cam += [render.transform_halfspaces(h, R, t) for h in hs_obj[i]]
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
            R, t = obj_pose[i]
            out['R'][fi, i], out['t'][fi, i] = R, t
            kp3 = mm.keypoints @ R.T + t
            out['keypoints_3d'][fi, i] = kp3
            z = np.where(kp3[:, 2] > 1e-6, kp3[:, 2], 1e-6)
            out['keypoints_2d'][fi, i] = (kp3[:, :2] / z[:, None]) * (K[0, 0], K[1, 1]) + \
                (K[0, 2], K[1, 2])
            vis, inimg = render.keypoint_visibility(kp3, hs_cam, contact_all[i], K, W, H)
            if soups[i] is None:
                vis[:] = False
            out['visible'][fi, i], out['in_image'][fi, i] = vis, inimg
            rows, cols = np.nonzero(inst == i)
            if len(rows):
                out['present'][fi, i] = True
                out['box_visible'][fi, i] = [cols.min(), rows.min(), cols.max(), rows.max()]
            if soups[i] is not None:
                v = soups[i].vertices
                uv = v[:, :2] / v[:, 2:3] * (K[0, 0], K[1, 1]) + (K[0, 2], K[1, 2])
                lo, hi = uv.min(0), uv.max(0)
                bx = [max(lo[0], 0), max(lo[1], 0), min(hi[0], W - 1), min(hi[1], H - 1)]
                if bx[0] <= bx[2] and bx[1] <= bx[3]:
                    out['box'][fi, i] = bx
    if return_scene:
        out['_part_map'] = part_maps
        out['_contact'] = contact_all
    return out


def shade_frame(scene, face, part_map, depth, K, Rc, tc, n_parts, meshes, obj_pose,
                 part_ranges, slot_cols, grain, room, light_w, ambient, key) -> np.ndarray:
    H, W = face.shape
    light_c = Rc @ light_w
    shade = ambient + key * np.clip(scene.normals @ light_c, 0, None)
    img = np.zeros((H, W, 3), np.float32)
    drawn = face >= 0
    rows, cols = np.nonzero(drawn)
    z = depth[rows, cols].astype(np.float64)
    xc = np.column_stack([(cols - K[0, 2]) / K[0, 0] * z, (rows - K[1, 2]) / K[1, 1] * z, z])
    pm = part_map[rows, cols]
    fs = shade[face[rows, cols]]
    col = np.zeros((len(rows), 3))
    # Objects: slot colour times wood grain in object coordinates.
    for i, mm in enumerate(meshes):
        a, b = part_ranges[i]
        sel = (pm >= a) & (pm < b)
        if not sel.any():
            continue
        R, t = obj_pose[i]
        xo = (xc[sel] - t) @ R  # object frame
        mats = np.array([p.material for p in mm.parts])[pm[sel] - a]
        d, freq, amp = grain[i]
        pat = 1 + amp * np.sin(2 * np.pi * freq * (xo @ d) + 3 * np.sin(7 * xo[:, 2]))
        col[sel] = slot_cols[i][np.minimum(mats, 3)] * pat[:, None]
    # Room: floor pattern and walls in world coordinates.
    sel = pm >= n_parts
    if sel.any():
        xw = (xc[sel] - tc) @ Rc
        is_floor = pm[sel] == n_parts
        ca, sa = np.cos(room['angle']), np.sin(room['angle'])
        u = (xw[:, 0] * ca + xw[:, 1] * sa) / room['period']
        v = (-xw[:, 0] * sa + xw[:, 1] * ca) / room['period']
        if room['floor_kind'] == 'tiles':
            chk = ((np.floor(u) + np.floor(v)) % 2)[:, None]
            fl = room['floor_colour'] * (1 - chk) + room['floor_colour2'] * chk
        elif room['floor_kind'] == 'planks':  # planks of random brightness along u
            plank = np.floor(v)
            tone = 0.85 + 0.3 * np.mod(np.sin(plank * 12.9898) * 43758.5453, 1.0)
            fl = room['floor_colour'] * (tone * (1 + 0.05 * np.sin(2 * u + plank)))[:, None]
        else:
            fl = room['floor_colour'] * (1 + 0.05 * np.sin(37 * u) * np.sin(41 * v))[:, None]
        wall = np.broadcast_to(room['wall_colour'], (len(xw), 3)) * \
            (1 - 0.1 * np.clip(xw[:, 2] / 3, 0, 1))[:, None]
        col[sel] = np.where(is_floor[:, None], fl, wall)
    img[rows, cols] = (col * fs[:, None]).astype(np.float32)
    return img


VIDEO_FIELDS = ('frames', 'instance', 'depth', 'K', 'camera_R', 'camera_t', 'object_id',
                'object_valid', 'object_R_world', 'object_t_world', 'structure', 'scale_m',
                'voxels', 'keypoints_2d', 'keypoints_3d', 'visible', 'in_image', 'R', 't',
                'box', 'box_visible', 'present', 'trajectory')


def _video_shard_job(args: tuple) -> tuple[int, int, str]:
    category, seed, index, count, config, out = args
    cv2.setNumThreads(1)
    cat = load_category(category)
    rng = dataset.shard_rng(seed, index)
    videos = [render_video(cat, rng, config) for _ in range(count)]
    sha = dataset.write_npz(Path(out) / dataset.shard_name(index),
                            dataset.stack_samples(videos))
    return index, count, sha


def generate_video_dataset(category: str, count: int, out: str | Path, seed: int,
                           config: VideoConfig | None = None, shard_size: int = 4,
                           workers: int = 1, progress: bool = True) -> dict:
    """Render ``count`` videos into ``out`` (shards of ``shard_size`` videos + manifest)."""
    from training.synth.generate import manifest_head, render_shards

    config = config or VideoConfig()
    out = Path(out)
    cat = load_category(category)
    shards = render_shards(_video_shard_job, category, count, out, seed, config, shard_size,
                           workers, progress, 'videos', 'video')
    res, origin = grid_for_dimensions(cat.dimensions_m, VOXEL_SIZE)
    T, H, W, M = config.frames, config.height, config.width, config.objects[1]
    N, K = cat.num_keypoints, cat.num_bases
    shapes = {
        'frames': [T, H, W, 3], 'instance': [T, H, W], 'depth': [T, H, W], 'K': [3, 3],
        'camera_R': [T, 3, 3], 'camera_t': [T, 3], 'object_id': [M], 'object_valid': [M],
        'object_R_world': [M, 3, 3], 'object_t_world': [M, 3], 'structure': [M, K],
        'scale_m': [M], 'voxels': [M, 32, 32, 32], 'keypoints_2d': [T, M, N, 2],
        'keypoints_3d': [T, M, N, 3], 'visible': [T, M, N], 'in_image': [T, M, N],
        'R': [T, M, 3, 3], 't': [T, M, 3], 'box': [T, M, 4], 'box_visible': [T, M, 4],
        'present': [T, M], 'trajectory': [],
    }
    manifest = {
        **manifest_head('videos', 'training.synth.videos', category, seed, count, shard_size),
        'keypoint_names': list(cat.keypoint_names),
        'config': config.to_dict(),
        'trajectories': list(TRAJECTORIES),
        'fields': {k: {'shape': v} for k, v in shapes.items()},
        'notes': 'instance: 0 background, i + 1 object slot i; object_id stable over the '
                 'video (-1 for unused slots); camera_R/t map world -> camera; R/t map '
                 'object -> camera; world frame z up, floor z = 0',
        'voxel_grid': {'size': VOXEL_SIZE, 'resolution': res, 'origin': origin.tolist(),
                       'frame': 'object frame, mesh rescaled to size_prior_m / scale_m'},
        'shards': shards,
    }
    dataset.write_manifest(out, manifest)
    return manifest


def video_tiles(video: dict, category: Category, every: int = 6,
                tile_width: int = 256) -> list[np.ndarray]:
    """Annotated frames of one video (every ``every``-th), all objects drawn."""
    from training.synth.preview import draw_annotations

    tiles = []
    for fi in range(0, len(video['frames']), every):
        img = video['frames'][fi]
        for i in np.nonzero(video['object_valid'])[0]:
            if not video['in_image'][fi, i].any():
                continue
            img = draw_annotations(img, video['keypoints_2d'][fi, i], video['visible'][fi, i],
                                   category, video['box'][fi, i],
                                   label=None)
        cv2.putText(img, f'{fi} {TRAJECTORIES[int(video["trajectory"])]}', (3, 12),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
        if img.shape[1] != tile_width:
            img = cv2.resize(img, (tile_width, tile_width * img.shape[0] // img.shape[1]))
        tiles.append(img)
    return tiles


def preview_video(category: str, seed: int, config: VideoConfig, path: str | Path,
                  videos: int = 3) -> Path:
    """Contact sheet of the first videos of a data set with this seed (one row each)."""
    from training.synth.preview import contact_sheet, write_png

    cat = load_category(category)
    rng = dataset.shard_rng(seed, 0)
    tiles = []
    cols = 6
    for _ in range(videos):
        v = render_video(cat, rng, config)
        every = max(1, config.frames // cols)
        tiles += video_tiles(v, cat, every)[:cols]
    return write_png(path, contact_sheet(tiles, cols=cols))
