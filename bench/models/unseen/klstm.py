def build():
    import keras
    from keras import layers
    keras.utils.set_random_seed(0)
    seq = keras.Input((30, 8), name="seq")
    x = layers.Bidirectional(layers.LSTM(32))(seq)
    x = layers.Dense(32, activation="relu")(x)
    out = layers.Dense(3)(x)
    return keras.Model(seq, out, name="klstm")
