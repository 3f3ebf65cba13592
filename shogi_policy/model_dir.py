"""A trainer output directory (local or gs://): its file names, JSON files and the latest checkpointed model.

model_dir/network.json      NetworkConfig of the run
model_dir/train_flags.json  the trainer's flags
model_dir/checkpoints/      model and optimizer by optimizer step (shogi_policy.checkpoints): ckpt-<step> from
                            TensorFlow runs, <step>/ (Orbax) from JAX runs
model_dir/logs/             TensorBoard
model_dir/model.keras       the model at the end of training
model_dir/history.jsonl     one line of metrics per epoch
model_dir/metrics.json      final metrics (strict JSON: a value that is not finite is null)
"""

import json
import os

import keras
import tensorflow as tf

from shogi_policy import checkpoints, network

NETWORK_JSON = "network.json"
FLAGS_JSON = "train_flags.json"
METRICS_JSON = "metrics.json"
HISTORY_JSONL = "history.jsonl"
MODEL_KERAS = "model.keras"
CHECKPOINT_DIR = "checkpoints"
LOG_DIR = "logs"


def write_json(path, value):
    """Writes value as indented, key-sorted JSON (local or gs://).

    Raises ValueError on a NaN or infinity: JSON has no such numbers and json.dumps would write bare
    NaN/Infinity that strict readers refuse, so callers write them as null.
    """
    text = json.dumps(value, indent=1, sort_keys=True, allow_nan=False)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(text + "\n")


def read_json(path):
    with tf.io.gfile.GFile(path) as f:
        return json.loads(f.read())


def read_network_config(directory):
    """The NetworkConfig of a model directory (its network.json), or None where there is none."""
    path = os.path.join(directory, NETWORK_JSON)
    if not tf.io.gfile.exists(path):
        return None
    return network.NetworkConfig.from_dict(read_json(path))


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
    checkpoint holds float32 variables even under mixed_bfloat16). Raises FileNotFoundError without
    a checkpoint, ValueError when the checkpoint does not hold this builder's network.
    """
    checkpoint_path = latest_checkpoint(directory)
    if checkpoint_path is None:
        raise FileNotFoundError(f"no checkpoint under {os.path.join(directory, CHECKPOINT_DIR)}")
    config = read_network_config(directory)
    if config is None:
        raise FileNotFoundError(f"no {NETWORK_JSON} in {directory}")
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        model = build_model(config)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    if os.path.basename(checkpoint_path).isdigit():  # Orbax's step directory
        try:
            checkpoints.load_orbax_model_weights(model, checkpoint_path)
        except ValueError as error:
            raise ValueError(f"{checkpoint_path} does not hold a {model.name} network: {error}") from None
        return model
    status = tf.train.Checkpoint(model=model).restore(checkpoint_path).expect_partial()
    try:
        status.assert_existing_objects_matched()
    except AssertionError as error:
        raise ValueError(f"{checkpoint_path} does not hold a {model.name} network: {error}") from None
    return model
