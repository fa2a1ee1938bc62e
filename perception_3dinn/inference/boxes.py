"""The detector's boxes before the network: filtering, clipping, and the crop of one box.

`prepare_boxes` keeps the boxes the pipeline will interpret (class filter, score, clipping to
the image, minimum size, at most `max_objects`) and gives every other one a reason;
`is_filtered` tells configured filtering from bad input among those reasons.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from perception_3dinn.crops import Crop, crop_image
from perception_3dinn.inference.types import Box2D, PipelineConfig

# Skip reasons of `prepare_boxes` that are configured filtering (class, score threshold, size,
# count), not bad input; every other reason means the box or the network output was unusable.
FILTER_REASON_STARTS = ('class ', 'detector score below min_box_score',
                        'box smaller than min_box_size_px', 'more than max_objects')

def is_filtered(reason: str) -> bool:
    """True when a skip `reason` of `Pipeline.process` is configured filtering, not bad input."""
    return reason.startswith(FILTER_REASON_STARTS)


def prepare_boxes(boxes: Sequence[Box2D], width: int, height: int, config: PipelineConfig
                  ) -> tuple[list[tuple[int, Box2D]], list[tuple[int, str]]]:
    """Filter and clip the detector's boxes.

    Args:
        boxes: the detections.
        width, height: image size in pixels.
        config: class filter, minimum score and size, max_objects.

    Returns:
        kept: (index, box clipped to the image), highest detector score first;
        skipped: (index, reason) for every other box.
    """
    accepted = {c.lower() for c in config.class_ids}
    kept: list[tuple[int, Box2D]] = []
    skipped: list[tuple[int, str]] = []
    # pixel centres at integers: the image spans [-0.5, W - 0.5] x [-0.5, H - 0.5]
    lo_x, hi_x, lo_y, hi_y = -0.5, width - 0.5, -0.5, height - 0.5
    for i, box in enumerate(boxes):
        if not isinstance(box, Box2D):
            skipped.append((i, f'not a Box2D ({type(box).__name__})'))
            continue
        if not box.is_finite():
            skipped.append((i, 'box has non-finite coordinates'))
            continue
        if accepted and str(box.class_id).lower() not in accepted:
            skipped.append((i, f'class {box.class_id!r} not in class_ids'))
            continue
        score = float(box.score) if box.score is not None else 1.0
        if not 0.0 <= score <= 1.0:  # NaN included
            skipped.append((i, f'invalid detector score {score:.3g} (not a number in [0, 1])'))
            continue
        if score < config.min_box_score:
            skipped.append((i, f'detector score below min_box_score ({score:.3g})'))
            continue
        if box.width <= 0 or box.height <= 0:
            skipped.append((i, f'degenerate box ({box.width:.3g} x {box.height:.3g} px)'))
            continue
        x0, x1 = max(float(box.x_min), lo_x), min(float(box.x_max), hi_x)
        y0, y1 = max(float(box.y_min), lo_y), min(float(box.y_max), hi_y)
        if x1 <= x0 or y1 <= y0:
            skipped.append((i, 'box lies outside the image'))
            continue
        if min(x1 - x0, y1 - y0) < config.min_box_size_px:
            skipped.append((i, f'box smaller than min_box_size_px after clipping '
                               f'({x1 - x0:.1f} x {y1 - y0:.1f} px)'))
            continue
        kept.append((i, Box2D(x0, y0, x1, y1, box.class_id, score, box.detection_id)))
    kept.sort(key=lambda item: -item[1].score)
    for i, _ in kept[config.max_objects:]:
        skipped.append((i, f'more than max_objects={config.max_objects} boxes'))
    kept = sorted(kept[:config.max_objects], key=lambda item: item[0])
    return kept, sorted(skipped)


def crop_roi(image: np.ndarray, crop: Crop) -> np.ndarray:
    """`crops.crop_image` of `image` `(H, W, 3)`, computed on the crop's region only.

    `crop_image` low-pass filters the whole input before a strong downscale; filtering only
    the crop's square plus a margin wider than the filter and the bilinear support gives the
    same pixels at a fraction of the cost when the crop is small in a large image.
    """
    h, w = image.shape[:2]
    margin = int(np.ceil(1.0 / crop.scale)) + 4  # > Gaussian kernel radius + 1
    half = 0.5 * crop.side + margin
    x0, x1 = max(int(np.floor(crop.cx - half)), 0), min(int(np.ceil(crop.cx + half)) + 1, w)
    y0, y1 = max(int(np.floor(crop.cy - half)), 0), min(int(np.ceil(crop.cy + half)) + 1, h)
    if x1 <= x0 or y1 <= y0 or (x1 - x0) * (y1 - y0) >= h * w:
        return crop_image(image, crop)
    local = Crop(crop.cx - x0, crop.cy - y0, crop.side, crop.size)
    return crop_image(image[y0:y1, x0:x1], local)
