"""Mixed-category videos (issue 16, item 2): several categories in one scene, keypoints of
each object on its own mask, per-category layout, and single-category videos unchanged."""

import cv2
import numpy as np
import pytest

from perception_3dinn.skeleton import load_category
from training.synth import dataset
from training.synth.video_labels import MIXED_FIELDS
from training.synth.videos import generate_video_dataset, render_video, VIDEO_FIELDS, VideoConfig

CATS = ('chair', 'table', 'sofa')
MIXED = VideoConfig(width=160, height=120, frames=4, objects=(3, 4), categories=CATS)


@pytest.fixture(scope='module')
def videos():
    rng = np.random.default_rng(21)
    return [render_video(None, rng, MIXED, return_scene=True) for _ in range(2)]


def test_every_category_in_the_scene_with_its_own_layout(videos):
    cats = [load_category(n) for n in CATS]
    n_max = max(c.num_keypoints for c in cats)
    for v in videos:
        assert set(VIDEO_FIELDS + MIXED_FIELDS) <= set(v) and v['_categories'] == CATS
        valid = v['object_valid']
        kinds = v['object_category']
        assert np.all(kinds[~valid] == -1)
        assert set(kinds[valid].tolist()) == {0, 1, 2}  # 3-4 objects: every category once
        assert v['keypoints_2d'].shape[2] == n_max
        for i in np.flatnonzero(valid):
            cat = cats[kinds[i]]
            n, k = cat.num_keypoints, cat.num_bases
            assert v['keypoint_valid'][i].tolist() == [True] * n + [False] * (n_max - n)
            assert not v['keypoints_3d'][:, i, n:].any() and not v['visible'][:, i, n:].any()
            assert not v['structure'][i, k:].any() and v['voxels'][i].any()
            # structure fitted in the object's own category, from its object-frame keypoints
            R, t = v['R'][0, i].astype(np.float64), v['t'][0, i].astype(np.float64)
            obj = (v['keypoints_3d'][0, i, :n].astype(np.float64) - t) @ R
            np.testing.assert_allclose(v['structure'][i, :k],
                                       cat.fit_structure(obj / v['scale_m'][i]), atol=2e-3)


def test_keypoints_project_onto_their_objects_mask(videos):
    on_mask, total = 0, 0
    for v in videos:
        K = v['K'].astype(np.float64)
        H, W = v['instance'].shape[1:]
        for fi in range(len(v['frames'])):
            inst = v['instance'][fi]
            for i in np.flatnonzero(v['object_valid']):
                n = int(v['keypoint_valid'][i].sum())
                kp3 = v['keypoints_3d'][fi, i, :n].astype(np.float64)
                if np.any(kp3[:, 2] < 0.05):
                    continue
                uv, _ = cv2.projectPoints(kp3, np.zeros(3), np.zeros(3), K, None)
                uv = uv.reshape(-1, 2)
                np.testing.assert_allclose(v['keypoints_2d'][fi, i, :n], uv, atol=0.5)
                for k in np.flatnonzero(v['visible'][fi, i, :n]):
                    c, r = np.round(uv[k]).astype(int)
                    if not (0 <= c < W and 0 <= r < H):
                        continue
                    patch = inst[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2]
                    on_mask += bool(np.any(patch == i + 1))
                    total += 1
    assert total > 50
    assert on_mask / total > 0.95


def test_single_category_videos_unchanged():
    """The random draws of a single-category video are those before mixed scenes existed
    (object ids, trajectory and the generator's state after the video: pinned), and an
    empty ``categories`` is the single-category video byte for byte."""
    chair = load_category('chair')
    pinned = {1: ([561, 3], 3, 931146248598742008),
              2: ([87, 932, 904], 3, 2509474645648502267)}
    cfg = dict(width=96, height=72, frames=4, objects=(1, 3))
    for seed, (ids, trajectory, after) in pinned.items():
        rng = np.random.default_rng(seed)
        v = render_video(chair, rng, VideoConfig(**cfg))
        assert v['object_id'][v['object_valid']].tolist() == ids
        assert int(v['trajectory']) == trajectory and int(rng.integers(2**62)) == after
        assert not set(MIXED_FIELDS) & set(v) and '_categories' not in v
        w = render_video('chair', np.random.default_rng(seed), VideoConfig(**cfg, categories=()))
        assert v.keys() == w.keys()
        for key in v:
            assert v[key].tobytes() == w[key].tobytes(), key
    assert 'categories' not in VideoConfig(**cfg).to_dict()


def test_mixed_dataset_manifest(tmp_path):
    cfg = VideoConfig(width=64, height=48, frames=2, objects=(2, 2), categories=('chair',
                                                                                 'table'))
    m = generate_video_dataset('chair', 2, tmp_path / 'd', seed=4, config=cfg, shard_size=2,
                               progress=False)
    assert m['category'] == 'chair+table' and set(m['category_sha256']) == {'chair', 'table'}
    assert [c['name'] for c in m['categories']] == ['chair', 'table']
    assert m['config']['categories'] == ['chair', 'table']
    assert m['fields']['keypoints_2d']['shape'] == [2, 2, 10, 2]  # chair 10 > table 8
    v = dataset.ShardDataset(tmp_path / 'd', verify=True)[1]
    assert v['object_category'].tolist() in ([0, 1], [1, 0])
    assert v['keypoint_valid'].sum(1).tolist() == [[10, 8], [8, 10]][v['object_category'][0]]
    with pytest.raises(ValueError, match='unique'):
        VideoConfig(categories=('chair', 'chair'))
