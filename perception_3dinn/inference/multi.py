"""One runtime, many categories: detector classes routed to per-category pipelines.

    pipe = MultiPipeline.from_manifests({'chair': None, 'sofa': 'models/sofa'},
                                        class_map=ClassMap.parse(['armchair:chair,sofa']))
    result = pipe.process(image_rgb, intrinsics, boxes, stamp_s)

A `ClassMap` says which categories a detector class may be. Each box goes to the pipeline of
every candidate category of its class; the boxes of one category go through that category's
`Pipeline` in one call (one batch of crops per model), and the results are merged into one
`FrameResult` whose box indices refer to the caller's boxes. A class with several candidates
runs all of them and keeps the best fit (`MultiPipeline.process`); the others' tracks are
dropped. Box filters (`min_box_score`, `min_box_size_px`, `max_objects`) apply per category.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
import dataclasses
import itertools
import math
from pathlib import Path
import time

import numpy as np

from perception_3dinn.camera import CameraIntrinsics
from perception_3dinn.inference.manifest import default_model_dir, load_manifest, ManifestError
from perception_3dinn.inference.pipeline import Pipeline
from perception_3dinn.inference.pose import FloorPlane
from perception_3dinn.inference.types import Box2D, FrameResult, ObjectEstimate, PipelineConfig
from perception_3dinn.skeleton import Category

# Detector vocabularies -> categories, best guess first (ClassMap.default). COCO: chair,
# couch, bed, dining table; Open Images / Objects365 / LVIS add sofa, table, desk, coffee
# table, armchair ('dinning table' is Objects365's spelling). Desks and coffee tables are
# tables (the table generator makes dining, coffee, desk and side tables); an armchair may
# be a chair or a one-seat sofa, so both run and the better fit is kept.
DEFAULT_VOCABULARY: dict[str, tuple[str, ...]] = {
    'chair': ('chair', 'swivel_chair'),
    'armchair': ('chair', 'sofa'),
    'office chair': ('swivel_chair',),
    'couch': ('sofa',),
    'sofa': ('sofa',),
    'bed': ('bed',),
    'dining table': ('table',),
    'dinning table': ('table',),
    'table': ('table',),
    'desk': ('table',),
    'coffee table': ('table',),
}


def _label(label: object) -> str:
    return ' '.join(str(label).split()).lower()


class ClassMap:
    """Detector class label (case-insensitive) -> candidate category names, best guess first.

    Build one from ``'label:cat1,cat2'`` strings (`parse`, a ROS string-array parameter), from
    the detector vocabularies known here (`default`), or both (`with_defaults`).
    """

    def __init__(self, mapping: Mapping[str, Sequence[str]] | None = None) -> None:
        self._map: dict[str, tuple[str, ...]] = {}
        for label, cats in (mapping or {}).items():
            key = _label(label)
            cats = (cats,) if isinstance(cats, str) else tuple(cats)
            if not key or not cats or not all(isinstance(c, str) and c for c in cats):
                raise ValueError(f'ClassMap: {label!r} -> {cats!r} needs a label and '
                                 'category names')
            self._map[key] = tuple(dict.fromkeys(cats))  # unique, in order

    @classmethod
    def parse(cls, entries: Iterable[str]) -> ClassMap:
        """Parse ``'label:cat1,cat2'`` entries (e.g. ``'dining table:table'``).

        Raises:
            ValueError: naming the entry that is not ``label:category[,category...]`` or that
                repeats a label.
        """
        if isinstance(entries, str):
            entries = [entries]
        mapping: dict[str, tuple[str, ...]] = {}
        for entry in entries:
            if not isinstance(entry, str):
                raise ValueError(f'class map entry {entry!r} is not a string '
                                 "('label:category[,category...]')")
            label, sep, rest = entry.rpartition(':')
            cats = tuple(c.strip() for c in rest.split(','))
            problem = (
                'no ":"' if not sep else 'empty label' if not _label(label)
                else 'empty category name' if not all(cats)
                else 'category names may not contain spaces' if any(' ' in c for c in cats)
                else f'label {_label(label)!r} given twice' if _label(label) in mapping
                else None)
            if problem:
                raise ValueError(f'class map entry {entry!r}: {problem}; expected '
                                 "'label:category[,category...]', e.g. 'couch:sofa'")
            mapping[_label(label)] = cats
        return cls(mapping)

    @classmethod
    def default(cls, installed: Iterable[str]) -> ClassMap:
        """DEFAULT_VOCABULARY restricted to the `installed` categories, plus every installed
        name (and its spelling with spaces, 'swivel chair') mapping to itself. Candidates not
        installed are left out, and labels left with none are dropped."""
        installed = list(dict.fromkeys(installed))
        mapping = {}
        for name in installed:
            mapping[name] = mapping[name.replace('_', ' ')] = (name,)
        for label, cats in DEFAULT_VOCABULARY.items():
            kept = tuple(c for c in cats if c in installed)
            if kept:
                mapping[label] = kept
        return cls(mapping)

    @classmethod
    def with_defaults(cls, entries: Iterable[str], installed: Iterable[str]) -> ClassMap:
        """`default(installed)` with the parsed `entries` overriding it label by label."""
        return cls.default(installed).updated(cls.parse(entries))

    def updated(self, other: ClassMap) -> ClassMap:
        """A copy whose labels of `other` map as in `other`."""
        return ClassMap({**self._map, **other.as_dict()})

    def candidates(self, class_id: object) -> tuple[str, ...]:
        """Candidate categories of a detector class; () when it has no mapping."""
        return self._map.get(_label(class_id), ())

    def as_dict(self) -> dict[str, tuple[str, ...]]:
        return dict(self._map)

    def entries(self) -> list[str]:
        """The map as ``'label:cat1,cat2'`` strings (what `parse` reads)."""
        return [f'{label}:{",".join(cats)}' for label, cats in self._map.items()]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClassMap) and self._map == other._map

    def __repr__(self) -> str:
        return f'ClassMap({self._map!r})'


def better_fit(obj: ObjectEstimate) -> float:
    """How well an object's category explains its box: `ObjectEstimate.score`
    (`pose.object_score`: mean keypoint confidence x reprojection agreement
    1 / (1 + (rms_px / (0.05 box_px))^2) x detector score, the last the same for every
    candidate); NaN counts as no fit."""
    return obj.score if math.isfinite(obj.score) else -math.inf


class MultiPipeline:
    """Per-category `Pipeline`s behind one `process` call (see the module docstring)."""

    def __init__(self, pipelines: Mapping[str, Pipeline], class_map: ClassMap) -> None:
        if not pipelines:
            raise ValueError('MultiPipeline needs at least one pipeline')
        for name, pipe in pipelines.items():
            if pipe.category.name != name:
                raise ValueError(f'pipeline of category {pipe.category.name!r} (model '
                                 f'{pipe.manifest.path}) registered under {name!r}')
            if pipe.config.class_ids:
                raise ValueError(f'pipeline {name!r} filters class_ids '
                                 f'{pipe.config.class_ids}; build it with class_ids=() (the '
                                 'class map routes the boxes)')
        for label, cats in class_map.as_dict().items():
            missing = [c for c in cats if c not in pipelines]
            if missing:
                raise ValueError(f'class map: {label!r} -> {missing} not installed '
                                 f'(installed: {", ".join(pipelines)})')
        self.pipelines = dict(pipelines)
        self.class_map = class_map
        ids = itertools.count(1)  # track ids unique over all categories (TF, markers, ids)
        for pipe in self.pipelines.values():
            pipe.tracker.share_ids(ids)

    @classmethod
    def from_manifests(cls, paths_by_category: Mapping[str, str | Path | None],
                       backend: str = 'onnxruntime', config: PipelineConfig | None = None,
                       class_map: ClassMap | None = None) -> MultiPipeline:
        """One `Pipeline.from_manifest` per category (path None: the shipped model of that
        category), all with `config` but class_ids=(); class_map None: `ClassMap.default`.

        Raises:
            ManifestError: a manifest of another category than it is registered under (the
                file named), or what `Pipeline.from_manifest` raises.
        """
        config = dataclasses.replace(config or PipelineConfig(), class_ids=())
        pipelines: dict[str, Pipeline] = {}
        try:
            for name, path in paths_by_category.items():
                path = default_model_dir(name) if path is None else path
                manifest = load_manifest(path, verify=False)
                if manifest.category != name:
                    raise ManifestError(f'{manifest.path}: model of category '
                                        f'{manifest.category!r} registered under {name!r}')
                pipelines[name] = Pipeline.from_manifest(manifest.path, backend, config)
            return cls(pipelines, class_map or ClassMap.default(pipelines))
        except BaseException:
            for pipe in pipelines.values():
                pipe.close()
            raise

    @property
    def categories(self) -> dict[str, Category]:
        return {name: pipe.category for name, pipe in self.pipelines.items()}

    @property
    def category(self) -> Category:
        """The first category (for callers that serve one)."""
        return next(iter(self.pipelines.values())).category

    @property
    def voxel_note(self) -> str | None:
        notes = [f'{n}: {p.voxel_note}' for n, p in self.pipelines.items() if p.voxel_note]
        return '; '.join(notes) or None

    def reset(self) -> None:
        for pipe in self.pipelines.values():
            pipe.reset()

    def close(self) -> None:
        for pipe in self.pipelines.values():
            pipe.close()

    def process(self, image: np.ndarray, intrinsics: CameraIntrinsics, boxes: Sequence[Box2D],
                stamp_s: float, floor: FloorPlane | None = None,
                voxels: bool = True) -> FrameResult:
        """`Pipeline.process` over all categories (every pipeline runs, with the boxes routed to
        it, so its tracker sees the clock and bad input raises as there).

        A box whose class maps to several categories runs in each; the object with the best
        `better_fit` is kept (ties: the earlier candidate in the class map), its `candidates`
        name those that ran, and the others' tracks are dropped from their trackers. A box
        none of its candidates could interpret is skipped with their reasons.

        Returns:
            FrameResult: objects and skipped in caller box order; timings_ms summed per stage
            over the categories, 'total.<category>' per category and 'total' for the call.
        """
        t_start = time.perf_counter()
        boxes = list(boxes)
        routed: dict[str, list[int]] = {name: [] for name in self.pipelines}
        ran: dict[int, tuple[str, ...]] = {}
        skipped: list[tuple[int, str]] = []
        for i, box in enumerate(boxes):
            if not isinstance(box, Box2D):
                skipped.append((i, f'not a Box2D ({type(box).__name__})'))
                continue
            cats = self.class_map.candidates(box.class_id)
            if not cats:
                # Not configured filtering: the node warns (throttled) about it.
                skipped.append((i, f'no category for detector class {box.class_id!r}: set '
                                   f"class_map (e.g. '{_label(box.class_id)}:"
                                   f"{next(iter(self.pipelines))}') to route it"))
                continue
            ran[i] = cats
            for name in cats:
                routed[name].append(i)
        timings: dict[str, float] = {}
        found: dict[int, dict[str, ObjectEstimate]] = {}
        reasons: dict[int, dict[str, str]] = {}
        for name, pipe in self.pipelines.items():
            idx = routed[name]
            sub = pipe.process(image, intrinsics, [boxes[i] for i in idx], stamp_s, floor,
                               voxels=False)
            for obj in sub.objects:
                obj.box_index = idx[obj.box_index]
                found.setdefault(obj.box_index, {})[name] = obj
            for j, reason in sub.skipped:
                reasons.setdefault(idx[j], {})[name] = reason
            for key, ms in sub.timings_ms.items():
                timings[key] = timings.get(key, 0.0) + ms
            timings[f'total.{name}'] = sub.timings_ms.get('total', 0.0)
        result = FrameResult(stamp_s=float(stamp_s), skipped=skipped, timings_ms=timings)
        for i, cats in ran.items():
            objs = found.get(i, {})
            if not objs:
                why = reasons.get(i, {})
                texts = set(why.values())
                result.skipped.append((i, texts.pop() if len(texts) == 1 else '; '.join(
                    f'{r} [{n}]' for n, r in why.items())))
                continue
            order = [n for n in cats if n in objs]
            best = max(order, key=lambda n: (better_fit(objs[n]), -order.index(n)))
            for name in order:
                if name != best:
                    self.pipelines[name].tracker.drop(objs[name].track_id)
            if len(cats) > 1:
                objs[best].candidates = cats
            result.objects.append(objs[best])
        result.objects.sort(key=lambda o: o.box_index)
        result.skipped.sort()
        if voxels:
            self._fill_voxels(result, 'voxels')
        timings['total'] = (time.perf_counter() - t_start) * 1e3
        return result

    def add_voxels(self, result: FrameResult) -> None:
        """`Pipeline.add_voxels` for each category's objects of `result`: adds
        timings_ms['voxels_added'] and to 'total' and 'total.<category>'."""
        added = self._fill_voxels(result, 'voxels_added')
        result.timings_ms['total'] = result.timings_ms.get('total', 0.0) + added

    def _fill_voxels(self, result: FrameResult, key: str) -> float:
        """Voxels of `result`'s objects by their category's pipeline; ms added to `key` and
        'total.<category>', returned."""
        timings = result.timings_ms
        spent = 0.0
        for name, pipe in self.pipelines.items():
            objects = [o for o in result.objects if o.category == name]
            if not objects:
                continue
            part = FrameResult(stamp_s=result.stamp_s, objects=objects)
            pipe.add_voxels(part)
            ms = part.timings_ms.get('voxels_added', 0.0)
            timings[key] = timings.get(key, 0.0) + ms
            timings[f'total.{name}'] = timings.get(f'total.{name}', 0.0) + ms
            spent += ms
        return spent
