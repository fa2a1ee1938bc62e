"""Tests of training.evaluate, training.baselines and training.fig6."""

import json

import numpy as np
import pytest
import torch

from perception_3dinn import metrics
from perception_3dinn.camera import CameraIntrinsics
from perception_3dinn.inference.pose import crop_camera_pose
from perception_3dinn.skeleton import load_category
from training import evaluate, fig6, train
from training.baselines import fit_optimisation, pnp_mean_shape
from training.inn_data import make_crop
from training.synth.heatmap_sampler import HeatmapSampler, NoiseConfig, SamplerConfig


@pytest.fixture(scope='module')
def category():
    return load_category('chair')


def test_baselines_recover_exact_keypoints(category):
    sampler = HeatmapSampler(category, SamplerConfig(perturb_std=0.0), seed=11)
    d = sampler.sample(12, NoiseConfig.clean())
    conf = np.ones(d['keypoints'].shape[:2])
    c = 63.5
    pnp = pnp_mean_shape(category, d['keypoints'], conf, d['focal'], c)
    opt = fit_optimisation(category, d['keypoints'], conf, d['focal'], c, prior=0.01)
    assert pnp.ok.all() and opt.ok.all()
    # The optimisation explains exact keypoints: structure and rotation are recovered.
    rmse = metrics.structure_rmse(category.structure(opt.alpha), d['points3d'])
    assert np.median(rmse) < 0.02
    assert np.degrees(np.median(metrics.geodesic_error(opt.rotation, d['rotation']))) < 2.0
    # PnP of the mean shape is worse on structure (it cannot change it) but gets the view.
    rmse_pnp = metrics.structure_rmse(category.structure(pnp.alpha), d['points3d'])
    assert np.median(rmse_pnp) > 2 * np.median(rmse)
    assert np.degrees(np.median(metrics.azimuth_error(pnp.rotation, d['rotation']))) < 15.0


def test_crop_camera_round_trip(category, tiny_data):
    """The runtime's crop_camera_pose and evaluate.to_real_camera are inverse."""
    n = len(tiny_data['image'])
    crops, Rc, tc, fc = [], [], [], []
    for i in range(n):
        s = {k: v[i] for k, v in tiny_data.items()}
        crop = make_crop(s, 128, 0.15)
        cam = CameraIntrinsics.from_matrix(s['K'], 128, 128)
        R, t, f = crop_camera_pose(s['R'], s['t'], crop, cam, category.size_prior_m)
        crops.append(crop)
        Rc.append(R)
        tc.append(t)
        fc.append(f)
    R, t = evaluate.to_real_camera(np.array(Rc), np.array(tc), np.array(fc), crops,
                                   tiny_data['K'], category.size_prior_m)
    np.testing.assert_allclose(R, tiny_data['R'], atol=1e-5)
    np.testing.assert_allclose(t, tiny_data['t'], atol=1e-4)
    # The crop camera looks at the object: the box centre projects near the crop centre.
    for i in range(n):
        cam = Rc[i] @ (np.array([0, 0, 0.4]) * tiny_data['scale_m'][i]) + tc[i] * \
            category.size_prior_m
        assert abs(np.degrees(np.arctan2(np.hypot(cam[0], cam[1]), cam[2]))) < 20


def test_object_frame_keypoints(category, tiny_data):
    y = evaluate.object_frame_keypoints(tiny_data)
    diag = np.linalg.norm(y.max(1) - y.min(1), axis=-1)
    np.testing.assert_allclose(diag, 1.0, atol=1e-4)
    fitted = category.structure(tiny_data['structure'].astype(np.float64))
    assert np.median(metrics.structure_rmse(fitted, y)) < 0.1


@pytest.fixture(scope='module')
def tiny_root(tmp_path_factory):
    from training.synth.generate import generate_image_dataset
    from training.synth.images import ImageConfig

    root = tmp_path_factory.mktemp('bench') / 'chair_tiny'
    generate_image_dataset('chair', 8, root, seed=9, config=ImageConfig(voxels=False),
                           shard_size=8, progress=False)
    return root


@pytest.fixture(scope='module')
def tiny_data(tiny_root):
    return train.load_images(tiny_root)


def test_evaluate_end_to_end(tmp_path, tiny_root, tiny_data, category):
    torch.manual_seed(0)
    model = train.build_model(category)
    from perception_3dinn.models import category_record, save_checkpoint

    ckpt = save_checkpoint(tmp_path / 'm.pt', model, category_record(category), 'test')
    res = evaluate.evaluate(ckpt, tiny_root, tmp_path / 'out')
    saved = json.loads((tmp_path / 'out' / 'metrics.json').read_text())
    assert saved['count'] == 8
    assert set(saved['methods']) == {'3d-inn', 'pnp-mean-shape', 'optimisation'}
    # the binned tables count every sample once per attribute
    for name in ('distance_m', 'box_height_px', 'truncation', 'occlusion', 'view'):
        assert sum(r['count'] for r in saved['binned'][name]) == 8, name
    assert saved['binned']['all']['count'] == 8
    for name in ('evaluation.png', 'failures.png', 'per_sample.npz', 'binned.png',
                 'binned.md'):
        assert (tmp_path / 'out' / name).is_file()
    # The reported PCK equals an independent recount from the saved keypoints.
    per = np.load(tmp_path / 'out' / 'per_sample.npz')
    box = tiny_data['box'].astype(np.float64)
    size = np.maximum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1])
    err = np.linalg.norm(per['keypoints'] - tiny_data['keypoints_2d'], axis=-1)
    vis = tiny_data['visible']
    assert res['keypoints_2d']['pck10'] == pytest.approx(np.mean((err < 0.1 * size[:, None])
                                                                 [vis]))
    # References bracket the problem: the bases' best fit beats the mean shape.
    assert (saved['references']['bases_best_fit_average_recall'] >
            saved['references']['mean_shape_average_recall'])


def test_fig6_runs(tmp_path, category):
    torch.manual_seed(0)
    model = train.build_model(category)
    from perception_3dinn.models import category_record, save_checkpoint

    ckpt = save_checkpoint(tmp_path / 'm.pt', model, category_record(category), 'test')
    res = fig6.run_fig6(ckpt, count=6, levels=(0.0, 0.5))
    rows = {(r['level'], r['method']): r for r in res['rows']}
    assert len(rows) == 6
    # Heavy salt-and-pepper ruins arg-max keypoints: the optimisation gets worse.
    assert (rows[(0.5, 'optimisation')]['structure_average_recall'] <
            rows[(0.0, 'optimisation')]['structure_average_recall'])
    fig6.plot_fig6(res, tmp_path / 'fig6.png')
    assert (tmp_path / 'fig6.png').is_file()


def test_load_video_objects(tmp_path, category):
    from training.synth.videos import generate_video_dataset, VideoConfig

    root = tmp_path / 'vid'
    generate_video_dataset('chair', 1, root, seed=3,
                           config=VideoConfig(frames=4, voxels=False, width=128, height=96),
                           progress=False)
    data = evaluate.load_video_objects(root, min_box_px=1, min_keypoints=1)
    n = len(data['image'])
    assert n >= 1 and data['image'].shape[1:] == (96, 128, 3)
    # Every row is one object in one frame: its 3D keypoints project to its 2D keypoints.
    for i in range(n):
        cam = data['keypoints_3d'][i].astype(np.float64)
        uv = cam[:, :2] / cam[:, 2:] * np.diag(data['K'][i])[:2] + data['K'][i][:2, 2]
        np.testing.assert_allclose(uv, data['keypoints_2d'][i], atol=1e-2)
    y = evaluate.object_frame_keypoints(data)
    np.testing.assert_allclose(np.linalg.norm(np.ptp(y, axis=1), axis=-1), 1.0, atol=1e-3)
