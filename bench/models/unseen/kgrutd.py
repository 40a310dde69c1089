def build():
    import keras
    from keras import layers
    keras.utils.set_random_seed(0)
    seq = keras.Input((50, 12), name="seq")
    x = layers.Conv1D(32, 3, padding="same", activation="relu")(seq)
    x = layers.GRU(32, return_sequences=True)(x)
    out = layers.TimeDistributed(layers.Dense(8))(x)
    return keras.Model(seq, out, name="kgrutd")
