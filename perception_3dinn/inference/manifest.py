"""The model manifest: `manifest.json` beside `model.onnx` (docs/interfaces.md, Model contract).

Written by `training.export`, read by the runtime. Loading validates every field the runtime
uses and checks the ONNX file's sha256, so a model that does not match its manifest is refused
with a clear message instead of being run blindly.

Example (abridged)::

    {"format_version": 1, "category": "chair", "trained": true,
     "onnx": {"file": "model.onnx", "sha256": "...", "opset": 17},
     "input": {"name": "image", "shape": ["B", 3, 128, 128], "dtype": "float32",
               "mean": [...], "std": [...], "colour_order": "RGB"},
     "stride": 4, "sigma": 1.5, "crop_pad": 0.15,
     "outputs": {"heatmaps": ["B", 10, 32, 32], "structure": ["B", 4], ...},
     "num_keypoints": 10, "num_bases": 4,
     "source_checkpoint": {"path": "...", "sha256": "...", "stage": "..."},
     "metrics": {...}, "export": {"parity_max_abs": ..., "parity_tolerance": ...}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
import hashlib
import json
import math
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
OUTPUT_NAMES = ('heatmaps', 'structure', 'rotation', 'translation', 'focal')


class ManifestError(ValueError):
    """The manifest is missing, malformed, or does not match its model file."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelManifest:
    """What the runtime needs to know about an exported model.

    Attributes:
        path: the manifest file.
        category: category name (perception_3dinn/categories/<name>.json).
        onnx_file: path of the ONNX model.
        onnx_sha256: its expected sha256.
        input_name: name of the image input.
        input_size: S of the `(B, 3, S, S)` input.
        mean, std: per-channel normalisation `(pixel / 255 - mean) / std`, RGB order.
        stride, sigma: heatmap codec parameters.
        crop_pad: crop padding the model was trained with.
        output_names: ONNX output names, in contract order.
        num_keypoints, num_bases: N and K.
        trained: False for a randomly initialised plumbing model.
        size_model: (bias, weights (K,)) of log(scale / size_prior) ~ bias + weights . alpha,
            the instance size given its shape, or None (single size prior).
        raw: the whole JSON document.
    """

    path: Path
    category: str
    onnx_file: Path
    onnx_sha256: str
    input_name: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    stride: int
    sigma: float
    crop_pad: float
    output_names: tuple[str, ...]
    num_keypoints: int
    num_bases: int
    trained: bool
    size_model: tuple[float, tuple[float, ...]] | None = None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def heatmap_size(self) -> int:
        return self.input_size // self.stride

    @property
    def output_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-output shape without the batch axis."""
        n, k, h = self.num_keypoints, self.num_bases, self.heatmap_size
        return {'heatmaps': (n, h, h), 'structure': (k,), 'rotation': (3, 3),
                'translation': (3,), 'focal': ()}

    def verify_onnx(self) -> None:
        """Raise ManifestError when the ONNX file is missing or its sha256 differs."""
        if not self.onnx_file.is_file():
            raise ManifestError(f'{self.path}: model file {self.onnx_file} does not exist')
        actual = sha256_file(self.onnx_file)
        if actual != self.onnx_sha256:
            raise ManifestError(
                f'{self.onnx_file} does not match its manifest {self.path}: sha256 {actual} '
                f'!= {self.onnx_sha256}; re-export the model (python -m training.export) or '
                f'restore the file')


def _require(data: dict, key: str, kind: type | tuple, where: str) -> Any:
    if key not in data:
        raise ManifestError(f'{where}: missing field {key!r}')
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind in (int, float):
        raise ManifestError(f'{where}: field {key!r} has the wrong type '
                            f'({type(value).__name__})')
    return value


def _size_model(value: Any, num_bases: Any, where: str
                ) -> tuple[float, tuple[float, ...]] | None:
    if value is None:
        return None
    try:
        bias = float(value['bias'])
        weights = tuple(float(w) for w in value['weights'])
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f'{where}: size_model needs numbers bias and weights') from exc
    if len(weights) != num_bases or not all(map(math.isfinite, (bias, *weights))):
        raise ManifestError(f'{where}: size_model weights must be {num_bases} finite numbers')
    return bias, weights


def manifest_from_dict(data: dict, path: str | Path) -> ModelManifest:
    """Validate a manifest document; `path` (the manifest file) anchors relative file names."""
    path = Path(path)
    where = str(path)
    if not isinstance(data, dict):
        raise ManifestError(f'{where}: not a JSON object')
    version = _require(data, 'format_version', int, where)
    if version > FORMAT_VERSION or version < 1:
        raise ManifestError(f'{where}: format_version {version} not supported '
                            f'(this runtime reads {FORMAT_VERSION})')
    onnx = _require(data, 'onnx', dict, where)
    inp = _require(data, 'input', dict, where)
    outputs = _require(data, 'outputs', dict, where)
    shape = _require(inp, 'shape', list, where + ' input')
    if len(shape) != 4 or shape[1] != 3 or shape[2] != shape[3] or not isinstance(shape[2], int):
        raise ManifestError(f'{where}: input shape must be [B, 3, S, S], got {shape}')
    mean = tuple(float(v) for v in _require(inp, 'mean', list, where + ' input'))
    std = tuple(float(v) for v in _require(inp, 'std', list, where + ' input'))
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ManifestError(f'{where}: input mean/std must be 3 numbers (std > 0)')
    order = inp.get('colour_order', 'RGB')
    if order != 'RGB':
        raise ManifestError(f'{where}: colour_order {order!r} not supported (RGB)')
    names = tuple(outputs)
    missing = [n for n in OUTPUT_NAMES if n not in names]
    if missing:
        raise ManifestError(f'{where}: outputs lack {missing}')
    manifest = ModelManifest(
        path=path,
        category=_require(data, 'category', str, where),
        onnx_file=(path.parent / _require(onnx, 'file', str, where + ' onnx')).resolve(),
        onnx_sha256=_require(onnx, 'sha256', str, where + ' onnx'),
        input_name=_require(inp, 'name', str, where + ' input'),
        input_size=int(shape[2]),
        mean=mean, std=std,
        stride=_require(data, 'stride', int, where),
        sigma=float(_require(data, 'sigma', (int, float), where)),
        crop_pad=float(data.get('crop_pad', 0.15)),
        output_names=tuple(n for n in OUTPUT_NAMES),
        num_keypoints=_require(data, 'num_keypoints', int, where),
        num_bases=_require(data, 'num_bases', int, where),
        trained=bool(data.get('trained', True)),
        size_model=_size_model(data.get('size_model'), data.get('num_bases'), where),
        raw=data,
    )
    for name, expected in manifest.output_shapes.items():
        got = outputs[name]
        if not isinstance(got, list) or tuple(got[1:]) != expected:
            raise ManifestError(f'{where}: output {name} shape {got} does not match '
                                f'[B, {", ".join(map(str, expected))}] from num_keypoints, '
                                f'num_bases, input size and stride')
    if manifest.input_size % manifest.stride:
        raise ManifestError(f'{where}: input size {manifest.input_size} not divisible by '
                            f'stride {manifest.stride}')
    return manifest


def load_manifest(path: str | Path, verify: bool = True) -> ModelManifest:
    """Read and validate `manifest.json` (or a directory holding one).

    Args:
        path: the manifest file or its directory.
        verify: check that the ONNX file exists and has the recorded sha256.

    Raises:
        ManifestError: with a message saying what is wrong and how to fix it.
    """
    path = Path(path)
    if path.is_dir():
        path = path / 'manifest.json'
    if not path.is_file():
        raise ManifestError(f'model manifest {path} not found (export one with '
                            f'python -m training.export)')
    try:
        data = json.loads(path.read_text(encoding='utf-8'))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f'{path}: cannot read the manifest: {exc}') from exc
    manifest = manifest_from_dict(data, path)
    if verify:
        manifest.verify_onnx()
    return manifest


def default_model_dir(category: str = 'chair') -> Path:
    """Directory of the model shipped with the package for `category`."""
    return Path(__file__).resolve().parent.parent / 'data' / 'models' / category
