"""The Keras twin of fragile_torch.py: a digits CNN whose layer `fragile` (a nested Sequential:
expand conv -> ReLU -> 1x1 project conv) carries one channel scaled 1000x between its two convs.
Same float function, huge activation outlier inside one layer."""

from __future__ import annotations

import numpy as np

OUTLIER = 1000.0


def train(path, epochs: int = 30, seed: int = 0):
    """Train, plant the outlier, save as .keras at `path`; returns the float model's test top-1 (%)."""
    import keras

    from edgeship.demo_models import digits_split

    keras.utils.set_random_seed(seed)
    xtr, ytr, xte, yte = digits_split()
    fragile = keras.Sequential([
        keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="expand"),
        keras.layers.Conv2D(16, 1, name="project"),
    ], name="fragile")
    model = keras.Sequential([
        keras.Input((8, 8, 1), name="image"),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1"),
        fragile,
        keras.layers.ReLU(name="relu"),
        keras.layers.MaxPooling2D(2, name="pool"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(64, activation="relu", name="fc1"),
        keras.layers.Dense(10, name="fc2"),
    ], name="fragile_cnn")
    model.compile(optimizer=keras.optimizers.Adam(2e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(xtr[..., None], ytr, epochs=epochs, batch_size=64, verbose=0, shuffle=True)
    expand, project = fragile.get_layer("expand"), fragile.get_layer("project")
    hidden = keras.Sequential([model.get_layer("conv1"), expand])(xtr[..., None])
    channel = int(np.asarray(hidden).mean((0, 1, 2)).argmax())
    kernel, bias = [np.array(w) for w in expand.get_weights()]
    kernel[..., channel] *= OUTLIER
    bias[channel] *= OUTLIER
    expand.set_weights([kernel, bias])
    pk, pb = [np.array(w) for w in project.get_weights()]
    pk[:, :, channel, :] /= OUTLIER
    project.set_weights([pk, pb])
    model.save(path)
    return float((np.asarray(model.predict(xte[..., None], verbose=0)).argmax(1) == yte).mean() * 100)
