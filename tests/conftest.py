"""Test set-up: two logical CPU devices (MirroredStrategy; under KERAS_BACKEND=jax, DataParallel) before use.

Also the helpers that several test modules share: random cshogi games, the tiny exported model,
the numpy softmax oracle and the trainer's flags (test modules import them from here, never from
each other).
"""

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import cshogi
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

# After the device set-up: these modules may create tensors when imported.
import keras  # noqa: E402

if keras.backend.backend() == "jax":  # .ci/jax_lane: two CPU devices for DataParallel, as TF's two above
    import jax  # noqa: E402

    jax.config.update("jax_num_cpu_devices", 2)
from absl import flags  # noqa: E402

from shogi_policy.cli import command  # noqa: E402
from shogi_policy.cli import train as train_command  # noqa: E402
from shogi_policy.core import shogi_rules  # noqa: E402
from shogi_policy.data import convert, shard_manifest, shards  # noqa: E402
from shogi_policy.data.random_games import (  # noqa: E402, F401  (the tests import them from here)
    random_game_groups,
    random_game_moves,
    random_game_plies,
    random_game_records,
)
from shogi_policy.model import model_dir, network, network_config  # noqa: E402
from shogi_policy.serving import policy_ops  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# The fuzz tests' settings (tests/test_fuzz_*.py add max_examples): reproducible, no deadline (TensorFlow's first
# calls are slow), no example database to carry between runs.
FUZZ_SETTINGS = settings(
    deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)
TINY_CONFIG = network_config.NetworkConfig(blocks=1, filters=8, activation="relu")
POLICY_BIAS_STDDEV = 1.5  # random-weight logits are nearly flat; a random bias makes the policy peaked


@pytest.fixture
def shared_data():
    """../shared/data beside the checkout; the test is skipped where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present")
    return SHARED_DATA


def restamp_manifest(data_dir):
    """Rewrites the manifest of data_dir for its shard files as they are now (sizes, SHA-256s, checksum).

    For tests that store invalid records on purpose: the record checks behind the manifest's see them.
    """
    manifest = json.loads((Path(data_dir) / shard_manifest.MANIFEST).read_text())
    manifest.pop(shard_manifest.MANIFEST_CHECKSUM)
    for entry in manifest["splits"].values():
        del entry["bytes"], entry["sha256"]
    shard_manifest.write_manifest(str(data_dir), manifest)


def referee_game_line(line, max_plies=None):
    """Replays one game line ('startpos moves ...<TAB>result<TAB>source<TAB>ending[<TAB>reason]') with cshogi
    and checks its result against its ending (the side to move lost a resign, timeout, crash or illegal).

    Returns the number of moves. Fails on an illegal move, on an ending the final position does
    not support, or on a game that went on past a fourfold repetition.
    """
    position, result, source, ending = line.split("\t")[:4]  # a match's line adds a reason
    tokens = position.split()
    assert tokens[:2] == ["startpos", "moves"], line[:80]
    assert result in ("black_win", "white_win", "draw"), result
    assert "game=" in source
    board, seen = cshogi.Board(), collections.Counter()
    seen[board.zobrist_hash()] += 1
    for ply, usi in enumerate(tokens[2:], start=1):
        assert seen[board.zobrist_hash()] < 4, f"played on after a fourfold repetition at ply {ply}"
        move = board.move_from_usi(usi)
        assert shogi_rules.is_legal_move(board, move), f"illegal {usi} at ply {ply}: {source}"
        board.push(move)
        seen[board.zobrist_hash()] += 1
    mover_won = "black_win" if board.turn == cshogi.BLACK else "white_win"
    mover_lost = "white_win" if board.turn == cshogi.BLACK else "black_win"
    if ending == "mate":
        assert board.is_game_over() and result == mover_lost
    elif ending == "declare":
        assert board.is_nyugyoku() and result == mover_won
    elif ending in ("repetition", "perpetual_check"):
        assert seen[board.zobrist_hash()] >= 4
        expected = {
            cshogi.REPETITION_WIN: mover_won,
            cshogi.REPETITION_LOSE: mover_lost,
        }.get(board.is_draw(), "draw")
        assert result == expected and (ending == "perpetual_check") == (expected != "draw")
    elif ending == "max_plies":
        assert result == "draw" and not board.is_game_over()
        assert max_plies is None or len(tokens) - 2 == max_plies
    else:
        assert ending in ("resign", "timeout", "crash", "illegal"), ending
        assert result == mover_lost and not board.is_game_over()
    return len(tokens) - 2


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    """(trainer-like model dir, export dir) of a random tiny network, exported once per session by the CLI.

    The model dir holds what the trainer leaves: network.json, a checkpoint and model.keras.
    Shared by the export, inference, evaluate and USI tests.
    """
    run_dir = tmp_path_factory.mktemp("tiny_policy")
    export_dir = run_dir / "export"
    keras.utils.set_random_seed(0)
    model = network.build_policy_model(TINY_CONFIG)
    bias = model.get_layer("policy")
    bias.set_weights([np.random.default_rng(0).normal(0, POLICY_BIAS_STDDEV, bias.bias.shape)])
    model.save(run_dir / model_dir.MODEL_KERAS)
    (run_dir / model_dir.NETWORK_JSON).write_text(json.dumps(TINY_CONFIG.to_dict()))
    tf.train.Checkpoint(model=model).save(run_dir / model_dir.CHECKPOINT_DIR / "ckpt")
    command = [sys.executable, "-m", "shogi_policy.cli.export", f"--model_dir={run_dir}"]
    result = subprocess.run(
        [*command, f"--export_dir={export_dir}"], capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (export_dir / policy_ops.METADATA_FILENAME).exists()
    return run_dir, export_dir


@pytest.fixture(scope="session")
def small_shards(tmp_path_factory):
    """A shard directory of random games: 6 train games, 2 test games (about 30 plies each)."""
    directory = tmp_path_factory.mktemp("small_shards")
    shards.write_records(
        str(directory),
        {"train": random_game_records(6, 30, seed=20), "test": random_game_records(2, 30, seed=21)},
    )
    return directory


@pytest.fixture(scope="session")
def bfloat16_trained_dir(tmp_path_factory, small_shards):
    """A trainer model dir of the tiny network trained 4 steps by the trainer with --mixed_bfloat16=true on
    small_shards (its model.keras computes in bfloat16; its checkpoint holds float32 variables)."""
    run_dir = tmp_path_factory.mktemp("bfloat16_run")
    metrics = train_command.train(
        parse_flags(
            data_dir=small_shards,
            model_dir=run_dir,
            blocks=TINY_CONFIG.blocks,
            filters=TINY_CONFIG.filters,
            batch_size=16,
            steps=4,
            steps_per_epoch=4,
            eval_steps=0,
            optimizer="adamw",
            learning_rate=0.01,
            seed=3,
            mixed_bfloat16="true",
        )
    )
    assert metrics["step"] == 4
    return run_dir


def numpy_probabilities(logits, mask, temperature):
    """Oracle: float64 softmax(logits / T) over the legal labels, 0 elsewhere."""
    scaled = np.where(mask, logits.astype(np.float64) / temperature, -np.inf)
    weights = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    return weights / weights.sum(axis=1, keepdims=True)


def parse_flags(**values):
    """Trainer FlagValues parsed from --name=value pairs (tiny network by default); train_command.train(options)
    trains per them, train_command.config_from_flags(options) is their (TrainConfig, model_dir)."""
    defaults = {"preset": "cpu", "blocks": 1, "filters": 16, "batch_size": 32, "strategy": "default"}
    flag_values = flags.FlagValues()
    train_command.define_flags(flag_values)
    flag_values(["shogi-policy-train", *(f"--{k}={v}" for k, v in {**defaults, **values}.items())])
    return flag_values


def run_convert(*args):
    """Runs shogi-policy-convert's library call on command-line args (flags parsed as the command does); returns
    the manifest."""
    config = command.parse_config(convert.ConvertConfig, ["shogi-policy-convert", *args])
    convert.convert_with_config(config)
    return shard_manifest.read_manifest(config.output_dir)
