"""The shape stage (image -> style code, with the decoder trained or frozen) runs, resumes
and writes a shape model; evaluation and the mask-only silhouette stage use it."""

import json

import numpy as np
import pytest
import torch

from perception_3dinn.models import load_voxel_checkpoint
from perception_3dinn.models.checkpoint import load_shape_checkpoint
from training import train
from training.synth.generate import generate_image_dataset
from training.synth.images import ImageConfig


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp('shape')
    generate_image_dataset('chair', 10, root / 'images', seed=4, config=ImageConfig(),
                           shard_size=5, progress=False)
    train.main(['voxels', '--steps', '2', '--batch', '4', '--train-size', '6', '--val-size',
                '3', '--test-size', '3', '--eval-every', '2', '--channels', '8,8,8',
                '--out', str(root / 'voxels')])
    train.main(['shape', '--data', str(root / 'images'), '--voxels',
                str(root / 'voxels/model.pt'), '--steps', '2', '--batch', '3', '--val-size', '3',
                '--eval-every', '2', '--style-channels', '4,4,4,4,4',
                '--out', str(root / 'shape_base')])
    return root


def test_shape_stage_runs_resumes_and_trains_or_freezes_the_decoder(runs):
    args = ['shape', '--data', str(runs / 'images'), '--voxels', str(runs / 'voxels/model.pt'),
            '--steps', '4', '--batch', '3', '--val-size', '3', '--eval-every', '2',
            '--log-every', '1', '--style-channels', '4,4,4,4,4', '--out', str(runs / 'shape')]
    train.main(args + ['--stop-after', '2'])
    assert (runs / 'shape/last.pt').is_file() and not (runs / 'shape/model.pt').exists()
    train.main(args + ['--resume'])
    for name in ('model.pt', 'loss.png', 'metrics.json', 'log.jsonl'):
        assert (runs / 'shape' / name).is_file(), name
    log = [json.loads(line) for line in (runs / 'shape/log.jsonl').read_text().splitlines()]
    assert [r['step'] for r in log if r['kind'] == 'train'] == [0, 1, 2, 3]
    assert all(np.isfinite(r['loss']) and r['style'] >= 0 for r in log if r['kind'] == 'train')
    metrics = json.loads((runs / 'shape/metrics.json').read_text())
    assert metrics['val_size'] == 3 and metrics['train_size'] == 7
    assert 0.0 <= metrics['val_iou@0.5'] <= 1.0 and 0.0 < metrics['val_ap_3d'] <= 1.0
    shape, payload = load_shape_checkpoint(runs / 'shape/model.pt')
    ae, vpayload = load_voxel_checkpoint(runs / 'voxels/model.pt')
    assert payload['grid'] == vpayload['grid']
    # By default the decoder trains with the style encoder; --freeze-decoder keeps it.
    assert not torch.equal(shape.decoder.fc.weight, ae.decoder.fc.weight)
    train.main(args[:-1] + [str(runs / 'shape_frozen'), '--steps', '1', '--freeze-decoder'])
    frozen, _ = load_shape_checkpoint(runs / 'shape_frozen/model.pt')
    for k, v in ae.decoder.state_dict().items():
        assert torch.equal(frozen.decoder.state_dict()[k], v), k
    image = torch.zeros(2, 3, 128, 128)
    with torch.no_grad():
        occ = shape(image, torch.zeros(2, ae.config.num_bases))
    assert occ.shape == (2, 32, 32, 32) and float(occ.min()) >= 0 and float(occ.max()) <= 1


def test_shape_checkpoint_reader_names_the_file(tmp_path):
    bad = tmp_path / 'not_shape.pt'
    torch.save({'format': 'something else'}, bad)
    with pytest.raises(ValueError, match='not_shape.pt is not a perception_3dinn shape'):
        load_shape_checkpoint(bad)


def test_evaluate_writes_voxel_metrics_for_both_methods(runs, tmp_path):
    from training import evaluate

    evaluate.main(['--checkpoint', 'perception_3dinn/data/models/chair/model.pt', '--data',
                   str(runs / 'images'), '--out', str(tmp_path / 'eval'), '--no-baselines',
                   '--shape', str(runs / 'shape_base/model.pt')])
    res = json.loads((tmp_path / 'eval/metrics.json').read_text())
    vox = res['voxels']
    shape_metrics = json.loads((runs / 'shape_base/metrics.json').read_text())
    assert vox['learned']['threshold'] == shape_metrics['threshold']
    for method in ('learned', 'skeleton_tubes'):
        for key in ('iou', 'ap_3d', 'ap_2d', 'iou_2d'):
            assert 0.0 <= vox[method][key] <= 1.0, (method, key)
    # The skeleton tubes of the INN's structure are a real shape: their silhouette, seen by
    # the INN's own pose, overlaps the rendered masks.
    assert vox['skeleton_tubes']['iou_2d'] > 0.2
    assert vox['rotation_geodesic_median_deg'] == res['methods']['3d-inn'][
        'geodesic_median_deg']
    assert (tmp_path / 'eval/voxels.png').stat().st_size > 10_000


def test_silhouette_stage_trains_from_masks_and_skips_bad_ones(runs, tmp_path):
    """Masks only: a sample with an empty mask and one with a full mask are named and left
    out; the run resumes; the INN and style encoder change, the decoder does not."""
    from training.synth.dataset import ShardDataset

    root = tmp_path / 'masks'
    generate_image_dataset('chair', 6, root, seed=5, config=ImageConfig(occluder_prob=0.0),
                           shard_size=6, progress=False)
    ds = ShardDataset(root)
    shard = root / ds.shards[0]['file']
    arrays = dict(np.load(shard))
    assert arrays['mask'].shape == (6, 128, 128)
    arrays['mask'][1] = 0
    arrays['mask'][4] = 1
    np.savez_compressed(shard, **arrays)
    out = tmp_path / 'sil'
    args = ['silhouette', '--data', str(root), '--val-data', str(runs / 'images'),
            '--val-size', '4', '--shape', str(runs / 'shape_base/model.pt'), '--steps', '4',
            '--batch', '2', '--eval-every', '2', '--log-every', '1', '--depth-samples', '16',
            '--anchor-weight', '0.5', '--out', str(out)]
    train.main(args + ['--stop-after', '2'])
    train.main(args + ['--resume'])
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['skipped'] == 2 and metrics['train_size'] == 4
    reasons = ' '.join(metrics['skipped_samples'])
    assert 'sample 1: empty mask' in reasons and 'sample 4: mask covers the whole image' in \
        reasons and ds.shards[0]['file'] in reasons
    assert 0.0 <= metrics['val_iou_2d'] <= 1.0 and metrics['val_iou_2d'] >= \
        metrics['start']['val_iou_2d']
    from perception_3dinn.models import load_checkpoint

    inn, payload = load_checkpoint(out / 'model.pt')
    assert payload['stage'] == 'silhouette'
    tuned, _ = load_shape_checkpoint(out / 'shape.pt')
    before, _ = load_shape_checkpoint(runs / 'shape_base/model.pt')
    for k, v in before.decoder.state_dict().items():
        assert torch.equal(tuned.decoder.state_dict()[k], v), k
    log = [json.loads(line) for line in (out / 'log.jsonl').read_text().splitlines()]
    assert [r['step'] for r in log if r['kind'] == 'train'] == [0, 1, 2, 3]
    assert (out / 'loss.png').is_file()


def test_anchor_loss_is_zero_at_the_start_model_and_grows_away_from_it(runs):
    """The silhouette stage's anchor: squared distance to the start model's own structure (in
    alpha_std units) and style, checked against a float64 numpy computation."""
    from argparse import Namespace
    import copy

    from perception_3dinn.models import load_checkpoint
    from perception_3dinn.skeleton import load_category
    from training.shape_stage import inn_path
    from training.silhouette_stage import anchor_loss

    inn, _ = load_checkpoint(inn_path(Namespace(inn='', category='chair')))
    shape, _ = load_shape_checkpoint(runs / 'shape_base/model.pt')
    inn.eval()
    shape.eval()
    x = torch.randn(3, 3, 128, 128)
    std = torch.tensor(load_category('chair').alpha_std, dtype=torch.float32)
    with torch.no_grad():
        alpha, style = inn(x)[1], shape.style_encoder(x)
        assert anchor_loss(alpha, style, inn, shape, x, std).item() == pytest.approx(0, abs=1e-9)
        da, ds = torch.randn_like(alpha), torch.randn_like(style)
        got = anchor_loss(alpha + da, style + ds, copy.deepcopy(inn), shape, x, std).item()
    want = (((da.double() / std.double()) ** 2).sum(1) + (ds.double() ** 2).sum(1)).mean()
    assert got == pytest.approx(want.item(), rel=1e-5)
