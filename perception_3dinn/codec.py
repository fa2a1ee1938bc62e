"""Keypoints <-> heatmaps: training targets and sub-pixel decoding with confidences.

One codec serves training (targets), evaluation and the runtime (decoding), so the
coordinate conventions cannot drift apart. Heatmaps are ``S / stride`` square for an
``S x S`` input; the centre of heatmap pixel j lies at input coordinate
``stride * j + (stride - 1) / 2`` (pixel centres at integers, OpenCV convention).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_EPS = 1e-10


@dataclass(frozen=True)
class HeatmapCodec:
    """Gaussian heatmap codec.

    Attributes:
        input_size: S, side of the square network input, pixels.
        stride: input pixels per heatmap pixel.
        sigma: Gaussian standard deviation, heatmap pixels.
    """

    input_size: int = 128
    stride: int = 4
    sigma: float = 1.5

    def __post_init__(self) -> None:
        if self.input_size % self.stride:
            raise ValueError(f'input_size {self.input_size} not divisible by {self.stride}')
        if self.sigma <= 0:
            raise ValueError(f'sigma must be positive, got {self.sigma}')

    @property
    def heatmap_size(self) -> int:
        return self.input_size // self.stride

    def to_heatmap(self, points: np.ndarray) -> np.ndarray:
        """Input pixel coordinates (..., 2) -> heatmap pixel coordinates (..., 2)."""
        return (np.asarray(points, np.float64) - (self.stride - 1) / 2.0) / self.stride

    def to_input(self, points: np.ndarray) -> np.ndarray:
        """Heatmap pixel coordinates (..., 2) -> input pixel coordinates (..., 2)."""
        return np.asarray(points, np.float64) * self.stride + (self.stride - 1) / 2.0

    def encode(self, keypoints: np.ndarray, visible: np.ndarray | None = None) -> np.ndarray:
        """Gaussian targets.

        Args:
            keypoints: (N, 2) or (B, N, 2) keypoints in input pixels.
            visible: (N,) or (B, N) bool; invisible keypoints get an all-zero map.

        Returns:
            (N, h, w) or (B, N, h, w) float32 heatmaps with peak 1 at each keypoint.
        """
        keypoints = np.asarray(keypoints, np.float64)
        if keypoints.ndim not in (2, 3) or keypoints.shape[-1] != 2:
            raise ValueError(f'keypoints must be (N, 2) or (B, N, 2), got {keypoints.shape}')
        if visible is None:
            visible = np.ones(keypoints.shape[:-1], bool)
        visible = np.asarray(visible, bool) & np.isfinite(keypoints).all(-1)
        if visible.shape != keypoints.shape[:-1]:
            raise ValueError(f'visible {visible.shape} does not match {keypoints.shape[:-1]}')
        hm = self.to_heatmap(np.where(np.isfinite(keypoints), keypoints, 0.0))
        grid = np.arange(self.heatmap_size, dtype=np.float64)
        gx = np.exp(-((grid - hm[..., 0, None]) ** 2) / (2.0 * self.sigma ** 2))
        gy = np.exp(-((grid - hm[..., 1, None]) ** 2) / (2.0 * self.sigma ** 2))
        maps = gy[..., :, None] * gx[..., None, :]
        return (maps * visible[..., None, None]).astype(np.float32)

    def decode(self, heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sub-pixel keypoints and confidences from heatmaps.

        The arg-max is refined per axis by a parabola through the log of the heatmap at the
        peak and its two neighbours, which is exact for a Gaussian peak.

        Args:
            heatmaps: (B, N, h, w) float heatmaps.

        Returns:
            keypoints (B, N, 2) float64 in input pixels, confidence (B, N) float64: the peak
            value clipped to [0, 1] (0 for an all-NaN or non-positive map).
        """
        heatmaps = np.asarray(heatmaps)
        if heatmaps.ndim != 4:
            raise ValueError(f'heatmaps must be (B, N, h, w), got {heatmaps.shape}')
        B, N, h, w = heatmaps.shape
        flat = np.nan_to_num(heatmaps.reshape(B, N, h * w).astype(np.float64), nan=0.0)
        idx = flat.argmax(-1)
        peak = np.take_along_axis(flat, idx[..., None], -1)[..., 0]
        iy, ix = np.divmod(idx, w)

        def value(y: np.ndarray, x: np.ndarray) -> np.ndarray:
            yc, xc = np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)
            return np.take_along_axis(flat, (yc * w + xc)[..., None], -1)[..., 0]

        def offset(lo: np.ndarray, mid: np.ndarray, hi: np.ndarray,
                   inside: np.ndarray) -> np.ndarray:
            llo, lmid, lhi = (np.log(np.maximum(v, _EPS)) for v in (lo, mid, hi))
            denom = llo - 2.0 * lmid + lhi
            ok = inside & (denom < -1e-12) & (mid > _EPS)
            d = np.where(ok, 0.5 * (llo - lhi) / np.where(ok, denom, -1.0), 0.0)
            return np.clip(d, -0.5, 0.5)

        dx = offset(value(iy, ix - 1), peak, value(iy, ix + 1), (ix > 0) & (ix < w - 1))
        dy = offset(value(iy - 1, ix), peak, value(iy + 1, ix), (iy > 0) & (iy < h - 1))
        points = np.stack([ix + dx, iy + dy], axis=-1)
        return self.to_input(points), np.clip(peak, 0.0, 1.0)
