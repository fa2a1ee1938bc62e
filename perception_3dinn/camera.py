"""The camera model of the runtime: pinhole intrinsics with optional lens distortion.

Converted once at the boundary (``perception_3dinn.ros`` builds it from CameraInfo); all
geometry after that takes a :class:`CameraIntrinsics`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math

import numpy as np

# Plausibility limits of `CameraIntrinsics.check_plausible` (docs/node.md, robustness).
MIN_FOV_DEG = 1.0
MAX_FOV_DEG = 175.0
MAX_FOCAL_ASPECT = 2.0  # fy / fx (and fx / fy) at most this
PRINCIPAL_POINT_MARGIN = 0.25  # cx, cy within this fraction of the size beyond the image
MAX_DISTORTION_COEFFICIENT = 1000.0
MAX_DISTORTION_ROUND_TRIP_PX = 0.5
DISTORTION_CHECK_EXTENT = 0.8  # the round trip is checked on 80 % of the inscribed ellipse

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

    def check_plausible(self) -> CameraIntrinsics:
        """Raise ValueError saying what is wrong if these (valid) intrinsics cannot belong to a
        real camera of this image size: a field of view outside [MIN_FOV_DEG, MAX_FOV_DEG],
        fy / fx beyond MAX_FOCAL_ASPECT, a principal point far outside the image, or a
        distortion that cannot be inverted over the image (checked on an ellipse spanning 80 %
        of the image's inscribed one: undistorted and distorted again, the points must come
        back within MAX_DISTORTION_ROUND_TRIP_PX; calibrations are often poor at the very
        border, which is why it is not the border itself)."""
        hfov = math.degrees(2.0 * math.atan2(self.width, 2.0 * self.fx))
        vfov = math.degrees(2.0 * math.atan2(self.height, 2.0 * self.fy))
        if not (MIN_FOV_DEG <= hfov <= MAX_FOV_DEG and MIN_FOV_DEG <= vfov <= MAX_FOV_DEG):
            raise ValueError(f'field of view {hfov:.3g} x {vfov:.3g} deg (fx={self.fx:.6g}, '
                             f'fy={self.fy:.6g} for {self.width}x{self.height}) outside '
                             f'[{MIN_FOV_DEG:g}, {MAX_FOV_DEG:g}] deg')
        if not 1.0 / MAX_FOCAL_ASPECT <= self.fy / self.fx <= MAX_FOCAL_ASPECT:
            raise ValueError(f'fy / fx = {self.fy / self.fx:.4g} (fx={self.fx:.6g}, '
                             f'fy={self.fy:.6g}); real cameras are near 1 (at most '
                             f'{MAX_FOCAL_ASPECT:g})')
        m = PRINCIPAL_POINT_MARGIN
        if not (-m * self.width <= self.cx <= (1 + m) * self.width
                and -m * self.height <= self.cy <= (1 + m) * self.height):
            raise ValueError(f'principal point ({self.cx:.6g}, {self.cy:.6g}) far outside the '
                             f'{self.width}x{self.height} image')
        if self.has_distortion:
            big = max(abs(d) for d in self.distortion)
            if big > MAX_DISTORTION_COEFFICIENT:
                raise ValueError(f'distortion coefficient {big:.3g} larger than '
                                 f'{MAX_DISTORTION_COEFFICIENT:g}')
            error = self._distortion_round_trip_px()
            if not error <= MAX_DISTORTION_ROUND_TRIP_PX:
                raise ValueError(f'distortion {self.distortion} cannot be inverted over the '
                                 f'image (round trip off by {error:.3g} px)')
        return self

    def _distortion_round_trip_px(self) -> float:
        """Largest pixel error of undistorting and re-distorting points across the image."""
        import cv2

        angles = np.linspace(0.0, 2.0 * np.pi, 16, endpoint=False)
        centre = np.array([(self.width - 1) / 2.0, (self.height - 1) / 2.0])
        half = DISTORTION_CHECK_EXTENT * np.array([self.width / 2.0, self.height / 2.0])
        pts = np.concatenate([centre[None], centre + half * np.stack(
            [np.cos(angles), np.sin(angles)], axis=1)])
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)
        src = pts.reshape(-1, 1, 2)
        if hasattr(cv2, 'undistortPointsIter'):  # OpenCV 4.x
            rays = cv2.undistortPointsIter(src, self.K, self.dist_coeffs, None, None, criteria)
        else:  # OpenCV 5 took the criteria into undistortPoints
            rays = cv2.undistortPoints(src, self.K, self.dist_coeffs, criteria=criteria)
        rays = rays.reshape(-1, 2)
        if not np.all(np.isfinite(rays)):
            return math.inf
        obj = np.concatenate([rays, np.ones((len(rays), 1))], axis=1)
        back, _ = cv2.projectPoints(obj, np.zeros(3), np.zeros(3), self.K, self.dist_coeffs)
        err = np.linalg.norm(back.reshape(-1, 2) - pts, axis=1)
        return float(np.max(err)) if np.all(np.isfinite(err)) else math.inf

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
