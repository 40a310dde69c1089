"""A Keras GRU that reads a digit's 8 rows as 8 time steps (8 grey levels each): the smallest real
model whose int8 .tflite conversion kills TensorFlow's converter with SIGSEGV (its calibrator on the
GRU's WHILE loop; TensorFlow 2.21, measured). Trained on scikit-learn's digits."""

from __future__ import annotations

import numpy as np


def train(path, epochs: int = 8, seed: int = 0) -> float:
    """Train, save as .keras at `path`; returns the test top-1 (%)."""
    import keras

    from edgeship.demo_models import digits_split

    keras.utils.set_random_seed(seed)
    xtr, ytr, xte, yte = digits_split()
    model = keras.Sequential([
        keras.Input((8, 8), name="rows"),
        keras.layers.GRU(32, name="gru"),
        keras.layers.Dense(10, name="logits"),
    ], name="gru_digits")
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(xtr, ytr, epochs=epochs, batch_size=64, verbose=0, shuffle=True)
    model.save(path)
    return float((np.asarray(model.predict(xte, verbose=0)).argmax(1) == yte).mean() * 100)
