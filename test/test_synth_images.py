"""Rendered samples against independent references: OpenCV projection, analytic ray casting
through the convex parts, point-sampled voxelisation."""

import cv2
import numpy as np
import pytest

from perception_3dinn.skeleton import load_category
from perception_3dinn.voxels import grid_for_dimensions
from training.synth import render
from training.synth.images import ImageConfig, render_sample, SAMPLE_FIELDS

N_SAMPLES = 24


@pytest.fixture(scope='module')
def chair():
    return load_category('chair')


@pytest.fixture(scope='module')
def samples(chair):
    rng = np.random.default_rng(2024)
    cfg = ImageConfig(size=128, occluder_prob=0.6)
    return [render_sample(chair, rng, cfg, return_scene=True) for _ in range(N_SAMPLES)]


def _scene_parts(s):
    """All parts of a sample's scene in the camera frame, object parts first."""
    R, t = s['_R64'], s['_t64']
    parts = [(p.vertices @ R.T + t, p) for p in s['_mesh'].parts]
    parts += [(p.vertices, p) for p in s['_occluders']]
    out = []
    for v, p in parts:
        n = np.array([_newell(v[f]) for f in p.faces])
        d = np.array([n_i @ v[f].mean(0) for n_i, f in zip(n, p.faces)])
        out.append((n, d))
    return out


def _newell(poly):
    nxt = np.roll(poly, -1, axis=0)
    n = np.array([np.sum((poly[:, 1] - nxt[:, 1]) * (poly[:, 2] + nxt[:, 2])),
                  np.sum((poly[:, 2] - nxt[:, 2]) * (poly[:, 0] + nxt[:, 0])),
                  np.sum((poly[:, 0] - nxt[:, 0]) * (poly[:, 1] + nxt[:, 1]))])
    return n / np.linalg.norm(n)


def _surface_points(v, faces, step):
    """Points covering every face (fan triangles, barycentric lattice of ~``step``)."""
    out = [v]
    for f in faces:
        for i in range(1, len(f) - 1):
            a, b, c = v[f[0]], v[f[i]], v[f[i + 1]]
            m = int(np.ceil(max(np.linalg.norm(b - a), np.linalg.norm(c - a)) / step)) + 1
            w = np.array([(x, y) for x in range(m + 1) for y in range(m + 1 - x)]) / m
            out.append(a + w[:, :1] * (b - a) + w[:, 1:] * (c - a))
    return np.concatenate(out)


def _ray_entry(dirs, planes):
    """Cyrus-Beck: parameter s at which rays s * dir (from the origin) enter a convex part.

    dirs (M, 3); planes (n (F, 3), d (F,)). Returns (M,) entry s (inf when missed)."""
    n, d = planes
    nd = dirs @ n.T  # (M, F)
    with np.errstate(divide='ignore', invalid='ignore'):
        s = d[None, :] / nd
    enter = np.where(nd < 0, s, -np.inf).max(1)
    leave = np.where(nd > 0, s, np.inf).min(1)
    inside_parallel = np.all((nd != 0) | (d[None, :] >= 0), axis=1)
    hit = (enter <= leave) & (leave > 0) & inside_parallel
    return np.where(hit, np.maximum(enter, 0), np.inf)


def test_fields_shapes_dtypes(samples, chair):
    sizes = {'S': 128, 'N': chair.num_keypoints, 'K': chair.num_bases, 'V': 32}
    for s in samples:
        for name, (shape, dtype) in SAMPLE_FIELDS.items():
            assert s[name].shape == tuple(sizes.get(d, d) for d in shape), name
            assert s[name].dtype == np.dtype(dtype), name


def test_keypoints_project_like_opencv(samples):
    """Recorded 2D keypoints == cv2.projectPoints of the 3D keypoints (< 0.5 px)."""
    for s in samples:
        mesh = s['_mesh']
        rvec, _ = cv2.Rodrigues(s['R'].astype(np.float64))
        uv, _ = cv2.projectPoints(mesh.keypoints, rvec, s['t'].astype(np.float64),
                                  s['K'].astype(np.float64), None)
        err = np.linalg.norm(uv.reshape(-1, 2) - s['keypoints_2d'], axis=1)
        assert err.max() < 0.5
        uv2, _ = cv2.projectPoints(s['keypoints_3d'].astype(np.float64), np.zeros(3),
                                   np.zeros(3), s['K'].astype(np.float64), None)
        assert np.abs(uv2.reshape(-1, 2) - s['keypoints_2d']).max() < 0.01
        np.testing.assert_allclose(mesh.keypoints @ s['R'].T.astype(np.float64) + s['t'],
                                   s['keypoints_3d'], atol=1e-5)


def test_depth_map_matches_ray_casting(samples):
    """Depth at random pixels == first intersection of the pixel's ray with any part."""
    rng = np.random.default_rng(1)
    agree, total, rel = 0, 0, []
    for s in samples[:10]:
        planes = _scene_parts(s)
        K = s['_K64']
        px = rng.integers(0, 128, (400, 2))
        dirs = np.column_stack([(px[:, 0] - K[0, 2]) / K[0, 0], (px[:, 1] - K[1, 2]) / K[1, 1],
                                np.ones(len(px))])
        z = np.min([_ray_entry(dirs, p) for p in planes], axis=0)  # dirs have z = 1
        depth = s['depth'].astype(np.float64)[px[:, 1], px[:, 0]]
        hit_ref, hit = np.isfinite(z), depth > 0
        agree += np.sum(hit_ref == hit)
        total += len(px)
        both = hit_ref & hit
        rel.append(np.abs(depth[both] - z[both]) / z[both])
    rel = np.concatenate(rel)
    # float16 storage (1e-3 relative); a few pixels on part boundaries see the other part.
    assert len(rel) > 500
    assert np.mean(rel < 2e-3) > 0.97
    assert np.median(rel) < 5e-4
    assert agree / total > 0.98


def test_visibility_agrees_with_depth_and_rays(samples):
    """Recorded visibility == the depth map at the keypoint's nearest pixel (parts that meet
    at the keypoint never hide it, 1 cm tolerance) for nearly all keypoints, and == an
    independent ray cast through the scene's convex parts."""
    agree_px, agree_ray, total = 0, 0, 0
    for s in samples:
        planes = _scene_parts(s)
        kp = s['keypoints_3d'].astype(np.float64)
        # Parts containing each keypoint (object frame, tolerance 1e-6 m).
        mesh = s['_mesh']
        contact = np.zeros((len(kp), len(planes)), bool)
        for j, p in enumerate(mesh.parts):
            for i, k in enumerate(mesh.keypoints):
                n = np.array([_newell(p.vertices[f]) for f in p.faces])
                d = np.array([n_i @ p.vertices[f].mean(0) for n_i, f in zip(n, p.faces)])
                contact[i, j] = np.max(n @ k - d) <= 1e-6
        assert all(contact[i, o] for i, o in enumerate(mesh.keypoint_parts))
        ref = s['in_image'].copy()
        for i, k in enumerate(kp):
            for j, p in enumerate(planes):
                if not contact[i, j] and _ray_entry((k / k[2])[None], p)[0] < k[2] - 0.005:
                    ref[i] = False
        agree_ray += np.sum(ref == s['visible'])
        depth = s['depth'].astype(np.float64)
        pm = s['_part_map']
        for i in np.nonzero(s['in_image'])[0]:
            u, v = np.clip(np.round(s['keypoints_2d'][i]).astype(int), 0, 127)
            j = pm[v, u]
            px_vis = j < 0 or contact[i, j] or depth[v, u] >= kp[i, 2] - 0.01
            agree_px += px_vis == s['visible'][i]
        agree_px += np.sum(~s['in_image'])
        total += len(kp)
    assert agree_ray >= total - 1
    assert agree_px / total > 0.93
    assert not all(np.all(s['visible']) for s in samples)  # occlusions do happen


def test_voxels_cover_mesh_and_keypoints(samples, chair):
    res, origin = grid_for_dimensions(chair.dimensions_m, 32)
    for s in samples[:8]:
        mesh = s['_mesh']
        k = chair.size_prior_m / float(s['scale_m'])
        occ = s['voxels']
        assert 0 < occ.mean() < 0.5
        # Keypoints (in the category-size frame) fall in occupied voxels' neighbourhood.
        idx = np.floor((mesh.keypoints * k - origin) / res).astype(int)
        assert np.all((idx >= 0) & (idx < 32))
        for i in idx:
            lo, hi = np.maximum(i - 1, 0), np.minimum(i + 2, 32)
            assert occ[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].any()
            assert occ[tuple(i)]
        # Reference: points on a fine lattice (res / 4) kept when inside a part.
        pts = []
        for p in mesh.parts:
            v = p.vertices * k
            n = np.array([_newell(v[f]) for f in p.faces])
            d = np.array([n_i @ v[f].mean(0) for n_i, f in zip(n, p.faces)])
            axes = [np.arange(v[:, a].min(), v[:, a].max() + res / 8, res / 4) for a in range(3)]
            g = np.stack(np.meshgrid(*axes, indexing='ij'), -1).reshape(-1, 3)
            pts.append(g[np.all(g @ n.T - d <= 1e-9, axis=1)])
            pts.append(_surface_points(v, p.faces, res / 4))
        pts = np.concatenate(pts)
        pidx = np.floor((pts - origin) / res).astype(int)
        pidx = pidx[np.all((pidx >= 0) & (pidx < 32), axis=1)]
        assert occ[tuple(pidx.T)].all(), 'a point inside a part lies in a free voxel'
        ref = np.zeros_like(occ)
        ref[tuple(pidx.T)] = True
        dil = ref.copy()
        for ax in range(3):
            for sh in (-1, 1):
                dil |= np.roll(ref, sh, axis=ax)
        # Occupied voxels touch material: all within one voxel of the lattice reference,
        # and few more than the reference itself.
        assert np.all(dil[occ])
        assert occ.sum() < 1.6 * ref.sum()


def test_mask_box_structure_consistent(samples, chair):
    for s in samples:
        m = s['mask'].astype(bool)
        assert np.all(s['depth'][m] > 0)
        rows, cols = np.nonzero(m)
        if len(rows):
            np.testing.assert_array_equal(s['box_visible'],
                                          [cols.min(), rows.min(), cols.max(), rows.max()])
        b = s['box']
        assert 0 <= b[0] <= b[2] <= 127 and 0 <= b[1] <= b[3] <= 127
        # The structure reproduces the instance up to the bases' error.
        y = chair.structure(s['structure'].astype(np.float64)) * float(s['scale_m'])
        recon = y @ s['R'].T.astype(np.float64) + s['t']
        rms = np.sqrt(np.mean(np.sum((recon - s['keypoints_3d']) ** 2, -1)))
        assert rms < 0.05 * float(s['scale_m'])
        # Intrinsics in realistic ranges: 40..90 degree horizontal field of view.
        hfov = 2 * np.degrees(np.arctan(64 / s['K'][0, 0]))
        assert 39.9 < hfov < 90.1


def test_backgrounds_from_user_folder(tmp_path, chair):
    img = np.zeros((40, 60, 3), np.uint8)
    img[:, :, 2] = 255  # pure red in BGR
    cv2.imwrite(str(tmp_path / 'red.png'), img)
    files = render.list_backgrounds(tmp_path)
    assert files == [tmp_path / 'red.png']
    bg = render.background(np.random.default_rng(0), 32, 32, files, user_prob=1.0)
    np.testing.assert_allclose(bg[..., 0], 1.0)
    np.testing.assert_allclose(bg[..., 1:], 0.0)
    with pytest.raises(FileNotFoundError):
        render.list_backgrounds(tmp_path / 'missing')


def test_shifted_domain_is_seeded_and_looks_different(chair):
    """The shifted render style: same labels' geometry rules, narrower lenses, a palette and
    background of its own, the same bits again from the same seed."""
    with pytest.raises(ValueError, match='unknown render domain'):
        ImageConfig(domain='sunny')
    shifted = ImageConfig(domain='shifted', occluder_prob=0.0)
    a = [render_sample(chair, np.random.default_rng([3, i]), shifted) for i in range(6)]
    b = render_sample(chair, np.random.default_rng([3, 0]), shifted)
    assert np.array_equal(a[0]['image'], b['image'])
    default = [render_sample(chair, np.random.default_rng([3, i]), ImageConfig(occluder_prob=0))
               for i in range(6)]
    fx_min = 0.5 * 128 / np.tan(np.radians(45.0) / 2)
    assert all(s['K'][0, 0] >= fx_min * 0.999 for s in a)
    # Backgrounds are darker and more saturated than the default ones.
    hsv = [np.concatenate([cv2.cvtColor(s['image'], cv2.COLOR_RGB2HSV)[s['mask'] == 0]
                           for s in group]) for group in (a, default)]
    assert hsv[0][:, 2].mean() < hsv[1][:, 2].mean() - 30
    assert hsv[0][:, 1].mean() > hsv[1][:, 1].mean() + 30
    for s in a:  # labels are as consistent as in the default domain
        assert s['mask'].any() and s['voxels'].any()
