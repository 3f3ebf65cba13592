"""Resuming a model directory's checkpoints under a configuration: which changed settings are accepted.

A model directory's train_flags.json records the configuration of its latest run as flat {name: value} (the
fields of config.TrainConfig, plus model_dir: TrainConfig.flat, and the manifest checksum of the shards it
trained on: DATA_IDENTITY) with one entry per run that continued the
checkpoints (shogi_policy.model.model_dir.read_run_record). A run that resumes the checkpoints compares its own
configuration with the recorded one (flag_changes) and is refused or not by the classes below
(resume_refusal); claim_model_dir does that for the trainer and record_run writes the file.
docs/run_directory.md has the rules.
"""

import os

import keras
from absl import logging

from shogi_policy.core import file_io
from shogi_policy.model import model_dir as model_dirs
from shogi_policy.model import network_config
from shogi_policy.runtime import hosts
from shogi_policy.training.config import ConfigError, TrainConfig

# How each setting may differ from the model_dir's train_flags.json when a run resumes its checkpoints.
# RESUME_FIXED: the checkpoint cannot be restored under another value (never accepted). RESUME_STREAM: the restored
# state would go on under another optimizer, objective or data stream, so the run would no longer be the one
# its checkpoints, history and positions count describe (accepted with --allow_changed_flags). RESUME_FREE: how
# long to train (--steps: the cosine schedule is stretched to it, logged), how often to log, evaluate and
# checkpoint, and how the same step is computed (strategy, XLA, bfloat16); --backend is checked against the
# checkpoints' format instead of its flag value.
RESUME_FIXED = {
    "dataset": "the model's inputs and outputs",
    **dict.fromkeys(("preset", "blocks", "filters", "activation", "value_head"), "the checkpoint's network"),
    "optimizer": "the optimizer's slot variables in the checkpoint",
}
RESUME_STREAM = (
    # the data stream: which records, in which order, how many per step, how they are augmented
    *("data_dir", "bad_records", "batch_size", "seed", "mirror", "jax_distributed"),
    # which shards --data_dir held (reconverted with --overwrite under the same name: another stream)
    "data_manifest_sha256",
    # the optimizer's course and the objective
    *("learning_rate", "warmup_steps", "weight_decay", "clip_norm"),
    *("label_smoothing", "loser_weight", "draw_weight", "value_loss_weight"),
)
RESUME_FREE = (
    *("model_dir", "allow_changed_flags", "backend", "strategy", "tpu", "jit_compile", "mixed_bfloat16"),
    *("steps", "steps_per_epoch", "steps_per_execution", "checkpoint_every"),
    *("eval_steps", "eval_tsv", "eval_tsv_split"),
)


# train_flags.json's entry of the shards' identity: not a flag, so not read back into a TrainConfig.
DATA_IDENTITY = "data_manifest_sha256"


def saved_flags(config, model_dir, data_identity=None):
    """{name: value} of a run as train_flags.json records it: config.flat(), model_dir and DATA_IDENTITY (the
    manifest checksum of the run's shards, the task's data_identity(); None for MNIST)."""
    return {
        **config.flat(),
        "model_dir": None if model_dir is None else os.fspath(model_dir),
        DATA_IDENTITY: data_identity,
    }


def recorded_config(model_dir):
    """The TrainConfig of a model directory's train_flags.json (either format), or None where there is none.

    Settings that a record lacks (an older trainer did not have them) take their defaults. ConfigError naming
    the file for a record of unknown settings.
    """
    record = model_dirs.read_run_record(model_dir)
    if record is None:
        return None
    values = {name: value for name, value in record[0].items() if name not in ("model_dir", DATA_IDENTITY)}
    try:
        return TrainConfig.from_flat(values)
    except ValueError as error:
        path = os.path.join(model_dir, model_dirs.FLAGS_JSON)
        raise type(error)(f"{path}: {error}") from None


def resumed_flag(model_dir, name):
    """The value train_flags.json records for a setting where a run resumes model_dir's checkpoints, else None."""
    if not model_dirs.latest_checkpoint(model_dir):
        return None
    record = model_dirs.read_run_record(model_dir)
    return record[0].get(name) if record else None


def _normalized(name, value):
    """A value as compared on resume: --data_dir without a trailing slash or ./ segments, a preset by shape (as
    TaskConfig reads it: a record may name an alias)."""
    if name == "data_dir" and isinstance(value, str):
        return value.rstrip("/") if "://" in value else os.path.normpath(value)
    if name == "preset" and isinstance(value, str):
        return network_config.preset_shape_name(value)
    return value


def flag_changes(recorded, current):
    """{name: (recorded value, current value)} of the settings that differ, in current's order.

    recorded: a model_dir's train_flags.json flags; current: this run's (saved_flags). A setting missing from
    recorded (an older trainer did not have it) is not compared; nor are the RESUME_FREE settings that say
    where things go (model_dir) or whether changes are allowed.
    """
    return {
        name: (recorded[name], value)
        for name, value in current.items()
        if name in recorded
        and name not in ("model_dir", "allow_changed_flags")
        and _normalized(name, recorded[name]) != _normalized(name, value)
    }


def resume_refusal(changes, allow_changed_flags):
    """Why a run may not resume checkpoints made under other settings (a message), or None.

    changes: flag_changes(); RESUME_FIXED changes are always refused, RESUME_STREAM ones unless
    allow_changed_flags.
    """

    def listed(names, why=None):
        return "; ".join(
            f"{setting_name(name)} {changes[name][0]!r} -> {changes[name][1]!r}"
            + (f" ({why[name]})" if why else "")
            for name in names
        )

    fixed = [name for name in changes if name in RESUME_FIXED]
    if fixed:
        return (
            f"the checkpoints cannot be resumed with {listed(fixed, RESUME_FIXED)}: rerun with the recorded "
            "value, or train into a new --model_dir"
        )
    stream = [name for name in changes if name in RESUME_STREAM]
    if stream and not allow_changed_flags:
        return (
            f"resuming would change the optimizer or data stream of the run: {listed(stream)}. Rerun with the "
            "recorded values (train_flags.json), or pass --allow_changed_flags to continue under the new ones"
        )
    return None


def setting_name(name):
    """How a refusal or warning names a recorded setting: '--name' for a flag."""
    return "the --data_dir shards' manifest_sha256" if name == DATA_IDENTITY else f"--{name}"


def _check_backend_matches_checkpoint(checkpoint_path):
    """ConfigError when the latest checkpoint is in the other Keras backend's format (shogi_policy.model.checkpoints)."""
    written_by = "jax" if os.path.basename(checkpoint_path).isdigit() else "tensorflow"
    backend = keras.backend.backend()
    if written_by != backend:
        raise ConfigError(
            f"{checkpoint_path} is a {written_by} checkpoint and this run uses the {backend} backend: a run "
            f"resumes under the backend it started with (--backend={written_by})"
        )


def claim_model_dir(config, directory, network_config, data_identity):
    """Checks a resumed model_dir against this run and writes network.json (first host only).

    Returns the model_dir's run record (model_dirs.read_run_record; None for a new directory) and the
    setting changes this run makes to it. ConfigError when the run may not resume it (resume_refusal,
    another network, another backend's checkpoints).
    """
    record = model_dirs.read_run_record(directory)
    changes = {}
    checkpoint_path = model_dirs.latest_checkpoint(directory)
    if checkpoint_path:
        _check_backend_matches_checkpoint(checkpoint_path)
        changes = flag_changes(record[0], saved_flags(config, directory, data_identity)) if record else {}
        refusal = resume_refusal(changes, config.trainer.allow_changed_flags)
        if refusal:
            raise ConfigError(f"--model_dir={directory}: {refusal}")
        if changes:
            logging.warning(
                "resuming %s with changed flags: %s",
                directory,
                ", ".join(f"{setting_name(name)} {old!r} -> {new!r}" for name, (old, new) in changes.items()),
            )
    existing = model_dirs.read_network_config(directory)
    if checkpoint_path and existing is not None and existing != network_config:
        raise ConfigError(f"--model_dir={directory} holds a {existing} run, not this run's {network_config}")
    if hosts.is_primary():
        file_io.write_json(os.path.join(directory, model_dirs.NETWORK_JSON), network_config.to_dict())
    return record, changes


def record_run(config, directory, record, changes, initial_step, data_identity):
    """Writes train_flags.json for this run, starting at initial_step; returns the runs (model_dirs.read_run_record)."""
    earlier = (
        [run for run in record[1] if run["start_step"] < initial_step] if record and initial_step else []
    )
    changed = {name: list(values) for name, values in changes.items()}
    runs = [
        *earlier,
        {"start_step": initial_step, "batch_size": config.trainer.batch_size, "changed": changed},
    ]
    if hosts.is_primary():
        model_dirs.write_run_record(directory, saved_flags(config, directory, data_identity), runs)
    return runs
