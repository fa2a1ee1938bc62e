"""Voxel occupancy grids in an object's own frame.

Voxel (ix, iy, iz) spans ``origin + [i, i + 1) * resolution`` on each axis; occupancy is
uint8, 0 free, 255 occupied (values between are probabilities * 255); flattening is C order,
``(ix * Y + iy) * Z + iz``, the layout of the perception_3dinn_msgs/VoxelGrid message.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class VoxelGrid:
    """Occupancy (X, Y, Z) uint8 with cubic voxels of ``resolution`` metres."""

    occupancy: np.ndarray
    resolution: float
    origin: np.ndarray

    def __post_init__(self) -> None:
        self.occupancy = np.asarray(self.occupancy)
        if self.occupancy.ndim != 3:
            raise ValueError(f'occupancy must be (X, Y, Z), got {self.occupancy.shape}')
        if self.occupancy.dtype == bool:
            self.occupancy = self.occupancy.astype(np.uint8) * 255
        self.occupancy = self.occupancy.astype(np.uint8, copy=False)
        self.origin = np.asarray(self.origin, np.float64).reshape(3)
        if not self.resolution > 0:
            raise ValueError(f'resolution must be positive, got {self.resolution}')

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.occupancy.shape)

    def centers(self) -> np.ndarray:
        """(X, Y, Z, 3) voxel centres in the object frame, metres."""
        axes = [self.origin[a] + (np.arange(n) + 0.5) * self.resolution
                for a, n in enumerate(self.shape)]
        return np.stack(np.meshgrid(*axes, indexing='ij'), axis=-1)

    def occupied_centers(self, threshold: int = 128) -> np.ndarray:
        """(M, 3) centres of voxels with occupancy >= threshold."""
        return self.centers()[self.occupancy >= threshold]

    def index_of(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Voxel indices (M, 3) int of points (M, 3) and a mask of those inside the grid."""
        points = np.asarray(points, np.float64).reshape(-1, 3)
        idx = np.floor((points - self.origin) / self.resolution).astype(np.int64)
        inside = np.all((idx >= 0) & (idx < np.array(self.shape)), axis=1)
        return idx, inside

    def to_bytes(self) -> bytes:
        """The occupancy in message order (C order, z fastest)."""
        return np.ascontiguousarray(self.occupancy).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, shape: tuple[int, int, int], resolution: float,
                   origin: np.ndarray) -> VoxelGrid:
        occupancy = np.frombuffer(data, np.uint8)
        if occupancy.size != int(np.prod(shape)):
            raise ValueError(f'{occupancy.size} bytes do not fill a {shape} grid')
        return cls(occupancy.reshape(shape).copy(), float(resolution), origin)


def grid_for_dimensions(dimensions_m: np.ndarray, size: int = 32,
                        margin: float = 0.1) -> tuple[float, np.ndarray]:
    """Cubic grid of ``size``^3 voxels covering an object of (x, y, z) extent.

    The grid spans the largest extent plus ``margin`` (a fraction), is centred in x and y
    on the object origin and starts at z = -margin/2 * extent (just below the floor).

    Returns:
        resolution (metres per voxel), origin (3,) of the grid's minimum corner.
    """
    dims = np.asarray(dimensions_m, np.float64).reshape(3)
    if not np.all(np.isfinite(dims)) or np.any(dims <= 0):
        raise ValueError(f'dimensions must be positive and finite, got {dims}')
    span = float(dims.max()) * (1.0 + margin)
    resolution = span / size
    origin = np.array([-span / 2.0, -span / 2.0, -0.5 * margin * float(dims.max())])
    return resolution, origin


def empty_grid(dimensions_m: np.ndarray, size: int = 32, margin: float = 0.1) -> VoxelGrid:
    """An all-free grid laid out by :func:`grid_for_dimensions`."""
    resolution, origin = grid_for_dimensions(dimensions_m, size, margin)
    return VoxelGrid(np.zeros((size, size, size), np.uint8), resolution, origin)
