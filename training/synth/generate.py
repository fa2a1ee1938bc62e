"""Generate sharded image data sets (parallel over shards, deterministic per seed)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from perception_3dinn.skeleton import load_category
from perception_3dinn.voxels import grid_for_dimensions
from training.synth import dataset
from training.synth.images import ImageConfig, render_sample, SAMPLE_FIELDS, VOXEL_SIZE
from training.synth.procedural import GENERATOR_VERSION
from training.synth.render import list_backgrounds


def _category_sha(name: str) -> str:
    from perception_3dinn.skeleton import CATEGORY_DIR

    path = Path(name) if str(name).endswith('.json') else CATEGORY_DIR / f'{name}.json'
    return hashlib.sha256(path.read_bytes()).hexdigest()


def render_image_shard(category: str, seed: int, index: int, count: int,
                       config: ImageConfig) -> list[dict]:
    """The ``count`` samples of shard ``index`` (deterministic for (seed, index))."""
    cat = load_category(category)
    rng = dataset.shard_rng(seed, index)
    backgrounds = list_backgrounds(config.background_dir)
    return [render_sample(cat, rng, config, backgrounds) for _ in range(count)]


def _image_shard_job(args: tuple) -> tuple[int, int, str]:
    category, seed, index, count, config, out = args
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    import cv2

    cv2.setNumThreads(1)
    samples = render_image_shard(category, seed, index, count, config)
    sha = dataset.write_npz(Path(out) / dataset.shard_name(index),
                            dataset.stack_samples(samples))
    return index, count, sha


def shard_counts(count: int, shard_size: int) -> list[int]:
    if count <= 0 or shard_size <= 0:
        raise ValueError('count and shard_size must be positive')
    full, rest = divmod(count, shard_size)
    return [shard_size] * full + ([rest] if rest else [])


def render_shards(job, category: str, count: int, out: Path, seed: int, job_config,
                  shard_size: int, workers: int, progress: bool, what: str,
                  unit: str) -> list[dict]:
    """Run ``job((category, seed, index, count, job_config, out))`` for every shard of
    ``count`` samples (``workers`` processes) with a progress bar; the manifest's shard list."""
    out.mkdir(parents=True, exist_ok=True)
    counts = shard_counts(count, shard_size)
    jobs = [(category, seed, i, c, job_config, str(out)) for i, c in enumerate(counts)]
    bar = tqdm(total=count, desc=f'{category} {what}', unit=unit, disable=not progress)
    return dataset.run_shard_jobs(job, jobs, workers, bar)


def manifest_head(kind: str, generator: str, category: str, seed: int, count: int,
                  shard_size: int) -> dict:
    """The fields every data set manifest starts with."""
    return {
        'format_version': dataset.FORMAT_VERSION,
        'kind': kind,
        'generator': generator,
        'generator_version': GENERATOR_VERSION,
        'category': category,
        'category_sha256': _category_sha(category),
        'seed': seed,
        'count': count,
        'shard_size': shard_size,
    }


def generate_image_dataset(category: str, count: int, out: str | Path, seed: int,
                           config: ImageConfig | None = None, shard_size: int = 500,
                           workers: int = 1, progress: bool = True) -> dict:
    """Render ``count`` labelled images into ``out`` (shards + manifest.json).

    Returns:
        The manifest.
    """
    config = config or ImageConfig()
    out = Path(out)
    cat = load_category(category)
    shards = render_shards(_image_shard_job, category, count, out, seed, config, shard_size,
                           workers, progress, 'images', 'img')
    res, origin = grid_for_dimensions(cat.dimensions_m, VOXEL_SIZE)
    sizes = {'S': config.size, 'N': cat.num_keypoints, 'K': cat.num_bases, 'V': VOXEL_SIZE}
    fields = {name: {'shape': [sizes.get(d, d) for d in shape], 'dtype': dtype}
              for name, (shape, dtype) in SAMPLE_FIELDS.items()}
    fields['voxels']['stored'] = 'np.packbits along the last axis; the loader unpacks'
    manifest = {
        **manifest_head('images', 'training.synth.images', category, seed, count, shard_size),
        'keypoint_names': list(cat.keypoint_names),
        'image_size': [config.size, config.size],
        'config': config.to_dict(),
        'fields': fields,
        'voxel_grid': {'size': VOXEL_SIZE, 'resolution': res, 'origin': origin.tolist(),
                       'frame': 'object frame, mesh rescaled to size_prior_m / scale_m'},
        'conventions': 'docs/interfaces.md and docs/synthetic.md; X_cam = R @ Y + t, '
                       'pixel centres at integers, depth 0 = nothing drawn',
        'shards': shards,
    }
    dataset.write_manifest(out, manifest)
    return manifest


def preview_images(category: str, count: int, seed: int, config: ImageConfig) -> list[dict]:
    """The first ``count`` samples of a data set with this seed (same as shard 0's)."""
    return render_image_shard(category, seed, 0, count, config)


def stats(samples: list[dict]) -> dict:
    """Summary numbers of rendered samples (visibility, box sizes)."""
    vis = np.stack([s['visible'] for s in samples])
    inimg = np.stack([s['in_image'] for s in samples])
    box = np.stack([s['box'] for s in samples])
    return {'visible_fraction': float(vis.mean()), 'in_image_fraction': float(inimg.mean()),
            'box_size_mean_px': float(np.maximum(box[:, 2] - box[:, 0],
                                                 box[:, 3] - box[:, 1]).mean())}


def _heatmap_shard_job(args: tuple) -> tuple[int, int, str]:
    from training.synth.heatmap_sampler import HeatmapSampler, SamplerConfig

    category, seed, index, count, size, out = args
    cat = load_category(category)
    shard_seed = int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])
    sampler = HeatmapSampler(cat, SamplerConfig(input_size=size), seed=shard_seed)
    batch = sampler.sample(count)
    arrays = {k: (v.astype(np.float16) if k in ('heatmaps', 'clean_heatmaps')
                  else np.asarray(v)) for k, v in batch.items()}
    arrays.pop('clean_heatmaps', None)
    sha = dataset.write_npz(Path(out) / dataset.shard_name(index), arrays)
    return index, count, sha


def generate_heatmap_dataset(category: str, count: int, out: str | Path, seed: int,
                             size: int = 128, shard_size: int = 2000, workers: int = 1,
                             progress: bool = True) -> dict:
    """Shards of the interpreter's synthetic heatmaps (``training.synth.heatmap_sampler``,
    no rendering), with a manifest; deterministic per (seed, shard)."""
    shards = render_shards(_heatmap_shard_job, category, count, Path(out), seed, size,
                           shard_size, workers, progress, 'heatmaps', 'it')
    manifest = {
        **manifest_head('heatmaps', 'training.synth.heatmap_sampler', category, seed, count,
                        shard_size),
        'input_size': size,
        'fields': 'see training.synth.heatmap_sampler.HeatmapSampler (heatmaps stored float16, '
                  'clean_heatmaps dropped)',
        'shards': shards,
    }
    dataset.write_manifest(Path(out), manifest)
    return manifest


def heatmap_preview_tiles(root: str | Path, count: int = 24) -> list[np.ndarray]:
    """Tiles of stored heatmap samples: the max over keypoints, true keypoints drawn."""
    import cv2

    from training.synth.preview import draw_annotations

    ds = dataset.ShardDataset(root)
    cat = load_category(ds.manifest['category'])
    size = ds.manifest['input_size']
    tiles = []
    for i in range(min(count, len(ds))):
        s = ds[i]
        hm = np.clip(s['heatmaps'].astype(np.float32).max(0), 0, 1)
        img = cv2.applyColorMap((hm * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)
        img = cv2.resize(img[..., ::-1], (size, size), interpolation=cv2.INTER_NEAREST)
        tiles.append(draw_annotations(img, s['keypoints'], np.ones(len(s['keypoints']), bool),
                                      cat, scale=max(1, 192 // size)))
    return tiles
