"""The JAX backend against the TensorFlow one: the same training, and a JAX-trained model served by TensorFlow.

Keras holds one backend per process, so the JAX side runs in child processes (this file run as a script:
`python tests/test_backends.py <mode> <json arguments>`). The test process is the TensorFlow side; under
KERAS_BACKEND=jax (.ci/jax_lane) the module is skipped, having run in the default suite already.

Tolerances: the loss of a tiny network trained 20 steps on identical batches from identical weights agrees
within rtol 1e-4 per step (measured: 1e-6; float32 round-off in a different order of operations, amplified
by training), and an exported SavedModel's logits equal the JAX model's within 1e-4 (measured: 4e-6).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import cshogi
import keras
import numpy as np
import pytest
from conftest import TINY_CONFIG, parse_flags, random_game_records

from shogi_policy.cli import train as train_command
from shogi_policy.core import policy_labels, record_format, shogi_rules
from shogi_policy.data import shards
from shogi_policy.model import losses, model_dir, network
from shogi_policy.serving import inference
from shogi_policy.training import train

pytest.importorskip("jax")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        keras.backend.backend() != "tensorflow", reason="the TensorFlow side of cross-backend tests"
    ),
]

REPO = Path(__file__).resolve().parents[1]
CURVE_STEPS = 20
CURVE_BATCH = 32


def _child_env(backend):
    """Environment of a child process on backend, importing this checkout, with two JAX CPU devices."""
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2".strip()
    return env


def _run(command, backend, timeout=600):
    """Runs a command with the given KERAS_BACKEND (None: unset); its stdout; fails with its stderr's tail."""
    env = _child_env(backend)
    if backend is None:
        del env["KERAS_BACKEND"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{command}:\n{result.stderr[-4000:]}"
    return result.stdout


def _child(mode, **arguments):
    """Runs this file's child `mode` under JAX (see _CHILD_MODES)."""
    _run([sys.executable, __file__, mode, json.dumps(arguments)], "jax")


def _curve_model(weights):
    """The tiny policy network, compiled with the trainer's SGD recipe and a weighted, smoothed PolicyLoss."""
    model = network.build_policy_model(TINY_CONFIG)
    options = parse_flags(optimizer="sgd", learning_rate=0.05, steps=CURVE_STEPS)
    model.compile(
        optimizer=train.make_optimizer(train_command.config_from_flags(options)[0].trainer),
        loss=losses.PolicyLoss(label_smoothing=0.1, loser_weight=0.5, draw_weight=0.25),
        metrics=losses.policy_metrics(),
    )
    if weights:
        model.load_weights(weights)
    return model


def loss_curve(weights, batches):
    """Per-step training losses (float list) of _curve_model from weights on the records/targets of batches (.npz)."""
    data = np.load(batches)
    model = _curve_model(weights)
    return [
        float(model.train_on_batch(x, y)[0]) for x, y in zip(data["records"], data["targets"], strict=True)
    ]


def _curve_child(weights, batches, out):
    Path(out).write_text(json.dumps(loss_curve(weights, batches)))


def _logits_child(model, records, out):
    """Logits of model.keras on records (.npy), as the JAX backend computes them."""
    outputs = keras.models.load_model(model).predict(np.load(records), verbose=0)
    np.save(out, np.asarray(outputs["policy"] if isinstance(outputs, dict) else outputs, np.float32))


_CHILD_MODES = {"curve": _curve_child, "logits": _logits_child}


def test_tiny_training_gives_the_same_loss_curve_under_jax(tmp_path):
    keras.utils.set_random_seed(0)
    model = _curve_model(None)
    model.save_weights(tmp_path / "init.weights.h5")
    records = random_game_records(num_games=20, max_plies=40, seed=21)[: CURVE_STEPS * CURVE_BATCH]
    fields = record_format.unpack_records(records)
    np.savez(
        tmp_path / "batches.npz",
        records=records.astype(np.int32).reshape(CURVE_STEPS, CURVE_BATCH, -1),
        targets=record_format.pack_policy_targets(fields["label"], fields["result"]).reshape(
            CURVE_STEPS, CURVE_BATCH
        ),
    )
    tensorflow = loss_curve(tmp_path / "init.weights.h5", tmp_path / "batches.npz")
    _child(
        "curve",
        weights=str(tmp_path / "init.weights.h5"),
        batches=str(tmp_path / "batches.npz"),
        out=str(tmp_path / "jax.json"),
    )
    jax = json.loads((tmp_path / "jax.json").read_text())
    assert tensorflow[-1] < tensorflow[0] - 0.5, "the tiny network learns: the curve is not flat"
    np.testing.assert_allclose(jax, tensorflow, rtol=1e-4)


def test_jax_trained_model_exports_and_samples_under_tensorflow(tmp_path):
    data = tmp_path / "shards"
    shards.write_records(
        str(data),
        {
            "train": random_game_records(num_games=12, max_plies=40, seed=30),
            "test": random_game_records(num_games=4, max_plies=40, seed=31),
        },
    )
    run = tmp_path / "run"
    # The console command's launcher, with --backend=jax and no KERAS_BACKEND: DataParallel over 2 CPUs.
    train_flags = [
        f"--data_dir={data}",
        f"--model_dir={run}",
        "--backend=jax",
        "--strategy=mirrored",
        "--blocks=1",
        "--filters=16",
        "--value_head",
        "--optimizer=adamw",
        "--learning_rate=3e-3",
        "--batch_size=32",
        "--steps=6",
        "--steps_per_epoch=3",
        "--steps_per_execution=3",
        "--checkpoint_every=3",
        "--eval_steps=3",
        "--seed=1",
    ]
    _run([sys.executable, "-m", "shogi_policy.cli", "train", *train_flags], backend=None)
    metrics = json.loads((run / model_dir.METRICS_JSON).read_text())
    assert metrics["step"] == 6 and np.isfinite(metrics["eval_policy_loss"])
    assert len((run / model_dir.HISTORY_JSONL).read_text().splitlines()) == 2
    assert list((run / model_dir.LOG_DIR / "train").iterdir()), "TensorBoard logs"
    assert sorted(os.listdir(run / model_dir.CHECKPOINT_DIR)) == ["3", "6"]  # Orbax step directories

    start = shogi_rules.parse_position("startpos")
    records = np.concatenate(
        [random_game_records(num_games=3, max_plies=30, seed=32), record_format.encode_boards([start])]
    )
    np.save(tmp_path / "records.npy", records.astype(np.int32))
    _child(
        "logits",
        model=str(run / model_dir.MODEL_KERAS),
        records=str(tmp_path / "records.npy"),
        out=str(tmp_path / "jax.npy"),
    )
    jax_logits = np.load(tmp_path / "jax.npy")

    # The Orbax checkpoint and model.keras, read here under TensorFlow, give the JAX model's logits.
    for model in (model_dir.restore_model(run), keras.models.load_model(run / model_dir.MODEL_KERAS)):
        np.testing.assert_allclose(model(records.astype(np.int32))["policy"].numpy(), jax_logits, atol=1e-4)

    # shogi-policy-export (TensorFlow, whatever KERAS_BACKEND says) from the Orbax checkpoint, then sample.
    export = tmp_path / "export"
    _run(
        [sys.executable, "-m", "shogi_policy.cli", "export", f"--model_dir={run}", f"--export_dir={export}"],
        "jax",
    )
    exported = inference.PolicyModel(str(export)).record_logits(records)
    np.testing.assert_allclose(exported, jax_logits, atol=1e-4)
    assert np.array_equal(exported.argmax(axis=1), jax_logits.argmax(axis=1))
    sample = [
        sys.executable,
        "-m",
        "shogi_policy.cli",
        "sample",
        f"--model={export}",
        "--temperature=0",
        "--top_k=3",
    ]
    report = _run(sample, "jax")
    moves, labels = policy_labels.legal_moves_and_labels(start)
    greedy = cshogi.move_to_usi(int(moves[np.argmax(jax_logits[-1, labels])]))  # the JAX model's choice
    assert f"sampled: {greedy} " in report, report


if __name__ == "__main__":
    _CHILD_MODES[sys.argv[1]](**json.loads(sys.argv[2]))
