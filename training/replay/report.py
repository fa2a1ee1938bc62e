"""What an evaluation shows a person: latency and error plots, the annotated video (each
object's skeleton, axes and category) and the printed summary (overall and per category)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p95, max, mean and count ({} for none)."""
    if not values:
        return {}
    a = np.asarray(values, np.float64)
    return {'p50': float(np.percentile(a, 50)), 'p95': float(np.percentile(a, 95)),
            'max': float(a.max()), 'mean': float(a.mean()), 'count': int(a.size)}


def plots(out: Path, offline: dict | None, live: dict | None) -> list[Path]:
    """latency.png (live latency and offline pipeline time per frame), errors.png."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    written = []
    fig, ax = plt.subplots(figsize=(7, 3.5))
    if live and live['_latency_by_index']:
        idx = sorted(live['_latency_by_index'])
        ax.plot(idx, [min(live['_latency_by_index'][i]) for i in idx], '.', ms=3,
                label='node stamp-to-receipt (live)')
    if offline:
        ax.plot(offline['_frame_ms'], '-', lw=1, label='pipeline per frame (offline)')
    ax.set_xlabel('frame')
    ax.set_ylabel('ms')
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / 'latency.png', dpi=110)
    plt.close(fig)
    written.append(out / 'latency.png')
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for name, res in (('offline', offline), ('live', live)):
        acc = (res or {}).get('accuracy', {}).get('per_object')
        if acc:
            axes[0].hist(acc['geodesic_deg'], bins=30, alpha=0.5, label=name)
            axes[1].hist(acc['translation_m'], bins=30, alpha=0.5, label=name)
    axes[0].set_xlabel('rotation error (deg, modulo symmetry)')
    axes[1].set_xlabel('translation error (m)')
    for a in axes:
        a.legend()
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / 'errors.png', dpi=110)
    plt.close(fig)
    written.append(out / 'errors.png')
    return written


def _bgr(name: str) -> tuple[int, int, int]:
    """The category's marker colour (perception_3dinn.ros.markers) as 8-bit BGR."""
    from perception_3dinn.ros.markers import category_colour

    c = category_colour(name)
    return int(255 * c.b), int(255 * c.g), int(255 * c.r)


def annotated_video(path: Path, frames: list[Any], preds: list[list[Any]], fps: float,
                    categories: Mapping[str, Any]) -> Path:
    """MP4 of the frames with each object's skeleton (2D keypoints, in its category's colour
    and edges), its 3D axes, and a label 'category #track score'."""
    import cv2

    # drawFrameAxes warns on every axis that leaves the image; clipping is expected here.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    from perception_3dinn.ros import inputs

    first = next(iter(categories.values()))
    writer = None
    for f, objs in zip(frames, preds):
        img = cv2.cvtColor(inputs.image_to_rgb(f.image), cv2.COLOR_RGB2BGR)
        intr = inputs.camera_info_to_intrinsics(f.camera_info)
        for o in objs:
            name = getattr(o, 'category', '') or first.name
            cat = categories.get(name, first)
            kp = o.keypoints_2d
            colour = _bgr(name)
            for a, b in cat.edges:
                if max(a, b) < len(kp):
                    cv2.line(img, tuple(int(v) for v in kp[a]), tuple(int(v) for v in kp[b]),
                             colour, 2, cv2.LINE_AA)
            for p, c in zip(kp, o.confidences):
                cv2.circle(img, (int(p[0]), int(p[1])), 3,
                           (0, int(255 * c), int(255 * (1 - c))), -1, cv2.LINE_AA)
            if o.t[2] > 0.05:
                rvec, _ = cv2.Rodrigues(o.R)
                cv2.drawFrameAxes(img, intr.K, np.zeros(5), rvec, o.t.reshape(3, 1), 0.3, 2)
            x0, y0 = int(o.box[0]), int(o.box[1])
            cv2.putText(img, f'{name} #{o.track_id} {o.score:.2f}', (x0, max(12, y0 - 4)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        if writer is None:
            h, w = img.shape[:2]
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), fps, (w, h))
        writer.write(img)
    if writer is not None:
        writer.release()
    return path


def _accuracy_text(acc: dict) -> str:
    text = (f'objects {acc["predicted_objects"]} (ground truth {acc["ground_truth_objects"]}, '
            f'matched {acc["matched"]})')
    if 'rotation' in acc:
        text += (f'; rotation median {acc["rotation"]["median_deg"]:.1f} deg'
                 + (' (modulo symmetry)' if acc.get('rotation_modulo_symmetry') else '')
                 + f', translation median {acc["translation_m"]["median"]:.3f} m '
                 f'({100 * acc["translation_rel_distance_median"]:.1f} % of distance)')
        if 'pck@0.1' in acc:
            text += f', PCK@0.1 {acc["pck@0.1"]:.2f}'
    return text


def summary(result: dict) -> str:
    """A few lines for a person: objects, accuracy (per category when there are several),
    latency, fps."""
    floor = result.get('floor_frame')
    lines = [f'bag {result["bag"]}: {result["frames"]} frames, backend {result["backend"]}, '
             + (f'floor from TF frame {floor!r}' if floor else 'no floor (size model only)')]
    for name in ('offline', 'offline_without_floor', 'live'):
        r = result.get(name)
        if not r:
            continue
        acc = r['accuracy']
        label = 'no floor' if name == 'offline_without_floor' else name
        lines.append(f'{label:8s} {_accuracy_text(acc)}')
        per = acc.get('per_category', {})
        if len(per) > 1:
            for cat, section in per.items():
                lines.append(f'  {cat:14s} {_accuracy_text(section)}')
        if name == 'offline_without_floor':
            continue
        if name == 'offline':
            lines.append(f'         pipeline {r["frame_ms"]["p50"]:.1f} ms/frame p50 '
                         f'(network {r["network_ms"]["p50"]:.1f} ms)')
        else:
            lat = r['latency_ms']
            if lat:
                lines.append(f'         latency p50 {lat["p50"]:.1f} ms, p95 {lat["p95"]:.1f} '
                             f'ms; {r["frames_answered"]}/{r["frames_sent"]} frames answered '
                             f'({r["dropped"]} dropped), {r["output_fps"]:.1f} fps out')
    if result.get('ros_overhead_ms'):
        lines.append(f'ROS overhead (live - offline) p50 {result["ros_overhead_ms"]["p50"]:.1f}'
                     ' ms/frame')
    return '\n'.join(lines)
