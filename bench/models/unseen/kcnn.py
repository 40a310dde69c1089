def build():
    import keras
    from keras import layers
    keras.utils.set_random_seed(0)
    img = keras.Input((64, 64, 3), name="img")
    x = layers.Conv2D(16, 3, strides=2, padding="same")(img)
    x = layers.BatchNormalization()(x); x = layers.Activation("swish")(x)
    s = x
    x = layers.DepthwiseConv2D(3, padding="same")(x)
    x = layers.BatchNormalization()(x); x = layers.Activation("swish")(x)
    x = layers.SeparableConv2D(32, 3, strides=2, padding="same")(x)
    x = layers.BatchNormalization()(x); x = layers.Activation("swish")(x)
    x = layers.UpSampling2D(2)(x)
    x = layers.Concatenate()([x, s])
    x = layers.SeparableConv2D(16, 3, padding="same", activation="swish")(x)
    out = layers.Conv2D(3, 1)(x)
    return keras.Model(img, out, name="kcnn")
