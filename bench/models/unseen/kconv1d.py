def build():
    import keras
    from keras import layers
    keras.utils.set_random_seed(0)
    ids = keras.Input((40,), dtype="int32", name="ids")
    x = layers.Embedding(500, 32)(ids)
    x = layers.Conv1D(64, 5, activation="relu")(x)
    x = layers.Conv1D(64, 3, activation="relu")(x)
    x = layers.GlobalMaxPooling1D()(x)
    out = layers.Dense(6, activation="softmax")(x)
    return keras.Model(ids, out, name="kconv1d")
