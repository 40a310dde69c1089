"""Colour digits (RGB, NHWC 8x8x3) for the swapped-channel-order fault: each channel carries the
digit differently (R = image, G = image^2, B = 1 - image), so feeding BGR for RGB changes the
answer. `swap_channels` gives a model whose first conv reads its input channels reversed: exactly
what an artifact expecting BGR computes on RGB inputs."""

from __future__ import annotations

import numpy as np


def colour(images: np.ndarray) -> np.ndarray:
    """(N, 8, 8) in [0, 1] -> (N, 8, 8, 3)."""
    return np.stack([images, images**2, 1.0 - images], axis=-1).astype(np.float32)


def write_data(folder, name: str) -> str:
    """digits:train or digits:test in colour as an .npz the data loader reads; returns its path."""
    from edgeship.demo_models import digits_split

    xtr, ytr, xte, yte = digits_split()
    x, y = (xtr, ytr) if name == "train" else (xte, yte)
    path = f"{folder}/colour_{name}.npz"
    np.savez(path, image=colour(x), labels=y)
    return path


def train(path, epochs: int = 20, seed: int = 0):
    import keras

    from edgeship.demo_models import digits_split

    keras.utils.set_random_seed(seed)
    xtr, ytr, _, _ = digits_split()
    model = keras.Sequential([
        keras.Input((8, 8, 3), name="image"),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(10, name="fc"),
    ], name="colour_cnn")
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(colour(xtr), ytr, epochs=epochs, batch_size=64, verbose=0)
    model.save(path)
    return model


def swap_channels(model, path):
    """Save a copy of `model` whose conv1 reads channels in reverse order (BGR for RGB)."""
    import keras

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    conv = clone.get_layer("conv1")
    kernel, bias = conv.get_weights()
    conv.set_weights([kernel[:, :, ::-1, :], bias])
    clone.save(path)
