"""The preflight's training checks: real training steps through the trainer, a throughput figure and MNIST.

`python -m shogi_policy.cli preflight` starts the backend's devices first (shogi_policy.cli), then calls
run_checks in the same process, so the steps run where training will: on the TPU when one started.

  check        --check_steps steps of the policy net on random records: a fit that fails on this runtime
               fails the preflight (the notebook's BACKEND="auto" then takes the JAX road)
  throughput   20 steps in two epochs of 10; the second epoch's training positions/s (compilation excluded)
  mnist        --mnist_steps of MNIST (tensorflow-datasets) and its test accuracy: the same trainer on data
               whose expected accuracy is known

write_report puts them beside the runtime report as JSON, for comparing a first TPU run with CPU figures.
"""

import json
import os
import platform
import tempfile
import time

import cshogi
import cshogi.dlshogi
import numpy as np

from shogi_policy.core import file_io, record_format
from shogi_policy.data import shards
from shogi_policy.model import model_dir

# A test hook, "<backend>:fit" or "<backend>:hang": under that Keras backend the check's training fails inside
# fit, or stalls there (the notebook's timeouts and BACKEND="auto" fallback are tested on CPU with it).
FAULT_VARIABLE = "SHOGI_POLICY_PREFLIGHT_FAULT"
_THROUGHPUT_EPOCH = 10


def random_records(num_games, max_plies, seed):
    """Records uint8 [N, 100] of uniformly random legal games from the start position (results: draws)."""
    rng = np.random.default_rng(seed)
    boards, hands, turns, labels, game_ids = [], [], [], [], []
    for game in range(num_games):
        board = cshogi.Board()
        for _ in range(max_plies):
            moves = list(board.legal_moves)
            if not moves:
                break
            move = moves[rng.integers(len(moves))]
            pieces, hand = record_format.board_arrays(board)
            boards.append(pieces)
            hands.append(hand)
            turns.append(board.turn)
            labels.append(cshogi.dlshogi.make_move_label(move, board.turn))
            game_ids.append(game)
            board.push(move)
    results = [record_format.RESULT_DRAW] * len(turns)
    return record_format.pack_records(boards, hands, turns, labels, results, game_ids)


def _fault_callbacks():
    """[a Keras callback failing or stalling the first training batch] when FAULT_VARIABLE names this backend."""
    import keras  # (after the launcher chose the backend)

    backend, _, fault = os.environ.get(FAULT_VARIABLE, "").partition(":")
    if backend != keras.backend.backend():
        return []

    class Fault(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if fault == "hang":
                time.sleep(24 * 3600)
            raise RuntimeError(f"{FAULT_VARIABLE}={backend}:{fault}: simulated failure of fit")

    return [Fault()]


def _train(train, config, work, name, callbacks=(), **overrides):
    """Runs train (the trainer) in work/name with overrides (flat config fields); (metrics, seconds, the last
    history line)."""
    start = time.perf_counter()
    metrics = train(config.replace(**overrides), os.path.join(work, name), callbacks=list(callbacks))
    seconds = time.perf_counter() - start
    history = (
        open(os.path.join(work, name, model_dir.HISTORY_JSONL)).read().strip().splitlines()
    )  # one JSON line per epoch
    return metrics, seconds, json.loads(history[-1]) if history else {}


def run_checks(train, config, *, check_steps, throughput_steps, mnist_steps):
    """Runs the checks asked for (0 steps: skipped) of the run's config.TrainConfig; {check: figures}.

    train is the trainer, `shogi_policy.training.train.train` (passed in: the trainer sits above this folder).

    The run's network, batch, strategy and precision are kept; data, steps, evaluation and seed are the check's.

    Raises whatever the trainer raises: a check that fails is the preflight's answer.
    """
    report = {}
    with tempfile.TemporaryDirectory() as work:
        data_dir = os.path.join(work, "shards")
        shards.write_records(
            data_dir,
            {
                "train": random_records(num_games=8, max_plies=64, seed=1),
                "test": random_records(num_games=2, max_plies=64, seed=2),
            },
        )
        # The check's own steps: the run's warm-up (e.g. a recipe's 20) would not fit in them.
        common = {
            "data_dir": data_dir,
            "dataset": "shogi",
            "eval_steps": 0,
            "eval_tsv": None,
            "seed": 1,
            "warmup_steps": 0,
        }
        if check_steps:
            metrics, seconds, _ = _train(
                train,
                config,
                work,
                "check",
                callbacks=_fault_callbacks(),
                steps=check_steps,
                steps_per_epoch=check_steps,
                steps_per_execution=1,
                **common,
            )
            report["check"] = {"steps": metrics["step"], "seconds": round(seconds, 2)}
            print(f"preflight: {metrics['step']} training steps on random records ran in {seconds:.1f} s")
        if throughput_steps:
            per_call = config.trainer.steps_per_execution
            per_call = per_call if _THROUGHPUT_EPOCH % per_call == 0 else 1
            metrics, seconds, last = _train(
                train,
                config,
                work,
                "throughput",
                steps=throughput_steps,
                steps_per_epoch=_THROUGHPUT_EPOCH,
                steps_per_execution=per_call,
                **common,
            )
            report["throughput"] = {
                "steps": metrics["step"],
                "batch_size": config.trainer.batch_size,
                "preset": config.task.preset,
                "mixed_bfloat16": config.runtime.mixed_bfloat16,
                "steps_per_execution": per_call,
                "positions_per_second": last.get("positions_per_second"),
                "seconds": round(seconds, 2),
            }
            print(
                f"preflight: throughput {last.get('positions_per_second')} positions/s (second epoch of 10 steps)"
            )
        if mnist_steps:
            metrics, seconds, _ = _train(
                train,
                config,
                work,
                "mnist",
                dataset="mnist",
                data_dir=None,
                steps=mnist_steps,
                steps_per_epoch=mnist_steps,
                steps_per_execution=1,
                eval_steps=None,
                eval_tsv=None,
                seed=1,
                warmup_steps=0,
            )
            report["mnist"] = {
                "steps": metrics["step"],
                "accuracy": metrics.get("eval_accuracy"),
                "seconds": round(seconds, 2),
            }
            print(f"preflight: MNIST test accuracy {metrics.get('eval_accuracy')} after {mnist_steps} steps")
    return report


def write_report(path, runtime, devices, checks):
    """Writes {"runtime", "devices", "host", "checks"} as JSON to path (local or gs://, via tf.io.gfile)."""

    report = {
        "runtime": runtime,
        "devices": devices,
        "host": {"machine": platform.machine(), "cpus": os.cpu_count()},
        "checks": checks,
    }
    file_io.write_json(path, report)
    return report
