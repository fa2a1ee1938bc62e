"""Plots of `training.evaluate`: recall and azimuth curves, PCK per keypoint, worst cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from perception_3dinn.skeleton import Category


def plot_results(result: dict, per: dict, out: Path) -> None:
    """Recall curve of structure RMSE, azimuth error CDF, PCK per keypoint."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    th = np.asarray(result['rmse_thresholds'])
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for key, m in result['methods'].items():
        axes[0].plot(th, m['structure_recall_curve'],
                     label=f"{m['method']} (AR {m['structure_average_recall']:.3f})")
        az = np.sort(np.degrees(per[key]['azimuth']))
        axes[1].plot(az, np.arange(1, len(az) + 1) / len(az),
                     label=f"{m['method']} (median {m['azimuth_median_deg']:.1f})")
    axes[0].set_xlabel('structure RMSE threshold (unit RMS radius)')
    axes[0].set_ylabel('recall')
    axes[0].set_title('3D structure')
    axes[0].legend()
    axes[1].set_xscale('log')
    axes[1].set_xlabel('azimuth error (deg)')
    axes[1].set_ylabel('fraction of objects')
    axes[1].set_title('viewpoint')
    axes[1].legend()
    pck = result['keypoints_2d']['pck10_per_keypoint']
    axes[2].bar(range(len(pck)), pck)
    axes[2].set_ylim(0, 1)
    axes[2].set_title(f"PCK@0.1 per keypoint (all {result['keypoints_2d']['pck10']:.3f})")
    fig.tight_layout()
    fig.savefig(out / 'evaluation.png', dpi=90)
    plt.close(fig)


def plot_failures(data: dict, kp_img: np.ndarray, per: dict, category: Category, out: Path,
                  count: int = 8) -> None:
    """The ``count`` worst azimuth errors, with predicted (red) and true (green) skeletons."""
    import cv2

    worst = np.argsort(-per['azimuth'])[:count]
    tiles = []
    for i in worst:
        img = np.ascontiguousarray(data['image'][i]).copy()
        img = cv2.resize(img, (256, 256), interpolation=cv2.INTER_NEAREST)
        s = 256 / data['image'][i].shape[0]
        for pts, col in ((data['keypoints_2d'][i], (0, 200, 0)), (kp_img[i], (255, 0, 0))):
            p = np.round((np.asarray(pts, np.float64) + 0.5) * s - 0.5).astype(int)
            for a, b in category.edges:
                cv2.line(img, tuple(p[a]), tuple(p[b]), col, 1, cv2.LINE_AA)
        cv2.putText(img, f'#{i} az err {np.degrees(per["azimuth"][i]):.0f}', (4, 14),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(img)
    grid = np.concatenate([np.concatenate(tiles[:4], 1), np.concatenate(tiles[4:8], 1)], 0)
    cv2.imwrite(str(out / 'failures.png'), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
