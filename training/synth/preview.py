"""Contact sheets: rendered samples with keypoints, skeleton and box drawn, for people to look at.

Visible keypoints are filled dots, occluded ones hollow (red), keypoints outside the image
are skipped; left-side keypoints are green, right-side blue, others yellow; the detection
box (amodal, clipped) is drawn in white.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from perception_3dinn.skeleton import Category


def draw_annotations(image: np.ndarray, keypoints: np.ndarray, visible: np.ndarray,
                     category: Category, box: np.ndarray | None = None,
                     scale: int = 1, label: str | None = None) -> np.ndarray:
    """Draw one object's skeleton on an RGB image.

    Args:
        image: (H, W, 3) uint8 RGB.
        keypoints: (N, 2) pixels; visible: (N,) bool.
        box: (4,) x0, y0, x1, y1 or None.
        scale: integer up-scaling of the output (thin lines on small images).

    Returns:
        (H * scale, W * scale, 3) uint8 RGB copy with annotations.
    """
    keypoints = np.asarray(keypoints, np.float64)
    if keypoints.shape != (category.num_keypoints, 2):
        raise ValueError(f'keypoints must be ({category.num_keypoints}, 2), '
                         f'got {keypoints.shape}')
    out = np.ascontiguousarray(image)
    if scale != 1:
        out = cv2.resize(out, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    else:
        out = out.copy()
    pts = (keypoints + 0.5) * scale - 0.5
    names = category.keypoint_names

    def colour(i):
        if 'left' in names[i]:
            return (40, 220, 40)
        if 'right' in names[i]:
            return (40, 120, 255)
        return (240, 220, 40)

    sh = 4
    ip = np.round(pts * (1 << sh)).astype(np.int64)
    for a, b in category.edges:
        c = (255, 255, 0) if visible[a] and visible[b] else (150, 150, 150)
        cv2.line(out, tuple(int(x) for x in ip[a]), tuple(int(x) for x in ip[b]), c, 1,
                 cv2.LINE_AA, sh)
    r = max(2, scale + 1)
    for i, p in enumerate(ip):
        q = tuple(int(x) for x in p)
        if visible[i]:
            cv2.circle(out, q, r << sh, colour(i), -1, cv2.LINE_AA, sh)
        else:
            cv2.circle(out, q, r << sh, (255, 40, 40), 1, cv2.LINE_AA, sh)
    if box is not None:
        b = np.round((np.asarray(box, np.float64) + 0.5) * scale - 0.5).astype(int)
        cv2.rectangle(out, (int(b[0]), int(b[1])), (int(b[2]), int(b[3])), (255, 255, 255), 1)
    if label:
        cv2.putText(out, label, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return out


def contact_sheet(tiles: list[np.ndarray], cols: int = 6, pad: int = 2) -> np.ndarray:
    """Arrange equally sized (H, W, 3) uint8 tiles in a grid."""
    if not tiles:
        raise ValueError('no tiles')
    h, w = tiles[0].shape[:2]
    rows = (len(tiles) + cols - 1) // cols
    sheet = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 32, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        sheet[pad + r * (h + pad):pad + r * (h + pad) + h,
              pad + c * (w + pad):pad + c * (w + pad) + w] = t
    return sheet


def sample_tiles(samples: list[dict], category: Category, tile: int = 192) -> list[np.ndarray]:
    """Annotated tiles of image samples (dicts with image, keypoints_2d, visible, box)."""
    tiles = []
    for i, s in enumerate(samples):
        size = s['image'].shape[0]
        scale = max(1, int(round(tile / size)))
        t = draw_annotations(s['image'], s['keypoints_2d'], s['visible'], category,
                             s.get('box'), scale, label=str(i))
        if t.shape[0] != tile:
            t = cv2.resize(t, (tile, tile), interpolation=cv2.INTER_AREA)
        tiles.append(t)
    return tiles


def write_png(path: str | Path, image_rgb: np.ndarray) -> Path:
    """Write an RGB image as PNG (creating the folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f'could not write {path}')
    return path
