"""The preflight's training checks: real training steps through the trainer, a throughput figure and MNIST.

`python -m shogi_policy.cli preflight` starts the backend's devices first (shogi_policy.cli), then calls
run_checks in the same process, so the steps run where training will: on the TPU when one started.

  check        --check_steps steps of the policy net on random records: a fit that fails on this runtime
               fails the preflight (the notebook's BACKEND="auto" then takes the JAX road). The records are
               random legal games (check_data), sized from the run's global and per-host batch, so any batch
               the trainer accepts fits
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

import tensorflow as tf

from shogi_policy.core import file_io
from shogi_policy.data import random_games, shards
from shogi_policy.model import model_dir
from shogi_policy.runtime import hosts

# A test hook, "<backend>:fit" or "<backend>:hang": under that Keras backend the check's training fails inside
# fit, or stalls there (the notebook's timeouts and BACKEND="auto" fallback are tested on CPU with it).
FAULT_VARIABLE = "SHOGI_POLICY_PREFLIGHT_FAULT"
_THROUGHPUT_EPOCH = 10
_MAX_PLIES = 128


def check_data(data_dir, batch_size, batches):
    """Writes a shard directory of random legal games sized for the run's batch; returns data_dir.

    Each host of the run (hosts.process) gets one train shard file of `batches` of its batches (batch_size is
    the global batch; the trainer refuses one that is not a multiple of the hosts), so the data fits any batch
    the trainer accepts. The test split (one game) is never evaluated.
    """
    _, num_hosts = hosts.process()
    per_host = max(1, batch_size // num_hosts) * batches
    shards.write_records(
        data_dir,
        {
            "train": random_games.random_records(per_host * num_hosts, _MAX_PLIES, seed=1),
            "test": random_games.random_game_records(num_games=1, max_plies=_MAX_PLIES, seed=2),
        },
        positions_per_shard=per_host,
    )
    return data_dir


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


def _check_config(config, steps, epoch_steps, **overrides):
    """The run's config.TrainConfig for a check: steps in epochs of epoch_steps, seed 1, overrides (flat config
    fields) and no warm-up (a recipe's would not fit in the check's steps)."""
    return config.replace(steps=steps, steps_per_epoch=epoch_steps, seed=1, warmup_steps=0, **overrides)


def _train(train, config, directory, callbacks=()):
    """Runs train (the trainer) on config in directory; (metrics, seconds, last history line)."""
    start = time.perf_counter()
    metrics = train(config, directory, callbacks=list(callbacks))
    seconds = time.perf_counter() - start
    history = (
        open(os.path.join(directory, model_dir.HISTORY_JSONL)).read().strip().splitlines()
    )  # one JSON line per epoch
    return metrics, seconds, json.loads(history[-1]) if history else {}


def _shogi(data_dir):
    """The overrides that train on the check's random records, without evaluation."""
    return {"dataset": "shogi", "data_dir": data_dir, "eval_steps": 0, "eval_tsv": None}


def check_steps_run(train, config, work, data_dir, steps):
    """steps of the run's network on random records, one execution a step; {"steps", "seconds"}."""
    run = _check_config(config, steps, steps, steps_per_execution=1, **_shogi(data_dir))
    metrics, seconds, _ = _train(train, run, os.path.join(work, "check"), _fault_callbacks())
    print(f"preflight: {metrics['step']} training steps on random records ran in {seconds:.1f} s")
    return {"steps": metrics["step"], "seconds": round(seconds, 2)}


def throughput_run(train, config, work, data_dir, steps):
    """steps in epochs of _THROUGHPUT_EPOCH; the last epoch's training positions/s (compilation excluded)."""
    per_call = config.trainer.steps_per_execution
    per_call = per_call if _THROUGHPUT_EPOCH % per_call == 0 else 1
    directory = os.path.join(work, "throughput")
    run = _check_config(config, steps, _THROUGHPUT_EPOCH, steps_per_execution=per_call, **_shogi(data_dir))
    metrics, seconds, last = _train(train, run, directory)
    print(f"preflight: throughput {last.get('positions_per_second')} positions/s (second epoch of 10 steps)")
    return {
        "steps": metrics["step"],
        "batch_size": config.trainer.batch_size,
        "preset": config.task.preset,
        # What the trainer resolved "auto" to on these devices, as the run's train_flags.json records it.
        "mixed_bfloat16": model_dir.read_run_record(directory)[0]["mixed_bfloat16"],
        "steps_per_execution": per_call,
        "positions_per_second": last.get("positions_per_second"),
        "seconds": round(seconds, 2),
    }


def mnist_run(train, config, work, steps):
    """steps of MNIST (tensorflow-datasets) and its test accuracy over the whole test split."""
    mnist = {"dataset": "mnist", "data_dir": None, "eval_steps": None, "eval_tsv": None}
    run = _check_config(config, steps, steps, steps_per_execution=1, **mnist)
    metrics, seconds, _ = _train(train, run, os.path.join(work, "mnist"))
    print(f"preflight: MNIST test accuracy {metrics.get('eval_accuracy')} after {steps} steps")
    return {"steps": metrics["step"], "accuracy": metrics.get("eval_accuracy"), "seconds": round(seconds, 2)}


def run_checks(train, config, *, check_steps, throughput_steps, mnist_steps):
    """Runs the checks asked for (0 steps: skipped) of the run's config.TrainConfig; {check: figures}.

    train is the trainer, `shogi_policy.training.train.train` (passed in: the trainer sits above this folder).
    The run's network, batch, strategy and precision are kept; data, steps, evaluation and seed are the check's.

    Raises whatever the trainer raises: a check that fails is the preflight's answer.
    """
    report = {}
    with tempfile.TemporaryDirectory() as work:
        if check_steps or throughput_steps:
            # Distinct positions for the check's steps or one throughput epoch, at most; the data repeats after.
            batches = _THROUGHPUT_EPOCH if throughput_steps else min(check_steps, _THROUGHPUT_EPOCH)
            data_dir = check_data(os.path.join(work, "shards"), config.trainer.batch_size, batches)
        if check_steps:
            report["check"] = check_steps_run(train, config, work, data_dir, check_steps)
        if throughput_steps:
            report["throughput"] = throughput_run(train, config, work, data_dir, throughput_steps)
        if mnist_steps:
            report["mnist"] = mnist_run(train, config, work, mnist_steps)
    return report


def write_report(path, runtime, devices, checks):
    """Writes {"runtime", "devices", "host", "checks"} as JSON to path (local or gs://), creating its folder."""

    report = {
        "runtime": runtime,
        "devices": devices,
        "host": {"machine": platform.machine(), "cpus": os.cpu_count()},
        "checks": checks,
    }
    tf.io.gfile.makedirs(os.path.dirname(path) or ".")  # a fresh runtime's WORK_DIR does not exist yet
    file_io.write_json(path, report)
    return report
