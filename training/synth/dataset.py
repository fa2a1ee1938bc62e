"""Sharded synthetic data sets: deterministic writing and a loader without the generator.

A data set is a folder with ``manifest.json`` and shards ``shard_00000.npz``, ... Each shard is
a zip of ``.npy`` arrays (numpy's npz layout, readable by ``np.load``) whose first axis is
the sample index. Files are bit-identical for a seed: shard ``i`` draws all its randomness
from ``np.random.default_rng([seed, i])`` (so shards can be generated in any order or in
parallel), and the zip entries carry a fixed timestamp. Voxel grids are stored bit-packed
along z (``np.packbits``) and unpacked by the loader.

Image shard arrays are those of ``training.synth.images.SAMPLE_FIELDS`` (``voxels`` packed
as (B, V, V, V / 8) uint8); video shards are described in ``training.synth.videos``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
import hashlib
import io
import json
from pathlib import Path
from typing import Any
import zipfile

import numpy as np

MANIFEST = 'manifest.json'
FORMAT_VERSION = 1
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def shard_name(index: int) -> str:
    return f'shard_{index:05d}.npz'


def shard_rng(seed: int, index: int) -> np.random.Generator:
    """The random generator of shard ``index`` of a data set with ``seed``."""
    return np.random.default_rng([int(seed), int(index)])


def run_shard_jobs(job: Callable[[Any], tuple[int, int, str]], jobs: Sequence[Any],
                   workers: int, bar: Any) -> list[dict]:
    """Run ``job`` once per shard (``jobs[i]`` writes shard ``i``), in this process or in
    ``workers`` processes, advancing the progress ``bar`` by each shard's count.

    Args:
        job: picklable function of one job returning (shard index, count, sha256).

    Returns:
        The manifest's shard entries (file, count, sha256), in shard order.
    """
    results: dict[int, tuple[int, str]] = {}
    pool = ProcessPoolExecutor(max_workers=workers) if workers > 1 else None
    try:
        for i, c, sha in (pool.map(job, jobs) if pool is not None else map(job, jobs)):
            results[i] = (c, sha)
            bar.update(c)
    finally:
        if pool is not None:
            pool.shutdown()
    bar.close()
    return [{'file': shard_name(i), 'count': results[i][0], 'sha256': results[i][1]}
            for i in range(len(jobs))]


def write_npz(path: str | Path, arrays: dict[str, np.ndarray], compress: bool = True) -> str:
    """Write arrays as an npz file with fixed metadata (bit-identical for equal input).

    Returns:
        sha256 hex digest of the file.
    """
    path = Path(path)
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, 'w', compression=method, compresslevel=1 if compress else None,
                         allowZip64=True) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f'{name}.npy', date_time=_ZIP_DATE)
            info.compress_type = method
            info.external_attr = 0o644 << 16
            data = io.BytesIO()
            np.lib.format.write_array(data, np.ascontiguousarray(arrays[name]),
                                      allow_pickle=False)
            zf.writestr(info, data.getvalue())
    blob = buf.getvalue()
    tmp = path.with_suffix('.tmp')
    tmp.write_bytes(blob)
    tmp.replace(path)
    return hashlib.sha256(blob).hexdigest()


def stack_samples(samples: list[dict], pack_voxels: bool = True) -> dict[str, np.ndarray]:
    """Stack per-sample dicts (private keys starting with '_' dropped) into batch arrays."""
    if not samples:
        raise ValueError('no samples to stack')
    out = {}
    for key in samples[0]:
        if key.startswith('_'):
            continue
        arr = np.stack([np.asarray(s[key]) for s in samples])
        if key == 'voxels' and pack_voxels:
            arr = np.packbits(arr.astype(bool), axis=-1)
        out[key] = arr
    return out


def write_manifest(root: str | Path, manifest: dict) -> Path:
    path = Path(root) / MANIFEST
    path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + '\n', encoding='utf-8')
    return path


def read_manifest(root: str | Path) -> dict:
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f'{root} is not a synthetic data set: no {MANIFEST}')
    manifest = json.loads(path.read_text(encoding='utf-8'))
    if manifest.get('format_version', 0) > FORMAT_VERSION:
        raise ValueError(f'{path}: format {manifest["format_version"]} is newer than '
                         f'this loader ({FORMAT_VERSION})')
    return manifest


class ShardDataset:
    """Random access to the samples of a sharded data set, as dicts of numpy arrays.

    Loads whole shards lazily and keeps the ``cache_shards`` most recently used ones in
    memory; safe to use from DataLoader worker processes (each has its own cache).

    Example::

        ds = ShardDataset('datasets/chair_train_128')
        sample = ds[0]                 # {'image': (S, S, 3) uint8, 'keypoints_2d': ...}
        grid = ds.voxel_grid(0)        # perception_3dinn.voxels.VoxelGrid
    """

    def __init__(self, root: str | Path, cache_shards: int = 2,
                 fields: list[str] | None = None, verify: bool = False) -> None:
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        self.shards = self.manifest['shards']
        counts = np.array([s['count'] for s in self.shards], np.int64)
        self._starts = np.concatenate([[0], np.cumsum(counts)])
        self._cache: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self._cache_size = max(1, int(cache_shards))
        self.fields = fields
        if verify:
            self.verify()

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def kind(self) -> str:
        return self.manifest['kind']

    def verify(self) -> None:
        """Check every shard's sha256 against the manifest (raises ValueError)."""
        for s in self.shards:
            digest = hashlib.sha256((self.root / s['file']).read_bytes()).hexdigest()
            if digest != s['sha256']:
                raise ValueError(f'{s["file"]}: sha256 mismatch (corrupt or changed file)')

    def load_shard(self, index: int) -> dict[str, np.ndarray]:
        """All arrays of shard ``index`` (voxels unpacked to bool)."""
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        path = self.root / self.shards[index]['file']
        with np.load(path, allow_pickle=False) as z:
            names = z.files if self.fields is None else [f'{f}' for f in self.fields]
            data = {n.removesuffix('.npy'): z[n] for n in names}
        if 'voxels' in data and data['voxels'].dtype == np.uint8:
            v = self.manifest.get('voxel_grid', {}).get('size', 32)
            data['voxels'] = np.unpackbits(data['voxels'], axis=-1, count=v).astype(bool)
        self._cache[index] = data
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return data

    def locate(self, index: int) -> tuple[int, int]:
        """(shard, row) of a sample index."""
        if not -len(self) <= index < len(self):
            raise IndexError(f'index {index} out of range for {len(self)} samples')
        index %= len(self)
        shard = int(np.searchsorted(self._starts, index, side='right') - 1)
        return shard, int(index - self._starts[shard])

    def __getitem__(self, index: int) -> dict[str, Any]:
        shard, row = self.locate(int(index))
        data = self.load_shard(shard)
        return {k: v[row] for k, v in data.items()}

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def voxel_grid(self, index: int):
        """The sample's voxels as a :class:`perception_3dinn.voxels.VoxelGrid`."""
        from perception_3dinn.voxels import VoxelGrid

        g = self.manifest['voxel_grid']
        return VoxelGrid(self[index]['voxels'], g['resolution'], np.array(g['origin']))
