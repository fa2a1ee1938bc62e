"""Synthetic videos: smooth camera paths, consistent per-frame ground truth, stable ids."""

import cv2
import numpy as np
import pytest

from perception_3dinn.geometry import camera_position
from perception_3dinn.skeleton import load_category
from training.synth import dataset
from training.synth.videos import (
    camera_path,
    generate_video_dataset,
    preview_video,
    render_video,
    TRAJECTORIES,
    VideoConfig,
)

SMALL = VideoConfig(width=128, height=96, frames=12, objects=(1, 3))


@pytest.fixture(scope='module')
def videos():
    cat = load_category('chair')
    rng = np.random.default_rng(77)
    return [render_video(cat, rng, SMALL, return_scene=True) for _ in range(4)]


@pytest.mark.parametrize('kind', TRAJECTORIES)
def test_camera_paths_smooth(kind):
    rng = np.random.default_rng(TRAJECTORIES.index(kind))
    cfg = VideoConfig(frames=48)
    pos, target, roll = camera_path(rng, kind, 48, np.zeros(3), 1.0, cfg)
    assert pos.shape == (48, 3) and target.shape == (48, 3) and roll.shape == (48,)
    step = np.linalg.norm(np.diff(pos, axis=0), axis=1)
    accel = np.linalg.norm(np.diff(pos, 2, axis=0), axis=1)
    assert step.max() < 0.25  # metres per frame at 15 fps: walking speed at most
    assert accel.max() < 0.05  # no jumps
    assert np.abs(np.diff(roll)).max() < np.radians(1.0)
    assert np.all(pos[:, 2] > 0.25)
    dist = np.linalg.norm(pos[:, :2], axis=1)
    if kind == 'approach':
        assert dist[-1] < dist[0] - 1.0
    if kind == 'orbit':
        az = np.unwrap(np.arctan2(pos[:, 1], pos[:, 0]))
        assert abs(az[-1] - az[0]) > 0.5
    if kind == 'pan_exit':
        assert np.linalg.norm(target[-1] - target[0]) > 0.5


def test_ground_truth_consistent(videos):
    for v in videos:
        K = v['K'].astype(np.float64)
        first_world = {}
        valid = np.nonzero(v['object_valid'])[0]
        assert len(valid) >= 1 and len(set(v['object_id'][valid])) == len(valid)
        assert np.all(v['object_id'][~v['object_valid']] == -1)
        for fi in range(len(v['frames'])):
            Rc, tc = v['camera_R'][fi].astype(np.float64), v['camera_t'][fi].astype(np.float64)
            for i in valid:
                # Static objects: object -> camera = world -> camera o object -> world.
                Rw = v['object_R_world'][i].astype(np.float64)
                tw = v['object_t_world'][i].astype(np.float64)
                np.testing.assert_allclose(v['R'][fi, i], Rc @ Rw, atol=1e-5)
                np.testing.assert_allclose(v['t'][fi, i], Rc @ tw + tc, atol=1e-4)
                kp3 = v['keypoints_3d'][fi, i].astype(np.float64)
                if np.all(kp3[:, 2] > 0.05):
                    uv, _ = cv2.projectPoints(kp3, np.zeros(3), np.zeros(3), K, None)
                    err = np.abs(uv.reshape(-1, 2) - v['keypoints_2d'][fi, i])
                    assert err.max() < 0.5
                # Keypoints are fixed in the world: the same world points in every frame.
                world = (kp3 - tc) @ Rc
                if fi == 0:
                    first_world[i] = world
                np.testing.assert_allclose(world, first_world[i], atol=1e-3)


def test_instances_depth_and_visibility(videos):
    agree, total = 0, 0
    for v in videos:
        for fi in range(len(v['frames'])):
            inst = v['instance'][fi]
            depth = v['depth'][fi].astype(np.float64)
            assert np.all(depth[inst > 0] > 0)
            for i in np.nonzero(v['object_valid'])[0]:
                rows, cols = np.nonzero(inst == i + 1)
                assert v['present'][fi, i] == (len(rows) > 0)
                if len(rows):
                    np.testing.assert_array_equal(
                        v['box_visible'][fi, i], [cols.min(), rows.min(), cols.max(),
                                                  rows.max()])
                kp2, kp3 = v['keypoints_2d'][fi, i], v['keypoints_3d'][fi, i]
                contact = v['_contact'][i]
                pm = v['_part_map'][fi]
                for k in np.nonzero(v['in_image'][fi, i])[0]:
                    u, w = np.clip(np.round(kp2[k]).astype(int), 0, [127, 95])
                    j = pm[w, u]
                    px_vis = (j < 0 or j >= contact.shape[1] or contact[k, j]
                              or depth[w, u] >= kp3[k, 2] - 0.01)
                    agree += px_vis == v['visible'][fi, i, k]
                    total += 1
    assert total > 100
    assert agree / total > 0.9


def test_video_dataset_deterministic_and_preview(tmp_path):
    cfg = VideoConfig(width=64, height=48, frames=5, objects=(1, 2))
    a = generate_video_dataset('chair', 3, tmp_path / 'a', seed=3, config=cfg, shard_size=2,
                               progress=False)
    generate_video_dataset('chair', 3, tmp_path / 'b', seed=3, config=cfg, shard_size=2,
                           workers=2, progress=False)
    assert [s['count'] for s in a['shards']] == [2, 1]
    for name in [s['file'] for s in a['shards']] + ['manifest.json']:
        assert (tmp_path / 'a' / name).read_bytes() == (tmp_path / 'b' / name).read_bytes()
    ds = dataset.ShardDataset(tmp_path / 'a', verify=True)
    assert len(ds) == 3 and ds.kind == 'videos'
    v = ds[2]
    assert v['frames'].shape == (5, 48, 64, 3) and v['voxels'].shape == (2, 32, 32, 32)
    assert v['keypoints_2d'].shape == (5, 2, 10, 2)
    sheet = preview_video('chair', 3, cfg, tmp_path / 'v.png', videos=2)
    img = cv2.imread(str(sheet))
    assert img is not None and img.std() > 5


def test_camera_centre_matches_path():
    cat = load_category('chair')
    v = render_video(cat, np.random.default_rng(5), SMALL)
    c = camera_position(v['camera_R'].astype(np.float64), v['camera_t'].astype(np.float64))
    assert np.all(c[:, 2] > 0.25)  # above the floor
    assert np.linalg.norm(np.diff(c, axis=0), axis=1).max() < 0.3


def test_shifted_domain_changes_the_look_not_the_scene():
    """Same seed: the default and shifted videos share objects, poses and camera path; the
    shifted one has a narrower lens and other colours."""
    cfg = dict(width=96, height=72, frames=4, objects=(1, 1), voxels=False)
    cat = load_category('chair')
    a = render_video(cat, np.random.default_rng(8), VideoConfig(**cfg))
    b = render_video(cat, np.random.default_rng(8), VideoConfig(**cfg, domain='shifted'))
    np.testing.assert_array_equal(a['structure'], b['structure'])
    np.testing.assert_allclose(a['camera_t'], b['camera_t'])
    assert b['K'][0, 0] > a['K'][0, 0]  # 30-45 deg against 50-80 deg
    assert np.abs(a['frames'].astype(int) - b['frames'].astype(int)).mean() > 20
    with pytest.raises(ValueError, match='unknown render domain'):
        VideoConfig(domain='cartoon')
