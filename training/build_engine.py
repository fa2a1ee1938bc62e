"""Build (and cache) a TensorRT engine for an exported model (issue 5, item 2).

    python -m training.build_engine --manifest perception_3dinn/data/models/chair
    python -m training.build_engine --manifest DIR --precision int8 --calib-batches 32

FP16 by default; INT8 calibrates on synthetic crops (rendered by training.synth.images, cropped
like the runtime) and keeps the calibration table in a cache file so later builds skip it.
Engines land in the cache directory (default DIR/engines) named and checked by
`perception_3dinn.inference.engine_cache` (ONNX sha256, TensorRT version, GPU compute
capability, precision): an existing matching engine is reused, anything else rebuilt.
Needs TensorRT >= 10, cuda-python and an NVIDIA GPU; without them it exits with a message.
TensorRT 11 and later build strongly typed networks only: this float32 model then gives an
FP32 engine (an fp16 request says so), and INT8 is refused (it needs a Q/DQ-quantized ONNX);
TensorRT 10 (JetPack 6) builds all three.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
import sys

import numpy as np

from perception_3dinn.crops import Crop, crop_image
from perception_3dinn.inference.engine_cache import EngineCacheError, PRECISIONS
from perception_3dinn.inference.manifest import (
    default_model_dir,
    load_manifest,
    ManifestError,
    ModelManifest,
)


def synthetic_calibration_batches(manifest: ModelManifest, num_batches: int, batch_size: int,
                                  seed: int = 0) -> Iterator[np.ndarray]:
    """`(batch_size, 3, S, S)` float32 normalised crops of rendered synthetic objects."""
    from tqdm import tqdm

    from perception_3dinn.skeleton import load_category
    from training.synth.images import ImageConfig, render_sample

    category = load_category(manifest.category)
    rng = np.random.default_rng(seed)
    config = ImageConfig(size=max(2 * manifest.input_size, 256), voxels=False)
    mean = np.asarray(manifest.mean, np.float32) * 255.0
    std = np.asarray(manifest.std, np.float32) * 255.0
    for _ in tqdm(range(num_batches), desc='calibration batches', unit='batch'):
        crops = []
        for _ in range(batch_size):
            sample = render_sample(category, rng, config)
            crop = Crop.from_box(sample['box'], manifest.input_size, pad=manifest.crop_pad)
            crops.append(crop_image(sample['image'], crop))
        x = (np.stack(crops).astype(np.float32) - mean) / std
        yield np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def build(manifest_path: str | Path, precision: str = 'fp16', max_batch: int = 16,
          cache_dir: str | Path | None = None, calib_batches: int = 32, calib_batch_size: int = 8,
          calib_cache: str | Path | None = None, force: bool = False) -> Path:
    """Build or reuse the engine; returns its path in the cache."""
    from perception_3dinn.inference import tensorrt_engine as trt_engine

    trt_engine.import_tensorrt()  # fail early with the install hint
    manifest = load_manifest(manifest_path)
    calibrator = None
    if precision == 'int8':
        cache_file = Path(calib_cache or manifest.onnx_file.with_suffix('.int8.calib'))
        calibrator = trt_engine.make_calibrator(
            synthetic_calibration_batches(manifest, calib_batches, calib_batch_size),
            cache_file, calib_batch_size)
    _, path = trt_engine.load_or_build_engine(manifest, cache_dir, precision=precision,
                                              max_batch=max_batch, rebuild=True,
                                              calibrator=calibrator, force=force)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--manifest', type=Path, default=default_model_dir('chair'),
                        help='manifest.json or its directory (default: the shipped chair model)')
    parser.add_argument('--precision', choices=PRECISIONS, default='fp16',
                        help='engine precision (default fp16)')
    parser.add_argument('--max-batch', type=int, default=16,
                        help='largest batch (objects per frame) of the optimisation profile')
    parser.add_argument('--cache-dir', type=Path, default=None,
                        help='engine cache directory (default: beside the ONNX file)')
    parser.add_argument('--calib-batches', type=int, default=32,
                        help='INT8: number of synthetic calibration batches')
    parser.add_argument('--calib-batch-size', type=int, default=8,
                        help='INT8: crops per calibration batch')
    parser.add_argument('--calib-cache', type=Path, default=None,
                        help='INT8: calibration table file (default model.int8.calib)')
    parser.add_argument('--force', action='store_true', help='rebuild even if cached')
    args = parser.parse_args(argv)
    if args.max_batch < 1:
        parser.error('--max-batch must be >= 1')
    try:
        path = build(args.manifest, args.precision, args.max_batch, args.cache_dir,
                     args.calib_batches, args.calib_batch_size, args.calib_cache, args.force)
    except (RuntimeError, ManifestError, EngineCacheError) as exc:
        print(f'build_engine: {exc}', file=sys.stderr)
        return 2
    print(f'engine ready: {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
