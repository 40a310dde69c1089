def build():
    import keras
    from keras import layers
    keras.utils.set_random_seed(0)
    T, D = 64, 64

    class TokenAndPosition(layers.Layer):           # the Keras text-classification example's embedding
        def __init__(self, **kw):
            super().__init__(**kw)
            self.tok = layers.Embedding(1000, D); self.pos = layers.Embedding(T, D)
        def call(self, ids):
            positions = keras.ops.arange(0, keras.ops.shape(ids)[-1], 1)
            return self.tok(ids) + self.pos(positions)

    ids = keras.Input((T,), dtype="int32", name="ids")
    x = TokenAndPosition()(ids)
    h = layers.LayerNormalization()(x)
    h = layers.MultiHeadAttention(num_heads=4, key_dim=D // 4)(h, h, use_causal_mask=True)
    x = x + h
    h = layers.LayerNormalization()(x)
    h = layers.Dense(2 * D, activation="gelu")(h)
    x = x + layers.Dense(D)(h)
    x = layers.GlobalAveragePooling1D()(x)
    out = layers.Dense(5)(x)
    return keras.Model(ids, out, name="ktextcausal")
