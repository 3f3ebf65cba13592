"""Trainer: learning on real and random games, resume after interruption, mirrored, XLA, outputs, bad flags, divergence."""

import itertools
import json
import math
import subprocess
import sys
from unittest import mock

import cshogi
import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import app, flags
from conftest import parse_flags, random_game_plies, random_game_records, restamp_manifest

from shogi_policy.cli import train as train_command
from shogi_policy.core import file_io, policy_labels, record_format, shogi_rules
from shogi_policy.data import shard_manifest, shards
from shogi_policy.model import losses, model_dir, network
from shogi_policy.runtime import hosts, strategy
from shogi_policy.training import train

UNIFORM_LOSS = math.log(policy_labels.NUM_MOVE_LABELS)
# Tests of what the Keras backend does not touch (tf.data, flag parsing): the default suite runs them, and
# .ci/jax_lane skips them to stay short.
backend_independent = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="backend-independent: run in the default suite"
)


def write_shards(directory, splits):
    """A shard directory (shogi_policy.data.shards layout) of uint8 [n, 100] records per split."""
    shards.write_records(str(directory), splits)
    return directory


@pytest.fixture(scope="module")
def random_shards(tmp_path_factory):
    """Random cshogi games: 30 train games, 8 test games (about 40 plies each)."""
    directory = tmp_path_factory.mktemp("random_shards")
    return write_shards(
        directory,
        {
            "train": random_game_records(num_games=30, max_plies=40, seed=10),
            "test": random_game_records(num_games=8, max_plies=40, seed=11),
        },
    )


class Interrupt(keras.callbacks.Callback):
    """Raises once the optimizer reaches `step`, as a preemption would."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) >= self.step:
            raise KeyboardInterrupt(f"interrupted at step {self.step}")


def _train_history(options):
    history = keras.callbacks.History()
    metrics = train_command.train(options, callbacks=[history])
    return metrics, history.history


@pytest.mark.slow
def test_loss_goes_down_on_random_games(random_shards, tmp_path, monkeypatch):
    reads, read_manifest = [], shard_manifest.read_manifest
    monkeypatch.setattr(
        shard_manifest, "read_manifest", lambda path: reads.append(path) or read_manifest(path)
    )
    options = parse_flags(
        data_dir=random_shards,
        model_dir=tmp_path / "run",
        steps=40,
        steps_per_epoch=10,
        optimizer="adamw",
        learning_rate=3e-3,
        seed=1,
    )
    metrics, history = _train_history(options)
    assert metrics["step"] == 40
    assert history["loss"][-1] < history["loss"][0] - 0.5
    # Random games' moves are uniform over the legal moves: learning which moves are legal
    # already beats a uniform guess over all 2187 labels on held-out games.
    assert metrics["eval_loss"] < UNIFORM_LOSS - 0.5
    for name in ("network.json", "train_flags.json", "metrics.json", "model.keras"):
        assert (tmp_path / "run" / name).exists(), name
    assert list((tmp_path / "run" / "logs" / "train").iterdir()), "TensorBoard logs"
    assert reads == [str(random_shards)], "the manifest is read once a run (each read a round trip on gs://)"


@pytest.mark.slow
@pytest.mark.parametrize(
    "corrupt_bytes, problem",
    [
        (slice(0, 95), "a board byte is not a piece code"),  # the 0xFF shards of issue 15
        (slice(95, 97), "move label >= 2187"),  # once an unreadable 'segment_ids ... out of range'
    ],
)
@backend_independent
def test_invalid_records_stop_training_naming_their_file_and_index(tmp_path, corrupt_bytes, problem):
    directory = write_shards(
        tmp_path / "shards",
        {"train": random_game_records(6, 40, seed=13), "test": random_game_records(2, 40, seed=14)},
    )
    (shard,) = shard_manifest.shard_files(str(directory), "train").paths
    records = np.fromfile(shard, np.uint8).reshape(-1, record_format.RECORD_BYTES)
    records[7, corrupt_bytes] = 0xFF
    records.tofile(shard)
    restamp_manifest(directory)
    common = {"data_dir": directory, "steps": 3, "steps_per_epoch": 3, "eval_steps": 0, "batch_size": 16}
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"{shard}: record 7: {problem}"):
        train_command.train(parse_flags(model_dir=tmp_path / "fail", **common))
    assert (
        train_command.train(parse_flags(model_dir=tmp_path / "skip", bad_records="skip", **common))["step"]
        == 3
    )


def floodgate_records(path, num_games):
    """Records of the first games of games.usi ('startpos moves ...<TAB>black_win|white_win<TAB>...')."""
    fields = {name: [] for name in ("boards", "hands", "turns", "labels", "results", "game_ids")}
    with open(path) as lines:
        for game_id, line in zip(range(num_games), lines, strict=False):
            position, result = line.split("\t")[:2]
            board = cshogi.Board()
            for usi in position.split()[2:]:
                move = board.move_from_usi(usi)
                pieces, hand = record_format.board_arrays(board)
                winner = shogi_rules.BLACK if result == "black_win" else shogi_rules.WHITE
                fields["boards"].append(pieces)
                fields["hands"].append(hand)
                fields["turns"].append(board.turn)
                fields["labels"].append(policy_labels.move_labels([move], board.turn)[0])
                fields["results"].append(
                    record_format.RESULT_WIN if board.turn == winner else record_format.RESULT_LOSS
                )
                fields["game_ids"].append(game_id)
                board.push(move)
    return record_format.pack_records(*fields.values())


@pytest.mark.slow
@backend_independent
def test_loss_goes_down_on_floodgate_games(shared_data, tmp_path):
    positions = floodgate_records(shared_data / "floodgate_games" / "games.usi", num_games=60)
    held_out = record_format.unpack_records(positions)["game_id"] % 10 == 0
    shards = write_shards(tmp_path / "shards", {"train": positions[~held_out], "test": positions[held_out]})
    options = parse_flags(
        data_dir=shards,
        model_dir=tmp_path / "run",
        steps=40,
        steps_per_epoch=20,
        batch_size=64,
        optimizer="adamw",
        learning_rate=3e-3,
        seed=2,
    )
    metrics, history = _train_history(options)
    assert history["loss"][-1] < history["loss"][0] - 0.5
    assert metrics["eval_loss"] < UNIFORM_LOSS - 0.5
    assert metrics["eval_top5_accuracy"] > 5 / policy_labels.NUM_MOVE_LABELS


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra",
    [
        {},
        pytest.param({"mirror": True}, marks=backend_independent),
        pytest.param(
            {"strategy": "mirrored", "optimizer": "adamw"},
            marks=pytest.mark.skipif(
                keras.backend.backend() != "jax", reason="JAX DataParallel (.ci/jax_lane)"
            ),
        ),
    ],
    ids=["plain", "mirror", "jax_data_parallel"],
)
def test_resume_after_interruption_matches_uninterrupted_run(random_shards, tmp_path, extra):
    common = {"data_dir": random_shards, "steps": 12, "steps_per_epoch": 5, "checkpoint_every": 4, "seed": 3}
    common.update(extra)
    straight = tmp_path / "straight"
    assert train_command.train(parse_flags(model_dir=straight, **common))["step"] == 12

    resumed = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        train_command.train(parse_flags(model_dir=resumed, **common), callbacks=[Interrupt(6)])
    assert model_dir.restore_model(resumed) is not None  # the step-4 checkpoint
    batches_seen = []
    counter = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: batches_seen.append(batch)
    )
    metrics = train_command.train(parse_flags(model_dir=resumed, **common), callbacks=[counter])
    assert metrics["step"] == 12
    assert len(batches_seen) == 8  # steps 4..11: the interrupted steps 4 and 5 are redone
    # Under JAX (Orbax checkpoints, XLA's fixed order of operations) the resumed run is bit for bit the same.
    tolerance = {"rtol": 0, "atol": 0} if keras.backend.backend() == "jax" else {"rtol": 1e-4, "atol": 1e-5}
    for a, b in zip(
        model_dir.restore_model(straight).weights, model_dir.restore_model(resumed).weights, strict=True
    ):
        np.testing.assert_allclose(a.numpy(), b.numpy(), **tolerance, err_msg=a.path)


@pytest.mark.slow
def test_eval_tsv_and_history(random_shards, tmp_path):
    tsv = tmp_path / "positions.tsv"
    rows = []
    for _, board, move in itertools.islice(random_game_plies(seed=8, max_plies=50), 60):
        rows.append(f"{'val' if len(rows) % 2 else 'train'}\tsfen {board.sfen()}\t{cshogi.move_to_usi(move)}")
    tsv.write_text("\n".join(rows) + "\n")
    options = parse_flags(
        data_dir=random_shards,
        model_dir=tmp_path / "run",
        steps=6,
        steps_per_epoch=3,
        eval_tsv=tsv,
        eval_steps=1,
    )
    train_command.train(options)
    history = [
        json.loads(line) for line in (tmp_path / "run" / model_dir.HISTORY_JSONL).read_text().splitlines()
    ]
    assert [row["step"] for row in history] == [3, 6] and history[-1]["positions"] == 6 * 32
    for row in history:
        assert 0 <= row["tsv_top1"] <= row["tsv_top5"] <= 1 and row["positions_per_second"] > 0
        assert "val_accuracy" in row


@pytest.mark.slow
def test_mirrored_strategy_over_two_cpus_with_value_head(random_shards, tmp_path):
    options = parse_flags(
        data_dir=random_shards,
        model_dir=tmp_path / "run",
        strategy="mirrored",
        value_head=True,
        steps=6,
        steps_per_epoch=3,
        steps_per_execution=3,  # unsupported under TF's mirrored: the trainer falls back to 1; JAX keeps it
        eval_steps=3,
    )
    metrics = train_command.train(options)
    assert metrics["step"] == 6
    for name in ("eval_policy_loss", "eval_value_loss", "eval_policy_accuracy", "eval_value_accuracy"):
        assert np.isfinite(metrics[name]), name
    outputs = model_dir.restore_model(tmp_path / "run")(random_game_records(1, 4, seed=4))
    assert outputs["policy"].shape == (4, 2187) and outputs["value"].shape == (4, 1)


@pytest.mark.slow
@pytest.mark.skipif(
    not strategy.host_xla_available(), reason="no XLA for the host CPU (tensorflow-tpu wheel)"
)
def test_jit_compile_mixed_bfloat16_and_saved_loss_config(random_shards, tmp_path):
    options = parse_flags(
        data_dir=random_shards,
        model_dir=tmp_path / "run",
        jit_compile="true",
        mixed_bfloat16=True,
        steps=4,
        steps_per_execution=2,
        steps_per_epoch=4,
        eval_steps=2,
        label_smoothing=0.1,
        loser_weight=0.0,
        draw_weight=0.5,
    )
    metrics = train_command.train(options)
    assert metrics["step"] == 4 and np.isfinite(metrics["eval_loss"])
    assert keras.mixed_precision.global_policy().name == "float32", "the trainer restores the dtype policy"

    saved = keras.models.load_model(tmp_path / "run" / "model.keras")
    assert isinstance(saved.loss, losses.PolicyLoss)
    assert (saved.loss.label_smoothing, saved.loss.loser_weight, saved.loss.draw_weight) == (0.1, 0.0, 0.5)
    restored = model_dir.restore_model(tmp_path / "run")
    assert all(layer.compute_dtype == "float32" for layer in restored.layers)
    for a, b in zip(saved.weights, restored.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_flagfile_and_bad_flags(tmp_path):
    flagfile = tmp_path / "run.flags"
    flagfile.write_text("--preset=tpu\n--filters=96\n--batch_size=1024\n")
    flag_values = flags.FlagValues()
    train_command.define_flags(flag_values)
    flag_values(["shogi-policy-train", f"--flagfile={flagfile}"])
    assert flag_values.batch_size == 1024
    assert train_command.config_from_flags(flag_values)[0].task.network().to_dict() == {
        "blocks": 10,
        "filters": 96,
        "activation": "swish",
        "value_head": False,
    }
    with pytest.raises(flags.IllegalFlagValueError):
        parse_flags(activation="gelu")
    with pytest.raises(Exception, match="data_dir"):
        train_command.train(parse_flags(model_dir=tmp_path / "run"))


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.distribute strategies")
def test_strategies_on_cpu():
    assert strategy.make_strategy("auto") is tf.distribute.get_strategy()  # no TPU, no GPU here
    assert strategy.make_strategy("mirrored").num_replicas_in_sync == 2  # conftest's logical CPUs
    with pytest.raises(strategy.TpuUnavailableError, match="TPU"):
        strategy.make_strategy("tpu")
    with pytest.raises(ValueError, match="strategy"):
        strategy.make_strategy("gpu")


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX strategies (.ci/jax_lane)")
def test_jax_strategies_on_cpu():
    assert strategy.make_strategy("auto").num_replicas_in_sync == 2  # conftest's two CPU devices
    assert strategy.make_strategy("mirrored").distribution is not None
    assert strategy.make_strategy("default").distribution is None
    assert strategy.compilation_for(strategy.make_strategy("default"), "auto") == (False, True)
    with pytest.raises(strategy.TpuUnavailableError, match="JAX sees 2 cpu devices"):
        strategy.make_strategy("tpu")
    with pytest.raises(ValueError, match="TPUClusterResolver"):
        strategy.make_strategy("tpu", tpu="grpc://10.0.0.2:8470")


def test_backend_flag_must_match_the_loaded_keras(tmp_path):
    other = "jax" if keras.backend.backend() == "tensorflow" else "tensorflow"
    with pytest.raises(app.UsageError, match=f"KERAS_BACKEND={other}"):
        train_command.train(parse_flags(data_dir=tmp_path, model_dir=tmp_path / "run", backend=other))
    if other == "jax":
        with pytest.raises(app.UsageError, match="--jax_distributed needs the JAX backend"):
            train_command.train(
                parse_flags(data_dir=tmp_path, model_dir=tmp_path / "run", jax_distributed=True)
            )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "flag, value",
    [
        ("eval_steps", -3),  # else it spins forever after training
        ("learning_rate", 0),
        ("learning_rate", "nan"),
        ("learning_rate", "inf"),
        ("weight_decay", -1e-4),
        ("clip_norm", -1),
        ("clip_norm", "nan"),
        ("label_smoothing", 1.0),
        ("loser_weight", -0.5),
        ("draw_weight", "inf"),
        ("value_loss_weight", -1),
        ("warmup_steps", 1000),
        ("checkpoint_every", 0),
        ("steps_per_execution", 0),
        ("steps_per_epoch", -1),
        ("blocks", -1),
        ("filters", 0),
        ("seed", -1),
    ],
)
def test_numeric_flags_are_checked_before_anything_runs(tmp_path, flag, value):
    options = parse_flags(data_dir=tmp_path / "no_shards", model_dir=tmp_path / "run", **{flag: value})
    with pytest.raises(app.UsageError, match=f"--{flag} must"):
        train_command.train(options)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@backend_independent
def test_cli_refuses_negative_eval_steps_at_once(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "shogi_policy.cli.train",
            f"--model_dir={tmp_path}",
            "--steps=5",
            "--eval_steps=-3",
        ],
        capture_output=True,
        text=True,
        timeout=120,  # the old trainer never returned
    )
    assert result.returncode == 1
    assert "--eval_steps must be an integer >= 0" in result.stderr


def test_batch_must_split_over_replicas(random_shards, tmp_path):
    options = parse_flags(
        data_dir=random_shards, model_dir=tmp_path / "run", strategy="mirrored", batch_size=33
    )
    with pytest.raises(app.UsageError, match="--batch_size=33 must be a multiple of the 2 replicas"):
        train_command.train(options)
    assert not (tmp_path / "run").exists(), "refused before the model directory is written"


@pytest.mark.parametrize(
    "batch_size, replicas, num_hosts, local",
    [(64, 8, 2, 32), (32, 1, 1, 32), (36, 8, 2, None), (6, 1, 4, None)],
)
def test_the_local_batch_is_the_hosts_share_of_a_batch_every_replica_shares(
    monkeypatch, batch_size, replicas, num_hosts, local
):
    """Multi-host JAX: each host batches its share; the replicas are the devices of every host."""
    monkeypatch.setattr(hosts, "process", lambda: (0, num_hosts))
    devices = mock.Mock(num_replicas_in_sync=replicas)
    if local is None:
        with pytest.raises(
            train.ConfigError, match=f"--batch_size={batch_size} must be a multiple of the {replicas}"
        ):
            train.local_batch_size(batch_size, devices)
    else:
        assert train.local_batch_size(batch_size, devices) == local


@pytest.mark.slow
@pytest.mark.parametrize("checkpoint_every, caught_by", [(1, "NaN or inf in"), (100, "loss")])
def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(
    random_shards, tmp_path, checkpoint_every, caught_by
):
    run = tmp_path / "run"
    options = parse_flags(
        data_dir=random_shards,
        model_dir=run,
        steps=20,
        steps_per_epoch=10,
        checkpoint_every=checkpoint_every,
        optimizer="sgd",
        learning_rate=1e4,
        clip_norm=0,
        seed=5,
    )
    with pytest.raises(train.TrainingDiverged, match="lower --learning_rate") as error:
        train_command.train(options)
    assert caught_by in str(error.value) and "--clip_norm > 0" in str(error.value)
    assert not (run / model_dir.METRICS_JSON).exists() and not (run / model_dir.MODEL_KERAS).exists()
    latest = model_dir.latest_checkpoint(str(run))
    if checkpoint_every == 1:
        assert latest and latest in str(error.value)
        assert network.non_finite_weights(model_dir.restore_model(run).weights) == []
    else:
        assert latest is None and "no checkpoint" in str(error.value)


def test_metrics_json_is_strict(tmp_path):
    assert train._eval_metrics({"loss": float("nan"), "accuracy": 0.25, "top5": float("inf")}) == {
        "eval_loss": None,
        "eval_accuracy": 0.25,
        "eval_top5": None,
    }
    with pytest.raises(ValueError, match="JSON compliant"):
        file_io.write_json(tmp_path / "metrics.json", {"eval_loss": float("nan")})
    assert not (tmp_path / "metrics.json").exists()
