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
     "metrics": {...}, "export": {"parity_max_abs": ..., "parity_tolerance": ...},
     "shape": {"file": "shape.onnx", "sha256": "...", "opset": 18,
               "inputs": {"image": ["B", 3, 128, 128], "structure": ["B", 4]},
               "outputs": {"occupancy": ["B", 32, 32, 32]},
               "grid": {"size": 32, "resolution": ..., "origin": [...]}, "threshold": 0.4}}

The optional ``shape`` section names the learned shape graph (seed 004,
``perception_3dinn.models.style_encoder.ShapeModel``): occupancy probabilities in the
category's canonical grid (metres at the size prior). It is parsed and checked with the rest;
its file is verified apart (`ShapeGraph.verify`), so a runtime that does not use it (skeleton
voxels) can still load the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import hashlib
import json
import math
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
# A category file beside manifest.json: the model folder carries its own category (one that
# perception_3dinn/categories does not ship); it takes precedence over the shipped file.
CATEGORY_FILE = 'category.json'
OUTPUT_NAMES = ('heatmaps', 'structure', 'rotation', 'translation', 'focal')
SHAPE_INPUTS = ('image', 'structure')
SHAPE_OUTPUT = 'occupancy'


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


def _verify_file(file: Path, sha256: str, manifest: Path, what: str) -> None:
    """Raise ManifestError when `file` is missing or its sha256 is not `sha256`."""
    if not file.is_file():
        raise ManifestError(f'{manifest}: {what} file {file} does not exist')
    actual = sha256_file(file)
    if actual != sha256:
        raise ManifestError(
            f'{file} does not match its manifest {manifest}: sha256 {actual} != {sha256}; '
            f're-export the model (python -m training.export) or restore the file')


@dataclass(frozen=True)
class ShapeGraph:
    """The optional learned shape graph of a manifest (its ``shape`` section).

    Attributes:
        manifest: the manifest file.
        onnx_file: path of the shape ONNX graph.
        sha256: its expected sha256.
        input_size: S of the ``image`` input ``(B, 3, S, S)`` (the INN's).
        num_bases: K of the ``structure`` input ``(B, K)``.
        size: V of the ``occupancy`` output ``(B, V, V, V)``, probabilities in [0, 1].
        resolution: metres per voxel of the canonical grid (at the category's size prior).
        origin: ``(3,)`` minimum corner of the canonical grid, metres.
        threshold: occupancy probability threshold chosen on a validation split, or None.
        trained: False for randomly initialised weights (plumbing, latency).
    """

    manifest: Path
    onnx_file: Path
    sha256: str
    input_size: int
    num_bases: int
    size: int
    resolution: float
    origin: tuple[float, float, float]
    threshold: float | None = None
    trained: bool = True

    def verify(self) -> None:
        """Raise ManifestError (naming the file) when the graph is missing or its sha256
        differs."""
        _verify_file(self.onnx_file, self.sha256, self.manifest, 'shape graph')


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
        shape: the learned shape graph, or None (the manifest has no ``shape`` section).
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
    shape: ShapeGraph | None = None
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
        _verify_file(self.onnx_file, self.onnx_sha256, self.path, 'model')


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


def _finite(values: Any, n: int) -> bool:
    try:
        return len(values) == n and all(math.isfinite(float(v)) for v in values)
    except (TypeError, ValueError):
        return False


def _shape_graph(value: Any, path: Path, input_size: int, num_bases: Any) -> ShapeGraph | None:
    """Parse and check the optional ``shape`` section (see the module docstring)."""
    if value is None:
        return None
    where = f'{path} shape'
    if not isinstance(value, dict):
        raise ManifestError(f'{where}: not a JSON object')
    inputs = _require(value, 'inputs', dict, where)
    outputs = _require(value, 'outputs', dict, where)
    grid = _require(value, 'grid', dict, where)
    if sorted(inputs) != sorted(SHAPE_INPUTS) or list(outputs) != [SHAPE_OUTPUT]:
        raise ManifestError(f'{where}: inputs must be {list(SHAPE_INPUTS)} and outputs '
                            f'[{SHAPE_OUTPUT!r}], got {list(inputs)} and {list(outputs)}')
    size = _require(grid, 'size', int, where + ' grid')
    expected = {'image': ['B', 3, input_size, input_size], 'structure': ['B', num_bases],
                SHAPE_OUTPUT: ['B', size, size, size]}
    for name, got in {**inputs, **outputs}.items():
        if got != expected[name]:
            raise ManifestError(f'{where}: {name} shape {got} does not match {expected[name]} '
                                "(the main graph's input size and num_bases, the grid size)")
    resolution = _require(grid, 'resolution', (int, float), where + ' grid')
    origin = _require(grid, 'origin', list, where + ' grid')
    if size < 2 or not (math.isfinite(resolution) and resolution > 0) or not _finite(origin, 3):
        raise ManifestError(f'{where}: grid needs size >= 2, a positive resolution and a '
                            f'finite origin of 3 numbers, got {grid}')
    threshold = value.get('threshold')
    if threshold is not None and (not _finite([threshold], 1) or not 0 <= threshold <= 1):
        raise ManifestError(f'{where}: threshold must be a probability in [0, 1] or null, '
                            f'got {threshold!r}')
    return ShapeGraph(
        manifest=path,
        onnx_file=(path.parent / _require(value, 'file', str, where)).resolve(),
        sha256=_require(value, 'sha256', str, where), input_size=input_size,
        num_bases=int(num_bases), size=size, resolution=float(resolution),
        origin=tuple(float(v) for v in origin),
        threshold=None if threshold is None else float(threshold),
        trained=bool(value.get('trained', True)))


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
        shape=_shape_graph(data.get('shape'), path, int(shape[2]), data.get('num_bases')),
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
        verify: check that the ONNX file exists and has the recorded sha256 (the shape
            graph's, if any, is checked by `ShapeGraph.verify` where it is used).

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


def category_source(manifest: ModelManifest) -> str | Path:
    """What `skeleton.load_category` reads for this model: the model folder's own
    `category.json` (CATEGORY_FILE) when there is one, else the shipped category named by the
    manifest's ``category``. The file's ``name`` must be that ``category`` (checked where the
    category is loaded, `Pipeline.from_manifest`)."""
    local = manifest.path.parent / CATEGORY_FILE
    return local if local.is_file() else manifest.category


def default_model_dir(category: str = 'chair') -> Path:
    """Directory of the model shipped with the package for `category`."""
    return Path(__file__).resolve().parent.parent / 'data' / 'models' / category
