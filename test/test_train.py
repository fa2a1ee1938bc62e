"""Tests of training.train: the stages run, write checkpoints/plots, and resume exactly."""

import json

import numpy as np
import pytest
import torch

from perception_3dinn.models import load_checkpoint
from training import train


def _weights(path):
    model, payload = load_checkpoint(path)
    return {k: v.clone() for k, v in model.state_dict().items()}, payload


ARGS = ['interpreter', '--steps', '6', '--eval-every', '3', '--val-size', '16',
        '--batch', '8', '--log-every', '1']


def test_interpreter_stage_runs_and_resumes(tmp_path):
    torch.set_num_threads(1)
    a, b = tmp_path / 'a', tmp_path / 'b'
    train.main(ARGS + ['--out', str(a)])
    for name in ('model.pt', 'last.pt', 'loss.png', 'log.jsonl', 'summary.json'):
        assert (a / name).is_file()
    wa, payload = _weights(a / 'model.pt')
    assert payload['stage'] == 'interpreter' and payload['step'] == 6
    assert payload['category']['name'] == 'chair'
    assert 'structure_ar' in json.loads((a / 'summary.json').read_text())['metrics']
    # Interrupted after 3 steps, then resumed: the same weights as the straight run.
    train.main(ARGS + ['--out', str(b), '--stop-after', '3'])
    assert not (b / 'model.pt').exists()
    train.main(ARGS + ['--out', str(b), '--resume'])
    wb, _ = _weights(b / 'model.pt')
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=0, atol=1e-6)
    steps = [r['step'] for r in map(json.loads, (b / 'log.jsonl').read_text().splitlines())
             if r['kind'] == 'train']
    assert steps == sorted(set(steps)) == list(range(6))
    # The interpreter learned something in 6 steps: weights moved from the initial ones.
    model0 = train.build_model(train.load_category('chair'))
    moved = [not torch.equal(model0.state_dict()[k], wa[k]) for k in wa
             if k.startswith('interpreter.fc')]
    assert all(moved)


def test_interpreter_widths_from_the_command_line(tmp_path):
    torch.set_num_threads(1)
    train.main(ARGS + ['--out', str(tmp_path / 'w'), '--hidden', '64,32',
                       '--coord-hidden', '48'])
    model, _ = load_checkpoint(tmp_path / 'w' / 'model.pt')
    cfg = model.config.interpreter
    assert cfg.hidden == (64, 32) and cfg.coord_hidden == (48,)
    assert [m.out_features for m in model.interpreter.fc if hasattr(m, 'out_features')] \
        == [64, 32]
    assert model.interpreter.coord[0].out_features == 48
    for bad in ('64,x', '0'):
        with pytest.raises(SystemExit):
            train.main(ARGS + ['--out', str(tmp_path / 'bad'), '--hidden', bad])
    # a checkpoint keeps its widths: asking for others with --init is refused, not ignored
    with pytest.raises(SystemExit, match='--init'):
        train.main(ARGS + ['--out', str(tmp_path / 'init'), '--hidden', '128',
                           '--init', str(tmp_path / 'w' / 'model.pt')])


def test_interpreter_loss_is_zero_at_ground_truth():
    """Raw outputs equal to the targets give (near) zero loss except the perturbation."""
    from training.losses import interpreter_loss, interpreter_targets
    from training.synth.heatmap_sampler import HeatmapSampler, SamplerConfig

    cat = train.load_category('chair')
    model = train.build_model(cat)
    sampler = HeatmapSampler(cat, SamplerConfig(perturb_std=0.0), seed=3)
    batch = train.to_torch(sampler.sample(16))
    raw = interpreter_targets(model.interpreter, batch)
    loss, terms = interpreter_loss(model.interpreter, raw, batch, model.projection.bases)
    assert float(loss) < 1e-3, terms
    noisy = raw + 0.3 * torch.randn_like(raw)
    assert float(interpreter_loss(model.interpreter, noisy, batch,
                                  model.projection.bases)[0]) > 100 * float(loss)


def test_structure_loss_is_zero_at_the_truth_and_flip_invariant():
    """The shape loss vanishes at the true coefficients and grows away from them; the
    bases are mirror-symmetric (left/right keypoints swapped, lateral y negated), so a
    horizontally flipped crop shows a chair with the same coefficients."""
    from perception_3dinn.models.projection import structure_from_alpha
    from training.losses import structure_loss

    cat = train.load_category('chair')
    model = train.build_model(cat)
    bases, std = model.projection.bases, model.interpreter.alpha_std
    alpha = torch.randn(8, cat.num_bases) * std
    assert float(structure_loss(alpha, alpha, std, bases)) == 0.0
    assert float(structure_loss(alpha + 0.2 * std, alpha, std, bases)) > 0.01
    y = structure_from_alpha(alpha, bases)
    mirrored = y[:, list(cat.flip_permutation)] * torch.tensor([1.0, -1.0, 1.0])
    torch.testing.assert_close(mirrored, y, rtol=0, atol=1e-5)


@pytest.fixture(scope='module')
def tiny_dataset(tmp_path_factory):
    from training.synth.generate import generate_image_dataset
    from training.synth.images import ImageConfig

    root = tmp_path_factory.mktemp('data') / 'chair_tiny'
    generate_image_dataset('chair', 12, root, seed=5, config=ImageConfig(voxels=False),
                           shard_size=6, progress=False)
    return root


def _three_stages(out, data, common, finetune_extra=(), suffix=''):
    """Run stage 1, stage 2, then stage 3 from the two (into out/k, out/i, out/f + suffix)."""
    train.main(['keypoints', '--data', str(data), '--out', str(out / f'k{suffix}'),
                '--val-size', '4'] + common)
    train.main(['interpreter', '--out', str(out / f'i{suffix}'), '--val-size', '8'] + common)
    train.main(['finetune', '--data', str(data), '--out', str(out / f'f{suffix}'),
                '--keypoints', str(out / f'k{suffix}' / 'model.pt'),
                '--interpreter', str(out / f'i{suffix}' / 'model.pt'),
                '--synthetic-batch', '4', *finetune_extra] + common)


def test_keypoints_and_finetune_stages(tmp_path, tiny_dataset):
    torch.set_num_threads(1)
    common = ['--steps', '2', '--eval-every', '2', '--batch', '4', '--log-every', '1']
    _three_stages(tmp_path, tiny_dataset, common)
    wk, _ = _weights(tmp_path / 'k' / 'model.pt')
    wi, _ = _weights(tmp_path / 'i' / 'model.pt')
    merged = train.merge_stages(str(tmp_path / 'k' / 'model.pt'),
                                str(tmp_path / 'i' / 'model.pt')).state_dict()
    for key in merged:
        ref = wk[key] if key.startswith('keypoint_net') else wi[key]
        torch.testing.assert_close(merged[key], ref, rtol=0, atol=0)
    wf, payload = _weights(tmp_path / 'f' / 'model.pt')
    assert payload['stage'] == 'finetune'
    # --w-structure adds the images' own shape to the loss (logged); 0 leaves it out
    train.main(['finetune', '--data', str(tiny_dataset), '--out', str(tmp_path / 'fs'),
                '--keypoints', str(tmp_path / 'k' / 'model.pt'),
                '--interpreter', str(tmp_path / 'i' / 'model.pt'),
                '--synthetic-batch', '4', '--w-structure', '5'] + common)
    logs = {name: [r for r in map(json.loads, (tmp_path / name / 'log.jsonl').read_text()
                                  .splitlines()) if r['kind'] == 'train']
            for name in ('f', 'fs')}
    assert all(r['structure'] == 0.0 for r in logs['f'])
    assert all(r['structure'] > 0.0 for r in logs['fs'])
    assert logs['fs'][0]['loss'] > logs['f'][0]['loss']
    assert any(not torch.equal(wf[k], merged[k]) for k in wf if k.startswith('keypoint_net'))
    assert (tmp_path / 'f' / 'loss.png').is_file()
    # continuing the keypoint net with --refine adds the bottleneck; merging it with an
    # interpreter checkpoint that has none carries the bottleneck over
    train.main(['keypoints', '--data', str(tiny_dataset), '--out', str(tmp_path / 'kr'),
                '--val-size', '4', '--init', str(tmp_path / 'k' / 'model.pt'), '--refine']
               + common)
    wr, _ = _weights(tmp_path / 'kr' / 'model.pt')
    assert any(k.startswith('refine.') for k in wr)
    merged = train.merge_stages(str(tmp_path / 'kr' / 'model.pt'),
                                str(tmp_path / 'i' / 'model.pt'))
    assert merged.config.refine is not None
    for key, value in merged.state_dict().items():
        if key.startswith(('keypoint_net', 'refine')):
            torch.testing.assert_close(value, wr[key], rtol=0, atol=0)


def test_keypoints_and_joint_finetune_resume_exactly(tmp_path, tiny_dataset):
    """--stop-after then --resume gives the straight run's weights in stages 1 and 3."""
    torch.set_num_threads(1)
    common = ['--steps', '4', '--eval-every', '2', '--batch', '4', '--log-every', '1']
    train.main(['interpreter', '--out', str(tmp_path / 'i'), '--val-size', '8'] + common)
    kp = ['keypoints', '--data', str(tiny_dataset), '--val-size', '4'] + common
    train.main(kp + ['--out', str(tmp_path / 'k')])
    ft = ['finetune', '--data', str(tiny_dataset), '--keypoints', str(tmp_path / 'k' / 'model.pt'),
          '--interpreter', str(tmp_path / 'i' / 'model.pt'), '--synthetic-batch', '4'] + common
    train.main(ft + ['--out', str(tmp_path / 'f')])
    for args, name in ((kp, 'k'), (ft, 'f')):
        out = str(tmp_path / f'{name}2')
        train.main(args + ['--out', out, '--stop-after', '2'])
        assert not (tmp_path / f'{name}2' / 'model.pt').exists()
        train.main(args + ['--out', out, '--resume'])
        straight, _ = _weights(tmp_path / name / 'model.pt')
        resumed, _ = _weights(tmp_path / f'{name}2' / 'model.pt')
        for key in straight:
            torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=1e-6)


def test_finetune_with_frozen_keypoints(tmp_path, tiny_dataset):
    """Only the interpreter trains; the keypoint net is bit-identical; resumable exactly."""
    torch.set_num_threads(1)
    common = ['--steps', '4', '--eval-every', '2', '--batch', '4', '--log-every', '1']
    train.main(['keypoints', '--data', str(tiny_dataset), '--out', str(tmp_path / 'k'),
                '--val-size', '4', '--refine'] + common)
    train.main(['interpreter', '--out', str(tmp_path / 'i'), '--val-size', '8'] + common)
    args = ['finetune', '--data', str(tiny_dataset), '--keypoints',
            str(tmp_path / 'k' / 'model.pt'), '--interpreter', str(tmp_path / 'i' / 'model.pt'),
            '--synthetic-batch', '4', '--w-structure', '5', '--frozen-keypoints',
            '--passes', '2'] + common
    train.main(args + ['--out', str(tmp_path / 'f')])
    wk, _ = _weights(tmp_path / 'k' / 'model.pt')
    wi, _ = _weights(tmp_path / 'i' / 'model.pt')
    wf, payload = _weights(tmp_path / 'f' / 'model.pt')
    assert payload['stage'] == 'finetune' and payload['extra']['frozen_keypoints']
    for key in wf:
        if key.startswith(('keypoint_net', 'refine')):
            assert torch.equal(wf[key], wk[key]), key
    assert any(not torch.equal(wf[k], wi[k]) for k in wf if k.startswith('interpreter.'))
    logs = [r for r in map(json.loads, (tmp_path / 'f' / 'log.jsonl').read_text()
                           .splitlines()) if r['kind'] == 'train']
    assert len(logs) == 4 and all(r['structure'] > 0 and r['heatmap'] == 0 for r in logs)
    # interrupted after 2 steps and resumed: the same weights as the straight run
    train.main(args + ['--out', str(tmp_path / 'g'), '--stop-after', '2'])
    train.main(args + ['--out', str(tmp_path / 'g'), '--resume'])
    wg, _ = _weights(tmp_path / 'g' / 'model.pt')
    for key in wf:
        torch.testing.assert_close(wg[key], wf[key], rtol=0, atol=1e-6)
    with pytest.raises(SystemExit, match='passes'):
        train.main(args[:-len(common)] + ['--passes', '0', '--out', str(tmp_path / 'h')]
                   + common)


def test_worker_processes_give_the_same_training(tmp_path, tiny_dataset):
    """--workers 2 makes each step's batch in another process from the same (seed, step):
    the weights after training equal those of in-process batches, in every stage."""
    torch.set_num_threads(1)
    common = ['--steps', '3', '--eval-every', '3', '--batch', '4', '--log-every', '1']
    for workers in ('0', '2'):
        _three_stages(tmp_path, tiny_dataset, common + ['--workers', workers],
                      ['--w-structure', '1'], suffix=workers)
    for stage in 'kif':
        w0, _ = _weights(tmp_path / f'{stage}0' / 'model.pt')
        w2, _ = _weights(tmp_path / f'{stage}2' / 'model.pt')
        assert w0.keys() == w2.keys()
        for key in w0:
            torch.testing.assert_close(w2[key], w0[key], rtol=0, atol=0)
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match='no CUDA'):
            train.main(['interpreter', '--out', str(tmp_path / 'c'), '--device', 'cuda']
                       + common)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device for torch')
def test_every_stage_trains_on_cuda(tmp_path, tiny_dataset):
    """Two steps of each stage with --device cuda; the checkpoints load on the CPU."""
    common = ['--steps', '2', '--eval-every', '2', '--batch', '4', '--log-every', '1',
              '--device', 'cuda', '--workers', '1']
    _three_stages(tmp_path, tiny_dataset, common, ['--w-structure', '1'])
    for stage in 'kif':
        weights, payload = _weights(tmp_path / stage / 'model.pt')
        assert payload['step'] == 2
        assert all(v.device.type == 'cpu' and torch.isfinite(v).all() for v in weights.values())


def test_crop_sampler_keypoints_follow_the_image(tiny_dataset):
    """Augmented crops move keypoints with the pixels: a bright dot drawn at a keypoint
    lands at the transformed keypoint."""
    from training.inn_data import CropSampler

    cat = train.load_category('chair')
    data = train.load_images(tiny_dataset)
    sample = {k: v[0] for k, v in data.items()}
    img = np.zeros_like(sample['image'])
    u, v = np.round(sample['keypoints_2d'][8]).astype(int)
    img[v - 1:v + 2, u - 1:u + 2] = 255
    sample['image'] = img
    sample['keypoints_2d'] = np.tile(np.array([u, v], np.float32), (10, 1))
    crops = CropSampler(cat)
    crops.augment = crops.augment.__class__(brightness=0, contrast=0, saturation=0,
                                            gray_prob=0, noise_std=0)
    for seed in range(4):
        c = crops.crop(sample, np.random.default_rng(seed))
        gray = c['image'].astype(float).mean(-1)
        if gray.max() < 50:
            continue
        peak = np.array(np.unravel_index(gray.argmax(), gray.shape))[::-1]
        centroid = np.array([(gray * np.arange(128)[None]).sum(), (gray * np.arange(128)[:,
                            None]).sum()]) / gray.sum()
        assert np.linalg.norm(centroid - c['keypoints'][0]) < 1.0, (peak, c['keypoints'][0])
