"""dlshogi-convention ONNX export: onnxruntime on cshogi's planes against the Keras model on the same positions' records.

Needs the 'onnx' extra (part of the 'test' extra); skipped without it.
"""

import json
import subprocess
import sys

import cshogi.dlshogi
import keras
import numpy as np
import pytest
from conftest import random_game_records

from shogi_policy.core import policy_labels, record_format, shogi_rules
from shogi_policy.model import network, network_config
from shogi_policy.serving import export, onnx_export

pytestmark = pytest.mark.slow  # docs/testing.md

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
pytest.importorskip("tf2onnx")

# ONNX Runtime computes the same float32 network with BatchNorm folded into the convolutions and other kernels:
# logits agree to rounding (measured about 1e-6 on logits of magnitude 1-10), so 1e-4 is a loose bound; the
# value probability to 1e-5. Every position's argmax, over all labels and over the legal moves, must agree.
LOGIT_TOLERANCE = 1e-4
VALUE_TOLERANCE = 1e-5


def floodgate_boards(shared_data):
    """The 2,000 real floodgate positions of train_val_2000.tsv ('split<TAB>sfen ...<TAB>move')."""
    rows = (shared_data / "floodgate_positions" / "train_val_2000.tsv").read_text().splitlines()
    return [shogi_rules.parse_position(row.split("\t")[1]) for row in rows]


def random_game_boards():
    """Positions of uniformly random games (captures, drops, promotions, both sides to move)."""
    return [record_format.record_to_board(record) for record in random_game_records(12, 120, seed=5)]


@pytest.fixture(params=["floodgate", "random_games"])
def boards(request):
    if request.param == "floodgate":
        return floodgate_boards(request.getfixturevalue("shared_data"))
    return random_game_boards()


def dlshogi_planes(boards):
    """cshogi.dlshogi.make_input_features of each board: float32 [N, 62, 9, 9] and [N, 57, 9, 9]."""
    features1 = np.zeros((len(boards), 62, 9, 9), np.float32)
    features2 = np.zeros((len(boards), 57, 9, 9), np.float32)
    for i, board in enumerate(boards):
        cshogi.dlshogi.make_input_features(board, features1[i], features2[i])
    return features1, features2


def run_onnx(path, boards):
    """(output_policy [N, 2187], output_value [N, 1]) of the ONNX file on the boards, onnxruntime CPU."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    features1, features2 = dlshogi_planes(boards)
    return session.run(list(onnx_export.OUTPUT_NAMES), {"input1": features1, "input2": features2})


def keras_outputs(model, boards):
    """(policy logits [N, 2187], value logit [N, 1] or None) of the Keras model on the boards' records."""
    outputs = model.predict(record_format.encode_boards(boards).astype(np.int32), batch_size=256, verbose=0)
    return (outputs["policy"], outputs["value"]) if isinstance(outputs, dict) else (outputs, None)


def check_policy(keras_logits, onnx_logits, boards):
    assert np.abs(onnx_logits - keras_logits).max() <= LOGIT_TOLERANCE
    np.testing.assert_array_equal(onnx_logits.argmax(axis=1), keras_logits.argmax(axis=1))
    for board, ours, theirs in zip(boards, keras_logits, onnx_logits, strict=True):
        _, labels = policy_labels.legal_moves_and_labels(board)
        assert labels[ours[labels].argmax()] == labels[theirs[labels].argmax()]


@pytest.fixture(scope="module")
def cli_onnx(tiny_export, tmp_path_factory):
    """model.onnx written by `shogi-policy-export --format=onnx` from the tiny policy-only network."""
    export_dir = tmp_path_factory.mktemp("onnx")
    command = [
        sys.executable,
        "-m",
        "shogi_policy.cli.export",
        f"--model_dir={tiny_export[0]}",
        "--format=onnx",
    ]
    result = subprocess.run(
        [*command, f"--export_dir={export_dir}"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (export_dir / "saved_model.pb").exists()
    return export_dir / onnx_export.ONNX_FILENAME


def test_policy_only_export_matches_keras(tiny_export, cli_onnx, boards):
    keras_model = keras.models.load_model(tiny_export[0] / "model.keras")
    policy, value = run_onnx(cli_onnx, boards)
    check_policy(keras_outputs(keras_model, boards)[0], policy, boards)
    assert value.shape == (len(boards), 1) and np.all(value == onnx_export.POLICY_ONLY_VALUE)


def test_bfloat16_trained_model_exports_float32_onnx(bfloat16_trained_dir, tmp_path, boards):
    """A model trained with --mixed_bfloat16=true: its ONNX holds no bfloat16 weight and matches the float32
    Keras model the export builds from its checkpoint."""
    command = [sys.executable, "-m", "shogi_policy.cli", "export", f"--model_dir={bfloat16_trained_dir}"]
    result = subprocess.run(
        [*command, "--format=onnx", f"--export_dir={tmp_path}"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    path = tmp_path / onnx_export.ONNX_FILENAME
    weight_types = {tensor.data_type for tensor in onnx.load(str(path)).graph.initializer}
    assert onnx.TensorProto.FLOAT in weight_types and onnx.TensorProto.BFLOAT16 not in weight_types
    float32_model = export.load_model(model_dir=str(bfloat16_trained_dir))[0]
    check_policy(keras_outputs(float32_model, boards)[0], run_onnx(path, boards)[0], boards)


def _randomize_statistics(model, seed):
    """Random BatchNorm statistics and policy bias, so that folding BN into the convolutions is exercised."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.gamma.shape
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, shape),
                    rng.normal(0, 0.2, shape),
                    rng.normal(0, 0.5, shape),
                    rng.uniform(0.5, 2, shape),
                ]
            )
        elif isinstance(layer, network.PolicyBias):
            layer.set_weights([rng.normal(0, 0.5, layer.bias.shape)])


def test_value_head_export_matches_keras(tmp_path, boards):
    keras.utils.set_random_seed(1)
    model = network.build_policy_model(
        network_config.NetworkConfig(blocks=2, filters=16, activation="swish", value_head=True)
    )
    _randomize_statistics(model, seed=2)
    path, metadata = onnx_export.export_onnx(model, tmp_path, {"blocks": 2}, "test")
    assert metadata["value"] == "sigmoid"
    policy, value = run_onnx(path, boards)
    keras_policy, keras_value = keras_outputs(model, boards)
    check_policy(keras_policy, policy, boards)
    probability = 1 / (1 + np.exp(-keras_value.astype(np.float64)))
    assert np.abs(value - probability).max() <= VALUE_TOLERANCE
    assert value.std() > 0.01, "the value output should depend on the position"


def test_io_names_order_shapes_and_dynamic_batch(cli_onnx, tiny_export):
    proto = onnx.load(cli_onnx)
    dims = lambda value: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]  # noqa: E731
    assert [(v.name, dims(v)) for v in proto.graph.input] == [
        ("input1", ["batch_size", 62, 9, 9]),
        ("input2", ["batch_size", 57, 9, 9]),
    ]
    # dlshogi's TensorRT backend binds outputs by position: policy first.
    assert [(v.name, dims(v)) for v in proto.graph.output] == [
        ("output_policy", ["batch_size", 2187]),
        ("output_value", ["batch_size", 1]),
    ]
    assert {o.domain: o.version for o in proto.opset_import}[""] == onnx_export.OPSET
    assert not any(node.op_type == "BatchNormalization" for node in proto.graph.node)
    metadata = json.loads({p.key: p.value for p in proto.metadata_props}[onnx_export.METADATA_KEY])
    assert metadata["label_scheme"] == "dlshogi-2187" and metadata["value"] == "constant 0.5"
    assert metadata["network"]["blocks"] == 1 and metadata["source"] == str(tiny_export[0])
    boards = random_game_boards()[:40]
    whole = run_onnx(cli_onnx, boards)[0]
    for start, stop in ((0, 1), (1, 4), (4, 40)):
        np.testing.assert_allclose(run_onnx(cli_onnx, boards[start:stop])[0], whole[start:stop], atol=1e-6)
