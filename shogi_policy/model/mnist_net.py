"""The MNIST smoke test's model: the residual tower of shogi_policy.model.network over 28x28x1 images."""

import keras

from shogi_policy.model import network

NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28, 1)


def build_model(config):
    """Residual classifier: images float32 [B, 28, 28, 1] in 0..255 -> logits float32 [B, 10]."""
    images = keras.Input(shape=IMAGE_SHAPE, dtype="float32", name="images")
    x = keras.layers.Rescaling(1.0 / 255, name="rescale")(images)
    x = network.residual_tower(x, config)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = keras.layers.Dense(NUM_CLASSES, name="logits", dtype="float32")(x)
    return keras.Model(images, logits, name="mnist")


def loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def metrics():
    # argmax of softmax(logits) == label; softmax keeps the argmax, so logits serve directly.
    return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
