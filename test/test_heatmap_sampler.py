"""Tests of training.synth.heatmap_sampler: geometry against OpenCV, codec round trip, noise."""

import cv2
import numpy as np
import pytest

from perception_3dinn import geometry
from perception_3dinn.codec import HeatmapCodec
from perception_3dinn.skeleton import load_category
from training.synth.heatmap_sampler import (
    add_salt_pepper,
    HeatmapSampler,
    look_at_batch,
    NoiseConfig,
    SamplerConfig,
)


@pytest.fixture(scope='module')
def category():
    return load_category('chair')


def test_geometry_matches_opencv_and_viewpoint(category):
    s = HeatmapSampler(category, seed=0)
    d = s.sample(20)
    c = 0.5 * (s.config.input_size - 1)
    for i in range(20):
        K = np.array([[d['focal'][i], 0, c], [0, d['focal'][i], c], [0, 0, 1.0]])
        ref, _ = cv2.projectPoints(d['points3d'][i], cv2.Rodrigues(d['rotation'][i])[0],
                                   d['translation'][i], K, None)
        np.testing.assert_allclose(d['keypoints'][i], ref.reshape(-1, 2), atol=1e-8)
    az, el = geometry.viewpoint_from_rotation(d['rotation'])
    np.testing.assert_allclose(geometry.angle_difference(az, d['azimuth']), 0, atol=1e-9)
    np.testing.assert_allclose(el, d['elevation'], atol=1e-9)
    assert np.all(d['translation'][:, 2] > 0)
    # Keypoint boxes roughly fill the crop as a padded detection box would.
    side = (d['keypoints'].max(1) - d['keypoints'].min(1)).max(-1)
    target = s.config.input_size / (1 + s.config.pad)
    assert np.all(np.abs(side / target - 1) <= s.config.scale_jitter + 0.02)


def test_look_at_batch_matches_geometry(category):
    rng = np.random.default_rng(1)
    az, el, roll = rng.uniform(-3, 3, 5), rng.uniform(-0.1, 1.0, 5), rng.normal(0, 0.1, 5)
    ref = np.stack([geometry.pose_from_viewpoint(a, e, 2.0, r)[0]
                    for a, e, r in zip(az, el, roll)])
    np.testing.assert_allclose(look_at_batch(az, el, roll), ref, atol=1e-12)


def test_clean_heatmaps_decode_to_keypoints(category):
    s = HeatmapSampler(category, seed=2)
    d = s.sample(16, NoiseConfig.clean())
    np.testing.assert_array_equal(d['heatmaps'], d['clean_heatmaps'])
    kp, conf = HeatmapCodec(128, 4, 1.5).decode(d['heatmaps'])
    assert d['visible'].mean() > 0.9
    # Away from the border the parabola refinement is exact for a Gaussian.
    inside = np.all((d['keypoints'] > 6) & (d['keypoints'] < 121), -1)
    err = np.linalg.norm(kp - d['keypoints'], axis=-1)[inside]
    assert err.max() < 0.05
    assert np.all(conf[inside] > 0.9)


def test_structure_perturbation_and_alpha(category):
    cfg = SamplerConfig(perturb_std=0.0)
    d = HeatmapSampler(category, cfg, seed=3).sample(8, NoiseConfig.clean())
    np.testing.assert_allclose(d['points3d'], category.structure(d['alpha']), atol=1e-12)
    d2 = HeatmapSampler(category, seed=3).sample(400, NoiseConfig.clean())
    resid = d2['points3d'] - category.structure(d2['alpha'])
    diag = np.linalg.norm(np.ptp(category.structure(d2['alpha']), axis=1), axis=-1)
    assert np.std(resid / diag[:, None, None]) == pytest.approx(0.01, rel=0.1)
    assert np.all(np.abs(d2['alpha']) <= 3 * category.alpha_std + 1e-12)


def test_seeded_and_noise_effects(category):
    a = HeatmapSampler(category, seed=4).sample(8)
    b = HeatmapSampler(category, seed=4).sample(8)
    np.testing.assert_array_equal(a['heatmaps'], b['heatmaps'])
    noise = NoiseConfig(p_missing=0.5, p_spurious=0.0, p_shift=0.0, p_blur=0.0,
                        p_salt_pepper=0.0, background_std=0.0)
    d = HeatmapSampler(category, seed=5).sample(64, noise)
    dropped = ~d['visible'] & (d['clean_heatmaps'].max((2, 3)) > 0.5)
    assert 0.35 < dropped.mean() < 0.65
    np.testing.assert_array_equal(d['heatmaps'][dropped].max((1, 2)), 0.0)
    spur = NoiseConfig(p_missing=0.0, p_spurious=1.0, spurious_symmetric=1.0, p_shift=0.0,
                       p_blur=0.0, p_salt_pepper=0.0, background_std=0.0,
                       amplitude_range=(1.0, 1.0), spurious_amplitude=(0.5, 0.5))
    d = HeatmapSampler(category, seed=6).sample(8, spur)
    mirror = HeatmapCodec().to_heatmap(d['keypoints'][:, category.flip_permutation])
    ix = np.clip(np.round(mirror).astype(int), 0, 31)
    vals = d['heatmaps'][np.arange(8)[:, None], np.arange(10)[None], ix[..., 1], ix[..., 0]]
    inside = np.all((mirror > 0) & (mirror < 31), -1)
    assert np.all(vals[inside] > 0.3)


def test_salt_pepper_fraction():
    rng = np.random.default_rng(7)
    maps = np.full((4, 10, 32, 32), 0.5, np.float32)
    out = add_salt_pepper(maps, np.array([0.0, 0.1, 0.2, 0.4]), rng)
    hit = (out != 0.5).mean((1, 2, 3))
    np.testing.assert_allclose(hit, [0.0, 0.1, 0.2, 0.4], atol=0.02)
    assert set(np.unique(out[3])) == {0.0, 0.5, 1.0}
    with pytest.raises(ValueError):
        add_salt_pepper(np.zeros((3, 3)), 0.1, rng)
