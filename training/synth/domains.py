"""Render styles ("domains") of the image synthesiser beyond the training one.

``ImageConfig.domain = 'shifted'`` renders the same objects, cameras and labels as the
default domain, with an appearance no default sample has, for experiments that adapt a
model with unlabelled or weakly labelled data of a new domain and must show that the
adaptation, not the training, closed the gap (seed 004's silhouette fine-tuning, seed 001's
video adaptation):

- **materials**: one saturated colour per object drawn from a hue band the default palette
  covers rarely (turquoise to violet), dark or bright, never wood or grey;
- **textures**: high-contrast checkers and hatching at a few pixels' period (the default
  textures are plain, grain, fabric, stripes or soft blotches around 1);
- **lighting**: a coloured key light (sodium orange or LED blue) over all the scene,
  object and background;
- **background**: dense clutter of saturated rectangles and ellipses on a dark ground;
- **camera**: narrower fields of view (30-45 deg against 40-90) at the renderer's size.

Everything random comes from the sample's ``rng``, so a seed fixes a sample bit for bit.
"""

from __future__ import annotations

import cv2
import numpy as np

DOMAINS = ('default', 'shifted')
SHIFTED_HFOV_DEG = (30.0, 45.0)


def check_domain(name: str) -> str:
    """``name`` if it is a known domain, else ValueError listing them."""
    if name not in DOMAINS:
        raise ValueError(f'unknown render domain {name!r}; choose one of {DOMAINS}')
    return name


def shifted_colour(rng: np.random.Generator) -> np.ndarray:
    """(3,) float32 RGB albedo: saturated, hue 85-150 on OpenCV's 0-180 scale."""
    hsv = np.uint8([[[rng.uniform(85, 150), rng.uniform(170, 255), rng.uniform(70, 255)]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32) / 255.0


def shifted_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W) float32 multiplicative pattern: checkers or hatching, contrast 0.5-0.9."""
    period = rng.uniform(3.0, 8.0)
    amp = rng.uniform(0.25, 0.45)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    theta = rng.uniform(0, np.pi)
    u = x * np.cos(theta) + y * np.sin(theta)
    v = -x * np.sin(theta) + y * np.cos(theta)
    if rng.random() < 0.5:
        wave = np.sign(np.sin(2 * np.pi * u / period) * np.sin(2 * np.pi * v / period))
    else:
        wave = np.sign(np.sin(2 * np.pi * u / period))
    return (1.0 + amp * wave).astype(np.float32)


def shifted_tint(rng: np.random.Generator) -> np.ndarray:
    """(3,) float32 colour of the key light: sodium orange or LED blue."""
    if rng.random() < 0.5:
        return np.array([1.25, 0.85, 0.45], np.float32) * rng.uniform(0.9, 1.1)
    return np.array([0.6, 0.85, 1.3], np.float32) * rng.uniform(0.9, 1.1)


def shifted_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1]: dark ground under 25-60 saturated shapes."""
    img = np.full((height, width, 3), rng.uniform(0.02, 0.15), np.float32)
    for _ in range(int(rng.integers(25, 61))):
        col = tuple(float(c) for c in shifted_colour(rng) * rng.uniform(0.5, 1.0))
        c = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        r = (int(rng.integers(2, max(3, width // 6))), int(rng.integers(2, max(3, height // 6))))
        if rng.random() < 0.5:
            cv2.rectangle(img, (c[0] - r[0], c[1] - r[1]), (c[0] + r[0], c[1] + r[1]), col, -1)
        else:
            cv2.ellipse(img, c, r, float(rng.uniform(0, 180)), 0, 360, col, -1)
    return img
