"""HeatmapCodec round trip and conventions; VoxelGrid layout."""

from __future__ import annotations

import numpy as np
import pytest

from perception_3dinn.codec import HeatmapCodec
from perception_3dinn.voxels import empty_grid, grid_for_dimensions, VoxelGrid


@pytest.mark.parametrize('size,stride,sigma', [(128, 4, 1.5), (96, 4, 2.0), (64, 2, 1.0)])
def test_encode_decode_round_trip(size: int, stride: int, sigma: float) -> None:
    codec = HeatmapCodec(size, stride, sigma)
    rng = np.random.default_rng(size)
    kp = rng.uniform(6, size - 7, (3, 10, 2))
    maps = codec.encode(kp)
    assert maps.shape == (3, 10, size // stride, size // stride)
    decoded, conf = codec.decode(maps)
    np.testing.assert_allclose(decoded, kp, atol=1e-3)
    assert np.all(conf > 0.8) and np.all(conf <= 1.0)


def test_heatmap_pixel_centre_convention() -> None:
    codec = HeatmapCodec(64, 4, 1.0)
    # A keypoint at the centre of heatmap pixel (5, 7) peaks exactly there with value 1.
    kp = codec.to_input(np.array([[5.0, 7.0]]))
    np.testing.assert_allclose(kp, [[21.5, 29.5]])
    maps = codec.encode(kp)
    assert maps[0, 7, 5] == pytest.approx(1.0)
    assert np.unravel_index(maps[0].argmax(), maps[0].shape) == (7, 5)


def test_invisible_and_nan_keypoints_give_empty_maps_and_zero_confidence() -> None:
    codec = HeatmapCodec(64, 4, 1.5)
    kp = np.array([[10.0, 10.0], [np.nan, 3.0], [30.0, 40.0]])
    maps = codec.encode(kp, np.array([True, True, False]))
    assert maps[0].max() == pytest.approx(1.0, abs=0.05)
    assert maps[1].max() == 0.0 and maps[2].max() == 0.0
    _, conf = codec.decode(maps[None])
    np.testing.assert_allclose(conf[0, 1:], 0.0)
    _, conf_nan = codec.decode(np.full((1, 2, 16, 16), np.nan))
    np.testing.assert_allclose(conf_nan, 0.0)


def test_decode_noisy_peak_close_to_truth() -> None:
    codec = HeatmapCodec(128, 4, 1.5)
    rng = np.random.default_rng(1)
    kp = rng.uniform(10, 118, (1, 10, 2))
    maps = codec.encode(kp) * 0.7 + rng.uniform(0, 0.05, (1, 10, 32, 32)).astype(np.float32)
    decoded, conf = codec.decode(maps)
    assert np.abs(decoded - kp).max() < 1.0  # within a quarter heatmap pixel
    assert np.all(conf > 0.6)


def test_codec_rejects_bad_shapes() -> None:
    codec = HeatmapCodec(64, 4)
    with pytest.raises(ValueError):
        codec.encode(np.zeros((3, 3)))
    with pytest.raises(ValueError):
        codec.decode(np.zeros((2, 16, 16)))
    with pytest.raises(ValueError):
        HeatmapCodec(66, 4)


def test_voxel_grid_layout_and_bytes() -> None:
    res, origin = grid_for_dimensions(np.array([0.5, 0.5, 1.0]), size=32, margin=0.1)
    assert res == pytest.approx(1.1 / 32)
    np.testing.assert_allclose(origin, [-0.55, -0.55, -0.05])
    occ = np.zeros((4, 5, 6), np.uint8)
    occ[1, 2, 3] = 255
    grid = VoxelGrid(occ, 0.1, np.array([-0.2, -0.25, 0.0]))
    data = grid.to_bytes()
    assert data[(1 * 5 + 2) * 6 + 3] == 255 and sum(data) == 255
    back = VoxelGrid.from_bytes(data, (4, 5, 6), 0.1, grid.origin)
    np.testing.assert_array_equal(back.occupancy, occ)
    centre = grid.occupied_centers()
    np.testing.assert_allclose(centre, [[-0.2 + 0.15, -0.25 + 0.25, 0.35]])
    idx, inside = grid.index_of(np.array([[-0.05, 0.0, 0.35], [5.0, 0.0, 0.0]]))
    assert inside.tolist() == [True, False]
    np.testing.assert_array_equal(idx[0], [1, 2, 3])
    assert empty_grid(np.array([1.0, 1.0, 1.0])).shape == (32, 32, 32)
    with pytest.raises(ValueError):
        VoxelGrid.from_bytes(b'\0' * 7, (2, 2, 2), 0.1, np.zeros(3))
