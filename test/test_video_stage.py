"""The ``video`` training stage: tracks and clips, a short curriculum run, resume, export."""

import json

import numpy as np
import pytest
import torch

from perception_3dinn.models import load_checkpoint
from training import train
from training.synth import dataset
from training.synth.generate import generate_image_dataset
from training.synth.images import ImageConfig
from training.synth.videos import generate_video_dataset, VideoConfig
from training.video_stage import cut_clips, track_runs, usable_frames

INIT = 'perception_3dinn/data/models/chair'
GAP = 5  # video 0 loses its object at frame 5: tracks of 5 and 6 frames


def test_track_runs_and_clips():
    mask = np.array([1, 1, 0, 1, 1, 1, 0, 0, 1], bool)
    assert track_runs(mask) == [(0, 2), (3, 6), (8, 9)]
    assert track_runs(np.zeros(4, bool)) == [] and track_runs(np.ones(3, bool)) == [(0, 3)]
    tracks = [(0, 2), (2, 3), (5, 7)]   # (first row, length)
    clips, owner, rep = cut_clips(tracks, 3)
    np.testing.assert_array_equal(clips, [[2, 3, 4], [5, 6, 7], [8, 9, 10]])
    np.testing.assert_array_equal(owner, [1, 2, 2])
    assert rep == {'clips': 3, 'tracks': 3, 'short_tracks_skipped': 1, 'short_track_frames': 2}
    clips, _, rep = cut_clips(tracks, 3, stride=2)
    assert clips[:, 0].tolist() == [2, 5, 7, 9]
    _, _, rep = cut_clips(tracks, 8)
    assert rep['clips'] == 0 and rep['short_tracks_skipped'] == 3
    with pytest.raises(ValueError):
        cut_clips(tracks, 1)
    video = {'box': np.array([[[0, 0, 20, 30]], [[0, 0, 5, 30]], [[0, 0, 0, 0]]], float),
             'present': np.array([[True], [True], [True]]), 'object_valid': np.array([True])}
    assert usable_frames(video, 8)[:, 0].tolist() == [True, False, False]


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('video_stage')
    cfg = VideoConfig(width=128, height=96, frames=12, objects=(1, 1), voxels=False)
    videos = root / 'videos'
    generate_video_dataset('chair', 4, videos, seed=3, config=cfg, shard_size=4, progress=False)
    # a detector that misses the object in one frame: the track is cut in two
    manifest = dataset.read_manifest(videos)
    shard = manifest['shards'][0]
    with np.load(videos / shard['file']) as z:
        arrays = {k.removesuffix('.npy'): z[k] for k in z.files}
    assert arrays['present'][0, :, 0].all()
    arrays['present'][0, GAP, 0] = False
    shard['sha256'] = dataset.write_npz(videos / shard['file'], arrays)
    dataset.write_manifest(videos, manifest)
    images = root / 'images'
    generate_image_dataset('chair', 8, images, seed=5, config=ImageConfig(voxels=False),
                           shard_size=8, progress=False)
    return root, videos, images


def _args(data, out, *extra, lengths='3,6'):
    _, videos, images = data
    return ['video', '--init', INIT, '--videos', str(videos), '--images', str(images),
            '--out', str(out), '--clip-lengths', lengths, '--steps-per-length', '2',
            '--clips', '2', '--batch', '2', '--log-every', '1', '--eval-every', '1',
            '--l2-steps', '1', '--min-box', '8', '--val-fraction', '0.25', *extra]


def _weights(path):
    model, payload = load_checkpoint(path)
    return model.state_dict(), payload


def _records(out):
    return [json.loads(line) for line in (out / 'log.jsonl').read_text().splitlines()]


def test_video_stage_runs_resumes_and_exports(tmp_path, data, capsys):
    torch.set_num_threads(1)
    _, videos, _ = data
    ds = dataset.ShardDataset(videos)
    for v in range(4):  # every object is tracked through every frame but the gap
        usable = usable_frames(ds[v], 8)[:, 0]
        assert usable.sum() == 12 - (v == 0) and usable[GAP] == (v != 0)
    a = tmp_path / 'a'
    train.main(_args(data, a))
    for name in ('model.pt', 'last.pt', 'best_L3.pt', 'best_L6.pt', 'log.jsonl', 'loss.png',
                 'summary.json'):
        assert (a / name).is_file(), name
    recs = _records(a)
    # clips of the three training videos: tracks 5 + 6, 12, 12 frames; val: one of 12
    data_recs = {r['clip_length']: r for r in recs if r['kind'] == 'data'}
    assert data_recs[3]['clips'] == 1 + 2 + 4 + 4 and data_recs[3]['short_tracks_skipped'] == 0
    assert data_recs[6]['clips'] == 0 + 1 + 2 + 2
    assert data_recs[6]['short_tracks_skipped'] == 1 and data_recs[6]['short_track_frames'] == 5
    assert data_recs[3]['val_clips'] == 4 and data_recs[6]['val_clips'] == 2
    assert '1 tracks shorter than 6 frames skipped (5 frames)' in capsys.readouterr().out
    trains = [r for r in recs if r['kind'] == 'train']
    assert [r['step'] for r in trains] == [0, 1, 2, 3]
    assert [r['clip_length'] for r in trains] == [3, 3, 6, 6]
    assert [r['l2'] for r in trains] == [1, 0, 0, 0]
    terms = ('loss', 'alpha', 'focal', 'rotation', 'translation', 'reprojection', 'keypoints',
             'heatmap')
    assert all(np.isfinite(r[k]) and r[k] >= 0 for r in trains for k in terms)
    assert all(r['rotation'] > 0 and r['reprojection'] > 0 for r in trains)
    vals = [r for r in recs if r['kind'] == 'val']
    assert [(r['step'], r['clip_length']) for r in vals] == [(0, 3), (1, 3), (2, 3), (2, 6),
                                                             (3, 6), (4, 6)]
    # each length starts from the best of the one before: evaluated at L=6 it is that model
    best3 = min(vals[:3], key=lambda r: r['structure_rmse_mean'])
    _, payload3 = _weights(a / 'best_L3.pt')
    assert payload3['step'] == best3['step'] and payload3['metrics'] == {
        k: v for k, v in best3.items() if k not in ('kind', 'step', 'clip_length')}
    # the clips of both lengths cover the 12 validation frames: the same structure error
    assert vals[3]['structure_rmse_mean'] == pytest.approx(best3['structure_rmse_mean'],
                                                           rel=1e-6)
    assert all(np.isfinite(r['structure_rmse_mean']) and np.isfinite(r['video_loss'])
               for r in vals)
    # model.pt: the best of the last length, as an INN3D checkpoint of stage 'video'
    w, payload = _weights(a / 'model.pt')
    best6, _ = _weights(a / 'best_L6.pt')
    assert payload['stage'] == 'video' and payload['step'] == 4
    assert payload['metrics']['selection'] == 'structure_rmse_mean'
    assert payload['extra']['data']['6']['short_tracks_skipped'] == 1
    best_val = min(r['structure_rmse_mean'] for r in vals if r['clip_length'] == 6)
    assert payload['metrics']['structure_rmse_mean'] == best_val
    for key in w:
        assert torch.equal(w[key], best6[key])
    # the whole network trained (the last weights moved from the initial model's)
    init, _ = _weights(f'{INIT}/model.pt')
    last, _ = _weights(a / 'last.pt')
    assert any(not torch.equal(last[k], init[k].float()) for k in w if k.startswith('keypoint'))
    assert any(not torch.equal(last[k], init[k].float()) for k in w if k.startswith('interp'))
    # interrupted mid-length (step 3) and at the boundary (step 2), then resumed
    for stop in ('3', '2'):
        b = tmp_path / f'stop{stop}'
        train.main(_args(data, b, '--stop-after', stop))
        assert not (b / 'model.pt').exists()
        train.main(_args(data, b, '--resume'))
        wb, _ = _weights(b / 'model.pt')
        for key in w:
            torch.testing.assert_close(wb[key], w[key], rtol=0, atol=1e-6)
        assert [r['step'] for r in _records(b) if r['kind'] == 'train'] == [0, 1, 2, 3]
    # the output exports like stage 3's
    from training.export import export

    manifest = json.loads(export(tmp_path / 'export', a / 'model.pt',
                                 size_model_instances=0).read_text())
    assert manifest['trained'] and 'video' in manifest['description']


def test_clips_longer_than_every_track_are_refused(tmp_path, data):
    with pytest.raises(SystemExit, match='clip length 13: 0 training'):
        train.main(_args(data, tmp_path / 'c', lengths='3,13'))
    assert not (tmp_path / 'c' / 'last.pt').exists()  # refused before any training
