"""Rigid transformation layer and max-projection silhouette (seed 004) against independent
references: scipy's trilinear interpolation, OpenCV's projection of the voxel boxes, the
renderer's own masks, and float64 finite differences."""

import cv2
import numpy as np
import pytest
from scipy.ndimage import map_coordinates
from scipy.spatial.transform import Rotation
import torch

from perception_3dinn.models.voxel_projection import (
    crop_intrinsics,
    depth_range,
    downsample_mask,
    frustum_points,
    project_silhouette,
    silhouette_loss,
    voxel_frustum,
    VoxelProjectionConfig,
)
from perception_3dinn.skeleton import load_category
from perception_3dinn.voxels import grid_for_dimensions
from training.synth import render
from training.synth.images import ImageConfig, render_sample

IMAGE = 128


@pytest.fixture(scope='module')
def samples():
    cat = load_category('chair')
    cfg = ImageConfig(occluder_prob=0.0)
    return cat, [render_sample(cat, np.random.default_rng([5, i]), cfg, return_scene=True)
                 for i in range(12)]


def sample_pose(cat, s):
    """(K, R, t, scale) float64 tensors, batch of one, of a rendered sample."""
    return (torch.from_numpy(s['_K64'])[None], torch.from_numpy(s['_R64'])[None],
            torch.from_numpy(s['_t64'])[None],
            torch.tensor([float(s['scale_m']) / cat.size_prior_m], dtype=torch.float64))


def silhouette(vox, origin, res, pose, config):
    prob = torch.from_numpy(vox[None].astype(np.float64))
    K, R, t, scale = pose
    return project_silhouette(prob, torch.tensor(origin), res, K, IMAGE, R, t, scale,
                              config)[0].numpy()


def test_frustum_matches_scipy_trilinear():
    rng = np.random.default_rng(0)
    size, res = 8, 0.1
    origin = np.array([-0.4, -0.4, -0.05])
    prob = rng.random((size, size, size))
    R = Rotation.from_euler('xyz', [100, 20, 30], degrees=True).as_matrix()
    t = np.array([0.05, -0.02, 2.0])
    K = np.array([[300.0, 0, 20.3], [0, 300.0, 19.1], [0, 0, 1]])
    cfg = VoxelProjectionConfig(out_size=10, depth_samples=12)
    args = [torch.tensor(v)[None] for v in (K,)]
    out = voxel_frustum(torch.from_numpy(prob)[None], torch.tensor(origin), res, args[0], 40,
                        torch.from_numpy(R)[None], torch.from_numpy(t)[None],
                        torch.tensor([1.3], dtype=torch.float64), cfg)[0].numpy()
    # Reference: the same camera points, mapped to voxel index space, sampled by scipy.
    near, far = depth_range(torch.tensor(origin), res * size, torch.from_numpy(R)[None],
                            torch.from_numpy(t)[None], torch.tensor([1.3], dtype=torch.float64),
                            cfg.near_m)
    corners = origin + np.array([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)]) * 0.8
    z = (corners * 1.3) @ R.T + t
    assert near.item() == pytest.approx(z[:, 2].min()) and far.item() == \
        pytest.approx(z[:, 2].max())
    pts = frustum_points(args[0], 40, near, far, cfg)[0].numpy()
    uv = pts @ K.T
    uv = uv[..., :2] / uv[..., 2:]
    pix = (np.arange(10) + 0.5) * 4 - 0.5
    np.testing.assert_allclose(uv[3, :, :, 0], np.broadcast_to(pix, (10, 10)), atol=1e-9)
    np.testing.assert_allclose(uv[3, :, :, 1], np.broadcast_to(pix[:, None], (10, 10)),
                               atol=1e-9)
    local = ((pts - t) @ R) / 1.3
    idx = (local - origin) / res - 0.5
    ref = map_coordinates(prob, idx.reshape(-1, 3).T, order=1, mode='grid-constant', cval=0.0)
    np.testing.assert_allclose(out.reshape(-1), ref, atol=1e-9)
    assert (ref > 0).mean() > 0.2  # the check saw the grid, not just its empty outside


def test_silhouette_matches_opencv_voxel_boxes(samples):
    """With nearest sampling the silhouette is the union of the occupied voxel boxes: each
    box projected by cv2.projectPoints, and the pixel centres inside its convex hull found by
    cv2.pointPolygonTest, is the independent reference."""
    cat, data = samples
    res, origin = grid_for_dimensions(cat.dimensions_m, 32)
    cfg = VoxelProjectionConfig(out_size=IMAGE, depth_samples=384, mode='nearest')
    cube = np.array([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)], np.float64) * res
    rvec = [cv2.Rodrigues(s['_R64'])[0] for s in data]
    ious = []
    for s, r in list(zip(data, rvec))[:3]:
        scale = float(s['scale_m']) / cat.size_prior_m
        sil = silhouette(s['voxels'], origin, res, sample_pose(cat, s), cfg) >= 0.5
        ref = np.zeros((IMAGE, IMAGE), bool)
        for ijk in np.argwhere(s['voxels']):
            corners = (origin + ijk * res + cube) * scale
            uv = cv2.projectPoints(corners, r, s['_t64'], s['_K64'], None)[0].reshape(-1, 2)
            hull = cv2.convexHull(uv.astype(np.float32))
            lo = np.maximum(np.floor(uv.min(0)).astype(int), 0)
            hi = np.minimum(np.ceil(uv.max(0)).astype(int), IMAGE - 1)
            for y in range(lo[1], hi[1] + 1):
                for x in range(lo[0], hi[0] + 1):
                    if not ref[y, x]:
                        ref[y, x] = cv2.pointPolygonTest(hull, (float(x), float(y)), False) >= 0
        ious.append((sil & ref).sum() / (sil | ref).sum())
    assert min(ious) > 0.97, ious


def test_projected_true_voxels_match_rendered_masks(samples):
    """The renderer's masks of the same objects and poses. On a fine grid of voxel centres
    inside the parts the IoU is >= 0.9; on the 32^3 training grid, whose voxels cover every
    part they touch (so a silhouette one voxel too wide), every mask pixel is still covered:
    the layer loses no part of the object and misplaces none."""
    cat, data = samples
    fine_res, fine_origin = grid_for_dimensions(cat.dimensions_m, 128)
    res, origin = grid_for_dimensions(cat.dimensions_m, 32)
    fine_cfg = VoxelProjectionConfig(out_size=IMAGE, depth_samples=256)
    cfg = VoxelProjectionConfig(out_size=IMAGE, depth_samples=96)
    fine, recall = [], []
    for s in data:
        k = cat.size_prior_m / float(s['scale_m'])
        parts = [p.transformed(k) for p in s['_mesh'].parts]
        vox = render.voxelize(parts, fine_res, fine_origin, 128, cover=False)
        mask = s['mask'] > 0
        pred = silhouette(vox, fine_origin, fine_res, sample_pose(cat, s), fine_cfg) >= 0.5
        fine.append((pred & mask).sum() / (pred | mask).sum())
        coarse = silhouette(s['voxels'], origin, res, sample_pose(cat, s), cfg) >= 0.5
        recall.append((coarse & mask).sum() / mask.sum())
    assert np.mean(fine) >= 0.9, fine
    assert min(fine) >= 0.8, fine
    assert min(recall) >= 0.99, recall


def test_layers_gradcheck_float64():
    """Gradients in the probabilities, the rotation (through an axis-angle), the translation
    and the scale, and through the BCE loss. The camera sees only the inside of the grid, so
    every ray has a unique maximum (no ties, where max has no derivative); the depth range
    is held fixed (it places the samples and is not differentiated)."""
    torch.manual_seed(0)
    size, res = 6, 0.2
    origin = torch.tensor([-0.6, -0.6, -0.6], dtype=torch.float64)
    prob = (0.1 + 0.8 * torch.rand(1, size, size, size, dtype=torch.float64)).requires_grad_()
    rotvec = torch.tensor([0.3, -0.2, 0.4], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([[0.01, 0.02, 3.0]], dtype=torch.float64, requires_grad=True)
    scale = torch.tensor([1.05], dtype=torch.float64, requires_grad=True)
    K = torch.tensor([[[2400.0, 0, 5.5], [0, 2400.0, 5.5], [0, 0, 1]]], dtype=torch.float64)
    target = torch.rand(1, 4, 4, dtype=torch.float64)
    cfg = VoxelProjectionConfig(out_size=4, depth_samples=9)
    depths = (torch.tensor([2.1], dtype=torch.float64), torch.tensor([3.9], dtype=torch.float64))

    def rot(v):
        theta = torch.sqrt((v * v).sum())
        k = v / theta
        kx = torch.zeros(3, 3, dtype=v.dtype)
        kx[0, 1], kx[0, 2], kx[1, 2] = -k[2], k[1], -k[0]
        kx = kx - kx.T
        return (torch.eye(3, dtype=v.dtype) + torch.sin(theta) * kx +
                (1 - torch.cos(theta)) * kx @ kx)[None]

    def f(p, v, tt, sc):
        sil = project_silhouette(p, origin, res, K, 12, rot(v), tt, sc, cfg, depths)
        return sil, silhouette_loss(sil, target)

    sil, _ = f(prob, rotvec, t, scale)
    assert sil.min() > 0.1  # every ray inside the grid
    assert torch.autograd.gradcheck(f, (prob, rotvec, t, scale), eps=1e-6, atol=1e-6)


def test_crop_intrinsics_and_mask_targets():
    K = crop_intrinsics(torch.tensor([150.0, 90.0]), 128)
    assert K.shape == (2, 3, 3) and K[1, 0, 0] == 90.0 and K[0, 0, 2] == 63.5
    mask = torch.zeros(1, 8, 8, dtype=torch.uint8)
    mask[0, :2, :3] = 1
    target = downsample_mask(mask, 2)
    np.testing.assert_allclose(target[0].numpy(), [[6 / 16, 0], [0, 0]])
    with pytest.raises(ValueError, match='multiple'):
        downsample_mask(mask, 3)
    p = torch.tensor([[[0.9, 0.2]]])
    y = torch.tensor([[[1.0, 0.0]]])
    expected = -(np.log(0.9) + np.log(0.8)) / 2
    assert silhouette_loss(p, y).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match='target'):
        silhouette_loss(p, y[:, :, :1])
