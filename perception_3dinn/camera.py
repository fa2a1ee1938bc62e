"""The camera model of the runtime: pinhole intrinsics with optional lens distortion.

Converted once at the boundary (``perception_3dinn.ros`` builds it from CameraInfo); all
geometry after that takes a :class:`CameraIntrinsics`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math

import numpy as np


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics in pixels (OpenCV convention: pixel centres at integers).

    ``distortion`` holds OpenCV coefficients (k1, k2, p1, p2[, k3, ...]) for the
    ``plumb_bob`` / ``rational_polynomial`` models; empty or all zero means none.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    distortion: tuple[float, ...] = field(default=())

    @property
    def K(self) -> np.ndarray:
        """(3, 3) float64 camera matrix."""
        return np.array(
            [[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]], np.float64)

    @property
    def dist_coeffs(self) -> np.ndarray:
        """(D,) float64 distortion coefficients for OpenCV (zeros(4) when none)."""
        if not self.distortion:
            return np.zeros(4)
        return np.asarray(self.distortion, np.float64)

    @property
    def has_distortion(self) -> bool:
        return bool(self.distortion) and any(abs(d) > 0.0 for d in self.distortion)

    def validate(self) -> CameraIntrinsics:
        """Raise ValueError saying what is wrong if these intrinsics cannot be used."""
        values = {'fx': self.fx, 'fy': self.fy, 'cx': self.cx, 'cy': self.cy}
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            raise ValueError(f'camera intrinsics {", ".join(bad)} not finite: {values}')
        if self.fx <= 0.0 or self.fy <= 0.0:
            raise ValueError(f'focal lengths must be positive, got fx={self.fx}, fy={self.fy}')
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f'image size must be positive, got {self.width}x{self.height}')
        if not all(math.isfinite(d) for d in self.distortion):
            raise ValueError(f'distortion coefficients not finite: {self.distortion}')
        return self

    @classmethod
    def from_matrix(cls, K: np.ndarray, width: int, height: int,
                    distortion: tuple[float, ...] = ()) -> CameraIntrinsics:
        """Build from a (3, 3) camera matrix."""
        K = np.asarray(K, np.float64)
        if K.shape != (3, 3):
            raise ValueError(f'K must be (3, 3), got {K.shape}')
        return cls(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]),
                   int(width), int(height), tuple(float(d) for d in distortion))

    @classmethod
    def from_fov(cls, width: int, height: int, hfov_deg: float) -> CameraIntrinsics:
        """Ideal camera with the given horizontal field of view, principal point centred."""
        f = 0.5 * width / math.tan(math.radians(hfov_deg) / 2.0)
        return cls(f, f, (width - 1) / 2.0, (height - 1) / 2.0, int(width), int(height))

    def undistort_points(self, points: np.ndarray) -> np.ndarray:
        """Map distorted pixels (N, 2) to the ideal pinhole image of this camera (N, 2)."""
        points = np.asarray(points, np.float64)
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f'points must be (N, 2), got {points.shape}')
        if not self.has_distortion or len(points) == 0:
            return points.copy()
        import cv2

        out = cv2.undistortPoints(points.reshape(-1, 1, 2), self.K, self.dist_coeffs, P=self.K)
        return out.reshape(-1, 2)
