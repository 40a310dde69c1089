"""A Keras 3 text model with the layers real sequence models use: language identification of short
UI strings from token ids.

Input: `ids` 1x48 int32 (UTF-8 bytes + 1, zero-padded). Model: Embedding(mask_zero=True, so the
padding mask flows into the attention and the GRU), a pre-norm transformer block
(LayerNormalization, MultiHeadAttention(4 heads), residual add, LayerNormalization,
Dense(activation="gelu"), Dense, residual add), GRU(48), Dense softmax -> 8 languages. Data: the
gettext catalogs' translations in /usr/share/locale (family_data.langid), split by program.
Trained here (TensorFlow backend, CPU) and cached as a .keras file in ~/.cache/edgeship/families/;
`build` returns its path. CLI: `edgeship export examples/families/langid_keras.py:build
--calib examples/families/family_data.py:langid_keras ...`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import family_data

EPOCHS = 3


def make():
    import keras
    from keras import layers

    ids = keras.Input((family_data.SEQ,), dtype="int32", name="ids")
    x = layers.Embedding(family_data.VOCAB, 64, mask_zero=True, name="embed")(ids)
    h = layers.LayerNormalization(name="ln1")(x)
    h = layers.MultiHeadAttention(4, 16, name="mha")(h, h)
    x = layers.Add(name="res1")([x, h])
    h = layers.LayerNormalization(name="ln2")(x)
    h = layers.Dense(128, activation="gelu", name="ff1")(h)
    h = layers.Dense(64, name="ff2")(h)
    x = layers.Add(name="res2")([x, h])
    x = layers.GRU(48, name="gru")(x)
    out = layers.Dense(len(family_data.LANGS), activation="softmax", name="lang")(x)
    return keras.Model(ids, out, name="langid_keras")


def train(epochs: int = EPOCHS, per_lang: int | None = None, seed: int = 0, eager: bool = False):
    """(model, held-out top-1 %). per_lang: fewer training strings, eager: no tf.function tracing
    (quicker for a few steps; quick tests)."""
    import keras

    keras.utils.set_random_seed(seed)
    data = family_data.langid()
    x, y = data["x_train"].astype(np.int32), data["y_train"]
    if per_lang:
        x, y = x[: per_lang * len(family_data.LANGS)], y[: per_lang * len(family_data.LANGS)]
    model = make()
    model.compile(keras.optimizers.AdamW(2e-3), "sparse_categorical_crossentropy", run_eagerly=eager)
    model.fit(x, y, batch_size=64, epochs=epochs, verbose=0)
    return model, accuracy(model, data)


def accuracy(model, data=None) -> float:
    data = data or family_data.langid()
    pred = model.predict(data["x_test"].astype(np.int32), batch_size=256, verbose=0).argmax(1)
    return float((pred == data["y_test"]).mean() * 100)


def trained() -> Path:
    return family_data.cached_keras_model("langid_keras", EPOCHS, family_data.langid(), train)


def build() -> str:
    return str(trained())
