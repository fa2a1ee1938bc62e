"""Rendered images -> network crops with augmentation and targets (stages 1 and 3, evaluation).

Crops follow the runtime exactly: :class:`perception_3dinn.crops.Crop` around the object's
box (``box`` of the rendered sample: the projected mesh clipped to the image, as a detector
would give) with ``pad``, sampled by :func:`perception_3dinn.crops.crop_image`. Training adds
box jitter, small in-plane rotation, horizontal flip (keypoint labels swapped by the
category's symmetric pairs) and colour jitter.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
import json
from pathlib import Path

import cv2
import numpy as np

from perception_3dinn.codec import HeatmapCodec
from perception_3dinn.crops import Crop
from perception_3dinn.skeleton import Category, load_category


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation (all off with ``AugmentConfig.none()``)."""

    scale_jitter: float = 0.12        # box side x U(1 - j, 1 + j)
    centre_jitter: float = 0.06       # fraction of the box side
    rotation_deg: float = 10.0        # uniform in +-
    flip_prob: float = 0.5
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.3
    gray_prob: float = 0.05
    noise_std: float = 4.0            # pixel noise (0..255)
    truncation_prob: float = 0.0      # cut the object at a simulated image border
    truncation_range: tuple[float, float] = (0.1, 0.5)  # fraction of the box cut off

    @classmethod
    def none(cls) -> AugmentConfig:
        return cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


# Image edges a truncation cuts at (left, right, top, bottom) and how often: a robot's camera
# cuts furniture at the sides and, close up, at the bottom far more often than at the top.
TRUNCATION_EDGES = (0.3, 0.3, 0.1, 0.3)


def truncate_sample(sample: dict, rng: np.random.Generator,
                    fraction: tuple[float, float]) -> dict:
    """A copy of a rendered sample whose image ends inside the object's box, as when the
    object stands at the border of a camera frame.

    One edge (:data:`TRUNCATION_EDGES`) is moved into the box by a fraction of its width or
    height drawn from `fraction`; the image beyond it is black (what the runtime's crop of an
    object at the image border holds), the box ends at the cut, and keypoints beyond it are
    neither in the image nor visible.
    """
    box = np.asarray(sample['box'], np.float64).copy()
    image = np.array(sample['image'], copy=True)
    kp = np.asarray(sample['keypoints_2d'], np.float64)
    edge = int(rng.choice(4, p=TRUNCATION_EDGES))
    f = rng.uniform(*fraction)
    axis = 0 if edge < 2 else 1
    extent = box[2 + axis] - box[axis]
    keep = np.ones(len(kp), bool)
    if edge in (0, 2):  # left / top: everything before the cut goes
        cut = box[axis] + f * extent
        first = int(np.ceil(cut - 0.5))
        if axis == 0:
            image[:, :max(first, 0)] = 0
        else:
            image[:max(first, 0)] = 0
        box[axis] = first
        keep = kp[:, axis] >= first - 0.5
    else:  # right / bottom
        cut = box[2 + axis] - f * extent
        last = int(np.floor(cut + 0.5))
        if axis == 0:
            image[:, last + 1:] = 0
        else:
            image[last + 1:] = 0
        box[2 + axis] = last
        keep = kp[:, axis] < last + 0.5
    out = dict(sample)
    out.update(image=image, box=box.astype(np.float32),
               in_image=np.asarray(sample['in_image'], bool) & keep,
               visible=np.asarray(sample['visible'], bool) & keep)
    return out


def make_crop(sample: dict, size: int, pad: float) -> Crop:
    """The runtime crop of a rendered sample's box."""
    return Crop.from_box(np.asarray(sample['box'], np.float64), size, pad)


class CropSampler:
    """Turns rendered samples into (input, target) crops for the keypoint network."""

    def __init__(self, category: Category, input_size: int = 128, pad: float = 0.15,
                 sigma: float = 1.5, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                 augment: AugmentConfig = AugmentConfig()) -> None:
        self.category = category
        self.size = input_size
        self.pad = pad
        self.codec = HeatmapCodec(input_size, 4, sigma)
        self.mean = np.asarray(mean, np.float32) * 255.0
        self.std = np.asarray(std, np.float32) * 255.0
        self.augment = augment

    def normalise(self, crops: np.ndarray) -> np.ndarray:
        """(B, S, S, 3) uint8 RGB -> (B, 3, S, S) float32 network input."""
        x = (crops.astype(np.float32) - self.mean) / self.std
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def crop(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        """One (augmented when ``rng`` is given) crop of a rendered sample.

        Returns:
            dict: ``image (S, S, 3) uint8``, ``keypoints (N, 2)`` crop pixels,
            ``visible (N,)`` (visible in the render and inside the crop), ``labelled (N,)``
            (inside the image and the crop, visible or not), ``box_size`` crop pixels,
            ``flipped`` bool.
        """
        aug = self.augment if rng is not None else AugmentConfig.none()
        if aug.truncation_prob > 0 and rng.random() < aug.truncation_prob:
            sample = truncate_sample(sample, rng, aug.truncation_range)
        box = np.asarray(sample['box'], np.float64)
        if rng is not None:
            w, h = box[2] - box[0], box[3] - box[1]
            side = max(w, h)
            c = 0.5 * (box[:2] + box[2:]) + rng.uniform(-1, 1, 2) * aug.centre_jitter * side
            half = 0.5 * np.array([w, h]) * rng.uniform(1 - aug.scale_jitter,
                                                        1 + aug.scale_jitter)
            box = np.concatenate([c - half, c + half])
        crop = Crop.from_box(box, self.size, self.pad)
        A = np.vstack([crop.matrix, [0.0, 0.0, 1.0]])
        angle = rng.uniform(-aug.rotation_deg, aug.rotation_deg) if rng is not None else 0.0
        flip = rng is not None and rng.random() < aug.flip_prob
        if angle or flip:
            cc = 0.5 * (self.size - 1)
            M = np.vstack([cv2.getRotationMatrix2D((cc, cc), angle, 1.0), [0, 0, 1.0]])
            if flip:
                M = np.array([[-1.0, 0, 2 * cc], [0, 1, 0], [0, 0, 1]]) @ M
            A = M @ A
        image = np.asarray(sample['image'])
        interp = cv2.INTER_LINEAR
        if crop.scale < 0.5:
            k = max(1, int(round(0.5 / crop.scale)) * 2 + 1)
            image = cv2.GaussianBlur(image, (k, k), 0)
        out_img = cv2.warpAffine(image, A[:2], (self.size, self.size), flags=interp,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        kp = np.asarray(sample['keypoints_2d'], np.float64) @ A[:2, :2].T + A[:2, 2]
        vis = np.asarray(sample['visible'], bool)
        lab = np.asarray(sample['in_image'], bool)
        if flip:
            perm = self.category.flip_permutation
            kp, vis, lab = kp[perm], vis[perm], lab[perm]
        inside = np.all((kp > -0.5) & (kp < self.size - 0.5), axis=-1)
        if rng is not None:
            out_img = self._colour(out_img, rng)
        b = np.asarray(sample['box'], np.float64)
        box_size = max(b[2] - b[0], b[3] - b[1]) * crop.scale
        return {'image': out_img, 'keypoints': kp, 'visible': vis & inside,
                'labelled': lab & inside, 'box_size': box_size, 'flipped': flip,
                'crop': crop}

    def _colour(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        aug = self.augment
        x = img.astype(np.float32)
        x = x * rng.uniform(1 - aug.brightness, 1 + aug.brightness)
        mean = x.mean()
        x = (x - mean) * rng.uniform(1 - aug.contrast, 1 + aug.contrast) + mean
        gray = x.mean(-1, keepdims=True)
        if rng.random() < aug.gray_prob:
            x = np.repeat(gray, 3, -1)
        else:
            x = gray + (x - gray) * rng.uniform(1 - aug.saturation, 1 + aug.saturation)
        x += rng.standard_normal(x.shape).astype(np.float32) * aug.noise_std
        return np.clip(x, 0, 255).astype(np.uint8)

    def batch(self, samples: list[dict], rng: np.random.Generator | None = None) -> dict:
        """Stacked crops: ``input (B, 3, S, S)``, ``heatmaps (B, N, h, w)`` targets of the
        labelled keypoints, ``keypoints``, ``visible``, ``labelled``, ``box_size``,
        ``images`` (uint8) and the ``crops``."""
        crops = [self.crop(s, rng) for s in samples]
        images = np.stack([c['image'] for c in crops])
        kp = np.stack([c['keypoints'] for c in crops])
        lab = np.stack([c['labelled'] for c in crops])
        return {'input': self.normalise(images), 'heatmaps': self.codec.encode(kp, lab),
                'keypoints': kp, 'visible': np.stack([c['visible'] for c in crops]),
                'labelled': lab, 'box_size': np.array([c['box_size'] for c in crops]),
                'images': images, 'crops': [c['crop'] for c in crops]}


def data_category(args: argparse.Namespace) -> Category:
    """The category of a stage with ``--data``: ``--category`` when given, else the one the
    data set was rendered for (its manifest), else chair; a mismatch is an error."""
    data = getattr(args, 'data', None)
    manifest = Path(data) / 'manifest.json' if data else None
    rendered = (json.loads(manifest.read_text()).get('category')
                if manifest is not None and manifest.is_file() else None)
    if args.category and rendered and load_category(args.category).name != rendered:
        raise SystemExit(f'--category {args.category} but {args.data} was rendered for '
                         f'{rendered!r}')
    return load_category(args.category or rendered or 'chair')
