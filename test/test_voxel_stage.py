"""The voxels training stage runs, resumes and writes its files (tiny sizes)."""

import json

import torch

from perception_3dinn.models import load_voxel_checkpoint
from training import train

ARGS = ['voxels', '--steps', '6', '--batch', '4', '--train-size', '12', '--val-size', '6',
        '--test-size', '6', '--eval-every', '3', '--log-every', '1', '--channels', '8,8,8']


def test_voxel_stage_runs_resumes_and_writes(tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / 'run'
    train.main(ARGS + ['--out', str(out), '--stop-after', '3'])
    assert (out / 'last.pt').is_file() and not (out / 'model.pt').exists()
    train.main(ARGS + ['--out', str(out), '--resume'])
    for name in ('model.pt', 'loss.png', 'metrics.json', 'log.jsonl'):
        assert (out / name).is_file(), name
    steps = [json.loads(line)['step'] for line in (out / 'log.jsonl').read_text().splitlines()
             if json.loads(line)['kind'] == 'train']
    assert steps == list(range(6))
    metrics = json.loads((out / 'metrics.json').read_text())
    assert 0.0 <= metrics['test_iou@threshold'] <= 1.0
    assert 0.0 < metrics['skeleton_tube_test_iou'] < 1.0
    model, payload = load_voxel_checkpoint(out / 'model.pt')
    assert payload['step'] == 6 and payload['grid']['size'] == 32
    assert model.config.channels == (8, 8, 8)
