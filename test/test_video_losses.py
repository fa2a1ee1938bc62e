"""Video consistency losses (seed 001, sec. 3.2) against NumPy float64 and hand values."""

import math

import numpy as np
import pytest
import torch

from perception_3dinn.codec import HeatmapCodec
from perception_3dinn.geometry import rotation_about_z
from training.video_losses import (
    clip_focal,
    consistency_loss,
    heatmap_peaks,
    keypoint_loss,
    motion_smoothness,
    peak_reprojection_loss,
    relative_angle,
    solve_latents,
    video_terms,
    VideoLossWeights,
    weighted_sum,
)


@pytest.mark.parametrize('length', [3, 4, 7, 15])
def test_latents_are_numpy_median_and_mean(length):
    rng = np.random.default_rng(length)
    x = rng.normal(size=(5, length, 6))
    t = torch.from_numpy(x)
    med = solve_latents(t, 'median')
    assert med.dtype == torch.float64
    np.testing.assert_allclose(med.numpy(), np.median(x, axis=1), rtol=0, atol=1e-12)
    np.testing.assert_allclose(solve_latents(t, 'mean').numpy(), x.mean(axis=1), rtol=0,
                               atol=1e-12)
    # the median minimises the L1 of Eq. 3, the mean the L2 relaxation: moving away costs
    for method, norm in (('median', 'l1'), ('mean', 'l2')):
        h = solve_latents(t, method)
        best = consistency_loss(t, h, norm)
        for d in (1e-3, -1e-3):
            assert consistency_loss(t, h + d, norm) >= best - 1e-12
    with pytest.raises(ValueError, match='method'):
        solve_latents(t, 'mode')


def test_structure_consistency_zero_and_hand_value():
    same = torch.tensor([0.1, -0.2, 0.3]).repeat(2, 5, 1)
    assert float(consistency_loss(same, solve_latents(same))) == 0.0
    # one clip of 3 frames, 2 dimensions: median (1, 0); |.|_1 per frame 0 + 0 + 3 -> 3 / 3
    v = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [3.0, -1.0]]])
    h = solve_latents(v)
    assert h.tolist() == [[1.0, 0.0]]
    assert float(consistency_loss(v, h)) == pytest.approx(1.0)
    # L2: mean (5/3, -1/3); squared deviations summed over frames and dims, / 3
    m = solve_latents(v, 'mean')
    ref = ((v.numpy() - m.numpy()[:, None]) ** 2).sum() / 3
    assert float(consistency_loss(v, m, 'l2')) == pytest.approx(ref)
    # the latents are constants: the gradient is sign(v - h) / L
    w = v.clone().requires_grad_(True)
    consistency_loss(w, solve_latents(w)).backward()
    assert w.grad[0, 2].tolist() == pytest.approx([1 / 3, -1 / 3])


def test_clip_focal_is_the_image_cameras():
    # the same camera (f = 300 px) seen through crops of scale 0.5 and 2
    f_crop = torch.tensor([[150.0, 600.0]])
    scale = torch.tensor([[0.5, 2.0]])
    q = clip_focal(f_crop, scale)
    np.testing.assert_allclose(q.numpy()[..., 0], np.log([[300.0, 300.0]]), rtol=1e-6)
    assert float(consistency_loss(q, solve_latents(q))) < 1e-6


def _rotations(angles):
    return torch.from_numpy(np.stack([rotation_about_z(a) for a in angles])).float()


def test_motion_smoothness_zero_and_known_step():
    R = _rotations([0.3] * 4).unsqueeze(0)
    t = torch.tensor([0.1, -0.2, 2.0]).repeat(1, 4, 1)
    rot, trans = motion_smoothness(R, t)
    assert float(rot) == pytest.approx(0.0, abs=1e-6) and float(trans) == 0.0
    # 4 frames turning 0.1 rad each about z, moving 0.05 in x and -0.02 in z per frame
    step = 0.1
    R = _rotations([0.3 + step * j for j in range(4)]).unsqueeze(0)
    t = torch.tensor([[[0.05 * j, 0.0, 2.0 - 0.02 * j] for j in range(4)]])
    rot, trans = motion_smoothness(R, t)
    assert float(rot) == pytest.approx(3 * step / 4, rel=1e-4)
    assert float(trans) == pytest.approx(3 * (0.05 + 0.02) / 4, rel=1e-5)
    # the angle is the geodesic distance for any axis, and not confined to small steps
    a = torch.from_numpy(np.stack([rotation_about_z(0.0)])).double()
    ax = torch.tensor([[[1.0, 0, 0], [0, math.cos(2.0), -math.sin(2.0)],
                        [0, math.sin(2.0), math.cos(2.0)]]], dtype=torch.float64)
    assert float(relative_angle(a, ax)) == pytest.approx(2.0, rel=1e-9)
    # finite gradient at zero motion
    R0 = _rotations([0.2] * 3).unsqueeze(0).requires_grad_(True)
    motion_smoothness(R0, torch.zeros(1, 3, 3))[0].backward()
    assert torch.isfinite(R0.grad).all()


def test_reprojection_zero_at_peaks_and_confidence_weighted():
    codec = HeatmapCodec(64, 4, 1.5)
    rng = np.random.default_rng(0)
    kp = rng.uniform(8, 56, (2, 4, 2))
    hm = torch.from_numpy(codec.encode(kp))
    peaks, conf = heatmap_peaks(hm, codec)
    np.testing.assert_allclose(peaks.numpy(), kp, atol=0.05)
    assert conf.min() > 0.9  # the pixel grid samples the Gaussian off its top
    assert float(peak_reprojection_loss(peaks.clone(), peaks, conf, 64)) == 0.0
    # keypoint 1 of image 0 off by 8 px = 0.25 half-crop units: c * 0.0625 / 2 images
    proj = peaks.clone()
    proj[0, 1, 0] += 8.0
    c = torch.ones_like(conf)
    assert float(peak_reprojection_loss(proj, peaks, c, 64)) == pytest.approx(0.0625 / 2)
    c[0, 1] = 0.5
    assert float(peak_reprojection_loss(proj, peaks, c, 64)) == pytest.approx(0.0625 / 4)
    c[0, 1] = 0.0
    assert float(peak_reprojection_loss(proj, peaks, c, 64)) == 0.0
    # an empty heatmap decodes with confidence 0 and contributes nothing however far off
    hm[1, 2] = 0.0
    peaks, conf = heatmap_peaks(hm, codec)
    assert float(conf[1, 2]) == 0.0
    proj = peaks.clone()
    proj[1, 2] += 30.0
    assert float(peak_reprojection_loss(proj, peaks, conf, 64)) == 0.0


def test_keypoint_loss_over_labelled_only():
    kp = torch.zeros(1, 3, 2) + 32.0
    proj = kp.clone()
    proj[0, 0] += torch.tensor([16.0, 0.0])   # 0.5 units: 0.25
    proj[0, 2] += torch.tensor([0.0, 200.0])  # far off: capped at 1, but not labelled
    lab = torch.tensor([[True, True, False]])
    assert float(keypoint_loss(proj, kp, lab, 64)) == pytest.approx(0.25)
    lab[0, 2] = True
    assert float(keypoint_loss(proj, kp, lab, 64)) == pytest.approx(1.25)


def test_video_terms_and_weights():
    torch.manual_seed(0)
    codec = HeatmapCodec(64, 4, 1.5)
    c, length, k = 2, 3, 4
    hm = torch.rand(c * length, 5, 16, 16)
    structure = torch.randn(c * length, k)
    rotation = _rotations(np.linspace(0, 0.5, c * length))
    translation = torch.randn(c * length, 3)
    focal = torch.full((c * length,), 200.0)
    scale = torch.ones(c, length)
    peaks, _ = heatmap_peaks(hm, codec)
    terms, latents = video_terms((hm, structure, rotation, translation, focal), peaks, scale,
                                 codec)
    assert set(terms) == {'alpha', 'focal', 'rotation', 'translation', 'reprojection'}
    assert latents['alpha'].shape == (c, k) and latents['focal'].shape == (c, 1)
    np.testing.assert_allclose(latents['alpha'].numpy(),
                               np.median(structure.numpy().reshape(c, length, k), axis=1))
    assert float(terms['focal']) == pytest.approx(0.0, abs=1e-6)
    assert float(terms['reprojection']) == 0.0
    assert float(terms['rotation']) == pytest.approx(2 * 0.1 / 3, rel=1e-3)
    w = VideoLossWeights()
    assert w.keypoints == 1024 and w.alpha == 2e4 and w.reprojection == pytest.approx(101.9,
                                                                                     abs=0.05)
    total = weighted_sum(terms, w)
    assert float(total) == pytest.approx(sum(getattr(w, n) * float(v)
                                             for n, v in terms.items()), rel=1e-6)
    with pytest.raises(ValueError, match='no weight'):
        weighted_sum({'bogus': torch.tensor(1.0)}, w)
