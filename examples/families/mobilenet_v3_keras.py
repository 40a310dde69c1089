"""Keras' own MobileNetV3-Small (keras.applications.MobileNetV3Small: hard-swish, squeeze-excite,
depthwise convs, BatchNorm, its Rescaling preprocessing), trained from scratch on scikit-learn's
digits upscaled to 32x32x3 (0..255). No wheel ships MobileNetV3 weights (keras.applications and
keras-hub fetch them at run time), so it is trained here (weights=None) and cached as a .keras file
in ~/.cache/edgeship/families/; `build` returns its path. CLI: `edgeship export
examples/families/mobilenet_v3_keras.py:build --calib examples/families/family_data.py:digits_keras ...`.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import family_data

SIZE = 32
EPOCHS = 15


def make():
    import keras

    model = keras.applications.MobileNetV3Small(input_shape=(SIZE, SIZE, 3), weights=None, classes=10,
                                                dropout_rate=0.1, include_preprocessing=True)
    for layer in model.layers:  # its BatchNorm momentum (0.999) is for ImageNet-long training: after a
        if isinstance(layer, keras.layers.BatchNormalization):  # few hundred steps the moving statistics
            layer.momentum = 0.9  # are still near their initial values and inference is at chance
    return model


def train(epochs: int = EPOCHS, limit: int | None = None, seed: int = 0, eager: bool = False):
    """(model, held-out top-1 %). limit: fewer training images, eager: no tf.function tracing
    (quicker for a few steps; quick tests)."""
    import keras

    keras.utils.set_random_seed(seed)
    data = family_data.digits(SIZE)
    x, y = data["x_train"], data["y_train"]
    if limit:
        x, y = x[:limit], y[:limit]
    model = make()
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", run_eagerly=eager)
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
    return model, accuracy(model, data)


def accuracy(model, data=None) -> float:
    data = data or family_data.digits(SIZE)
    pred = model.predict(data["x_test"], batch_size=256, verbose=0).argmax(1)
    return float((pred == data["y_test"]).mean() * 100)


def trained() -> Path:
    return family_data.cached_keras_model("mobilenet_v3_keras", EPOCHS, family_data.digits(SIZE), train)


def build() -> str:
    return str(trained())
