"""Write procedural instances as mesh files, the input of keypoint discovery (seed 003).

    python -m training.synth.mesh_export --category chair --count 200 --seed 300 \
        --out datasets/chair_meshes

Mesh-only families (:mod:`training.synth.mesh_families`, e.g. ``stool``) are written as
they are, without keypoints. Each instance of :func:`training.synth.procedural.generate`
becomes one triangle mesh (its
convex parts' polygons fanned into triangles and concatenated; parts are not merged, as in
many CAD exports) in metres, z up, x forward, origin on the floor under the object centre.
``keypoints.json`` beside them holds the hand-made keypoints of every file in the same
frame, for evaluating discovered keypoints against them; discovery itself never reads it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from training.synth.mesh_families import FAMILIES
from training.synth.procedural import generate, GENERATOR_VERSION, GENERATORS, Mesh, SKELETONS

KEYPOINTS_FILE = 'keypoints.json'


def to_trimesh(mesh: Mesh):
    """One ``trimesh.Trimesh`` of all convex parts (polygons fanned into triangles)."""
    import trimesh

    verts, tris, base = [], [], 0
    for part in mesh.parts:
        verts.append(part.vertices)
        for f in part.faces:
            f = np.asarray(f, np.int64) + base
            tris.extend((f[0], f[i], f[i + 1]) for i in range(1, len(f) - 1))
        base += len(part.vertices)
    return trimesh.Trimesh(np.concatenate(verts), np.asarray(tris, np.int64), process=False)


def export_instances(category: str, count: int, out: str | Path, seed: int = 0,
                     suffix: str = '.obj', progress: bool = True) -> Path:
    """Write ``count`` instances as ``<category>_<i>.<suffix>`` plus, for procedural
    categories, ``keypoints.json``; returns that file (mesh-only families: the folder)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = {}
    family = FAMILIES.get(category)
    if family is None and category not in GENERATORS:
        raise KeyError(f'no generator for {category!r}; procedural categories: '
                       f'{", ".join(sorted(GENERATORS))}; mesh-only families: '
                       f'{", ".join(sorted(FAMILIES))}')
    for i in tqdm(range(count), desc=f'{category} meshes', disable=not progress):
        name = f'{category}_{i:04d}{suffix}'
        if family is not None:  # mesh only: no hand-made keypoints
            family(rng).export(str(out / name))
            continue
        mesh = generate(category, rng)
        to_trimesh(mesh).export(str(out / name))
        labels[name] = np.round(mesh.keypoints, 6).tolist()
    if family is not None:
        return out
    meta = {'category': category, 'generator': 'training.synth.procedural',
            'generator_version': GENERATOR_VERSION, 'seed': seed,
            'frame': 'metres, x forward, y left, z up, origin on the floor',
            'keypoint_names': list(SKELETONS[category][0]) if category in SKELETONS else [],
            'keypoints': labels}
    path = out / KEYPOINTS_FILE
    path.write_text(json.dumps(meta, indent=1) + '\n')
    return path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog='python -m training.synth.mesh_export',
                                description=__doc__.split('\n')[0])
    p.add_argument('--category', required=True,
                   help='procedural category or mesh-only family (stool)')
    p.add_argument('--count', type=int, default=200)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--format', choices=('obj', 'ply', 'stl', 'glb'), default='obj')
    p.add_argument('--out', required=True, help='folder for the mesh files')
    args = p.parse_args(argv)
    path = export_instances(args.category, args.count, args.out, args.seed, f'.{args.format}')
    print(f'wrote {args.count} meshes to {args.out}' +
          (f' and {path}' if path.is_file() else ''))


if __name__ == '__main__':
    main()
