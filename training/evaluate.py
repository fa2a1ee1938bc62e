"""Evaluate a 3D-INN checkpoint and the two baselines on the fixed held-out benchmark.

    python -m training.evaluate --checkpoint perception_3dinn/data/models/chair/model.pt \
        --data datasets/chair_val_128 --out bench/results/chair_eval

The benchmark is the rendered validation set ``chair_val_128`` (1,000 images, seed 2, written
once by ``python -m training.synthesize images --category chair --count 1000
--out datasets/chair_val_128 --seed 2 --size 128``), never used for training. Every object is
cropped from its box as at runtime (``Crop.from_box``, pad 0.15). Reported (JSON + plots):

* 2D: PCK@0.05/0.1 (visible keypoints; also over all keypoints in the image), PCP, AE;
* 3D structure: RMSE after centring and scale normalisation, its recall curve and average
  recall (thresholds ``metrics.RMSE_THRESHOLDS``), with two references: the mean shape and the
  best fit of the bases to the true skeleton (the representation's ceiling);
* viewpoint: azimuth and geodesic error; metric translation (size prior, true focal);
* the same for the optimisation baseline (``training.baselines.fit_optimisation``) and
  OpenCV solvePnP of the mean shape, both on the keypoints decoded from the same heatmaps
  and given the true crop intrinsics.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import time

import numpy as np
import torch
from tqdm import tqdm

from perception_3dinn import metrics, symmetry
from perception_3dinn.codec import HeatmapCodec
from perception_3dinn.models import INN3D, load_checkpoint
from perception_3dinn.skeleton import Category, load_category
from training import binned
from training.baselines import BaselineResult, fit_optimisation, pnp_mean_shape
from training.evaluate_plots import plot_failures, plot_results
from training.inn_data import CropSampler


def object_frame_keypoints(data: dict) -> np.ndarray:
    """(B, N, 3) true skeletons in the object frame, normalised by the keypoint diagonal."""
    R = data['R'].astype(np.float64)
    t = data['t'].astype(np.float64)
    kp = data['keypoints_3d'].astype(np.float64)
    y = np.einsum('bji,bnj->bni', R, kp - t[:, None])
    return y / data['scale_m'].astype(np.float64)[:, None, None]


def run_model(model: INN3D, crops: CropSampler, data: dict, batch: int = 64,
              keep_inputs: bool = False) -> dict:
    """Network outputs and crops of every benchmark sample (numpy, float64); with
    ``keep_inputs`` also the normalised crops as ``inputs`` (n, 3, S, S) float32."""
    from training.train import sample_rows

    n = len(data['image'])
    out: dict[str, list] = {k: [] for k in ('heatmaps', 'structure', 'rotation',
                                            'translation', 'focal', 'keypoints', 'visible',
                                            'box_size')}
    if keep_inputs:
        out['inputs'] = []
    crop_list = []
    model.eval()
    with torch.no_grad():
        for i in tqdm(range(0, n, batch), desc='network', leave=False):
            b = crops.batch(sample_rows(data, range(i, min(n, i + batch))))
            res = model(torch.from_numpy(b['input']))
            for key, value in zip(('heatmaps', 'structure', 'rotation', 'translation',
                                   'focal'), res):
                out[key].append(value.numpy().astype(np.float64))
            out['keypoints'].append(b['keypoints'])
            out['visible'].append(b['visible'])
            out['box_size'].append(b['box_size'])
            if keep_inputs:
                out['inputs'].append(b['input'])
            crop_list += b['crops']
    res = {k: np.concatenate(v) for k, v in out.items()}
    res['crops'] = crop_list
    return res


def to_real_camera(R_crop: np.ndarray, t_crop: np.ndarray, focal_crop: np.ndarray,
                   crops: list, K: np.ndarray, size_prior_m: float,
                   image_size: tuple = (128, 128)) -> tuple:
    """Interpreter poses (crop camera through the crop centre, normalised units) -> real
    camera, metres, exactly as the runtime does (``inference.pose.interpreter_pose``: the
    true focal fixes the depth, the size prior the scale).

    Args:
        R_crop: (B, 3, 3); t_crop: (B, 3); focal_crop: (B,); crops: B crops; K: (B, 3, 3).

    Returns:
        R (B, 3, 3), t (B, 3) metres.
    """
    from perception_3dinn.camera import CameraIntrinsics
    from perception_3dinn.inference.pose import interpreter_pose

    R = np.empty((len(crops), 3, 3))
    t = np.empty((len(crops), 3))
    for i, c in enumerate(crops):
        cam = CameraIntrinsics.from_matrix(np.asarray(K[i], np.float64), *image_size)
        R[i], t[i] = interpreter_pose(R_crop[i], t_crop[i], float(focal_crop[i]), c, cam,
                                      size_prior_m)
    return R, t


def pose_metrics(name: str, category: Category, alpha: np.ndarray, R: np.ndarray,
                 t_m: np.ndarray, data: dict, gt_structure: np.ndarray,
                 ok: np.ndarray | None = None) -> dict:
    """3D metrics of one method, modulo the instance's rotational symmetries (the closest
    equivalent ground truth, :mod:`perception_3dinn.symmetry`)."""
    R_gt = data['R'].astype(np.float64)
    elements = category.symmetry_elements
    if len(elements) > 1:
        masks = symmetry.instance_masks(gt_structure, elements)
        geo, idx = symmetry.rotation_error_modulo(R, R_gt, elements, masks)
        R_gt = R_gt @ np.stack([e.S for e in elements])[idx]
        gt_structure = symmetry.relabel(gt_structure, elements, idx)
    else:
        geo = metrics.geodesic_error(R, R_gt)
    rmse = metrics.structure_rmse(category.structure(alpha), gt_structure)
    az = metrics.azimuth_error(R, R_gt)
    te = metrics.translation_error(t_m, data['t'])
    rel = te / np.linalg.norm(data['t'].astype(np.float64), axis=-1)
    res = {
        'method': name,
        'structure_average_recall': metrics.average_recall(rmse),
        'structure_recall_curve': metrics.recall_curve(rmse).tolist(),
        'structure_rmse_median': float(np.median(rmse)),
        'azimuth_median_deg': float(np.degrees(np.median(az))),
        'azimuth_mean_deg': float(np.degrees(np.mean(az))),
        'azimuth_acc_pi6': float(np.mean(az <= np.pi / 6)),
        'geodesic_median_deg': float(np.degrees(np.median(geo))),
        'geodesic_acc_pi6': float(np.mean(geo <= np.pi / 6)),
        'translation_median_m': float(np.median(te)),
        'translation_relative_median': float(np.median(rel)),
    }
    if ok is not None:
        res['solved_fraction'] = float(np.mean(ok))
    return res, {'rmse': rmse, 'azimuth': az, 'geodesic': geo, 'translation': te}


def evaluate(checkpoint: str | Path, data_root: str | Path, out: str | Path,
             limit: int = 0, baselines: bool = True, pad: float = 0.15,
             shape: str | Path | None = None) -> dict:
    """Run the whole protocol; writes ``metrics.json``, ``per_sample.npz`` and plots."""
    from training.synth.dataset import read_manifest
    from training.train import load_images

    if read_manifest(data_root).get('kind') == 'videos':
        if shape is not None:
            raise ValueError('--shape needs a rendered image benchmark (voxels and masks), '
                             f'{data_root} holds videos')
        data = load_video_objects(data_root, limit=limit)
    else:
        from training.train import IMAGE_FIELDS

        extra = ['voxels', 'mask', 'depth'] if shape is not None else []
        data = load_images(data_root, fields=IMAGE_FIELDS + extra, limit=limit)
    return evaluate_data(checkpoint, data, out, str(data_root), baselines, pad, shape)


def evaluate_data(checkpoint: str | Path, data: dict, out: str | Path, name: str = '',
                  baselines: bool = True, pad: float = 0.15,
                  shape: str | Path | None = None) -> dict:
    """:func:`evaluate` on samples already in memory (fields of rendered images); with a
    ``shape`` checkpoint also the voxel metrics (:mod:`training.voxel_eval`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, payload = load_checkpoint(checkpoint)
    category = load_category(payload['category']['name'])
    if not np.allclose(np.asarray(payload['category']['bases']), category.bases, atol=1e-6):
        raise ValueError(f'{checkpoint} was trained with other base shapes than the current '
                         f'category file of {category.name!r}; retrain or restore the file')
    cfg = model.config
    crops = CropSampler(category, cfg.input_size, pad, cfg.sigma, cfg.mean, cfg.std)
    n = len(data['image'])
    t0 = time.time()
    net = run_model(model, crops, data, keep_inputs=shape is not None)
    net_s = time.time() - t0
    codec = HeatmapCodec(cfg.input_size, cfg.stride, cfg.sigma)
    kp_crop, conf = codec.decode(net['heatmaps'])
    kp_img = np.stack([c.from_crop(k) for c, k in zip(net['crops'], kp_crop)])
    gt2d = data['keypoints_2d'].astype(np.float64)
    box = data['box'].astype(np.float64)
    box_size = np.maximum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1])
    vis, inimg = data['visible'].astype(bool), data['in_image'].astype(bool)
    gt_struct = object_frame_keypoints(data)
    elements = category.symmetry_elements
    if len(elements) > 1:  # keypoints modulo the instance's symmetries
        idx = symmetry.best_keypoint_element(kp_img, gt2d, vis, elements,
                                             symmetry.instance_masks(gt_struct, elements))
        gt2d, vis, inimg = (symmetry.relabel(v, elements, idx) for v in (gt2d, vis, inimg))
    res2d = {
        'pck05': metrics.pck(kp_img, gt2d, box_size, 0.05, vis),
        'pck10': metrics.pck(kp_img, gt2d, box_size, 0.1, vis),
        'pck10_all_in_image': metrics.pck(kp_img, gt2d, box_size, 0.1, inimg),
        'pck10_per_keypoint': metrics.pck_per_keypoint(kp_img, gt2d, box_size, 0.1,
                                                       vis).tolist(),
        'pcp': metrics.pcp(kp_img, gt2d, category.edges, vis),
        'ae': metrics.average_error(kp_img, gt2d, box_size, vis),
    }
    K = data['K'].astype(np.float64)
    R_inn, t_inn = to_real_camera(net['rotation'], net['translation'], net['focal'],
                                  net['crops'], K, category.size_prior_m,
                                  tuple(data['image'].shape[2:0:-1]))
    methods, per = {}, {}
    methods['3d-inn'], per['3d-inn'] = pose_metrics('3D-INN', category, net['structure'],
                                                    R_inn, t_inn, data, gt_struct)
    fit_alpha = category.fit_structure(gt_struct)
    ref_best = metrics.structure_rmse(category.structure(fit_alpha), gt_struct)
    ref_mean = metrics.structure_rmse(np.broadcast_to(category.bases[0], gt_struct.shape),
                                      gt_struct)
    references = {'bases_best_fit_average_recall': metrics.average_recall(ref_best),
                  'mean_shape_average_recall': metrics.average_recall(ref_mean)}
    timings = {'network_s_per_image': net_s / n}
    if baselines:
        principal = np.stack([c.to_crop(k[:2, 2]) for c, k in zip(net['crops'], K)])
        focal = np.array([c.scale * k[0, 0] for c, k in zip(net['crops'], K)])
        for method, fn in (('pnp-mean-shape', pnp_mean_shape), ('optimisation',
                                                                  fit_optimisation)):
            t1 = time.time()
            r = _baseline(fn, category, kp_crop, conf, focal, principal)
            timings[f'{method}_s_per_image'] = (time.time() - t1) / n
            methods[method], per[method] = pose_metrics(
                method, category, r.alpha, r.rotation, r.translation * category.size_prior_m,
                data, gt_struct, r.ok)
    table = binned_image_errors(data, R_inn, t_inn, per['3d-inn']['geodesic'])
    result = {'checkpoint': str(checkpoint), 'data': name, 'count': n,
              'category': category.name, 'pad': pad, 'keypoints_2d': res2d,
              'methods': methods, 'references': references,
              'rmse_thresholds': metrics.RMSE_THRESHOLDS.tolist(), 'timings': timings,
              'binned': table}
    if shape is not None:
        from training.voxel_eval import evaluate_voxels, plot_voxel_cases

        result['voxels'], vper = evaluate_voxels(shape, data, net, net.pop('inputs'),
                                                 category, cfg.input_size)
        for key in ('azimuth_acc_pi6', 'geodesic_acc_pi6', 'geodesic_median_deg'):
            result['voxels'][f'rotation_{key}'] = methods['3d-inn'][key]
        plot_voxel_cases(data, vper, out / 'voxels.png')
    (out / 'metrics.json').write_text(json.dumps(result, indent=1) + '\n')
    np.savez_compressed(out / 'per_sample.npz', keypoints=kp_img, confidence=conf,
                        **{f'{m}_{k}': v for m, d in per.items() for k, v in d.items()})
    plot_results(result, per, out)
    plot_failures(data, kp_img, per['3d-inn'], category, out)
    binned.plot(table, out / 'binned.png', f'3D-INN (interpreter pose), {name}')
    (out / 'binned.md').write_text(binned.markdown(table, f'3D-INN, {name}') + '\n')
    return result


def binned_image_errors(data: dict, R: np.ndarray, t: np.ndarray,
                        rotation_error: np.ndarray) -> dict:
    """`training.binned` tables of a rendered benchmark's poses.

    Images have no silhouette outside the frame, so truncation is the fraction of keypoints
    outside the image and occlusion the fraction of in-image keypoints hidden: proxies of
    the full-frame benchmark's silhouette fractions.
    """
    box = data['box'].astype(np.float64)
    inimg = data['in_image'].astype(bool)
    vis = data['visible'].astype(bool)
    attrs = binned.view_attributes(data['R'], data['t'])
    attrs['box_height_px'] = box[:, 3] - box[:, 1]
    attrs['truncation'] = 1.0 - inimg.mean(1)
    attrs['occlusion'] = 1.0 - vis.sum(1) / np.maximum(inimg.sum(1), 1)
    errors = binned.pose_errors(R, t, data['R'], data['t'], rotation_error)
    return binned.binned_errors(attrs, errors)


def load_video_objects(root: str | Path, limit: int = 0, min_box_px: float = 12.0,
                       min_keypoints: int = 4) -> dict:
    """Every (frame, object) of a rendered video set as image-style samples.

    Objects that are present, at least ``min_box_px`` wide and high, and have at least
    ``min_keypoints`` keypoints inside the frame are kept; ``video``, ``frame`` and
    ``object_id`` say where each sample comes from.
    """
    from training.synth.dataset import ShardDataset

    ds = ShardDataset(root)
    rows: dict[str, list] = {}
    for v in tqdm(range(len(ds)), desc='videos', leave=False):
        s = ds[v]
        frames = s['frames']
        for f in range(frames.shape[0]):
            for o in range(s['present'].shape[1]):
                box = s['box'][f, o]
                if not (s['present'][f, o] and s['object_valid'][o]):
                    continue
                if min(box[2] - box[0], box[3] - box[1]) < min_box_px or \
                        s['in_image'][f, o].sum() < min_keypoints:
                    continue
                row = {'image': frames[f], 'keypoints_2d': s['keypoints_2d'][f, o],
                       'visible': s['visible'][f, o], 'in_image': s['in_image'][f, o],
                       'box': box, 'K': s['K'], 'R': s['R'][f, o], 't': s['t'][f, o],
                       'structure': s['structure'][o], 'scale_m': s['scale_m'][o],
                       'keypoints_3d': s['keypoints_3d'][f, o], 'video': v, 'frame': f,
                       'object_id': s['object_id'][o]}
                for key, value in row.items():
                    rows.setdefault(key, []).append(np.asarray(value))
        if limit and len(rows.get('image', [])) >= limit:
            break
    out = {k: np.stack(v) for k, v in rows.items()}
    return {k: v[:limit] for k, v in out.items()} if limit else out


def _baseline(fn, category: Category, kp: np.ndarray, conf: np.ndarray, focal: np.ndarray,
              principal: np.ndarray) -> BaselineResult:
    """Run a baseline sample by sample (each crop has its own principal point)."""
    rows = []
    for i in tqdm(range(len(kp)), desc=fn.__name__, leave=False):
        # Shift keypoints so the principal point sits at 0 (the baselines take a scalar).
        r = fn(category, kp[i:i + 1] - principal[i], conf[i:i + 1], focal[i:i + 1], 0.0)
        rows.append(r)
    return BaselineResult(*(np.concatenate([getattr(r, f) for r in rows])
                            for f in ('alpha', 'rotation', 'translation', 'focal', 'ok')))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog='python -m training.evaluate', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--checkpoint', default=None,
                   help='INN3D checkpoint (.pt); required except for full-frame scenes (there: '
                        "run it with torch instead of the model's ONNX graph)")
    p.add_argument('--model', default=None,
                   help='scenes: model manifest run by the runtime pipeline (default: the '
                        "packaged model of the data set's category)")
    p.add_argument('--floor', action='store_true',
                   help='scenes: give the pipeline the floor plane (1 deg / 2 cm error)')
    p.add_argument('--data', default='datasets/chair_val_128', help='benchmark folder')
    p.add_argument('--out', required=True, help='output folder (metrics.json, plots)')
    p.add_argument('--limit', type=int, default=0, help='only the first N samples')
    p.add_argument('--no-baselines', action='store_true', help='skip the two baselines')
    p.add_argument('--pad', type=float, default=0.15, help='crop padding (as the runtime)')
    p.add_argument('--threads', type=int, default=1, help='torch CPU threads')
    p.add_argument('--shape', default=None,
                   help='shape model (python -m training.train shape): add the voxel '
                        'metrics of seed 004 (metrics.json "voxels", voxels.png)')
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from training.synth.dataset import read_manifest

    if read_manifest(args.data).get('kind') == 'scenes':
        from training import binned
        from training.frame_eval import evaluate_scenes

        res = evaluate_scenes(args.data, args.out, args.model, args.floor, args.limit,
                              args.threads, checkpoint=args.checkpoint)
        print(binned.markdown(res['binned'], res['camera']))
        return
    if args.checkpoint is None:
        p.error('--checkpoint is required for image and video benchmarks')
    res = evaluate(args.checkpoint, args.data, args.out, args.limit, not args.no_baselines,
                   args.pad, args.shape)
    summary = {'keypoints_2d': {k: v for k, v in res['keypoints_2d'].items()
                                if not isinstance(v, list)},
               'references': res['references']}
    for key, m in res['methods'].items():
        summary[key] = {k: v for k, v in m.items() if not isinstance(v, list)}
    if 'voxels' in res:
        summary['voxels'] = res['voxels']
    print(json.dumps(summary, indent=1))


if __name__ == '__main__':
    main()
