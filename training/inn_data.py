"""Rendered images -> network crops with augmentation and targets (stages 1 and 3, evaluation).

Crops follow the runtime exactly: :class:`perception_3dinn.crops.Crop` around the object's
box (``box`` of the rendered sample: the projected mesh clipped to the image, as a detector
would give) with ``pad``, sampled by :func:`perception_3dinn.crops.crop_image`. Training adds
box jitter, small in-plane rotation, horizontal flip (keypoint labels swapped by the
category's symmetric pairs) and colour jitter.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from perception_3dinn.codec import HeatmapCodec
from perception_3dinn.crops import Crop
from perception_3dinn.skeleton import Category


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

    @classmethod
    def none(cls) -> AugmentConfig:
        return cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


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
