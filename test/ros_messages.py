"""Deterministic random ROS messages and deep comparison, for the DDS round-trip tests.

``sample(cls, seed)`` fills every field of a message class (recursively, through rosidl's
type description) with reproducible values that survive serialisation exactly (float32
fields get float32-representable values), so a message built in one process can be rebuilt
in another and compared field by field with :func:`diff`.
"""

from __future__ import annotations

import importlib
import math
from typing import Any

import numpy as np
from rosidl_parser import definition as d

_INT_RANGES = {
    'int8': (-128, 127), 'uint8': (0, 255), 'int16': (-2 ** 15, 2 ** 15 - 1),
    'uint16': (0, 2 ** 16 - 1), 'int32': (-2 ** 31, 2 ** 31 - 1), 'uint32': (0, 2 ** 32 - 1),
    'int64': (-2 ** 62, 2 ** 62), 'uint64': (0, 2 ** 63), 'octet': (0, 255), 'char': (0, 127),
}
_NUMPY = {'float': np.float32, 'double': np.float64, 'boolean': np.bool_, 'octet': np.uint8,
          'char': np.uint8, **{k: getattr(np, k) for k in _INT_RANGES if k.startswith(('int',
                                                                                    'uint'))}}


def message_class(full_name: str) -> type:
    """'pkg/msg/Name' -> the generated Python class."""
    pkg, sub, name = full_name.split('/')
    return getattr(importlib.import_module(f'{pkg}.{sub}'), name)


def _basic(rng: np.random.Generator, typename: str) -> Any:
    if typename in ('float', 'double'):
        value = float(rng.normal(0.0, 100.0))
        return float(np.float32(value)) if typename == 'float' else value
    if typename == 'boolean':
        return bool(rng.integers(0, 2))
    lo, hi = _INT_RANGES[typename]
    value = int(rng.integers(lo, hi, endpoint=True))
    if typename == 'octet':
        return bytes([value])
    return value


def _string(rng: np.random.Generator) -> str:
    n = int(rng.integers(0, 12))
    return ''.join(chr(int(c)) for c in rng.integers(97, 123, n))


def _value(rng: np.random.Generator, slot: d.AbstractType) -> Any:
    if isinstance(slot, d.BasicType):
        return _basic(rng, slot.typename)
    if isinstance(slot, d.AbstractGenericString):
        return _string(rng)
    if isinstance(slot, d.NamespacedType):
        return sample(message_class('/'.join([*slot.namespaces, slot.name])), rng)
    if isinstance(slot, d.AbstractNestedType):
        n = slot.size if isinstance(slot, d.Array) else int(rng.integers(0, 5))
        inner = slot.value_type
        if isinstance(inner, d.BasicType) and inner.typename in _NUMPY:
            values = [_basic(rng, inner.typename) for _ in range(n)]
            if inner.typename in ('octet',):
                return b''.join(values)
            return np.array(values, dtype=_NUMPY[inner.typename])
        return [_value(rng, inner) for _ in range(n)]
    raise TypeError(f'unsupported slot type {slot!r}')


def sample(cls: type, seed: int | np.random.Generator) -> Any:
    """A message of class ``cls`` with every field set from ``seed``."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    msg = cls()
    for name, slot in zip(cls.get_fields_and_field_types(), cls.SLOT_TYPES):
        setattr(msg, name, _value(rng, slot))
    return msg


def diff(a: Any, b: Any, path: str = 'msg') -> list[str]:
    """Field paths where two messages differ (empty when they are equal)."""
    if hasattr(a, 'get_fields_and_field_types'):
        if type(a) is not type(b):
            return [f'{path}: {type(a).__name__} != {type(b).__name__}']
        out: list[str] = []
        for name in a.get_fields_and_field_types():
            out += diff(getattr(a, name), getattr(b, name), f'{path}.{name}')
        return out
    if isinstance(a, (list, tuple)) and a and hasattr(a[0], 'get_fields_and_field_types'):
        if len(a) != len(b):
            return [f'{path}: length {len(a)} != {len(b)}']
        return [p for i, (x, y) in enumerate(zip(a, b)) for p in diff(x, y, f'{path}[{i}]')]
    if isinstance(a, float) or isinstance(b, float):
        same = a == b or (math.isnan(a) and math.isnan(b))
        return [] if same else [f'{path}: {a!r} != {b!r}']
    if isinstance(a, (bytes, bytearray)) or isinstance(b, (bytes, bytearray)):
        return [] if bytes(a) == bytes(b) else [f'{path}: bytes differ']
    if isinstance(a, str) or isinstance(b, str):
        return [] if a == b else [f'{path}: {a!r} != {b!r}']
    try:
        aa, bb = np.asarray(a), np.asarray(b)
    except Exception:  # noqa: BLE001 - anything else compares with ==
        return [] if a == b else [f'{path}: {a!r} != {b!r}']
    if aa.shape != bb.shape or not np.array_equal(aa, bb):
        return [f'{path}: {aa!r} != {bb!r}']
    return []
