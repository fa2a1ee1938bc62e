"""Data set files: bit-identical for a seed, loadable without the generator, CLI + preview."""

import hashlib
import json
import zipfile

import cv2
import numpy as np
import pytest

from perception_3dinn.skeleton import load_category
from perception_3dinn.voxels import VoxelGrid
from training import synthesize
from training.synth import dataset
from training.synth.generate import generate_image_dataset
from training.synth.images import ImageConfig


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope='module')
def small_set(tmp_path_factory):
    out = tmp_path_factory.mktemp('ds') / 'a'
    generate_image_dataset('chair', 7, out, seed=9, config=ImageConfig(size=64), shard_size=4,
                           workers=1, progress=False)
    return out


def test_two_runs_identical_files(small_set, tmp_path):
    again = tmp_path / 'b'
    generate_image_dataset('chair', 7, again, seed=9, config=ImageConfig(size=64),
                           shard_size=4, workers=2, progress=False)
    names = sorted(p.name for p in small_set.iterdir())
    assert names == sorted(p.name for p in again.iterdir())
    assert names == ['manifest.json', 'shard_00000.npz', 'shard_00001.npz']
    for n in names:
        assert (small_set / n).read_bytes() == (again / n).read_bytes(), n
    other = tmp_path / 'c'
    generate_image_dataset('chair', 7, other, seed=10, config=ImageConfig(size=64),
                           shard_size=4, progress=False)
    assert _sha(other / 'shard_00000.npz') != _sha(small_set / 'shard_00000.npz')


def test_manifest_and_loader(small_set):
    manifest = json.loads((small_set / 'manifest.json').read_text())
    assert manifest['count'] == 7 and manifest['seed'] == 9
    assert [s['count'] for s in manifest['shards']] == [4, 3]
    for s in manifest['shards']:
        assert _sha(small_set / s['file']) == s['sha256']
    ds = dataset.ShardDataset(small_set, verify=True)
    assert len(ds) == 7 and ds.kind == 'images'
    sizes = {'S': 64, 'N': 10, 'K': load_category('chair').num_bases, 'V': 32}
    for i in (0, 3, 4, 6, -1):
        sample = ds[i]
        for name, spec in manifest['fields'].items():
            shape = tuple(sizes.get(d, d) for d in spec['shape'])
            assert sample[name].shape == shape, name
            assert sample[name].dtype == np.dtype(spec['dtype']), name
    with pytest.raises(IndexError):
        ds[7]
    # Plain numpy reads the shards too (no generator code involved).
    with np.load(small_set / 'shard_00001.npz') as z:
        np.testing.assert_array_equal(z['image'][2], ds[6]['image'])
        np.testing.assert_array_equal(np.unpackbits(z['voxels'][0], axis=-1).astype(bool),
                                      ds[4]['voxels'])
    grid = ds.voxel_grid(5)
    assert isinstance(grid, VoxelGrid) and grid.shape == (32, 32, 32)
    assert set(np.unique(grid.occupancy)) <= {0, 255}
    np.testing.assert_allclose(grid.origin, manifest['voxel_grid']['origin'])


def test_corrupt_shard_detected(small_set, tmp_path):
    import shutil

    copy = tmp_path / 'copy'
    shutil.copytree(small_set, copy)
    data = bytearray((copy / 'shard_00000.npz').read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / 'shard_00000.npz').write_bytes(bytes(data))
    with pytest.raises(ValueError, match='sha256'):
        dataset.ShardDataset(copy, verify=True)
    with pytest.raises(FileNotFoundError, match='manifest'):
        dataset.ShardDataset(tmp_path)


def test_write_npz_fixed_metadata(tmp_path):
    arrays = {'b': np.arange(5, dtype=np.int16), 'a': np.eye(2)}
    h1 = dataset.write_npz(tmp_path / 'x.npz', arrays)
    h2 = dataset.write_npz(tmp_path / 'y.npz', dict(reversed(list(arrays.items()))))
    assert h1 == h2 == _sha(tmp_path / 'x.npz')
    with zipfile.ZipFile(tmp_path / 'x.npz') as zf:
        assert [i.date_time for i in zf.infolist()] == [(1980, 1, 1, 0, 0, 0)] * 2
    with np.load(tmp_path / 'x.npz') as z:
        np.testing.assert_array_equal(z['b'], arrays['b'])


def test_cli_images_with_preview(tmp_path, capsys):
    out, sheet = tmp_path / 'cli', tmp_path / 'sheet.png'
    synthesize.main(['images', '--category', 'chair', '--count', '6', '--out', str(out),
                     '--seed', '4', '--size', '96', '--preview', str(sheet)])
    assert 'wrote 6 images' in capsys.readouterr().out
    img = cv2.imread(str(sheet))
    assert img is not None and img.shape[0] > 150 and img.shape[1] > 900
    assert img.std() > 10  # drawn content, not a blank canvas
    assert len(dataset.ShardDataset(out)) == 6


def test_cli_rejects_bad_count(tmp_path):
    with pytest.raises(SystemExit):
        synthesize.main(['images', '--count', '0', '--out', str(tmp_path)])


def test_cli_heatmaps_uses_sampler(tmp_path, capsys):
    out = tmp_path / 'hm'
    synthesize.main(['heatmaps', '--category', 'chair', '--count', '5', '--out', str(out),
                     '--seed', '2', '--shard-size', '3', '--preview', str(tmp_path / 'h.png')])
    assert 'wrote 5 heatmap samples' in capsys.readouterr().out
    ds = dataset.ShardDataset(out, verify=True)
    assert ds.kind == 'heatmaps' and len(ds) == 5
    s = ds[4]
    assert s['heatmaps'].shape == (10, 32, 32) and s['keypoints'].shape == (10, 2)
    assert cv2.imread(str(tmp_path / 'h.png')) is not None
