"""SavedModel export: signatures checked against the Keras model and a numpy softmax over cshogi's legal moves."""

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import cshogi
import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY_CONFIG, numpy_probabilities
from tensorflow.core.protobuf import saved_model_pb2

from shogi_policy.core import policy_labels, record_format
from shogi_policy.model import network, network_config
from shogi_policy.serving import export, policy_ops

OPENINGS = [
    "startpos",
    "startpos moves 7g7f 3c3d 2g2f 4c4d",
    "startpos moves 7g7f 3c3d 8h2b+ 3a2b B*4e",  # drops and a promoted bishop, White to move
]


def cshogi_inputs(positions):
    """Records uint8 [N, 100] and legal mask bool [N, 2187] built from cshogi's legal move list."""
    boards = []
    for position in positions:
        board = cshogi.Board()
        board.set_position(position)
        boards.append(board)
    mask = np.zeros((len(boards), policy_labels.NUM_MOVE_LABELS), dtype=bool)
    for row, board in enumerate(boards):
        moves = list(board.legal_moves)
        mask[row, policy_labels.move_labels(moves, board.turn)] = True
    return record_format.encode_boards(boards), mask


@pytest.fixture(scope="module")
def saved_model(tiny_export):
    return tf.saved_model.load(str(tiny_export[1]))


# Runs with TensorFlow alone: the SavedModel must not need shogi_policy (or cshogi) to load and serve.
_PLAIN_TF_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf

    export_dir, inputs_path, outputs_path = sys.argv[1:]
    inputs = np.load(inputs_path)
    loaded = tf.saved_model.load(export_dir)
    records = tf.constant(inputs["records"])
    mask = tf.constant(inputs["mask"])
    signatures = loaded.signatures
    outputs = {
        "logits": signatures["logits"](records=records)["logits"],
        "probabilities": signatures["probabilities"](
            records=records, legal_mask=mask, temperature=tf.constant(0.5)
        )["probabilities"],
        "label": signatures["sample"](
            records=records, legal_mask=mask, temperature=tf.constant(1.0), seed=tf.constant(7, tf.int64)
        )["label"],
    }
    assert not [name for name in sys.modules if name.split(".")[0] in ("shogi_policy", "cshogi")]
    np.savez(outputs_path, signatures=sorted(signatures), **{k: v.numpy() for k, v in outputs.items()})
    """
)


@pytest.fixture(scope="module")
def bfloat16_export(bfloat16_trained_dir):
    """(model dir, export dir) of the tiny network trained in mixed bfloat16, exported by the CLI."""
    export_dir = bfloat16_trained_dir / "export"
    command = [sys.executable, "-m", "shogi_policy.cli", "export", f"--model_dir={bfloat16_trained_dir}"]
    result = subprocess.run(
        [*command, f"--export_dir={export_dir}"], capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return bfloat16_trained_dir, export_dir


@pytest.mark.parametrize("exported", ["tiny_export", pytest.param("bfloat16_export", marks=pytest.mark.slow)])
def test_signatures_served_by_plain_tensorflow_match_keras(exported, request, tmp_path):
    """The SavedModel served without this package computes what its float32 Keras model does, also for a model
    trained in mixed bfloat16 (exported in float32)."""
    model_dir, export_dir = request.getfixturevalue(exported)
    records, mask = cshogi_inputs(OPENINGS)
    np.savez(tmp_path / "inputs.npz", records=records, mask=mask)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _PLAIN_TF_SCRIPT,
            str(export_dir),
            tmp_path / "inputs.npz",
            tmp_path / "out.npz",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    assert {"logits", "probabilities", "sample"} <= set(out["signatures"])
    n = len(OPENINGS)
    assert out["logits"].shape == (n, policy_labels.NUM_MOVE_LABELS) and out["logits"].dtype == np.float32
    assert out["probabilities"].shape == (n, policy_labels.NUM_MOVE_LABELS)
    assert out["label"].shape == (n,) and out["label"].dtype == np.int32

    float32_model = export.load_model(model_dir=str(model_dir))[0]
    assert all(weight.dtype == "float32" for weight in float32_model.weights)
    keras_logits = keras.ops.convert_to_numpy(float32_model(records, training=False))
    np.testing.assert_allclose(out["logits"], keras_logits, rtol=1e-5, atol=1e-5)
    # The trained model.keras itself (in bfloat16 where it was trained so) agrees to bfloat16's 8 bits.
    trained_logits = keras.models.load_model(model_dir / "model.keras")(records, training=False)
    trained_logits = keras.ops.convert_to_numpy(keras.ops.cast(trained_logits, "float32"))
    np.testing.assert_allclose(out["logits"], trained_logits, rtol=0, atol=0.05 * np.abs(keras_logits).max())
    np.testing.assert_allclose(
        out["probabilities"], numpy_probabilities(out["logits"], mask, 0.5), rtol=1e-5, atol=1e-6
    )
    assert mask[np.arange(n), out["label"]].all()


def test_metadata_describes_layout_and_network(tiny_export):
    metadata = json.loads((tiny_export[1] / policy_ops.METADATA_FILENAME).read_text())
    assert metadata["label_scheme"] == "dlshogi-2187"
    assert metadata["num_labels"] == policy_labels.NUM_MOVE_LABELS
    assert metadata["record_bytes"] == record_format.RECORD_BYTES
    assert metadata["record_format_version"] == record_format.RECORD_FORMAT_VERSION
    assert network_config.NetworkConfig.from_dict(metadata["network"]) == TINY_CONFIG


def real_positions(shared_data, count):
    lines = (shared_data / "floodgate_positions" / "train_val_2000.tsv").read_text().splitlines()
    return [line.split("\t")[1] for line in lines[:count]]


@pytest.mark.parametrize("temperature", [0.3, 1.0, 4.0])
def test_probabilities_are_tempered_softmax_over_legal_moves(saved_model, shared_data, temperature):
    records, mask = cshogi_inputs(real_positions(shared_data, 300))
    logits = saved_model.logits(records)["logits"].numpy()
    probabilities = saved_model.probabilities(records, mask, tf.constant(temperature))[
        "probabilities"
    ].numpy()
    np.testing.assert_allclose(probabilities, numpy_probabilities(logits, mask, temperature), atol=2e-6)
    assert (probabilities[~mask] == 0).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_zero_temperature_is_one_hot_argmax_over_legal_moves(saved_model, shared_data):
    records, mask = cshogi_inputs(real_positions(shared_data, 300))
    logits = saved_model.logits(records)["logits"].numpy()
    best = np.where(mask, logits, -np.inf).argmax(axis=1)
    assert not mask[np.arange(len(best)), logits.argmax(axis=1)].all(), "illegal argmax never tested"
    probabilities = saved_model.probabilities(records, mask, tf.constant(0.0))["probabilities"].numpy()
    np.testing.assert_array_equal(
        probabilities, np.eye(policy_labels.NUM_MOVE_LABELS, dtype=np.float32)[best]
    )
    for temperature in (0.0, 1e-4):
        labels = saved_model.sample(records, mask, tf.constant(temperature), tf.constant(3, tf.int64))
        np.testing.assert_array_equal(labels["label"].numpy(), best)


def chi_square_critical(degrees, z=3.0902):
    """Wilson-Hilferty upper quantile of chi-square; z = 3.0902 is significance 0.001."""
    return degrees * (1 - 2 / (9 * degrees) + z * math.sqrt(2 / (9 * degrees))) ** 3


def chi_square(counts, expected):
    """Pearson statistic and degrees of freedom, pooling cells expected below 5 into one."""
    small = expected < 5
    observed = np.append(counts[~small], counts[small].sum())
    cells = np.append(expected[~small], expected[small].sum())
    keep = cells > 0
    return float(((observed[keep] - cells[keep]) ** 2 / cells[keep]).sum()), int(keep.sum()) - 1


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_sampling_frequencies_follow_tempered_softmax(saved_model, temperature):
    # The sampler of the "sample" signature, fed the exported model's logits of one position in
    # many rows (one draw per row), so that many draws cost no network evaluations.
    draws = 10000
    records, mask = cshogi_inputs([OPENINGS[2]])
    logits = saved_model.logits(records)["logits"].numpy()
    labels = policy_ops.sample_labels(
        tf.repeat(logits, draws, axis=0),
        tf.repeat(mask, draws, axis=0),
        tf.constant(temperature),
        tf.constant(12345, tf.int64),
    )
    counts = np.bincount(labels.numpy(), minlength=policy_labels.NUM_MOVE_LABELS)
    legal = mask[0]
    assert counts[~legal].sum() == 0, "an illegal move was sampled"
    expected = draws * numpy_probabilities(logits, mask, temperature)[0][legal]
    statistic, degrees = chi_square(counts[legal], expected)
    assert degrees >= 5
    assert statistic < chi_square_critical(degrees), (statistic, degrees)
    # The test has power: the same draws are rejected against a different temperature.
    wrong = draws * numpy_probabilities(logits, mask, temperature * 2)[0][legal]
    assert chi_square(counts[legal], wrong)[0] > chi_square_critical(degrees)


def test_sampling_is_reproducible_and_only_legal(saved_model, shared_data):
    records, mask = cshogi_inputs(real_positions(shared_data, 400))
    rows = np.arange(len(records))
    draws = []
    for seed in (0, 1):
        for temperature in (1.0, 10.0):
            label = saved_model.sample(records, mask, tf.constant(temperature), tf.constant(seed, tf.int64))
            draws.append(label["label"].numpy())
            assert mask[rows, draws[-1]].all()
    again = saved_model.sample(records, mask, tf.constant(1.0), tf.constant(0, tf.int64))["label"].numpy()
    np.testing.assert_array_equal(again, draws[0])
    assert (draws[0] != draws[2]).any()


@pytest.mark.parametrize(
    "temperature, row_mask, message",
    [
        (-1.0, True, "temperature"),
        (float("nan"), True, "temperature"),
        (float("inf"), True, "finite in float32"),  # else NaN probabilities (1e39 is inf in float32)
        (1.0, False, "legal move"),
    ],
)
def test_signatures_reject_bad_inputs(saved_model, temperature, row_mask, message):
    records, mask = cshogi_inputs(OPENINGS[:1])
    mask[0] &= row_mask
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        saved_model.probabilities(records, mask, tf.constant(temperature))
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        saved_model.sample(records, mask, tf.constant(temperature), tf.constant(0, tf.int64))


def test_float32_model_rebuilds_a_mixed_bfloat16_model():
    records, _ = cshogi_inputs(OPENINGS)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        keras.utils.set_random_seed(1)
        mixed = network.build_policy_model(TINY_CONFIG)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    clone = export.float32_model(mixed)
    assert clone is not mixed
    assert all(layer.compute_dtype == "float32" for layer in clone.layers)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(clone(records)), keras.ops.convert_to_numpy(mixed(records)), atol=0.1
    )
    assert export.float32_model(clone) is clone


def test_load_model_from_trainer_dir_or_keras_file(tiny_export):
    model_dir = tiny_export[0]
    records, _ = cshogi_inputs(OPENINGS)
    from_dir, config = export.load_model(model_dir=str(model_dir))
    from_file, same_config = export.load_model(keras_model=str(model_dir / "model.keras"))
    assert (
        network_config.NetworkConfig.from_dict(config)
        == TINY_CONFIG
        == network_config.NetworkConfig.from_dict(same_config)
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(from_dir(records)),
        keras.ops.convert_to_numpy(from_file(records)),
        atol=1e-5,
    )
    with pytest.raises(ValueError, match="exactly one"):
        export.load_model()
    with pytest.raises(ValueError, match="does not exist"):
        export.load_model(keras_model=str(model_dir / "missing.keras"))


def test_policy_logits_of_a_two_headed_model():
    records, _ = cshogi_inputs(OPENINGS)
    model = network.build_policy_model(network_config.NetworkConfig(blocks=1, filters=8, value_head=True))
    logits = export.policy_logits(model, tf.constant(records))
    np.testing.assert_array_equal(logits.numpy(), keras.ops.convert_to_numpy(model(records)["policy"]))


def test_largest_float32_temperature_is_uniform_over_legal_moves(saved_model):
    records, mask = cshogi_inputs(OPENINGS)
    largest = tf.constant(np.finfo(np.float32).max)
    probabilities = saved_model.probabilities(records, mask, largest)["probabilities"].numpy()
    np.testing.assert_allclose(probabilities, mask / mask.sum(axis=1, keepdims=True), rtol=1e-6)


@pytest.mark.parametrize("num_records, num_masks", [(2, 1), (1, 2), (0, 1)])
def test_signatures_compare_batch_sizes(saved_model, num_records, num_masks):
    # A mask of 1 row must not broadcast over 2 records.
    records, mask = cshogi_inputs(OPENINGS[:2])
    args = records[:num_records], mask[:num_masks], tf.constant(1.0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="same number of positions"):
        saved_model.probabilities(*args)
    with pytest.raises(tf.errors.InvalidArgumentError, match="same number of positions"):
        saved_model.sample(*args, tf.constant(0, tf.int64))


def test_empty_batch_gives_empty_outputs(saved_model):
    # Not a failure inside the network ("Incompatible shapes: [8] vs. [0,9,9,119]").
    records, mask = cshogi_inputs([])
    assert saved_model.logits(records)["logits"].shape == (0, policy_labels.NUM_MOVE_LABELS)
    probabilities = saved_model.probabilities(records, mask, tf.constant(1.0))["probabilities"]
    assert probabilities.shape == (0, policy_labels.NUM_MOVE_LABELS)
    label = saved_model.sample(records, mask, tf.constant(1.0), tf.constant(0, tf.int64))["label"]
    assert label.shape == (0,) and label.dtype == tf.int32


def test_export_refuses_weights_that_are_not_finite(tmp_path):
    model = network.build_policy_model(TINY_CONFIG)
    kernel = model.get_layer("stem_conv").kernel
    kernel.assign(np.where(np.arange(kernel.shape[-1]) == 3, np.nan, kernel.numpy()))
    with pytest.raises(ValueError, match="not finite.*stem_conv/kernel.*diverged"):
        export.export_model(model, str(tmp_path / "export"))
    assert not (tmp_path / "export").exists()


def xla_must_compile_sites(export_dir):
    """Functions and call nodes of a SavedModel marked _XlaMustCompile=True (none: servable without XLA).

    XLA-must-compile functions fail on a host without XLA (the tensorflow-tpu wheel's) with "could not find
    registered transfer manager for platform Host". The mark sits on the FunctionDef and on its callers.
    """
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((Path(export_dir) / "saved_model.pb").read_bytes())
    graph = saved_model.meta_graphs[0].graph_def

    def marked(attrs):
        return "_XlaMustCompile" in attrs and attrs["_XlaMustCompile"].b

    sites = [node.name for node in graph.node if marked(node.attr)]
    for function in graph.library.function:
        name = function.signature.name
        sites += [name] if marked(function.attr) else []
        sites += [f"{name}/{node.name}" for node in function.node_def if marked(node.attr)]
    return sites


@pytest.mark.slow
def test_exports_carry_no_xla_must_compile_function(tiny_export, tmp_path):
    assert xla_must_compile_sites(tiny_export[1]) == []
    # A model built as the trainer builds it on CPU (the feature layer as its own XLA computations).
    model = network.build_policy_model(TINY_CONFIG, nested_xla=True)
    export.export_model(model, str(tmp_path / "export"))
    assert xla_must_compile_sites(tmp_path / "export") == []

    # The check itself finds the mark where there is one.
    module = tf.Module()
    module.double = tf.function(
        lambda x: 2 * x, jit_compile=True, input_signature=[tf.TensorSpec([], tf.float32)]
    )
    tf.saved_model.save(module, str(tmp_path / "jit"))
    assert xla_must_compile_sites(tmp_path / "jit")
