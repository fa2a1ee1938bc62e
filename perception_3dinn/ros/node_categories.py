"""Which categories the node serves, with which model each, and how detector classes map.

- ``categories`` empty: the node serves ``category`` alone, with ``model.manifest`` (or the
  packaged model of that category), exactly as a single-category node always did.
- ``categories`` a list of names: one model per name. ``['all']`` is every model installed
  in ``perception_3dinn/data/models/`` (a folder with a ``manifest.json``).
- ``model.manifests`` entries ``'name:path'`` give a category its own model; a model folder
  that holds a ``category.json`` brings its category with it, so a new category is a
  folder and two parameters, no code.
- ``class_map`` entries ``'label:cat1,cat2'`` replace the default mapping of those labels
  (:meth:`perception_3dinn.inference.multi.ClassMap.default`: COCO's chair, couch, dining
  table and bed, and every served category's own name).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from perception_3dinn.inference.manifest import (
    category_source,
    default_model_dir,
    load_manifest,
    ManifestError,
)
from perception_3dinn.inference.multi import ClassMap
from perception_3dinn.skeleton import Category, load_category


def installed_models() -> list[str]:
    """Categories with a packaged model (``perception_3dinn/data/models/<name>/``)."""
    root = default_model_dir('chair').parent
    return sorted(p.parent.name for p in root.glob('*/manifest.json'))


def _manifest_overrides(entries: list[str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for entry in entries:
        name, sep, path = str(entry).partition(':')
        if not sep or not name.strip() or not path.strip():
            raise ValueError(f"model.manifests entry {entry!r}: expected 'category:path'")
        if name.strip() in out:
            raise ValueError(f'model.manifests names {name.strip()!r} twice')
        out[name.strip()] = Path(path.strip()).expanduser()
    return out


def served_models(settings: Any) -> dict[str, Path]:
    """Category name -> manifest path of every category the node serves (in order)."""
    names = [str(n).strip() for n in settings['categories']]
    overrides = _manifest_overrides(list(settings['model.manifests']))
    if not names:
        names = [str(settings['category'])]
        if settings['model.manifest']:
            overrides.setdefault(names[0], Path(str(settings['model.manifest'])).expanduser())
    elif names == ['all']:
        names = installed_models() + sorted(set(overrides) - set(installed_models()))
    if len(set(names)) != len(names) or '' in names:
        raise ValueError(f'categories {names}: names must be unique and non-empty')
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(f'model.manifests names {unknown}, which categories {names} does '
                         'not serve')
    out = {}
    for name in names:
        path = overrides.get(name, default_model_dir(name) / 'manifest.json')
        out[name] = path / 'manifest.json' if path.is_dir() else path
    return out


def load_served(models: dict[str, Path]) -> dict[str, Category]:
    """Each served category (the model folder's own ``category.json`` first); raises
    FileNotFoundError or ValueError naming the file and the category."""
    cats = {}
    for name, path in models.items():
        if not path.is_file():
            hint = (f'installed models: {", ".join(installed_models()) or "none"}; set '
                    f"model.manifests ('{name}:/path/manifest.json')")
            raise FileNotFoundError(f'category {name!r}: model manifest {path} does not '
                                    f'exist ({hint})')
        try:
            manifest = load_manifest(path)  # checks the model files' sha256 too
        except (ManifestError, KeyError, TypeError, ValueError) as err:
            raise ValueError(f'category {name!r}: {path}: {err}') from None
        source = category_source(manifest)
        try:
            cat = load_category(source)
        except (FileNotFoundError, KeyError, TypeError, ValueError) as err:
            raise ValueError(f'category {name!r}: category file {source} of model {path}: '
                             f'{type(err).__name__}: {err}') from None
        if manifest.category != name or cat.name != name:
            raise ValueError(f'category {name!r}: {path} is a model of category '
                             f'{manifest.category!r} (its category file names '
                             f'{cat.name!r})')
        cats[name] = cat
    return cats


def class_map(settings: Any, categories: list[str]) -> ClassMap:
    """The defaults for ``categories`` with the ``class_map`` parameter on top (checked:
    every category it names is served)."""
    mapping = ClassMap.with_defaults(list(settings['class_map']), categories)
    for label, cats in mapping.as_dict().items():
        missing = [c for c in cats if c not in categories]
        if missing:
            raise ValueError(f"class_map: {label!r} -> {', '.join(missing)}, not served "
                             f"(categories: {', '.join(categories)})")
    return mapping


def make_pipeline(settings: Any, models: dict[str, Path], mapping: ClassMap | None) -> Any:
    """The runtime: one `Pipeline` (a single category, ``mapping`` None) or a
    `MultiPipeline` over every served category, each with its manifest's crop pad.

    Raises:
        RuntimeError: naming the model that failed to load and the backend.
    """
    from perception_3dinn.inference import Pipeline
    from perception_3dinn.inference.multi import MultiPipeline

    backend = settings['model.backend']
    pipes: dict[str, Any] = {}
    try:
        for name, path in models.items():
            try:
                manifest = load_manifest(path)
                config = settings.pipeline_config(model_crop_pad=manifest.crop_pad)
                if mapping is not None:
                    config = dataclasses.replace(config, class_ids=())
                pipes[name] = Pipeline.from_manifest(path, backend=backend, config=config)
            except Exception as err:  # noqa: BLE001 - named and re-raised
                raise RuntimeError(f'cannot load model {path} with backend {backend}: '
                                   f'{type(err).__name__}: {err}') from err
        if mapping is None:
            return next(iter(pipes.values()))
        return MultiPipeline(pipes, mapping)
    except BaseException:
        for pipe in pipes.values():
            pipe.close()
        raise
