"""Full-frame scenes (training.synth.scenes), the truncation augmentation and the binned
error tables (training.binned)."""

from __future__ import annotations

import numpy as np
import pytest

from perception_3dinn.skeleton import load_category
from training import binned
from training.inn_data import truncate_sample
from training.synth import render
from training.synth.scenes import render_scene, SceneConfig, silhouette_truncation

SMALL = SceneConfig(width=200, height=150, fx=192.0, objects=(3, 4), border_prob=0.5)


@pytest.fixture(scope='module')
def scenes() -> list[dict]:
    cat = load_category('chair')
    rng = np.random.default_rng(4)
    return [render_scene(cat, rng, SMALL) for _ in range(4)]


def test_scenes_are_deterministic_and_labelled(scenes: list[dict]) -> None:
    again = render_scene(load_category('chair'), np.random.default_rng(4), SMALL)
    for key in ('image', 'R', 't', 'truncation', 'occlusion', 'box_visible'):
        np.testing.assert_array_equal(again[key], scenes[0][key])
    for s in scenes:
        v = s['object_valid']
        assert v.sum() >= 2 and s['image'].shape == (150, 200, 3)
        d = s['distance'][v]
        assert np.all((d >= 1.0) & (d <= 6.0))
        np.testing.assert_allclose(d, np.linalg.norm(s['t'][v], axis=1), rtol=1e-6)
        assert np.all((s['truncation'][v] >= 0) & (s['truncation'][v] <= 1))
        # the visible box holds exactly the object's pixels in the instance map
        for i in np.flatnonzero(v):
            rows, cols = np.nonzero(s['instance'] == i + 1)
            assert len(rows) == s['visible_pixels'][i]
            if len(rows):
                assert s['box_visible'][i].tolist() == [cols.min(), rows.min(), cols.max(),
                                                        rows.max()]
    trunc = np.concatenate([s['truncation'][s['object_valid']] for s in scenes])
    assert (trunc > 0.05).any() and (trunc == 0).any()  # both kinds occur


def test_truncation_matches_a_wide_canvas_rendering() -> None:
    """The fraction outside the image, against rendering the same camera on a canvas three
    times as wide and high (principal point shifted) at full resolution."""
    from perception_3dinn.geometry import look_at
    from training.synth.procedural import generate

    mesh = generate('chair', np.random.default_rng(0))
    K = np.array([[300.0, 0, 160.0], [0, 300.0, 120.0], [0, 0, 1]])
    for shift in (0.0, 0.6, 1.1):
        R, t = look_at(np.array([2.5, shift, 0.8]), np.array([0.0, 0.0, 0.4]))
        soup = render.build_soup(mesh.parts, R, t)
        W, H = 320, 240
        Kw = K.copy()
        Kw[0, 2] += W
        Kw[1, 2] += H
        _, face = render.rasterize(soup, Kw, 3 * W, 3 * H)
        rows, cols = np.nonzero(face >= 0)
        assert rows.min() > 0 and cols.min() > 0 and rows.max() < 3 * H - 1
        inside = (cols >= W) & (cols < 2 * W) & (rows >= H) & (rows < 2 * H)
        want = 1.0 - inside.mean()
        got = silhouette_truncation(soup, K, W, H)
        assert abs(got - want) < 0.02, (shift, got, want)


def test_truncate_sample_blacks_out_beyond_the_cut_and_drops_those_keypoints() -> None:
    rng = np.random.default_rng(0)
    img = np.full((64, 64, 3), 200, np.uint8)
    kp = np.array([[10.0, 10.0], [50.0, 50.0], [30.0, 30.0]])
    sample = {'image': img, 'box': np.array([5.0, 5.0, 60.0, 60.0], np.float32),
              'keypoints_2d': kp, 'in_image': np.ones(3, bool), 'visible': np.ones(3, bool)}
    seen = set()
    for _ in range(40):
        out = truncate_sample(sample, rng, (0.3, 0.4))
        b = out['box']
        x0, y0, x1, y1 = (int(v) for v in b)
        assert out['image'][y0:y1 + 1, x0:x1 + 1].min() == 200  # the box is untouched
        black = np.all(out['image'] == 0, axis=-1)
        assert black.any() and not black[y0:y1 + 1, x0:x1 + 1].any()
        inside = (kp[:, 0] >= x0 - 0.5) & (kp[:, 0] < x1 + 0.5) & (kp[:, 1] >= y0 - 0.5) & \
            (kp[:, 1] < y1 + 0.5)
        assert out['in_image'].tolist() == inside.tolist()
        assert out['visible'].tolist() == inside.tolist()
        seen.add(tuple(np.flatnonzero(~inside)))
        # the cut removes 30-40 % of the box on one side
        area = (b[2] - b[0]) * (b[3] - b[1]) / (55.0 * 55.0)
        assert 0.55 <= area <= 0.72
    assert sample['image'].min() == 200  # the input is not modified
    assert len(seen) > 1


def test_binned_tables_match_numpy_per_bin() -> None:
    rng = np.random.default_rng(1)
    n = 300
    attrs = {'distance_m': rng.uniform(1, 6, n), 'truncation': rng.uniform(0, 0.6, n),
             'view': rng.choice(['front', 'side', 'back'], n)}
    errors = {'translation_rel': rng.uniform(0, 0.2, n), 'range_ratio': rng.uniform(0.8, 1.2, n),
              'rotation': rng.uniform(0, 0.5, n), 'inside_1sigma': rng.random(n) < 0.7}
    errors['inside_1sigma'] = errors['inside_1sigma'].astype(float)
    table = binned.binned_errors(attrs, errors)
    assert set(table) == {'all', 'distance_m', 'truncation', 'view'}
    assert sum(r['count'] for r in table['distance_m']) == n
    sel = (attrs['distance_m'] >= 3) & (attrs['distance_m'] < 4)
    row = table['distance_m'][2]
    assert row['bin'] == '3-4 m' and row['count'] == sel.sum()
    assert row['range_ratio_median'] == pytest.approx(np.median(errors['range_ratio'][sel]))
    assert row['rotation_median_deg'] == pytest.approx(
        np.degrees(np.median(errors['rotation'][sel])))
    assert row['inside_1sigma'] == pytest.approx(errors['inside_1sigma'][sel].mean())
    back = table['view'][2]
    assert back['count'] == (attrs['view'] == 'back').sum()
    md = binned.markdown(table, 'x')
    assert '| 3-4 m |' in md and 'inside 1 sigma' in md


def test_view_attributes_front_side_back() -> None:
    from perception_3dinn.geometry import pose_from_viewpoint

    Rs, ts = [], []
    for az in (0.0, 80.0, 170.0, -100.0):
        R, t = pose_from_viewpoint(np.radians(az), np.radians(20.0), 3.0)
        Rs.append(R)
        ts.append(t)
    a = binned.view_attributes(np.array(Rs), np.array(ts))
    assert a['view'].tolist() == ['front', 'side', 'back', 'side']
    np.testing.assert_allclose(a['elevation_deg'], 20.0, atol=1e-9)
    np.testing.assert_allclose(a['distance_m'], 3.0)
