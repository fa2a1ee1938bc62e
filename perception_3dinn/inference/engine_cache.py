"""Cache of serialized TensorRT engines, keyed so that a stale or foreign engine is never loaded.

A TensorRT engine is only valid for the exact network, TensorRT version, GPU architecture and
precision it was built with. Each cached engine `<name>.engine` has a sidecar
`<name>.engine.json` recording its `EngineKey` and the engine bytes' sha256. `check_engine`
classifies a cached engine as

- 'ok': key and bytes match;
- 'missing': no engine (or no sidecar) at that path;
- 'stale': built from another ONNX file (the model was re-exported);
- 'foreign': built for another TensorRT version, GPU compute capability or precision;
- 'corrupt': sidecar unreadable, or the engine bytes do not hash to the recorded sha256.

The runtime rebuilds on anything but 'ok' when allowed to, else refuses with the reason.
No tensorrt import here: this logic is tested on machines without a GPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
import hashlib
import json
import os
from pathlib import Path
import tempfile

PRECISIONS = ('fp32', 'fp16', 'int8')
CACHE_FORMAT = 1


class EngineCacheError(RuntimeError):
    """A cached engine cannot be used and may not be rebuilt."""


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialized engine depends on.

    Attributes:
        onnx_sha256: sha256 of the ONNX file it was built from.
        tensorrt_version: `tensorrt.__version__`, e.g. '10.3.0'.
        compute_capability: GPU compute capability 'major.minor', e.g. '8.7' (Orin).
        precision: 'fp32', 'fp16' or 'int8'.
        max_batch: largest batch of the optimisation profile.
    """

    onnx_sha256: str
    tensorrt_version: str
    compute_capability: str
    precision: str
    max_batch: int = 16

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f'precision must be one of {PRECISIONS}, got {self.precision!r}')
        if len(self.onnx_sha256) != 64:
            raise ValueError(f'onnx_sha256 must be 64 hex digits, got {self.onnx_sha256!r}')
        if self.max_batch < 1:
            raise ValueError(f'max_batch must be >= 1, got {self.max_batch}')

    def digest(self) -> str:
        """sha256 of the key's canonical JSON."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode('utf-8')).hexdigest()

    def filename(self, stem: str = 'model') -> str:
        """Cache file name: readable fields plus a digest of the whole key."""
        cc = self.compute_capability.replace('.', '')
        return (f'{stem}_{self.precision}_sm{cc}_trt{self.tensorrt_version}_'
                f'b{self.max_batch}_{self.digest()[:12]}.engine')


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + '.json')


def write_engine(path: str | Path, key: EngineKey, engine_bytes: bytes) -> Path:
    """Write an engine and its sidecar atomically (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {'cache_format': CACHE_FORMAT, 'key': asdict(key),
            'engine_sha256': hashlib.sha256(engine_bytes).hexdigest(),
            'engine_bytes': len(engine_bytes)}
    for target, payload in ((path, bytes(engine_bytes)),
                            (_sidecar(path), json.dumps(meta, indent=1).encode('utf-8'))):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix='.' + target.name)
        try:
            with os.fdopen(fd, 'wb') as f:
                f.write(payload)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


def check_engine(path: str | Path, key: EngineKey) -> tuple[str, str]:
    """Classify the engine at `path` against the key this machine needs.

    Returns:
        (status, message): status in 'ok', 'missing', 'stale', 'foreign', 'corrupt'; the
        message says why, for logs and errors.
    """
    path = Path(path)
    side = _sidecar(path)
    if not path.is_file():
        return 'missing', f'no engine at {path}'
    if not side.is_file():
        return 'missing', f'engine {path} has no sidecar {side.name}: origin unknown'
    try:
        meta = json.loads(side.read_text(encoding='utf-8'))
        recorded = EngineKey(**meta['key'])
        expected_sha = str(meta['engine_sha256'])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return 'corrupt', f'sidecar {side} unreadable: {exc}'
    if recorded.onnx_sha256 != key.onnx_sha256:
        return 'stale', (f'engine {path.name} was built from ONNX {recorded.onnx_sha256[:12]}, '
                         f'the model is now {key.onnx_sha256[:12]}')
    for name in ('tensorrt_version', 'compute_capability', 'precision', 'max_batch'):
        have, want = getattr(recorded, name), getattr(key, name)
        if have != want:
            return 'foreign', f'engine {path.name} has {name} {have}, this machine needs {want}'
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    if digest.hexdigest() != expected_sha:
        return 'corrupt', f'engine {path.name} bytes do not match their recorded sha256'
    return 'ok', f'engine {path.name} matches'


class EngineCache:
    """A directory of engines named by `EngineKey.filename`."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def path_for(self, key: EngineKey, stem: str = 'model') -> Path:
        return self.directory / key.filename(stem)

    def lookup(self, key: EngineKey, stem: str = 'model') -> tuple[Path, str, str]:
        """(path, status, message) of the cache entry for `key` (see `check_engine`)."""
        path = self.path_for(key, stem)
        status, message = check_engine(path, key)
        return path, status, message

    def resolve(self, key: EngineKey, stem: str = 'model',
                rebuild: bool = True) -> tuple[Path, bool]:
        """Where the engine for `key` lives and whether it must be (re)built.

        Returns:
            (path, needs_build): needs_build is False only for a verified ('ok') engine.

        Raises:
            EngineCacheError: the engine is missing, stale, foreign or corrupt and `rebuild`
                is False; the message says which and how to build it.
        """
        path, status, message = self.lookup(key, stem)
        if status == 'ok':
            return path, False
        if not rebuild:
            raise EngineCacheError(f'{message} ({status}); build it with '
                                   f'python -m training.build_engine')
        return path, True

    def store(self, key: EngineKey, engine_bytes: bytes, stem: str = 'model') -> Path:
        return write_engine(self.path_for(key, stem), key, engine_bytes)
