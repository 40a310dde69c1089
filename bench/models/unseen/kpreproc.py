def build():
    import keras
    from keras import layers
    keras.utils.set_random_seed(0)
    img = keras.Input((64, 64, 3), name="img")
    x = layers.Rescaling(1 / 255)(img)
    x = layers.Normalization(mean=[0.485, 0.456, 0.406], variance=[0.229 ** 2, 0.224 ** 2, 0.225 ** 2])(x)
    x = layers.Conv2D(16, 3, strides=2, padding="same")(x)
    x = layers.ReLU(6.0)(x)
    s = x
    x = layers.DepthwiseConv2D(3, padding="same")(x)
    x = layers.ReLU(6.0)(x)
    x = layers.Conv2D(16, 1)(x)
    x = layers.Add()([x, s])
    x = layers.DepthwiseConv2D(3, strides=2, padding="same")(x)
    x = layers.ReLU(6.0)(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.2)(x)
    out = layers.Dense(10, activation="softmax")(x)
    return keras.Model(img, out, name="kpreproc")
