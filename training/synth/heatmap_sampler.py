"""Synthetic keypoint heatmaps for the 3D interpreter (seed 000, sec. 3.3; issue 3 item 5).

Each sample draws a random structure ``alpha ~ N(0, alpha_std)`` (clipped at 3 std), adds a
Gaussian perturbation to every 3D keypoint (std 1 % of the skeleton's diagonal, to model
deformations the bases miss), a random viewpoint (azimuth over the full circle, elevation,
small camera roll), a distance and a crop camera (principal point at the crop centre, focal
chosen so the keypoint box fills the crop as a detection box padded by ``pad`` would, with
scale and centre jitter). The 2D keypoints are encoded by the shared
:class:`~perception_3dinn.codec.HeatmapCodec` and corrupted by the noise models that a real
keypoint network shows: peak amplitude changes, missing keypoints, spurious second peaks
(often at the mirror-symmetric keypoint), shifted peaks, Gaussian blur and salt-and-pepper.
No image is rendered: this is what makes stage 2 cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from perception_3dinn.codec import HeatmapCodec
from perception_3dinn.skeleton import Category


@dataclass(frozen=True)
class NoiseConfig:
    """Heatmap corruption; probabilities are per keypoint unless said otherwise."""

    amplitude_range: tuple = (0.5, 1.0)
    p_missing: float = 0.08
    p_spurious: float = 0.15
    spurious_symmetric: float = 0.5   # fraction of spurious peaks at the mirror keypoint
    spurious_amplitude: tuple = (0.3, 0.9)
    p_shift: float = 0.15
    shift_std_px: float = 3.0         # input (crop) pixels
    p_blur: float = 0.3               # per sample
    blur_sigma_range: tuple = (0.5, 1.5)   # heatmap pixels
    p_salt_pepper: float = 0.5        # per sample
    salt_pepper_max: float = 0.05     # fraction of heatmap pixels hit, drawn U(0, max)
    background_std: float = 0.02      # small Gaussian floor noise

    @classmethod
    def clean(cls) -> NoiseConfig:
        """No corruption at all (exact Gaussian targets)."""
        return cls(amplitude_range=(1.0, 1.0), p_missing=0.0, p_spurious=0.0, p_shift=0.0,
                   p_blur=0.0, p_salt_pepper=0.0, background_std=0.0)


@dataclass(frozen=True)
class SamplerConfig:
    """Geometry of the sampled objects and crops."""

    input_size: int = 128
    stride: int = 4
    sigma: float = 1.5
    azimuth_range_deg: tuple = (-180.0, 180.0)
    elevation_range_deg: tuple = (-5.0, 50.0)
    in_plane_std_deg: float = 3.0
    distance_range: tuple = (0.7, 4.0)    # normalised units (keypoint diagonals), log-uniform
    alpha_clip: float = 3.0
    perturb_std: float = 0.01             # fraction of the skeleton diagonal (sec. 3.3)
    pad: float = 0.15                     # crop padding, as crops.Crop.from_box
    scale_jitter: float = 0.12            # box fill jitter, relative
    centre_jitter: float = 0.06           # box centre jitter, fraction of the crop side
    noise: NoiseConfig = NoiseConfig()


class HeatmapSampler:
    """Draw batches of (heatmaps, ground truth) for a category.

    ``sample(batch)`` returns a dict of numpy arrays:
    ``heatmaps (B, N, h, w) float32``, ``clean_heatmaps (B, N, h, w)``,
    ``keypoints (B, N, 2)`` crop pixels (exact projections), ``visible (B, N)`` (not
    dropped by the noise and inside the crop), ``alpha (B, K)``, ``points3d (B, N, 3)``
    (perturbed object-frame skeleton), ``rotation (B, 3, 3)``, ``translation (B, 3)`` crop
    camera, ``focal (B,)`` crop pixels, ``azimuth (B,)``, ``elevation (B,)`` radians.
    """

    def __init__(self, category: Category, config: SamplerConfig = SamplerConfig(),
                 seed: int = 0) -> None:
        self.category = category
        self.config = config
        self.codec = HeatmapCodec(config.input_size, config.stride, config.sigma)
        self.rng = np.random.default_rng(seed)
        mean = category.bases[0]
        self.target = np.array([0.0, 0.0, 0.5 * (mean[:, 2].min() + mean[:, 2].max())])
        self.flip = category.flip_permutation

    def with_noise(self, noise: NoiseConfig) -> HeatmapSampler:
        """A sampler with the same geometry and another noise model (fresh RNG state)."""
        return HeatmapSampler(self.category, replace(self.config, noise=noise),
                              seed=int(self.rng.integers(2 ** 31)))

    # -- geometry -----------------------------------------------------------------------
    def sample_geometry(self, batch: int) -> dict:
        """Structure, pose, focal and exact 2D keypoints of ``batch`` objects."""
        cfg, cat, rng = self.config, self.category, self.rng
        k = cat.num_bases
        alpha = rng.standard_normal((batch, k)) * cat.alpha_std
        alpha = np.clip(alpha, -cfg.alpha_clip * cat.alpha_std, cfg.alpha_clip * cat.alpha_std)
        shape = cat.structure(alpha)
        diag = np.linalg.norm(shape.max(1) - shape.min(1), axis=-1)
        points = shape + rng.standard_normal(shape.shape) * (cfg.perturb_std * diag)[:, None,
                                                                                     None]
        az = np.radians(rng.uniform(*cfg.azimuth_range_deg, batch))
        el = np.radians(rng.uniform(*cfg.elevation_range_deg, batch))
        roll = np.radians(rng.standard_normal(batch) * cfg.in_plane_std_deg)
        dist = np.exp(rng.uniform(*np.log(cfg.distance_range), batch))
        R = look_at_batch(az, el, roll)
        centre = self.target[None] + dist[:, None] * np.stack(
            [np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1)
        t = -np.einsum('bij,bj->bi', R, centre)
        cam = np.einsum('bij,bnj->bni', R, points) + t[:, None]
        xy = cam[..., :2] / cam[..., 2:3]                    # normalised image coordinates
        extent = (xy.max(1) - xy.min(1)).max(-1)
        s = cfg.input_size
        fill = s / (1.0 + cfg.pad) * rng.uniform(1 - cfg.scale_jitter, 1 + cfg.scale_jitter,
                                                 batch)
        focal = fill / extent
        c = 0.5 * (s - 1)
        box_centre = 0.5 * (xy.max(1) + xy.min(1)) * focal[:, None]
        shift = rng.uniform(-cfg.centre_jitter, cfg.centre_jitter, (batch, 2)) * s
        # Move the object in x, y at its depth so its box centre lands at centre + shift.
        t[:, :2] += (shift - box_centre) * t[:, 2:3] / focal[:, None]
        cam = np.einsum('bij,bnj->bni', R, points) + t[:, None]
        keypoints = focal[:, None, None] * cam[..., :2] / cam[..., 2:3] + c
        return {'alpha': alpha, 'points3d': points, 'rotation': R, 'translation': t,
                'focal': focal, 'keypoints': keypoints, 'azimuth': az, 'elevation': el}

    # -- heatmaps -----------------------------------------------------------------------
    def render(self, keypoints: np.ndarray, noise: NoiseConfig | None = None) -> tuple:
        """Noisy heatmaps of 2D keypoints.

        Args:
            keypoints: (B, N, 2) crop pixels.
            noise: corruption (default the sampler's).

        Returns:
            heatmaps (B, N, h, w) float32, clean heatmaps (B, N, h, w), visible (B, N).
        """
        keypoints = np.asarray(keypoints, np.float64)
        if keypoints.ndim != 3 or keypoints.shape[1:] != (self.category.num_keypoints, 2):
            raise ValueError(f'keypoints must be (B, {self.category.num_keypoints}, 2), '
                             f'got {keypoints.shape}')
        noise = self.config.noise if noise is None else noise
        rng, codec = self.rng, self.codec
        b, n, _ = keypoints.shape
        s = self.config.input_size
        inside = np.all((keypoints > -0.5) & (keypoints < s - 0.5), axis=-1)
        clean = codec.encode(keypoints, inside)
        visible = inside & (rng.random((b, n)) >= noise.p_missing)
        shifted = keypoints + (rng.random((b, n, 1)) < noise.p_shift) * \
            rng.standard_normal((b, n, 2)) * noise.shift_std_px
        amp = rng.uniform(*noise.amplitude_range, (b, n))
        maps = codec.encode(shifted, visible) * amp[..., None, None].astype(np.float32)
        # Spurious second peaks: at the mirror keypoint or anywhere in the crop.
        spur = rng.random((b, n)) < noise.p_spurious
        if spur.any():
            at_mirror = rng.random((b, n)) < noise.spurious_symmetric
            where = np.where(at_mirror[..., None], keypoints[:, self.flip],
                             rng.uniform(0, s - 1, (b, n, 2)))
            extra = codec.encode(where, spur) * rng.uniform(
                *noise.spurious_amplitude, (b, n))[..., None, None].astype(np.float32)
            maps = np.maximum(maps, extra)
        if noise.p_blur > 0:
            for i in np.flatnonzero(rng.random(b) < noise.p_blur):
                sig = rng.uniform(*noise.blur_sigma_range)
                blurred = cv2.GaussianBlur(maps[i].transpose(1, 2, 0), (0, 0), sig)
                blurred = blurred.reshape(maps.shape[2], maps.shape[3], n).transpose(2, 0, 1)
                peak = np.maximum(maps[i].max((1, 2), keepdims=True), 1e-6)
                maps[i] = blurred * peak / np.maximum(blurred.max((1, 2), keepdims=True), 1e-6)
        if noise.background_std > 0:
            maps += (rng.standard_normal(maps.shape) * noise.background_std).astype(np.float32)
        if noise.p_salt_pepper > 0:
            level = np.where(rng.random(b) < noise.p_salt_pepper,
                             rng.uniform(0, noise.salt_pepper_max, b), 0.0)
            maps = add_salt_pepper(maps, level, rng)
        return maps.astype(np.float32), clean, visible

    def sample(self, batch: int, noise: NoiseConfig | None = None) -> dict:
        """A batch of noisy heatmaps with its ground truth (see the class docstring)."""
        if batch < 1:
            raise ValueError('batch must be >= 1')
        out = self.sample_geometry(batch)
        out['heatmaps'], out['clean_heatmaps'], out['visible'] = self.render(out['keypoints'],
                                                                             noise)
        return out


def add_salt_pepper(maps: np.ndarray, level: np.ndarray | float,
                    rng: np.random.Generator) -> np.ndarray:
    """Salt-and-pepper noise: a fraction ``level`` of pixels set to 1 (half) or 0 (half).

    Args:
        maps: (B, N, h, w) heatmaps.
        level: scalar or (B,) fraction of corrupted pixels per sample.

    Returns:
        (B, N, h, w) corrupted copy.
    """
    maps = np.array(maps, np.float32, copy=True)
    if maps.ndim != 4:
        raise ValueError(f'maps must be (B, N, h, w), got {maps.shape}')
    level = np.broadcast_to(np.asarray(level, np.float64), (maps.shape[0],))
    u = rng.random(maps.shape)
    lv = level[:, None, None, None]
    maps[u < 0.5 * lv] = 1.0
    maps[(u >= 0.5 * lv) & (u < lv)] = 0.0
    return maps


def look_at_batch(azimuth: np.ndarray, elevation: np.ndarray,
                  in_plane: np.ndarray) -> np.ndarray:
    """Rotations (B, 3, 3) of cameras at (azimuth, elevation) looking at the object.

    Same convention as :func:`perception_3dinn.geometry.pose_from_viewpoint` (vectorised;
    the rotation does not depend on the distance or target).
    """
    az, el, roll = (np.asarray(a, np.float64).reshape(-1) for a in (azimuth, elevation,
                                                                    in_plane))
    forward = -np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1)
    right = np.cross(forward, np.array([0.0, 0.0, 1.0]))
    right /= np.linalg.norm(right, axis=-1, keepdims=True)
    down = np.cross(forward, right)
    R0 = np.stack([right, down, forward], axis=1)
    c, s = np.cos(roll), np.sin(roll)
    zero, one = np.zeros_like(roll), np.ones_like(roll)
    Rz = np.stack([np.stack([c, -s, zero], -1), np.stack([s, c, zero], -1),
                   np.stack([zero, zero, one], -1)], -2)
    return Rz @ R0
