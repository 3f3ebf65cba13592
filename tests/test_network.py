"""Residual policy network: dlshogi policy-index layout checked against cshogi's planes, dtypes, sizes."""

import cshogi
import cshogi.dlshogi
import keras
import numpy as np
import pytest
from conftest import random_game_records

from shogi_policy.core import policy_labels, record_format
from shogi_policy.model import network, network_config


def _identity_batch_norm(layer):
    gamma, beta, mean, variance = layer.get_weights()
    layer.set_weights([np.ones_like(gamma), np.zeros_like(beta), np.zeros_like(mean), np.ones_like(variance)])


def test_policy_index_is_channel_times_81_plus_cshogi_square():
    """Route cshogi input plane c to policy channel c: logit c*81 + s must equal cshogi's plane c at s."""
    num = policy_labels.NUM_MOVE_DIRECTIONS
    model = network.build_policy_model(network_config.NetworkConfig(blocks=0, filters=num, activation="relu"))
    stem = np.zeros(model.get_layer("stem_conv").kernel.shape, np.float32)  # [3, 3, 119, 27]
    stem[1, 1, np.arange(num), np.arange(num)] = 1.0  # centre tap: filter c = input plane c
    model.get_layer("stem_conv").set_weights([stem])
    _identity_batch_norm(model.get_layer("stem_bn"))
    model.get_layer("policy_conv").set_weights([np.eye(num, dtype=np.float32)[None, None]])
    bias = np.arange(policy_labels.NUM_MOVE_LABELS, dtype=np.float32) * 1e-3
    model.get_layer("policy").set_weights([bias])

    records = random_game_records(num_games=2, max_plies=60, seed=1)
    logits = model.predict(records, verbose=0)

    expected = np.zeros((len(records), 62, 9, 9), np.float32)
    features2 = np.zeros((57, 9, 9), np.float32)
    for i, record in enumerate(records):
        cshogi.dlshogi.make_input_features(record_format.record_to_board(record), expected[i], features2)
    expected = expected[:, :num].reshape(len(records), -1) + bias
    np.testing.assert_allclose(logits, expected, atol=1e-4)
    assert (records[:, record_format.META_OFFSET + 1] >> 6 & 1).any(), (
        "some positions must have White to move"
    )


def test_mixed_bfloat16_keeps_output_layers_float32():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = network.build_policy_model(network_config.NetworkConfig(2, 16, "hard_swish", value_head=True))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    outputs = model(random_game_records(1, 8, seed=2))
    assert outputs["policy"].dtype == "float32" and tuple(outputs["policy"].shape) == (8, 2187)
    assert outputs["value"].dtype == "float32" and tuple(outputs["value"].shape) == (8, 1)
    assert model.get_layer("block1_conv2").compute_dtype == "bfloat16"
    assert model.get_layer("block1_conv2").kernel.dtype == "float32"


def _analytic_parameter_count(blocks, filters, value_head):
    """dlshogi ResNet sizes; BatchNorm counts gamma, beta and the two moving statistics."""
    conv3x3 = 9 * filters * filters
    batch_norm = 4 * filters
    count = 9 * 119 * filters + batch_norm  # stem
    count += blocks * 2 * (conv3x3 + batch_norm)
    count += filters * 27 + 2187  # policy conv + per-output bias
    if value_head:
        count += (
            filters * 27 + 4 * 27 + (2187 + 1) * network.VALUE_HIDDEN_UNITS + network.VALUE_HIDDEN_UNITS + 1
        )
    return count


@pytest.mark.parametrize("value_head", [False, True])
def test_parameter_counts(value_head):
    config = network_config.NetworkConfig(
        **{**network_config.PRESETS["tpu"].to_dict(), "value_head": value_head}
    )
    model = network.build_policy_model(config)
    assert model.count_params() == _analytic_parameter_count(10, 192, value_head)
    # dlshogi quotes about 7.4M parameters for its 10x192 policy-value net.
    if value_head:
        assert 7.3e6 < model.count_params() < 7.5e6


def test_hard_swish_is_x_times_hard_sigmoid():
    x = np.linspace(-5, 5, 41).astype(np.float32)
    layer = keras.layers.Activation(network_config.NetworkConfig(activation="hard_swish").activation)
    np.testing.assert_allclose(layer(x), x * keras.activations.hard_sigmoid(x), atol=1e-6)


def test_config_round_trip_and_validation():
    config = network_config.NetworkConfig(4, 32, "relu", True)
    assert network_config.NetworkConfig.from_dict(config.to_dict()) == config
    assert network_config.PRESETS["tpu"] == network_config.NetworkConfig(10, 192, "swish", False)
    with pytest.raises(ValueError, match="activation"):
        network_config.NetworkConfig(activation="gelu")
    with pytest.raises(ValueError, match="unknown"):
        network_config.NetworkConfig.from_dict({"blocks": 1, "width": 3})


def test_keras_file_round_trip(tmp_path):
    model = network.build_policy_model(network_config.NetworkConfig(1, 8, "swish", value_head=True))
    records = random_game_records(1, 6, seed=3)
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    for key in ("policy", "value"):
        np.testing.assert_allclose(reloaded(records)[key], model(records)[key], atol=1e-6)


def test_model_takes_int32_records_for_the_tpu():
    """TPUs take no uint8 tensors, so the network's input (what tf.data feeds) is int32."""
    model = network.build_policy_model(network_config.PRESETS["cpu"])
    assert model.inputs[0].dtype == "int32"
