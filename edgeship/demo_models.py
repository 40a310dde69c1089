"""Small CNNs trained on scikit-learn's digits (real data, 8x8 images): the embedded default.

Used by `edgeship demo`, the tests and the examples. Training is seeded and takes seconds.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgeship.data import DIGITS_SEED, DIGITS_TEST_FRACTION

TORCH_INPUT = (1, 1, 8, 8)  # NCHW
KERAS_INPUT = (8, 8, 1)  # NHWC, batch left to Keras


def digits_split():
    """(x_train, y_train, x_test, y_test) as float32 images in [0, 1], shape (N, 8, 8)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32).reshape(-1, 8, 8)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SEED, stratify=y)
    return xtr, ytr.astype(np.int64), xte, yte.astype(np.int64)


def build_torch_cnn():
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64), nn.ReLU(),
        nn.Linear(64, 10),
    )


def fit_on_digits(model, epochs: int = 30, seed: int = 0):
    """Train a torch module on the digits training split (Adam, lr 2e-3, batches of 64 in a seeded
    order); returns it in eval mode. The caller seeds torch before building the module."""
    import torch

    xtr, ytr, _, _ = digits_split()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    x = torch.from_numpy(xtr[:, None])
    y = torch.from_numpy(ytr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x), generator=gen).split(64):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
    return model.eval()


def train_torch_cnn(epochs: int = 30, seed: int = 0):
    """Returns (module in eval mode, held-out top-1 accuracy in percent)."""
    import torch

    torch.manual_seed(seed)
    _, _, xte, yte = digits_split()
    model = fit_on_digits(build_torch_cnn(), epochs, seed)
    with torch.no_grad():
        acc = (model(torch.from_numpy(xte[:, None])).argmax(1).numpy() == yte).mean() * 100
    return model, float(acc)


def save_torch_pt2(model, path: Path) -> Path:
    """torch.export the module with a batch-1 example and save it as a .pt2."""
    import torch

    ep = torch.export.export(model, (torch.zeros(TORCH_INPUT),))
    torch.export.save(ep, str(path))
    return path


def train_keras_cnn(epochs: int = 30, seed: int = 0):
    """Returns (keras.Model, held-out top-1 accuracy in percent). Uses the current Keras backend."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    keras.utils.set_random_seed(seed)
    xtr, ytr, xte, yte = digits_split()
    model = keras.Sequential(
        [
            keras.Input(KERAS_INPUT, name="image"),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10),
        ],
        name="digits_cnn",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(xtr[..., None], ytr, epochs=epochs, batch_size=64, verbose=0, shuffle=True)
    acc = (np.asarray(model.predict(xte[..., None], verbose=0)).argmax(1) == yte).mean() * 100
    return model, float(acc)
