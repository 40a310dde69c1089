"""Real photos as model inputs: random crops of scikit-learn's two sample photos (china.jpg,
flower.jpg), resized to 224x224, ImageNet-normalised, NCHW float32. Calibration crops come from
the left 60% of each photo, evaluation crops from the right 40%: the two sets share no pixels.
Used as `--calib bench/models/photos.py:calib --eval bench/models/photos.py:evaluation`.
"""

from __future__ import annotations

import numpy as np

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
SPLIT = 0.6


def crops(n: int, seed: int, part: str, size: int = 224, nchw: bool = True):
    from PIL import Image
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    photos = load_sample_images().images
    out = []
    for i in range(n):
        img = photos[i % len(photos)]
        h, w = img.shape[:2]
        x0, x1 = (0, int(w * SPLIT)) if part == "calib" else (int(w * SPLIT), w)
        side = int(rng.integers(96, min(h, x1 - x0) + 1))
        top = int(rng.integers(0, h - side + 1))
        left = int(rng.integers(x0, x1 - side + 1))
        crop = Image.fromarray(img[top : top + side, left : left + side]).resize((size, size), Image.BILINEAR)
        x = (np.asarray(crop, np.float32) / 255.0 - MEAN) / STD
        out.append((x.transpose(2, 0, 1) if nchw else x)[None].astype(np.float32))
    return out


def calib():
    yield from crops(128, 0, "calib")


def evaluation():
    yield from crops(64, 1, "eval")


def small_calib():
    yield from crops(32, 0, "calib")


def small_eval():
    yield from crops(16, 1, "eval")
