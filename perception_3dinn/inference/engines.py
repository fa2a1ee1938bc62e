"""Inference engines behind one small interface: a batch of crops in, named arrays out.

- `OnnxRuntimeEngine`: the CPU default (intra-op thread count configurable), CUDA execution
  provider when it is installed and asked for.
- `TensorRTEngine` (`perception_3dinn.inference.tensorrt_engine`): TensorRT 10+ tensor API,
  engines cached per ONNX sha256 / TensorRT version / compute capability / precision.
- `TorchEngine`: eager torch from a checkpoint, for development; torch is imported only here,
  and only when this engine is created.

Every engine takes `(B, 3, S, S)` float32 normalised crops and returns float32 arrays named as
in docs/interfaces.md: heatmaps `(B, N, S/4, S/4)`, structure `(B, K)`, rotation `(B, 3, 3)`,
translation `(B, 3)`, focal `(B,)`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from perception_3dinn.inference.manifest import ModelManifest

BACKENDS = ('onnxruntime', 'tensorrt', 'torch')


class Engine(ABC):
    """Runs the exported network on a batch."""

    backend: str = ''

    def __init__(self, manifest: ModelManifest) -> None:
        self.manifest = manifest
        self.input_name = manifest.input_name
        self.output_names = manifest.output_names

    def check_batch(self, batch: np.ndarray) -> np.ndarray:
        """Validate `(B, 3, S, S)` and return it as contiguous float32."""
        s = self.manifest.input_size
        batch = np.asarray(batch)
        if batch.ndim != 4 or batch.shape[1:] != (3, s, s) or batch.shape[0] < 1:
            raise ValueError(f'{self.backend}: batch must be (B >= 1, 3, {s}, {s}), '
                             f'got {batch.shape}')
        return np.ascontiguousarray(batch, dtype=np.float32)

    def check_outputs(self, outputs: dict[str, np.ndarray], b: int) -> dict[str, np.ndarray]:
        """Check the outputs against the manifest's shapes; float32 copies keyed by name."""
        result = {}
        for name, shape in self.manifest.output_shapes.items():
            if name not in outputs:
                raise RuntimeError(f'{self.backend}: the model gave no output {name!r}')
            value = np.asarray(outputs[name], dtype=np.float32)
            if value.shape != (b, *shape):
                raise RuntimeError(f'{self.backend}: output {name} has shape {value.shape}, '
                                   f'the manifest says {(b, *shape)}')
            result[name] = value
        return result

    @abstractmethod
    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """`(B, 3, S, S)` float32 -> dict of output name -> array (see module docstring)."""

    def close(self) -> None:
        """Free resources (sessions, GPU memory)."""
        self.closed = True

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class OnnxRuntimeEngine(Engine):
    """ONNX Runtime session: CPU by default, the CUDA provider when asked for and present."""

    backend = 'onnxruntime'

    def __init__(self, manifest: ModelManifest, num_threads: int = 1,
                 device: str = 'cpu') -> None:
        super().__init__(manifest)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(int(num_threads), 0)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if device not in ('cpu', 'cuda'):
            raise ValueError(f"onnxruntime: device must be 'cpu' or 'cuda', got {device!r}")
        providers = ['CPUExecutionProvider']
        if device == 'cuda':
            if 'CUDAExecutionProvider' not in ort.get_available_providers():
                raise RuntimeError('device cuda asked for, but this onnxruntime has no '
                                   'CUDAExecutionProvider (install onnxruntime-gpu, or use '
                                   "device 'cpu' or the tensorrt backend)")
            if hasattr(ort, 'preload_dlls'):
                # CUDA and cuDNN from the nvidia-* wheels (e.g. torch's), where installed
                ort.preload_dlls()
            providers.insert(0, 'CUDAExecutionProvider')
        self.session = ort.InferenceSession(str(manifest.onnx_file), sess_options=options,
                                            providers=providers)
        self.providers = tuple(self.session.get_providers())
        if self.providers[0] != providers[0]:
            # ONNX Runtime falls back to the CPU, with only a log line, when the CUDA
            # provider cannot load its libraries: refuse instead of running slowly
            raise RuntimeError(f'onnxruntime: {providers[0]} did not start (session providers '
                               f'{list(self.providers)}); check that the CUDA 13 and cuDNN 9 '
                               'libraries onnxruntime-gpu needs are on the library path')
        names_in = [i.name for i in self.session.get_inputs()]
        names_out = [o.name for o in self.session.get_outputs()]
        if names_in != [manifest.input_name]:
            raise RuntimeError(f'{manifest.onnx_file}: inputs {names_in}, the manifest says '
                               f'[{manifest.input_name!r}]')
        missing = [n for n in manifest.output_names if n not in names_out]
        if missing:
            raise RuntimeError(f'{manifest.onnx_file}: outputs {missing} missing')

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        batch = self.check_batch(batch)
        values = self.session.run(list(self.output_names), {self.input_name: batch})
        return self.check_outputs(dict(zip(self.output_names, values)), len(batch))


class TorchEngine(Engine):
    """Eager torch from the checkpoint named in the manifest (or given), for development."""

    backend = 'torch'

    def __init__(self, manifest: ModelManifest, checkpoint: str | Path | None = None,
                 num_threads: int = 1, device: str = 'cpu') -> None:
        super().__init__(manifest)
        import torch

        from perception_3dinn.models import load_checkpoint

        if checkpoint is None:
            recorded = (manifest.raw.get('source_checkpoint') or {}).get('path')
            if not recorded:
                raise RuntimeError(f'{manifest.path}: no source checkpoint recorded; pass '
                                   'checkpoint= to use the torch engine')
            checkpoint = Path(recorded)
            if not checkpoint.is_absolute():
                checkpoint = manifest.path.parent / checkpoint
        if not Path(checkpoint).is_file():
            raise RuntimeError(f'torch engine: checkpoint {checkpoint} not found')
        if num_threads > 0:
            torch.set_num_threads(int(num_threads))
        self._torch = torch
        if device == 'cuda' and not torch.cuda.is_available():
            raise RuntimeError('torch engine: device cuda asked for, but torch sees no CUDA '
                               "device (a CPU-only torch build, or no GPU); use device 'cpu'")
        self.device = torch.device(device)
        model, _ = load_checkpoint(checkpoint)
        self.model = model.to(self.device).eval()

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        batch = self.check_batch(batch)
        torch = self._torch
        with torch.inference_mode():
            values = self.model(torch.from_numpy(batch).to(self.device))
        arrays = [v.detach().float().cpu().numpy() for v in values]
        return self.check_outputs(dict(zip(self.output_names, arrays)), len(batch))


def create_engine(manifest: ModelManifest, backend: str = 'onnxruntime', num_threads: int = 1,
                  device: str = 'cpu', engine_cache_dir: str | Path | None = None,
                  checkpoint: str | Path | None = None, precision: str = 'fp16') -> Engine:
    """The engine for `backend` ('onnxruntime', 'tensorrt' or 'torch').

    Raises:
        ValueError: unknown backend.
        RuntimeError: the backend is not usable on this machine (message says why).
    """
    if backend == 'onnxruntime':
        return OnnxRuntimeEngine(manifest, num_threads=num_threads, device=device)
    if backend == 'torch':
        return TorchEngine(manifest, checkpoint=checkpoint, num_threads=num_threads,
                           device=device)
    if backend == 'tensorrt':
        from perception_3dinn.inference.tensorrt_engine import TensorRTEngine

        return TensorRTEngine(manifest, cache_dir=engine_cache_dir, precision=precision)
    raise ValueError(f'unknown backend {backend!r}; choose one of {BACKENDS}')
