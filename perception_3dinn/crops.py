"""Square crops around detection boxes, shared by training and the runtime.

A box becomes a square of side ``max(w, h) * (1 + pad)`` centred on the box centre, resized
to ``size x size``. The map is ``crop = scale * (image - centre) + (size - 1) / 2`` with
``scale = size / side`` (pixel centres at integers on both sides), so the crop is exactly
a pinhole camera with the image camera's orientation, focal ``scale * f`` and principal point
``scale * (c - centre) + (size - 1) / 2``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Crop:
    """A square image region: centre (cx, cy) and side in image pixels, output size."""

    cx: float
    cy: float
    side: float
    size: int

    @classmethod
    def from_box(cls, box: np.ndarray, size: int, pad: float = 0.15) -> Crop:
        """Crop around a box (x_min, y_min, x_max, y_max), image pixels.

        Raises ValueError for a non-finite or empty box.
        """
        x0, y0, x1, y1 = (float(v) for v in np.asarray(box, np.float64).reshape(4))
        if not np.isfinite([x0, y0, x1, y1]).all():
            raise ValueError(f'box has non-finite coordinates: {(x0, y0, x1, y1)}')
        w, h = x1 - x0, y1 - y0
        if w <= 0 or h <= 0:
            raise ValueError(f'box is empty: width {w}, height {h}')
        return cls((x0 + x1) / 2.0, (y0 + y1) / 2.0, max(w, h) * (1.0 + pad), int(size))

    @property
    def scale(self) -> float:
        """Crop pixels per image pixel."""
        return self.size / self.side

    @property
    def matrix(self) -> np.ndarray:
        """(2, 3) affine map image -> crop (for cv2.warpAffine)."""
        s = self.scale
        c = (self.size - 1) / 2.0
        return np.array([[s, 0.0, c - s * self.cx], [0.0, s, c - s * self.cy]])

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """Image pixels (..., 2) -> crop pixels (..., 2)."""
        points = np.asarray(points, np.float64)
        centre = np.array([self.cx, self.cy])
        return self.scale * (points - centre) + (self.size - 1) / 2.0

    def from_crop(self, points: np.ndarray) -> np.ndarray:
        """Crop pixels (..., 2) -> image pixels (..., 2)."""
        points = np.asarray(points, np.float64)
        centre = np.array([self.cx, self.cy])
        return (points - (self.size - 1) / 2.0) / self.scale + centre

    def crop_K(self, K: np.ndarray) -> np.ndarray:
        """Camera matrix (3, 3) of the crop, given the image's (3, 3)."""
        K = np.asarray(K, np.float64)
        A = np.vstack([self.matrix, [0.0, 0.0, 1.0]])
        return A @ K


def crop_image(image: np.ndarray, crop: Crop, border_value: int = 0) -> np.ndarray:
    """Sample ``crop`` from ``image`` (H, W, C) uint8 -> (size, size, C), bilinear.

    Outside the image the crop is filled with ``border_value``.
    """
    import cv2

    if image.ndim != 3:
        raise ValueError(f'image must be (H, W, C), got {image.shape}')
    interp = cv2.INTER_AREA if crop.scale < 0.5 else cv2.INTER_LINEAR
    if interp == cv2.INTER_AREA:
        # warpAffine has no area filter: blur to the target scale first to avoid aliasing.
        k = max(1, int(round(0.5 / crop.scale)) * 2 + 1)
        image = cv2.GaussianBlur(image, (k, k), 0)
        interp = cv2.INTER_LINEAR
    return cv2.warpAffine(image, crop.matrix, (crop.size, crop.size), flags=interp,
                          borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(border_value,) * image.shape[2])
