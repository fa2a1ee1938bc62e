"""CPU renderer for the synthetic world: a z-buffer rasteriser of convex planar faces.

Why this renderer: the scenes are made of a few dozen convex parts (see
``training.synth.procedural``), so each frame is a few hundred convex polygons. Each face
covers the pixel centres inside its projected polygon (vectorised half-plane tests over the
face's bounding box; pixel centres at integer coordinates, the OpenCV convention of
docs/interfaces.md) and its exact per-pixel depth comes from the face's plane
(``z = d / (n . ray)``), so depth, masks and the keypoint depth test are exact at pixel
centres and match the pinhole projection used for the labels. It needs only
numpy, runs the same on every CI machine and laptop, and is fast at the sizes the
networks use (a few ms per 128 px image). A GL rasteriser (pyrender on OSMesa, moderngl on
Mesa/EGL) was rejected: it needs system libraries our setup does not install (OSMesa/EGL
drivers), its headless contexts are fragile in CI and in worker processes, and its speed
advantage matters little at 128-256 px where per-sample Python work (scene sampling,
voxelisation, compression) dominates. The cost: no textures mapped in object space, no soft
shadows; we compensate with screen-space procedural textures, flat Lambert + ambient shading
with two lights, and image-level augmentation (blur, noise, colour jitter).

Outputs per rendered scene: ``depth`` (H, W) float32 metres along the optical axis (0 where
nothing was drawn), ``face`` (H, W) int32 index of the visible face (-1 for background), from
which part, object and material ids follow by table look-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from training.synth.procedural import ConvexPart


@dataclass
class FaceSoup:
    """All faces of a scene in the camera optical frame.

    Attributes:
        vertices: (V, 3) camera-frame vertices (z > 0).
        faces: list of F index arrays into ``vertices`` (convex polygons, outward CCW).
        normals: (F, 3) outward unit normals in the camera frame.
        face_part: (F,) index of the part each face belongs to.
    """

    vertices: np.ndarray
    faces: list[np.ndarray]
    normals: np.ndarray
    face_part: np.ndarray


def build_soup(parts: list[ConvexPart], R: np.ndarray, t: np.ndarray,
               part_offset: int = 0) -> FaceSoup:
    """Transform parts into the camera frame (``X = R @ Y + t``) as a face soup.

    Args:
        parts: convex parts in their object frame.
        R: (3, 3) rotation; t: (3,) translation, object -> camera.
        part_offset: added to the part indices (to merge several objects in one scene).
    """
    R = np.asarray(R, np.float64)
    t = np.asarray(t, np.float64)
    if R.shape != (3, 3) or t.shape != (3,):
        raise ValueError(f'R must be (3, 3) and t (3,), got {R.shape}, {t.shape}')
    verts, faces, normals, owner = [], [], [], []
    base = 0
    for i, part in enumerate(parts):
        v = part.vertices @ R.T + t
        hs = part.halfspaces()
        verts.append(v)
        faces.extend(f + base for f in part.faces)
        normals.append(hs[:, :3] @ R.T)
        owner.extend([i + part_offset] * len(part.faces))
        base += len(v)
    return FaceSoup(np.concatenate(verts), faces, np.concatenate(normals),
                    np.asarray(owner, np.int64))


def merge_soups(soups: list[FaceSoup]) -> FaceSoup:
    """Concatenate face soups (their part indices must already be distinct)."""
    verts, faces, normals, owner = [], [], [], []
    base = 0
    for s in soups:
        verts.append(s.vertices)
        faces.extend(f + base for f in s.faces)
        normals.append(s.normals)
        owner.append(s.face_part)
        base += len(s.vertices)
    return FaceSoup(np.concatenate(verts), faces, np.concatenate(normals),
                    np.concatenate(owner))


def rasterize(soup: FaceSoup, K: np.ndarray, width: int, height: int,
              near: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Z-buffer rasterisation of the convex faces of a soup.

    Args:
        soup: faces in the camera frame; every vertex must have z >= near.
        K: (3, 3) camera matrix (no skew).
        width, height: image size in pixels.

    Returns:
        depth (H, W) float32 (0 = nothing), face (H, W) int32 (-1 = nothing).
    """
    K = np.asarray(K, np.float64)
    if K.shape != (3, 3):
        raise ValueError(f'K must be (3, 3), got {K.shape}')
    v = soup.vertices
    if len(v) and v[:, 2].min() < near:
        raise ValueError(f'a vertex is closer than the near plane ({v[:, 2].min():.3f} m)')
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    uv = np.empty((len(v), 2))
    uv[:, 0] = fx * v[:, 0] / v[:, 2] + cx
    uv[:, 1] = fy * v[:, 1] / v[:, 2] + cy
    rx = (np.arange(width) - cx) / fx
    ry = (np.arange(height) - cy) / fy
    depth = np.full(height * width, np.inf)
    face = np.full(height * width, -1, np.int32)
    for fi, f in enumerate(soup.faces):
        n = soup.normals[fi]
        p0 = v[f[0]]
        d = float(n @ p0)
        if d >= 0.0:  # back face (camera at the origin is behind the plane)
            continue
        q = uv[f]
        # Pixel centres inside the polygon (half-plane tests; shared edges belong to both).
        x0 = max(int(np.ceil(q[:, 0].min())), 0)
        x1 = min(int(np.floor(q[:, 0].max())), width - 1)
        y0 = max(int(np.ceil(q[:, 1].min())), 0)
        y1 = min(int(np.floor(q[:, 1].max())), height - 1)
        if x1 < x0 or y1 < y0:
            continue
        gx = np.arange(x0, x1 + 1, dtype=np.float64)[None, :]
        gy = np.arange(y0, y1 + 1, dtype=np.float64)[:, None]
        e = np.roll(q, -1, axis=0) - q
        area = float(np.sum(q[:, 0] * np.roll(q[:, 1], -1) - np.roll(q[:, 0], -1) * q[:, 1]))
        sgn = 1.0 if area >= 0 else -1.0
        inside = np.ones((y1 - y0 + 1, x1 - x0 + 1), bool)
        for (ax, ay), (ex, ey) in zip(q, e):
            inside &= sgn * (ex * (gy - ay) - ey * (gx - ax)) >= -1e-9
        yy, xx = np.nonzero(inside)
        if len(yy) == 0:
            continue
        xx += x0
        yy += y0
        denom = n[0] * rx[xx] + n[1] * ry[yy] + n[2]
        with np.errstate(divide='ignore'):
            z = d / denom
        zf = v[f, 2]
        z = np.clip(np.where(denom < 0, z, zf.max()), zf.min(), zf.max())
        idx = yy * width + xx
        closer = z < depth[idx]
        idx = idx[closer]
        depth[idx] = z[closer]
        face[idx] = fi
    depth[~np.isfinite(depth)] = 0.0
    return depth.reshape(height, width).astype(np.float32), face.reshape(height, width)


def ray_entry(dirs: np.ndarray, halfspaces: np.ndarray) -> np.ndarray:
    """Where rays from the camera centre enter a convex part (Cyrus-Beck clipping).

    Args:
        dirs: (M, 3) ray directions ``X = s * dir`` (camera frame).
        halfspaces: (F, 4) the part's outward normals and offsets (inside: n . X <= d).

    Returns:
        (M,) entry parameter s >= 0 (inf where the ray misses the part).
    """
    dirs = np.asarray(dirs, np.float64)
    hs = np.asarray(halfspaces, np.float64)
    if dirs.ndim != 2 or dirs.shape[1] != 3 or hs.ndim != 2 or hs.shape[1] != 4:
        raise ValueError(f'dirs must be (M, 3) and halfspaces (F, 4), got {dirs.shape}, '
                         f'{hs.shape}')
    nd = dirs @ hs[:, :3].T
    d = hs[:, 3][None, :]
    with np.errstate(divide='ignore', invalid='ignore'):
        s = d / nd
    enter = np.where(nd < 0, s, -np.inf).max(1)
    leave = np.where(nd > 0, s, np.inf).min(1)
    parallel_ok = np.all((nd != 0) | (d >= 0), axis=1)
    hit = (enter <= leave) & (leave > 0) & parallel_ok
    return np.where(hit, np.maximum(enter, 0.0), np.inf)


def transform_halfspaces(hs: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(F, 4) half-spaces of a part moved by ``X' = R @ X + t``."""
    n = hs[:, :3] @ np.asarray(R, np.float64).T
    return np.column_stack([n, hs[:, 3] + n @ np.asarray(t, np.float64)])


def contact_parts(points: np.ndarray, halfspaces: list[np.ndarray],
                  eps: float = 1e-6) -> np.ndarray:
    """(N, P) bool: point n lies in or on part p (the parts meeting at a keypoint)."""
    points = np.asarray(points, np.float64)
    out = np.zeros((len(points), len(halfspaces)), bool)
    for j, hs in enumerate(halfspaces):
        out[:, j] = np.max(points @ hs[:, :3].T - hs[:, 3], axis=1) <= eps
    return out


def keypoint_visibility(points_cam: np.ndarray, halfspaces_cam: list[np.ndarray],
                        contact: np.ndarray, K: np.ndarray, width: int, height: int,
                        tol: float = 0.005) -> tuple[np.ndarray, np.ndarray]:
    """Visibility of keypoints by the exact depth test along each keypoint's ray.

    A keypoint is hidden when its ray enters some part more than ``tol`` metres (in depth)
    before reaching it, not counting the parts it lies in or on (``contact``: its own
    part and parts joined to it there; a leg does not hide its own foot). This is the
    depth-buffer test evaluated exactly at the keypoint instead of at the nearest pixel
    centre, so labels do not depend on the image resolution.

    Args:
        points_cam: (N, 3) keypoints in the camera frame.
        halfspaces_cam: P arrays (F_p, 4), every part of the scene in the camera frame
            (occluders included).
        contact: (N, P) bool, see :func:`contact_parts`.
        K: (3, 3) camera matrix; width, height: image size.

    Returns:
        visible (N,) bool (in the image and not hidden), in_image (N,) bool.
    """
    pts = np.asarray(points_cam, np.float64)
    n = len(pts)
    if pts.shape != (n, 3) or contact.shape != (n, len(halfspaces_cam)):
        raise ValueError('points_cam must be (N, 3) and contact (N, P)')
    K = np.asarray(K, np.float64)
    z = pts[:, 2]
    with np.errstate(divide='ignore', invalid='ignore'):
        u = K[0, 0] * pts[:, 0] / z + K[0, 2]
        v = K[1, 1] * pts[:, 1] / z + K[1, 2]
    in_image = ((z > 0) & (u >= -0.5) & (u < width - 0.5) & (v >= -0.5)
                & (v < height - 0.5))
    dirs = pts / np.where(z > 0, z, 1.0)[:, None]  # depth parameterisation: s = z
    hidden = np.zeros(n, bool)
    for j, hs in enumerate(halfspaces_cam):
        s = ray_entry(dirs, hs)
        hidden |= (s < z - tol) & ~contact[:, j]
    return in_image & ~hidden, in_image


# ----------------------------------------------------------------------- appearance
def value_noise(rng: np.random.Generator, height: int, width: int, cells: int,
                octaves: int = 3) -> np.ndarray:
    """(H, W) float32 smooth noise in [-1, 1] (bicubic-upsampled random grids)."""
    out = np.zeros((height, width), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        c = max(2, cells * (2 ** o))
        grid = rng.random((c, c)).astype(np.float32)
        out += amp * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
    out /= total
    lo, hi = float(out.min()), float(out.max())
    return (2.0 * (out - lo) / max(hi - lo, 1e-6) - 1.0).astype(np.float32)


def texture_pattern(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W) float32 multiplicative screen-space texture around 1 (plain, grain, fabric,
    stripes or blotches)."""
    kind = rng.choice(['plain', 'grain', 'fabric', 'stripes', 'blotch'],
                      p=[0.3, 0.25, 0.2, 0.1, 0.15])
    if kind == 'plain':
        return np.ones((height, width), np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    theta = rng.uniform(0, np.pi)
    coord = (xx * np.cos(theta) + yy * np.sin(theta)) / max(height, width)
    if kind == 'grain':
        warp = value_noise(rng, height, width, 3, 2)
        pat = np.sin(2 * np.pi * (rng.uniform(8, 30) * coord + 1.5 * warp))
        amp = rng.uniform(0.05, 0.2)
    elif kind == 'fabric':
        pat = value_noise(rng, height, width, max(8, width // 4), 1)
        amp = rng.uniform(0.05, 0.15)
    elif kind == 'stripes':
        pat = np.sign(np.sin(2 * np.pi * rng.uniform(3, 12) * coord))
        amp = rng.uniform(0.1, 0.3)
    else:
        pat = value_noise(rng, height, width, 4, 3)
        amp = rng.uniform(0.1, 0.3)
    return (1.0 + amp * pat).astype(np.float32)


def random_colour(rng: np.random.Generator) -> np.ndarray:
    """(3,) float32 RGB albedo in [0, 1]: woods, greys, saturated paints, pastels."""
    kind = rng.choice(['wood', 'grey', 'paint', 'any'], p=[0.35, 0.25, 0.2, 0.2])
    if kind == 'wood':
        hsv = [rng.uniform(10, 30), rng.uniform(80, 200), rng.uniform(60, 220)]
    elif kind == 'grey':
        hsv = [0, rng.uniform(0, 25), rng.uniform(20, 240)]
    elif kind == 'paint':
        hsv = [rng.uniform(0, 180), rng.uniform(120, 255), rng.uniform(80, 255)]
    else:
        hsv = [rng.uniform(0, 180), rng.uniform(0, 255), rng.uniform(30, 255)]
    px = np.uint8(np.clip(hsv, 0, 255)).reshape(1, 1, 3)
    return cv2.cvtColor(px, cv2.COLOR_HSV2RGB).reshape(3).astype(np.float32) / 255.0


_IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')


def list_backgrounds(folder: str | Path | None) -> list[Path]:
    """Image files in a user folder of backgrounds (sorted, so sampling is reproducible)."""
    if not folder:
        return []
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f'background folder {folder} does not exist')
    return sorted(p for p in folder.rglob('*') if p.suffix.lower() in _IMAGE_SUFFIXES)


def background(rng: np.random.Generator, height: int, width: int,
               user_images: list[Path] | None = None, user_prob: float = 0.5) -> np.ndarray:
    """(H, W, 3) float32 RGB in [0, 1]: a user image (random crop) or a procedural one
    (gradient, room with floor and wall, noise), with random shapes on top."""
    if user_images and rng.random() < user_prob:
        img = cv2.imread(str(user_images[int(rng.integers(len(user_images)))]),
                         cv2.IMREAD_COLOR)
        if img is not None:
            ih, iw = img.shape[:2]
            s = rng.uniform(0.3, 1.0) * min(ih / height, iw / width)
            ch, cw = max(1, int(height * s)), max(1, int(width * s))
            y0 = int(rng.integers(0, ih - ch + 1))
            x0 = int(rng.integers(0, iw - cw + 1))
            crop = cv2.resize(img[y0:y0 + ch, x0:x0 + cw], (width, height),
                              interpolation=cv2.INTER_AREA)
            if rng.random() < 0.5:
                crop = crop[:, ::-1]
            return cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    kind = rng.choice(['gradient', 'room', 'noise'], p=[0.3, 0.45, 0.25])
    yy = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    if kind == 'gradient':
        c0, c1 = random_colour(rng), random_colour(rng)
        img = c0 * (1 - yy) + c1 * yy
        img = np.broadcast_to(img, (height, width, 3)).copy()
        img *= (1 + 0.15 * value_noise(rng, height, width, 3))[..., None]
    elif kind == 'room':
        horizon = rng.uniform(0.2, 0.75)
        tilt = rng.uniform(-0.15, 0.15)
        xx = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :, None]
        floor = yy > horizon + tilt * xx
        wall_c = random_colour(rng) * rng.uniform(0.7, 1.2)
        floor_c = random_colour(rng) * rng.uniform(0.5, 1.0)
        wall = wall_c * texture_pattern(rng, height, width)[..., None]
        flo = floor_c * texture_pattern(rng, height, width)[..., None]
        img = np.where(floor, flo, wall)
        img *= (1 + 0.2 * value_noise(rng, height, width, 2))[..., None]
    else:
        img = np.stack([0.5 + 0.5 * value_noise(rng, height, width, int(rng.integers(2, 9)))
                        for _ in range(3)], -1)
        img = 0.5 * img + 0.5 * random_colour(rng)
    img = np.clip(img, 0, 1).astype(np.float32)
    for _ in range(int(rng.integers(0, 6))):
        c = tuple(float(x) for x in random_colour(rng))
        p = rng.uniform(0, 1, 2) * (width, height)
        s = rng.uniform(0.05, 0.4) * max(width, height)
        shape = rng.integers(3)
        if shape == 0:
            cv2.rectangle(img, (int(p[0]), int(p[1])), (int(p[0] + s), int(p[1] + s * 0.7)),
                          c, -1)
        elif shape == 1:
            cv2.circle(img, (int(p[0]), int(p[1])), int(s / 2), c, -1)
        else:
            q = rng.uniform(0, 1, 2) * (width, height)
            cv2.line(img, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), c,
                     max(1, int(s / 15)))
    return img


@dataclass
class Lighting:
    """Two directional lights and ambient, in the camera frame."""

    key_dir: np.ndarray
    fill_dir: np.ndarray
    ambient: float
    key: float
    fill: float

    @classmethod
    def sample(cls, rng: np.random.Generator, up_cam: np.ndarray) -> Lighting:
        """Key light from above (object +z, ``up_cam`` in the camera frame), random side."""
        up = np.asarray(up_cam, np.float64)
        side = rng.normal(size=3)
        key = up * rng.uniform(0.4, 1.2) + side * 0.6 - np.array([0, 0, 1.0]) * 0.5
        fill = -side + np.array([0, 0, -1.0])
        return cls(key / np.linalg.norm(key), fill / np.linalg.norm(fill),
                   float(rng.uniform(0.2, 0.55)), float(rng.uniform(0.5, 0.9)),
                   float(rng.uniform(0.0, 0.3)))

    def shade(self, normals: np.ndarray) -> np.ndarray:
        """(F, 3) outward normals -> (F,) intensity (Lambert + ambient)."""
        return (self.ambient + self.key * np.clip(normals @ self.key_dir, 0, None)
                + self.fill * np.clip(normals @ self.fill_dir, 0, None))


def compose(bg: np.ndarray, face: np.ndarray, face_colour: np.ndarray,
            face_texture: np.ndarray, textures: list[np.ndarray]) -> np.ndarray:
    """(H, W, 3) float32 image: background where ``face < 0``, else the face's shaded
    colour times its texture pattern.

    Args:
        bg: (H, W, 3) background; face: (H, W) face index map.
        face_colour: (F, 3) shaded colours; face_texture: (F,) index into ``textures``.
        textures: list of (H, W) patterns.
    """
    img = bg.copy()
    drawn = face >= 0
    fid = face[drawn]
    col = face_colour[fid]
    if textures:
        tex = np.stack(textures)  # (T, H, W)
        rows, cols = np.nonzero(drawn)
        col = col * tex[face_texture[fid], rows, cols][:, None]
    img[drawn] = col
    return img


def finish(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Camera-like degradations: colour/contrast jitter, blur, noise; -> uint8 RGB."""
    img = img * rng.uniform(0.75, 1.25) * rng.uniform(0.9, 1.1, 3).astype(np.float32)
    img = (img - 0.5) * rng.uniform(0.8, 1.2) + 0.5
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.0))
    if rng.random() < 0.6:
        img = img + rng.normal(0, rng.uniform(0.005, 0.03), img.shape).astype(np.float32)
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- voxels
def voxelize(parts: list[ConvexPart], resolution: float, origin: np.ndarray,
             size: int = 32, cover: bool = True) -> np.ndarray:
    """Occupancy (size, size, size) bool of convex parts: a voxel is occupied when its box
    meets a part (separating-axis test on the part's face normals within the part's
    axis-aligned bounds; exact for boxes aligned with the grid, slightly generous at
    slanted edges), or with ``cover=False`` when its centre lies in a part (the occupied
    region then follows the surface to half a voxel either way, but parts thinner than a
    voxel can vanish).

    Args:
        parts: convex parts in the grid's frame (metres).
        resolution: voxel edge (m); origin: (3,) grid minimum corner.
    """
    origin = np.asarray(origin, np.float64).reshape(3)
    occ = np.zeros((size, size, size), bool)
    half = 0.5 * resolution
    for part in parts:
        v = part.vertices
        i0 = np.floor((v.min(0) - origin) / resolution).astype(int)
        i1 = np.floor((v.max(0) - origin) / resolution).astype(int)
        i0 = np.maximum(i0, 0)
        i1 = np.minimum(i1, size - 1)
        if np.any(i1 < i0):
            continue
        hs = part.halfspaces()
        axes = [origin[a] + (np.arange(i0[a], i1[a] + 1) + 0.5) * resolution for a in range(3)]
        c = np.stack(np.meshgrid(*axes, indexing='ij'), -1)
        slack = half * np.abs(hs[:, :3]).sum(1) if cover else np.zeros(len(hs))
        inside = np.all(c @ hs[:, :3].T - hs[:, 3] <= slack + 1e-9, axis=-1)
        occ[i0[0]:i1[0] + 1, i0[1]:i1[1] + 1, i0[2]:i1[2] + 1] |= inside
    return occ
