"""A trainer output directory (local or gs://): its file names, JSON files and the latest checkpointed model.

model_dir/network.json      NetworkConfig of the run
model_dir/train_flags.json  {"flags": the latest run's trainer flags, "runs": one entry per run that continued
                            the checkpoints: start_step, batch_size, changed flags} (read_run_record)
model_dir/train.lock        the trainer's lock (shogi_policy.training.run_lock)
model_dir/checkpoints/      model and optimizer by optimizer step (shogi_policy.model.checkpoints): ckpt-<step> from
                            TensorFlow runs, <step>/ (Orbax) from JAX runs
model_dir/logs/             TensorBoard
model_dir/model.keras       the model at the end of training
model_dir/history.jsonl     one line of metrics per epoch
model_dir/metrics.json      final metrics (strict JSON: a value that is not finite is null)
"""

import os

import keras
import tensorflow as tf
from absl import logging

from shogi_policy.core import file_io
from shogi_policy.model import checkpoints, network, network_config

NETWORK_JSON = "network.json"
FLAGS_JSON = "train_flags.json"
METRICS_JSON = "metrics.json"
HISTORY_JSONL = "history.jsonl"
MODEL_KERAS = "model.keras"
CHECKPOINT_DIR = "checkpoints"
LOG_DIR = "logs"
_RESTORE_ATTEMPTS = 5  # newest checkpoints tried while a running trainer rotates them


def read_run_record(directory):
    """(flags dict, runs list) of a model directory's train_flags.json, or None where there is none.

    runs: [{"start_step", "batch_size", "changed": {flag: [old, new]}}] by start step, one per run that
    continued the checkpoints (a resume from step S replaces the runs that started at S or later). A file
    of only flags (older trainers) reads as one run from step 0.
    """
    path = os.path.join(directory, FLAGS_JSON)
    if not tf.io.gfile.exists(path):
        return None
    record = file_io.read_json(path)
    if not isinstance(record, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(record).__name__}")
    if "flags" not in record:
        return record, [{"start_step": 0, "batch_size": record.get("batch_size"), "changed": {}}]
    return record["flags"], record["runs"]


def write_run_record(directory, flag_values, runs):
    """Writes train_flags.json: flag_values (the latest run's flags) and runs (see read_run_record)."""
    file_io.write_json(os.path.join(directory, FLAGS_JSON), {"flags": flag_values, "runs": runs})


def positions_seen(runs, step):
    """Training positions consumed to reach optimizer step `step`: each run's steps times its batch size."""
    starts = [run["start_step"] for run in runs[1:]] + [step]
    return sum(
        run["batch_size"] * max(0, min(step, end) - run["start_step"])
        for run, end in zip(runs, starts, strict=True)
    )


def read_network_config(directory):
    """The NetworkConfig of a model directory (its network.json), or None where there is none."""
    path = os.path.join(directory, NETWORK_JSON)
    if not tf.io.gfile.exists(path):
        return None
    return network_config.NetworkConfig.from_dict(file_io.read_json(path))


def latest_checkpoint(directory):
    """Path of the newest checkpoint of a model directory: a TF run's .../ckpt-<step>, a JAX run's .../<step>, or None."""
    checkpoint_dir = os.path.join(directory, CHECKPOINT_DIR)
    return checkpoints.latest_orbax_checkpoint(checkpoint_dir) or tf.train.latest_checkpoint(checkpoint_dir)


def restore_model(directory, build_model=network.build_policy_model):
    """The latest checkpointed weights of a model directory, in a float32 keras.Model.

    Args:
      directory: trainer output directory with network.json and checkpoints/ (a TF run's or a JAX run's,
        read under either backend).
      build_model: NetworkConfig -> keras.Model, the builder the run used (default: the policy network).
    Built under the default strategy and the float32 dtype policy, whatever the run used (the
    checkpoint holds float32 variables even under mixed_bfloat16). A trainer still running there deletes
    old checkpoints as it saves new ones: a checkpoint that goes away while being read is given up for the
    newest one, so the weights always come whole from one checkpoint. Raises FileNotFoundError without
    a checkpoint, ValueError when the checkpoint does not hold this builder's network.
    """
    config = read_network_config(directory)
    if config is None:
        raise FileNotFoundError(f"no {NETWORK_JSON} in {directory}")
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        model = build_model(config)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    for _ in range(_RESTORE_ATTEMPTS):
        checkpoint_path = latest_checkpoint(directory)
        if checkpoint_path is None:
            raise FileNotFoundError(f"no checkpoint under {os.path.join(directory, CHECKPOINT_DIR)}")
        try:
            _restore_weights(model, checkpoint_path)
            return model
        except (tf.errors.NotFoundError, FileNotFoundError, ValueError):
            if latest_checkpoint(directory) == checkpoint_path:
                raise  # still the newest: damaged or foreign, not rotated away
            logging.info(
                "%s was replaced while being read (a trainer is running): reading the newest", checkpoint_path
            )
    raise RuntimeError(
        f"{directory}: the newest checkpoint was replaced {_RESTORE_ATTEMPTS} times while being read; retry"
    )


def _restore_weights(model, checkpoint_path):
    """Assigns the model variables of one checkpoint (TF ckpt-<step> or Orbax <step>/) to model.

    Raises ValueError when it does not hold the model's network or its files are torn; TF's NotFoundError
    or FileNotFoundError when they are missing.
    """
    if os.path.basename(checkpoint_path).isdigit():  # Orbax's step directory
        if not tf.io.gfile.isdir(checkpoint_path):
            raise FileNotFoundError(f"{checkpoint_path} no longer exists")
        try:
            checkpoints.load_orbax_model_weights(model, checkpoint_path)
        except ValueError as error:
            raise ValueError(f"{checkpoint_path} does not hold a {model.name} network: {error}") from None
        return
    try:
        status = tf.train.Checkpoint(model=model).restore(checkpoint_path).expect_partial()
    except tf.errors.NotFoundError:
        raise  # gone: restore_model looks for a newer one
    except (
        tf.errors.OpError,
        IndexError,
    ) as error:  # a torn file: DataLossError, or IndexError "Read less bytes"
        raise ValueError(f"{checkpoint_path} cannot be read, truncated or damaged: {error}") from None
    try:
        status.assert_existing_objects_matched()
    except AssertionError as error:
        raise ValueError(f"{checkpoint_path} does not hold a {model.name} network: {error}") from None
