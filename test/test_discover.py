"""The discover CLI trains KeypointNet on two tiny box meshes and writes its files."""

import json

import torch
import trimesh

from perception_3dinn.models.keypointnet import KeypointNetConfig, KeypointNetModel
from training import discover
from training.synth.meshes import load_mesh_folder


def test_discover_runs_on_two_boxes(tmp_path):
    torch.set_num_threads(1)
    meshes = tmp_path / 'meshes'
    meshes.mkdir()
    trimesh.creation.box((2.0, 1.0, 0.6)).export(str(meshes / 'a.obj'))
    trimesh.creation.box((1.0, 1.0, 1.5)).export(str(meshes / 'b.stl'))
    (meshes / 'broken.ply').write_bytes(b'')
    out = tmp_path / 'run'
    discover.main(['--meshes', str(meshes), '--category', 'boxes', '--out', str(out),
                   '--steps', '4', '--batch', '2', '--size', '32', '--keypoints', '3',
                   '--channels', '4', '--val-pairs', '4', '--eval-every', '2',
                   '--log-every', '1', '--threads', '1', '--up', 'z'])
    for name in ('model.pt', 'loss.png', 'log.jsonl', 'summary.json'):
        assert (out / name).is_file(), name
    recs = [json.loads(line) for line in (out / 'log.jsonl').read_text().splitlines()]
    assert [r['step'] for r in recs if r['kind'] == 'train'] == [0, 1, 2, 3]
    assert [r['step'] for r in recs if r['kind'] == 'val'] == [2, 4]
    assert all(r['loss'] > 0 and r['pose'] >= 0 for r in recs if r['kind'] == 'train')
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['skipped'][0][0] == 'broken.ply' and len(summary['loaded']) == 2
    assert summary['val_split'] == 'training meshes'
    assert 0.0 <= summary['metrics']['rot_err_median_deg'] <= 180.0
    payload = torch.load(out / 'model.pt', weights_only=False)
    model = KeypointNetModel(KeypointNetConfig.from_dict(payload['config']))
    model.load_state_dict(payload['state_dict'])
    assert payload['step'] == 4 and model.config.num_keypoints == 3
    assert payload['loss_weights']['pose'] == 0.2
    # two meshes are too few for bases: said so, no category file, the model is kept
    assert 'at least 3' in json.loads((out / 'evaluation.json').read_text())['skipped']
    assert not (out / 'boxes.json').exists()


def test_demo_meshes_load(tmp_path):
    discover.write_demo_meshes(tmp_path, count=3)
    found, report = load_mesh_folder(tmp_path)
    assert len(found) == 3 and not report.skipped
