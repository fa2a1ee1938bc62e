"""The static world of a synthetic video: the room, where the objects stand, their
materials and the lighting, and the shading of a rasterised frame.

Used by :mod:`training.synth.videos` (a moving camera in one scene) and
:mod:`training.synth.scenes` (single full frames). World frame: z up, floor z = 0; the room
is a box of inward-facing quads (floor, four walls, ceiling) clipped at the near plane.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from perception_3dinn.geometry import rotation_about_z
from training.synth import render
from training.synth.domains import shifted_colour, shifted_tint

NEAR = 0.1


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
    field of view comes from ``SHIFTED_HFOV_DEG`` (see
    :func:`training.synth.videos.render_video`)."""
    for sc in look.slot_colours:
        sc[:] = np.stack([shifted_colour(rng) for _ in range(len(sc))])
    room['floor_kind'] = 'tiles'
    room['floor_colour'], room['floor_colour2'] = shifted_colour(rng), shifted_colour(rng) * 0.3
    room['wall_colour'] = shifted_colour(rng) * 0.6 + 0.2
    room['period'] = float(rng.uniform(0.04, 0.10))
    look.gain = look.gain * shifted_tint(rng)


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
    """A box room about the origin (half-sizes `half` x 1.0-1.4), its floor style and colours."""
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


def place_objects(rng: np.random.Generator, meshes: list, max_radius: float) -> list:
    """Non-overlapping floor positions and yaws (the first object at the origin, each next
    one where its bounding circle clears the others'); returns [(R (3, 3), p (3,))]."""
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


def shade_frame(scene, face, part_map, depth, K, Rc, tc, n_parts, meshes, obj_pose,
                 part_ranges, slot_cols, grain, room, light_w, ambient, key) -> np.ndarray:
    """Shaded float RGB (H, W, 3) of a rasterised frame: objects by material slot times wood
    grain in object coordinates, the floor pattern and walls in world coordinates."""
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
