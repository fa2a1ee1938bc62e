"""Learn a category's base shapes from procedurally generated instances and write its JSON.

Each instance's keypoints (canonical frame, origin on the floor under the centre) are divided
by their bounding-box diagonal, so scale is not a structure parameter. The mean of these
normalised skeletons is ``bases[0]``; the deformations ``bases[1:]`` are the first K
principal directions (right singular vectors of the centred (M, N * 3) data matrix, via
numpy's SVD), unit-norm, with a deterministic sign (largest component positive).
``alpha_std`` is the standard deviation of the instances' projections on each direction and
``explained_variance`` the fraction of the total keypoint variance each one explains.
Families that are not left/right symmetric one by one (a sofa's chaise on one side) are
learned with every instance's mirror image added, so the bases stay mirror-symmetric, as
the flip augmentation needs. The generator's ``ROTATIONAL_ORDERS`` are searched on the
instances (:mod:`training.synth.symmetry_search`) and written as the category's
``rotational_symmetries``, with the fraction of instances that have each in the metadata.

Regenerate the shipped files with (the chair's file is what the shipped chair model was
trained with: regenerating it means retraining)::

    python -m training.synth.bases --category table
    python -m training.synth.bases --category swivel_chair
    python -m training.synth.bases --category sofa
    python -m training.synth.bases --category bed
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

from perception_3dinn.skeleton import Category, CATEGORY_DIR, save_category
from training.synth.procedural import (
    generate,
    GENERATOR_VERSION,
    keypoint_diagonal,
    ROTATIONAL_ORDERS,
    SKELETONS,
)
from training.synth.symmetry_search import find_symmetries

DEFAULT_NUM_BASES = {'chair': 5, 'table': 5, 'swivel_chair': 7, 'sofa': 7, 'bed': 5}


def sample_instances(category: str, count: int, seed: int,
                     progress: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate ``count`` instances.

    Returns:
        keypoints (M, N, 3) metres, mesh lower bounds (M, 3), mesh upper bounds (M, 3).
    """
    rng = np.random.default_rng(seed)
    kps, lo, hi = [], [], []
    for _ in tqdm(range(count), desc=f'{category} instances', disable=not progress):
        mesh = generate(category, rng)
        kps.append(mesh.keypoints)
        b = mesh.bounds()
        lo.append(b[0])
        hi.append(b[1])
    return np.stack(kps), np.stack(lo), np.stack(hi)


def learn_bases(keypoints: np.ndarray, num_bases: int) -> dict:
    """PCA of size-normalised skeletons.

    Args:
        keypoints: (M, N, 3) instances in metres, canonical frame.
        num_bases: K deformations to keep.

    Returns:
        dict with bases (K + 1, N, 3), alpha_std (K,), explained_variance (K,),
        diagonals (M,) metres.
    """
    keypoints = np.asarray(keypoints, np.float64)
    if keypoints.ndim != 3 or keypoints.shape[-1] != 3:
        raise ValueError(f'keypoints must be (M, N, 3), got {keypoints.shape}')
    m, n, _ = keypoints.shape
    if not 1 <= num_bases <= min(m - 1, 3 * n):
        raise ValueError(f'num_bases must be in 1..{min(m - 1, 3 * n)}')
    diag = keypoint_diagonal(keypoints)
    y = keypoints / diag[:, None, None]
    mean = y.mean(0)
    x = (y - mean).reshape(m, -1)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    comps = vt[:num_bases]
    flip = np.sign(comps[np.arange(num_bases), np.argmax(np.abs(comps), axis=1)])
    comps = comps * flip[:, None]
    var = s ** 2
    return {
        'bases': np.concatenate([mean[None], comps.reshape(num_bases, n, 3)]),
        'alpha_std': s[:num_bases] / np.sqrt(m - 1),
        'explained_variance': var[:num_bases] / var.sum(),
        'diagonals': diag,
    }


def build_category(name: str, count: int = 6000, seed: int = 0,
                   num_bases: int | None = None, heldout: int = 1000,
                   progress: bool = False) -> Category:
    """Generate instances, learn the bases and return the Category (not yet written)."""
    names, edges, sym = SKELETONS[name]
    k = num_bases or DEFAULT_NUM_BASES.get(name, 5)
    kps, lo, hi = sample_instances(name, count, seed, progress)
    perm = np.arange(len(names))
    for a, b in sym:
        perm[a], perm[b] = b, a
    mirrored = kps[:, perm] * [1.0, -1.0, 1.0]
    asymmetric = float(np.mean(np.abs(mirrored - kps).max((1, 2)) > 1e-9))
    learned = learn_bases(np.concatenate([kps, mirrored]) if asymmetric else kps, k)
    learned['diagonals'] = learned['diagonals'][:len(kps)]
    symmetries, sym_fractions = find_symmetries(kps, ROTATIONAL_ORDERS.get(name, ()))
    size = float(learned['diagonals'].mean())
    # Nominal extent: every generated mesh, rescaled to the category size, fits inside.
    scale = size / learned['diagonals']
    lo_n, hi_n = lo * scale[:, None], hi * scale[:, None]
    half_xy = np.maximum(np.abs(lo_n[:, :2]), np.abs(hi_n[:, :2])).max(0)
    dims = np.array([2 * half_xy[0], 2 * half_xy[1], hi_n[:, 2].max()])
    cat = Category(name=name, keypoint_names=names, edges=np.array(edges),
                   symmetric_pairs=np.array(sym), bases=learned['bases'],
                   alpha_std=learned['alpha_std'], size_prior_m=round(size, 6),
                   dimensions_m=dims, explained_variance=learned['explained_variance'],
                   rotational_symmetries=symmetries)
    # Held-out reconstruction error in normalised units (and metres at the prior size).
    kh, _, _ = sample_instances(name, heldout, seed + 1_000_003)
    yh = kh / keypoint_diagonal(kh)[:, None, None]
    rec = cat.structure(cat.fit_structure(yh))
    rmse = np.sqrt(((rec - yh) ** 2).sum(-1).mean(-1))
    meta = {
        'generator': 'training.synth.procedural',
        'generator_version': GENERATOR_VERSION,
        'seed': seed,
        'instances': count,
        'explained_variance_total': round(float(learned['explained_variance'].sum()), 6),
        'mirror_asymmetric_fraction': round(asymmetric, 4),
        'rotational_symmetry_fractions': sym_fractions,
        'heldout_instances': heldout,
        'heldout_rmse_mean': round(float(rmse.mean()), 6),
        'heldout_rmse_p95': round(float(np.percentile(rmse, 95)), 6),
        'heldout_rmse_max': round(float(rmse.max()), 6),
        'rmse_units': 'normalised (keypoint bounding-box diagonal = 1), per-keypoint RMS',
    }
    return Category(name=cat.name, keypoint_names=cat.keypoint_names, edges=cat.edges,
                    symmetric_pairs=cat.symmetric_pairs, bases=cat.bases,
                    alpha_std=cat.alpha_std, size_prior_m=cat.size_prior_m,
                    dimensions_m=cat.dimensions_m,
                    explained_variance=cat.explained_variance, metadata=meta,
                    rotational_symmetries=cat.rotational_symmetries)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--category', required=True, choices=sorted(SKELETONS))
    parser.add_argument('--count', type=int, default=6000, help='instances to learn from')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--num-bases', type=int, default=None, help='K deformations')
    parser.add_argument('--out', type=Path, default=None,
                        help='output JSON (default perception_3dinn/categories/<name>.json)')
    args = parser.parse_args(argv)
    cat = build_category(args.category, args.count, args.seed, args.num_bases, progress=True)
    path = save_category(cat, args.out or CATEGORY_DIR / f'{args.category}.json')
    ev = ', '.join(f'{v:.3f}' for v in cat.explained_variance)
    print(f'{path}: K={cat.num_bases}, explained variance [{ev}] '
          f'(total {cat.metadata["explained_variance_total"]:.3f}), '
          f'size prior {cat.size_prior_m:.3f} m, dimensions {np.round(cat.dimensions_m, 3)}, '
          f'held-out RMSE mean {cat.metadata["heldout_rmse_mean"]:.4f} '
          f'p95 {cat.metadata["heldout_rmse_p95"]:.4f}')


if __name__ == '__main__':
    main()
