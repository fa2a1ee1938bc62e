"""Instances of a user's category for the image synthesiser: meshes with discovered keypoints.

``training.synthesize images --meshes DIR --mesh-keypoints RUN/keypoints.npz --category
RUN/NAME.json`` renders the user's meshes instead of a procedural generator, labelled with
the keypoints that :mod:`training.discover_category` found on each of them (metres,
canonical frame). Every sample picks one of those meshes at random.

Our renderer and its exact visibility test work on convex parts
(:class:`training.synth.procedural.ConvexPart`), so each triangle becomes a thin prism:
the triangle moved by half of ``thickness`` (a fraction of the mesh's longest side) along
its normal on either side. Images are then drawn exactly as the procedural ones. Voxels of
such instances are their surface shell, not the solid (the prisms fill only the voxels the
surface passes through). The cost grows with the face count: simplify meshes of more than a
few thousand faces for speed.
"""

from __future__ import annotations

import functools

import numpy as np

from training.keypoint_category import to_canonical
from training.synth.meshes import load_mesh_folder, UserMesh
from training.synth.procedural import Mesh, prism


def instance_from_mesh(mesh: UserMesh, keypoints_m: np.ndarray, metres: float,
                       thickness: float = 0.004) -> Mesh:
    """The procedural-style instance of a user mesh: one thin prism per triangle, in
    metres with the origin on the floor, and its keypoints (N, 3) metres."""
    v = to_canonical(mesh.vertices, mesh, metres)
    half = 0.5 * thickness * 2.0 * metres  # the normalised mesh spans 2 units
    tri = v[mesh.faces]  # (F, 3, 3)
    off = mesh.normals[:, None, :] * half
    parts = [prism(t - o, t + o) for t, o in zip(tri, off)]
    kp = np.asarray(keypoints_m, np.float64)
    return Mesh(category='user', parts=parts, keypoints=kp,
                keypoint_parts=np.zeros(len(kp), np.int64), params={'mesh': mesh.name})


@functools.lru_cache(maxsize=4)
def load_instances(mesh_dir: str, keypoints_npz: str, up: str = 'auto',
                   max_faces: int = 500_000) -> tuple[Mesh, ...]:
    """Every mesh of ``keypoints_npz`` (written by ``training.discover_category``) found in
    ``mesh_dir``, as instances (cached per process)."""
    data = np.load(keypoints_npz)
    names = [str(n) for n in data['names']]
    if 'metres_per_unit' not in data:
        raise ValueError(f'{keypoints_npz} has no metres_per_unit: rerun '
                         'python -m training.discover_category on its run')
    meshes, _ = load_mesh_folder(mesh_dir, up, None, max_faces)
    by_name = {m.name: m for m in meshes}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise FileNotFoundError(f'{len(missing)} meshes of {keypoints_npz} are not in '
                                f'{mesh_dir} (first: {missing[0]})')
    return tuple(instance_from_mesh(by_name[n], k, float(s)) for n, k, s in
                 zip(names, data['keypoints_m'], data['metres_per_unit']))


def sample_instance(mesh_dir: str, keypoints_npz: str, up: str,
                    rng: np.random.Generator) -> Mesh:
    """One random instance; a fresh copy, so callers may move its parts."""
    pool = load_instances(mesh_dir, keypoints_npz, up)
    m = pool[int(rng.integers(len(pool)))]
    return Mesh(m.category, list(m.parts), m.keypoints.copy(), m.keypoint_parts.copy(),
                dict(m.params))
