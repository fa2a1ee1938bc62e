"""Evaluate a bag offline and/or live: which model serves each of its categories, the runs,
and what they write (metrics.json, plots, binned tables, annotated video, output bag)."""

from __future__ import annotations

from collections.abc import Mapping
import json
from pathlib import Path
from typing import Any

from training import binned
from training.replay.live import evaluate_live, start_node, stop_node
from training.replay.offline import evaluate_offline
from training.replay.report import annotated_video, percentiles, plots


def bag_categories(frames: list[Any]) -> list[str]:
    """Categories of a bag's ground truth, in order of first appearance ([] without any)."""
    from perception_3dinn.ros.bagdata import records_from_msg

    seen: dict[str, None] = {}
    for f in frames:
        for g in records_from_msg(f.ground_truth) if f.ground_truth else []:
            if g.category:
                seen.setdefault(g.category, None)
    return list(seen)


def _manifest_path(path: Path | str) -> Path:
    path = Path(path).expanduser()
    return path / 'manifest.json' if path.is_dir() else path


def served_models(bag_cats: list[str], manifest: Path | None,
                  models: Mapping[str, Path] | None) -> dict[str, Path]:
    """Category -> manifest.json of every category to serve.

    The categories are the bag's (ground truth; the chair for a bag without any), then any
    more that `models` names; each takes its model from `models`, else from `manifest` when
    that is a model of it, else the packaged model of the category.

    Raises:
        SystemExit: a category without a model (naming the option that gives it one).
    """
    from perception_3dinn.inference.manifest import default_model_dir, load_manifest

    given = {name: _manifest_path(p) for name, p in (models or {}).items()}
    if manifest is not None:
        given.setdefault(load_manifest(manifest, verify=False).category, Path(manifest))
    names = list(dict.fromkeys([*(bag_cats or ([] if given else ['chair'])), *given]))
    out = {}
    for name in names:
        path = given.get(name, default_model_dir(name) / 'manifest.json')
        if not path.is_file():
            raise SystemExit(
                f'no model for category {name!r} ({path} does not exist): pass --models '
                f'{name}=PATH/manifest.json (for plumbing, an untrained one: python -m '
                f'training.export --random-init --category {name} --out DIR)')
        out[name] = path
    return out


def _public(d: dict | None) -> dict | None:
    if d is None:
        return None
    return {k: v for k, v in d.items() if not k.startswith('_')}


def evaluate(bag: Path, out: Path, offline: bool, live: bool, start: bool, rate_hz: float,
             loops: int, manifest: Path | None, backend: str, num_threads: int,
             floor_frame: str = '', models: Mapping[str, Path] | None = None) -> dict:
    """Offline and/or live evaluation of a bag; writes metrics.json, plots, video, bag.

    A bag of chairs alone runs the chair model `manifest` (default: packaged) as ever; a bag
    of several categories (or `models` naming more) runs one model per category
    (:func:`served_models`): offline through a `MultiPipeline`, live through a node started
    with ``categories`` and ``model.manifests``. Accuracy is reported overall and per
    category. With `floor_frame` the offline run takes the floor from the bag's /tf (and so
    does a node started here); the offline run is then repeated without it, for comparison.
    """
    from perception_3dinn.ros.node_categories import load_served
    from perception_3dinn.ros.replay import load_frames

    out.mkdir(parents=True, exist_ok=True)
    frames = load_frames(bag)
    if not frames:
        raise SystemExit(f'{bag}: no frames')
    served = served_models(bag_categories(frames), manifest, models)
    cats = load_served(served)
    # The chair alone runs as a node serving `category` alone; anything else as `categories`.
    multi = None if list(served) == ['chair'] else served
    manifest = served['chair'] if multi is None else None
    result: dict[str, Any] = {'bag': str(bag), 'frames': len(frames), 'backend': backend,
                              'floor_frame': floor_frame, 'categories': list(cats),
                              'models': {n: str(p) for n, p in served.items()}}
    off = (evaluate_offline(frames, manifest, backend, num_threads, floor_frame,
                            models=multi) if offline else None)
    if offline and floor_frame:
        result['offline_without_floor'] = _public(
            evaluate_offline(frames, manifest, backend, num_threads, models=multi))
    liv = None
    if live:
        proc = None
        if start:
            proc = start_node(manifest, backend, hasattr(frames[0].image, 'format'),
                              out / 'node.log',
                              [f'pose.floor_frame:={floor_frame}'] if floor_frame else [],
                              models=multi)
        try:
            liv = evaluate_live(load_frames(bag), rate_hz, loops, out, categories=cats)
        finally:
            stop_node(proc)
    result['offline'] = _public(off)
    result['live'] = _public(liv)
    if off and liv and liv['latency_ms'] and off['frame_ms']:
        diffs = [min(v) - off['_frame_ms'][i] for i, v in liv['_latency_by_index'].items()
                 if i < len(off['_frame_ms'])]
        result['ros_overhead_ms'] = percentiles(diffs)
    files = plots(out, off, liv)
    for name, run in (('offline', off), ('live', liv)):
        table = (run or {}).get('accuracy', {}).get('binned')
        if table:
            files.append(binned.plot(table, out / f'binned_{name}.png', f'{bag.name}, {name}'))
            (out / f'binned_{name}.md').write_text(binned.markdown(table, f'{bag.name}, {name}')
                                                   + '\n')
            files.append(out / f'binned_{name}.md')
    if liv:
        preds_by_index = {s.index: liv['_preds_by_stamp'].get(s.stamp_ns, [])
                          for s in liv['_sent'][:len(frames)]}
        preds = [preds_by_index.get(f.index, []) for f in frames]
    else:
        preds = off['_preds'] if off else [[] for _ in frames]
    fps = rate_hz if rate_hz > 0 else 15.0
    files.append(annotated_video(out / 'annotated.mp4', frames, preds, fps, cats))
    if liv:
        files.append(out / 'output_bag')
    (out / 'metrics.json').write_text(json.dumps(result, indent=1) + '\n', encoding='utf-8')
    files.insert(0, out / 'metrics.json')
    result['files'] = [str(f) for f in files]
    return result
