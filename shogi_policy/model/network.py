"""Residual policy network over compact records (dlshogi architecture, NHWC Keras 3).

records int32 [B, 100] -> DlshogiFeatures [B, 9, 9, 119] -> 3x3 conv stem -> residual blocks
-> dlshogi policy head -> logits float32 [B, 2187] (index = direction * 81 + file * 9 + rank),
and optionally a dlshogi value head -> logit float32 [B, 1].
"""

import keras

from shogi_policy.core import policy_labels, record_format
from shogi_policy.model.features import DlshogiFeatures

VALUE_HIDDEN_UNITS = 256  # dlshogi's fcl
# dlshogi trains with PyTorch BatchNorm defaults: momentum 0.1 (Keras 0.9), epsilon 1e-5.
_BN_MOMENTUM = 0.9
_BN_EPSILON = 1e-5


@keras.saving.register_keras_serializable(package="shogi_policy")
class PolicyBias(keras.layers.Layer):
    """One learned bias per output unit (dlshogi's Bias after the policy conv): [B, N] -> [B, N]."""

    def build(self, input_shape):
        self.bias = self.add_weight(shape=(input_shape[-1],), initializer="zeros", name="bias")

    def call(self, inputs):
        return inputs + self.bias


def _conv(filters, kernel_size, name, **kwargs):
    # No conv bias: a BatchNorm (or PolicyBias) follows every convolution.
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=name,
        **kwargs,
    )


def _batch_norm(name):
    return keras.layers.BatchNormalization(momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON, name=name)


def _residual_block(x, config, index):
    name = f"block{index}"
    y = _conv(config.filters, 3, f"{name}_conv1")(x)
    y = _batch_norm(f"{name}_bn1")(y)
    y = keras.layers.Activation(config.activation, name=f"{name}_act1")(y)
    y = _conv(config.filters, 3, f"{name}_conv2")(y)
    y = _batch_norm(f"{name}_bn2")(y)
    y = keras.layers.Add(name=f"{name}_add")([x, y])
    return keras.layers.Activation(config.activation, name=f"{name}_act2")(y)


def residual_tower(x, config):
    """3x3 conv stem, BatchNorm, activation, then config.blocks residual blocks: [B, H, W, C] -> [B, H, W, F]."""
    x = _conv(config.filters, 3, "stem_conv")(x)
    x = _batch_norm("stem_bn")(x)
    x = keras.layers.Activation(config.activation, name="stem_act")(x)
    for index in range(config.blocks):
        x = _residual_block(x, config, index)
    return x


def _policy_head(x):
    """[B, 9, 9, F] -> float32 logits [B, 2187] in dlshogi's channel-major order."""
    x = _conv(policy_labels.NUM_MOVE_DIRECTIONS, 1, "policy_conv", dtype="float32")(x)
    # NHWC -> NCHW so that flat index = channel * 81 + file * 9 + rank, as dlshogi's labels.
    x = keras.layers.Permute((3, 1, 2), name="policy_channels_first", dtype="float32")(x)
    x = keras.layers.Flatten(name="policy_flatten", dtype="float32")(x)
    return PolicyBias(name="policy", dtype="float32")(x)


def _value_head(x, config):
    """[B, 9, 9, F] -> float32 logit [B, 1] that the side to move wins (dlshogi's value head)."""
    x = _conv(policy_labels.NUM_MOVE_DIRECTIONS, 1, "value_conv")(x)
    x = _batch_norm("value_bn")(x)
    x = keras.layers.Activation(config.activation, name="value_act1")(x)
    x = keras.layers.Flatten(name="value_flatten")(x)
    x = keras.layers.Dense(VALUE_HIDDEN_UNITS, activation=config.activation, name="value_fc1")(x)
    return keras.layers.Dense(1, name="value", dtype="float32")(x)


def build_policy_model(config, nested_xla=False):
    """The policy (and optional value) network of a network_config.NetworkConfig.

    nested_xla: the feature layer's own XLA computations (features.DlshogiFeatures), for CPU/GPU training.

    Input: records int32 [B, 100] (bytes 0..255). Output: policy logits float32 [B, 2187], or with
    config.value_head a dict {"policy": float32 [B, 2187], "value": float32 [B, 1]}.
    Layers run in the global Keras dtype policy (e.g. mixed_bfloat16); the output layers stay float32.
    """
    records = keras.Input(shape=(record_format.RECORD_BYTES,), dtype="int32", name="records")
    x = residual_tower(DlshogiFeatures(nested_xla=nested_xla, name="features")(records), config)
    policy = _policy_head(x)
    if not config.value_head:
        return keras.Model(records, policy, name="shogi_policy")
    return keras.Model(records, {"policy": policy, "value": _value_head(x, config)}, name="shogi_policy")


def check_finite_weights(model):
    """ValueError naming the weights of a model that hold NaN or inf (a diverged run): nothing to serve."""
    bad = non_finite_weights(model.weights)
    if bad:
        raise ValueError(
            f"the model's weights are not finite (NaN or inf in {', '.join(bad[:3])}): its training diverged; "
            "export an earlier checkpoint or retrain with a lower learning rate"
        )


def non_finite_weights(variables):
    """Paths of the floating-point variables (keras.Variables) that hold a NaN or an infinity.

    The trainer checks the model and optimizer before each checkpoint and the export checks the model,
    so that a diverged run never becomes the latest checkpoint or a served model. One reduction per
    variable on its device, one bool to the host.
    """
    return [
        variable.path
        for variable in variables
        if keras.backend.is_float_dtype(variable.dtype)
        and not bool(keras.ops.all(keras.ops.isfinite(variable)))
    ]
