"""Small task models trained in seconds on real photos: shapes drawn on crops of scikit-learn's
two sample photos (`sklearn.datasets.load_sample_images`: china.jpg and flower.jpg).

- a detector: 32x32 RGB crops with one or two filled shapes (class 0 square, class 1 disk,
  6-14 px, random colours); a 4x4-grid one-stage net whose two outputs are the built-in
  detection layout of edgeship/task_metrics.py: boxes (N, 16, 4) x1, y1, x2, y2 in pixels and
  class scores (N, 16, 2) = objectness x class probability. Labels: per image an (M, 5) array
  class, x1, y1, x2, y2 (M = 1 or 2: ragged).
- a segmenter: the same crops with one shape; a small fully convolutional net with logits
  (N, 2, 32, 32); labels: the shape's mask (N, 32, 32).

Crops from china.jpg train, crops from flower.jpg evaluate (different photo, same kind of shapes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SIZE = 32
GRID = 4
STRIDE = SIZE // GRID


def _photos():
    from sklearn.datasets import load_sample_images

    return [img.astype(np.float32) / 255.0 for img in load_sample_images().images]  # china, flower


def _crop(photo, rng) -> np.ndarray:
    """A random 64x64 region of the photo, averaged down to 32x32."""
    h, w, _ = photo.shape
    y, x = rng.integers(0, h - 64), rng.integers(0, w - 64)
    crop = photo[y:y + 64, x:x + 64].reshape(SIZE, 2, SIZE, 2, 3).mean((1, 3))
    return 0.2 + 0.5 * crop.mean(-1, keepdims=True).repeat(3, -1)  # the photo in grey: the shapes are coloured


def _draw(img, mask, cls, cx, cy, r, colour):
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    inside = (np.abs(xx - cx) <= r) & (np.abs(yy - cy) <= r) if cls == 0 else (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    img[inside] = colour
    mask[inside] = 1
    return inside


def shapes(n: int, photo_index: int, seed: int, max_objects: int = 2):
    """(images (n, 3, 32, 32) float32, boxes: list of (M, 5) class, x1, y1, x2, y2, masks (n, 32, 32))."""
    rng = np.random.default_rng(seed)
    photo = _photos()[photo_index]
    images, boxes, masks = [], [], []
    for _ in range(n):
        img = _crop(photo, rng).copy()
        mask = np.zeros((SIZE, SIZE), np.int64)
        rows, cells = [], set()
        for _ in range(rng.integers(1, max_objects + 1)):
            for _try in range(20):
                r = rng.uniform(3, 7)
                cx, cy = rng.uniform(r, SIZE - r), rng.uniform(r, SIZE - r)
                cell = (int(cy // STRIDE), int(cx // STRIDE))
                if cell not in cells and all(abs(cx - (b[1] + b[3]) / 2) > 2 * r + 2 or abs(cy - (b[2] + b[4]) / 2) >
                                             2 * r + 2 for b in rows):
                    break
            else:
                continue
            cells.add(cell)
            cls = int(rng.integers(0, 2))
            colour = np.zeros(3)
            colour[rng.integers(0, 3)] = rng.uniform(0.8, 1.0)  # saturated red, green or blue
            inside = _draw(img, mask, cls, cx, cy, r, colour)
            ys, xs = np.nonzero(inside)
            rows.append([cls, xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        images.append(img.transpose(2, 0, 1))
        boxes.append(np.asarray(rows, np.float32).reshape(-1, 5))
        masks.append(mask)
    return np.stack(images).astype(np.float32), boxes, np.stack(masks)


def _torch_detector():
    import torch
    from torch import nn

    class Detector(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
                nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
                nn.Conv2d(32, 48, 3, stride=2, padding=1), nn.ReLU(),
                nn.Conv2d(48, 64, 3, stride=2, padding=1), nn.ReLU(),
                nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
                nn.Conv2d(64, 7, 1),
            )
            gy, gx = torch.meshgrid(torch.arange(GRID), torch.arange(GRID), indexing="ij")
            self.register_buffer("grid", torch.stack([gx, gy], -1).reshape(1, GRID * GRID, 2).float())

        def raw(self, x):
            return self.body(x).permute(0, 2, 3, 1).reshape(x.shape[0], GRID * GRID, 7)

        def forward(self, x):
            t = self.raw(x)
            centre = (self.grid + torch.sigmoid(t[..., 1:3])) * STRIDE
            half = torch.sigmoid(t[..., 3:5]) * (SIZE / 2)
            boxes = torch.cat([centre - half, centre + half], -1)
            scores = torch.sigmoid(t[..., :1]) * torch.softmax(t[..., 5:7], -1)
            return boxes, scores

    return Detector()


def train_detector(steps: int = 400, seed: int = 0):
    import torch

    torch.set_num_threads(1)  # small nets: threads only contend
    torch.manual_seed(seed)
    images, boxes, _ = shapes(800, 0, seed)
    obj = np.zeros((len(images), GRID * GRID), np.float32)
    cls = np.zeros((len(images), GRID * GRID), np.int64)
    box = np.zeros((len(images), GRID * GRID, 4), np.float32)  # cx, cy in-cell offset, half w, half h (0..1)
    for i, rows in enumerate(boxes):
        for c, x1, y1, x2, y2 in rows:
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            k = int(cy // STRIDE) * GRID + int(cx // STRIDE)
            obj[i, k], cls[i, k] = 1, int(c)
            box[i, k] = [cx / STRIDE % 1, cy / STRIDE % 1, (x2 - x1) / SIZE, (y2 - y1) / SIZE]
    model = _torch_detector()
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    x, obj_t, cls_t, box_t = map(torch.from_numpy, (images, obj, cls, box))
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (32,), generator=gen)
        t = model.raw(x[idx])
        pos = obj_t[idx] > 0
        loss = torch.nn.functional.binary_cross_entropy_with_logits(t[..., 0], obj_t[idx])
        loss = loss + torch.nn.functional.cross_entropy(t[..., 5:7][pos], cls_t[idx][pos])
        loss = loss + 5 * (torch.sigmoid(t[..., 1:5][pos]) - box_t[idx][pos]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _torch_segmenter():
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=2, dilation=2), nn.ReLU(),
        nn.Conv2d(8, 2, 1),
    )


def train_segmenter(steps: int = 150, seed: int = 0):
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    images, _, masks = shapes(400, 0, seed, max_objects=1)
    model = _torch_segmenter()
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    x, y = torch.from_numpy(images), torch.from_numpy(masks)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (32,), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


SOURCE = '''"""Written by tests/task_models.py: the trained {kind}, loaded from its weights."""
import sys

import torch

sys.path.insert(0, {tests!r})
import task_models  # noqa: E402


def build():
    model = task_models._torch_{kind}()
    model.load_state_dict(torch.load({weights!r}))
    return model.eval(), (torch.zeros(1, 3, task_models.SIZE, task_models.SIZE),)
'''


def write_source(model, kind: str, folder: Path) -> str:
    """A file.py:build source for `edgeship export` that loads the trained weights."""
    import torch

    weights = folder / f"{kind}.pt"
    torch.save(model.state_dict(), weights)
    src = folder / f"{kind}_source.py"
    src.write_text(SOURCE.format(kind=kind, tests=str(Path(__file__).parent), weights=str(weights)))
    return f"{src}:build"


def save_npz(path: Path, images: np.ndarray, labels) -> Path:
    """An .npz of --data / --eval: the images and their labels (ragged boxes: labels + labels_index)."""
    from edgeship.labels import to_npz

    np.savez(path, x=images, **to_npz(labels))
    return path
