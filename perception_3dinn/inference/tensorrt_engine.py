"""TensorRT 10+ engine: build (FP16 default, INT8 with a calibration cache), cache, run.

Thin by design: no machine of ours has TensorRT (docs: ROS_ENV.md), so everything that can be
tested without it lives in `engine_cache` (keys, stale/foreign/corrupt detection). The calls
here follow the TensorRT 10 Python API (name-based tensor API: `num_io_tensors`,
`get_tensor_name`, `get_tensor_mode`, `set_input_shape`, `set_tensor_address`,
`execute_async_v3`; `build_serialized_network`) and cuda-python's runtime bindings
(`cudaMalloc`, `cudaMemcpyAsync`, `cudaStreamCreate`; every call returns `(err, ...)`).
`tensorrt` and `cuda` are imported inside functions only.

TensorRT 11 removed weak typing: the FP16/INT8 builder flags and the INT8 calibrators are
gone, and every network is strongly typed, its precision taken from the ONNX graph
(docs.nvidia.com/deeplearning/tensorrt, "Migrating from TensorRT 10.x to 11.x"). JetPack 6
ships TensorRT 10, `pip install tensorrt` on a desktop gets 11. `precision_plan` decides
per version what a requested precision builds: on 11 our float32 graph builds FP32 engines
(an FP16 request says so and is cached as FP32) and INT8 is refused with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
import warnings

import numpy as np

from perception_3dinn.inference.engine_cache import (
    EngineCache,
    EngineCacheError,
    EngineKey,
)
from perception_3dinn.inference.engines import Engine
from perception_3dinn.inference.manifest import ModelManifest

MIN_TENSORRT_MAJOR = 10
STRONGLY_TYPED_MAJOR = 11  # the first TensorRT without precision builder flags


def tensorrt_major(version: str) -> int:
    """Major version of a TensorRT version string ('10.3.0' -> 10)."""
    try:
        return int(str(version).split('.')[0])
    except ValueError as exc:
        raise RuntimeError(f'cannot read the TensorRT version {version!r}') from exc


def precision_plan(requested: str, tensorrt_version: str) -> tuple[str, tuple[str, ...], str]:
    """What a requested engine precision builds with this TensorRT version.

    Returns:
        (precision built, names of the `trt.BuilderFlag`s to set, a note for the user or '').

    Raises:
        ValueError: an unknown precision.
        RuntimeError: INT8 on TensorRT >= 11 (it needs an explicitly quantized ONNX model).
    """
    if requested not in ('fp32', 'fp16', 'int8'):
        raise ValueError(f"precision must be 'fp32', 'fp16' or 'int8', got {requested!r}")
    if tensorrt_major(tensorrt_version) < STRONGLY_TYPED_MAJOR:
        flags = {'fp32': (), 'fp16': ('FP16',), 'int8': ('FP16', 'INT8')}[requested]
        return requested, flags, ''
    if requested == 'int8':
        raise RuntimeError(
            f'TensorRT {tensorrt_version} builds INT8 only from an explicitly quantized ONNX '
            'model (Q/DQ nodes, e.g. NVIDIA ModelOpt); calibration-based INT8 was removed in '
            'TensorRT 11. Use fp16 or fp32 here, or TensorRT 10 (JetPack 6) for INT8')
    if requested == 'fp16':
        return 'fp32', (), (
            f'TensorRT {tensorrt_version} takes the precision from the ONNX graph (the FP16 '
            'builder flag was removed in TensorRT 11) and this model computes in float32: '
            'building an FP32 engine (cached as fp32)')
    return 'fp32', (), ''


def import_tensorrt() -> Any:
    """The tensorrt module (>= 10), or RuntimeError saying how to get it."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise RuntimeError(
            'TensorRT is not installed: it needs an NVIDIA GPU (JetPack on Jetson, or '
            '`pip install tensorrt` with a CUDA driver). Use the onnxruntime backend on this '
            'machine.') from exc
    major = tensorrt_major(trt.__version__)
    if major < MIN_TENSORRT_MAJOR:
        raise RuntimeError(f'TensorRT {trt.__version__} found; the runtime needs '
                           f'{MIN_TENSORRT_MAJOR}.x or newer (tensor API)')
    return trt


def import_cudart() -> Any:
    """cuda-python's runtime bindings (new and old module layouts)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError as exc:
            raise RuntimeError('the TensorRT engine needs cuda-python '
                               '(`pip install cuda-python`)') from exc
    return cudart


def _check(result: Any) -> Any:
    """Unwrap a cuda-python `(err, value...)` tuple, raising on an error code."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f'CUDA runtime error {err}')
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def compute_capability(device: int = 0) -> str:
    """'major.minor' of a CUDA device."""
    cudart = import_cudart()
    props = _check(cudart.cudaGetDeviceProperties(device))
    return f'{props.major}.{props.minor}'


def engine_key(manifest: ModelManifest, precision: str, max_batch: int,
               device: int = 0) -> EngineKey:
    """The cache key for this model on this machine."""
    trt = import_tensorrt()
    return EngineKey(onnx_sha256=manifest.onnx_sha256, tensorrt_version=str(trt.__version__),
                     compute_capability=compute_capability(device), precision=precision,
                     max_batch=max_batch)


def make_calibrator(batches: Iterable[np.ndarray], cache_file: str | Path,
                    batch_size: int) -> Any:
    """An INT8 entropy calibrator over `(B, 3, S, S)` float32 batches, caching its table.

    A cache file that exists is read instead of running calibration again.
    """
    trt = import_tensorrt()
    precision_plan('int8', trt.__version__)  # refused on TensorRT >= 11, with the reason
    cudart = import_cudart()

    class _Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._batches: Iterator[np.ndarray] = iter(batches)
            self._cache = Path(cache_file)
            self._device = None
            self._nbytes = 0

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch = next(self._batches, None)
            if batch is None:
                return None
            batch = np.ascontiguousarray(batch, dtype=np.float32)
            if self._device is None:
                self._nbytes = batch.nbytes
                self._device = _check(cudart.cudaMalloc(self._nbytes))
            if batch.nbytes != self._nbytes:
                raise ValueError('calibration batches must all have the same shape')
            _check(cudart.cudaMemcpy(self._device, batch.ctypes.data, batch.nbytes,
                                     cudart.cudaMemcpyKind.cudaMemcpyHostToDevice))
            return [int(self._device)]

        def read_calibration_cache(self) -> bytes | None:
            return self._cache.read_bytes() if self._cache.is_file() else None

        def write_calibration_cache(self, cache: Any) -> None:
            self._cache.parent.mkdir(parents=True, exist_ok=True)
            self._cache.write_bytes(bytes(cache))

    return _Calibrator()


def build_serialized_engine(manifest: ModelManifest, precision: str = 'fp16',
                            max_batch: int = 16, opt_batch: int = 4,
                            workspace_mb: int = 1024, calibrator: Any = None) -> bytes:
    """Parse the manifest's ONNX file and build a serialized engine.

    Args:
        manifest: the model (its sha256 is checked first).
        precision: 'fp32', 'fp16' or 'int8' (INT8 needs `calibrator`; FP16 is also enabled
            so layers without INT8 kernels fall back to FP16), as `precision_plan` maps it
            for the installed TensorRT (on 11 and later: FP32, or refused for INT8).
        max_batch, opt_batch: the optimisation profile's largest and tuned batch.
        workspace_mb: builder workspace pool limit.
        calibrator: from `make_calibrator`, for INT8.

    Returns:
        the serialized engine bytes.
    """
    trt = import_tensorrt()
    precision, flags, _ = precision_plan(precision, trt.__version__)
    manifest.verify_onnx()
    if precision == 'int8' and calibrator is None:
        raise ValueError('INT8 needs a calibrator (training.build_engine --calib-batches)')
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(manifest.onnx_file.read_bytes()):
        errors = '; '.join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f'TensorRT cannot parse {manifest.onnx_file}: {errors}')
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    s = manifest.input_size
    profile = builder.create_optimization_profile()
    opt = max(1, min(opt_batch, max_batch))
    profile.set_shape(manifest.input_name, (1, 3, s, s), (opt, 3, s, s), (max_batch, 3, s, s))
    config.add_optimization_profile(profile)
    for flag in flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if precision == 'int8':
        config.int8_calibrator = calibrator
        config.set_calibration_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f'TensorRT failed to build an engine for {manifest.onnx_file} '
                           f'({precision}); see the TensorRT log above')
    return bytes(serialized)


def load_or_build_engine(manifest: ModelManifest, cache_dir: str | Path | None = None,
                         precision: str = 'fp16', max_batch: int = 16,
                         rebuild: bool = True, calibrator: Any = None,
                         force: bool = False) -> tuple[bytes, Path]:
    """Serialized engine for this model and machine from the cache, building it if needed.

    A missing, stale, foreign or corrupt cache entry is rebuilt when `rebuild` is True, and
    refused with EngineCacheError (saying why) otherwise. Never loads an unchecked engine.
    `force` rebuilds even a valid entry.
    """
    trt = import_tensorrt()
    precision, _, note = precision_plan(precision, trt.__version__)
    if note:
        warnings.warn(note, stacklevel=2)
    key = engine_key(manifest, precision, max_batch)
    cache = EngineCache(cache_dir or manifest.onnx_file.parent / 'engines')
    path, needs_build = cache.resolve(key, stem=manifest.onnx_file.stem, rebuild=rebuild)
    if not needs_build and not force:
        return path.read_bytes(), path
    engine_bytes = build_serialized_engine(manifest, precision=precision, max_batch=max_batch,
                                           calibrator=calibrator)
    return engine_bytes, cache.store(key, engine_bytes, stem=manifest.onnx_file.stem)


class TensorRTEngine(Engine):
    """Runs a cached (or freshly built) TensorRT engine with the tensor API."""

    backend = 'tensorrt'

    def __init__(self, manifest: ModelManifest, cache_dir: str | Path | None = None,
                 precision: str = 'fp16', max_batch: int = 16, rebuild: bool = True) -> None:
        super().__init__(manifest)
        trt = import_tensorrt()
        self._cudart = import_cudart()
        self.precision = precision_plan(precision, trt.__version__)[0]  # what is built
        engine_bytes, self.engine_path = load_or_build_engine(
            manifest, cache_dir, precision=precision, max_batch=max_batch, rebuild=rebuild)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(engine_bytes)
        if self.engine is None:
            raise EngineCacheError(f'TensorRT could not deserialize {self.engine_path}; '
                                   'delete it to rebuild')
        self.context = self.engine.create_execution_context()
        self.max_batch = max_batch
        self._names = [self.engine.get_tensor_name(i)
                       for i in range(self.engine.num_io_tensors)]
        self._inputs = [n for n in self._names
                        if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if self._inputs != [manifest.input_name]:
            raise RuntimeError(f'engine inputs {self._inputs}, manifest says '
                               f'{manifest.input_name!r}')
        self._dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n)))
                        for n in self._names}
        self._stream = _check(self._cudart.cudaStreamCreate())
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)

    def _device_buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                _check(self._cudart.cudaFree(ptr))
            ptr = _check(self._cudart.cudaMalloc(nbytes))
            self._buffers[name] = (ptr, nbytes)
        return int(ptr)

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        batch = self.check_batch(batch)
        if len(batch) > self.max_batch:  # beyond the optimisation profile: split
            parts = [self.run(batch[i:i + self.max_batch])
                     for i in range(0, len(batch), self.max_batch)]
            return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        cudart = self._cudart
        batch = batch.astype(self._dtypes[self.input_name], copy=False)
        self.context.set_input_shape(self.input_name, tuple(batch.shape))
        ptr = self._device_buffer(self.input_name, batch.nbytes)
        self.context.set_tensor_address(self.input_name, ptr)
        _check(cudart.cudaMemcpyAsync(ptr, batch.ctypes.data, batch.nbytes,
                                      cudart.cudaMemcpyKind.cudaMemcpyHostToDevice,
                                      self._stream))
        hosts = {}
        for name in self._names:
            if name == self.input_name:
                continue
            shape = tuple(self.context.get_tensor_shape(name))
            host = np.empty(shape, self._dtypes[name])
            self.context.set_tensor_address(name, self._device_buffer(name, host.nbytes))
            hosts[name] = host
        if not self.context.execute_async_v3(stream_handle=int(self._stream)):
            raise RuntimeError('TensorRT execute_async_v3 failed')
        for name, host in hosts.items():
            _check(cudart.cudaMemcpyAsync(host.ctypes.data, self._buffers[name][0], host.nbytes,
                                          cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                                          self._stream))
        _check(cudart.cudaStreamSynchronize(self._stream))
        return self.check_outputs(hosts, len(batch))

    def close(self) -> None:
        for ptr, _ in self._buffers.values():
            self._cudart.cudaFree(ptr)
        self._buffers.clear()
        if getattr(self, '_stream', None) is not None:
            self._cudart.cudaStreamDestroy(self._stream)
            self._stream = None
