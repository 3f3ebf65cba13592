"""shogi-policy-train: train the policy network on record shards (or MNIST) under tf.distribute or JAX.

    shogi-policy-train --data_dir=shards/ --model_dir=gs://bucket/run1 --preset=tpu \
        --batch_size=1024 --steps=100000 --steps_per_epoch=1000 --mixed_bfloat16

Flags can come from a file: --flagfile=run.flags (one --flag=value per line).

The Keras backend is TensorFlow (tf.distribute strategies) or, with --backend=jax or KERAS_BACKEND=jax,
JAX (keras.distribution.DataParallel over JAX's devices, shogi_policy.training.strategy). Keras reads the backend
when it is first imported, so --backend takes effect through the shogi-policy-train command (the
shogi_policy.cli launcher sets KERAS_BACKEND before anything imports keras); here it is only checked.
Both backends read the same tf.data shards and write the same model directory, except the checkpoints'
format (shogi_policy.model.checkpoints).

model_dir receives network.json, train_flags.json, checkpoints/ (every --checkpoint_every steps and at
the end), logs/ (TensorBoard), model.keras, metrics.json and
history.jsonl (shogi_policy.model.model_dir; history.jsonl has one line per epoch: step, positions seen,
training positions/s, test-split and --eval_tsv move-match accuracy). What is trained (model, data,
loss) comes from a task (shogi_policy.training.tasks).
Rerunning with the same flags after a preemption resumes from the last checkpoint: weights,
optimizer state and step count are restored, so at most --checkpoint_every steps are lost; with
--seed the data stream is fast-forwarded too, so a resumed run sees the same batches. A resume with flags
that change the network or optimizer is refused, and one with flags that change the optimizer's course or
the data stream (RESUME_STREAM) unless --allow_changed_flags. One trainer at a time holds a model_dir
(shogi_policy.training.run_lock). docs/run_directory.md has the rules.
Keras's BackupAndRestore is not used: in Keras 3.15 it restores only the epoch number, so a
preemption mid-epoch would repeat the whole epoch and overshoot --steps.

Every numeric flag is checked before anything is built (app.UsageError naming the flag and its range),
and so is a batch that the strategy's replicas cannot share. A run whose loss or weights stop being
finite numbers stops with TrainingDiverged (exit status 1) at that step: the broken state is never
checkpointed, so the latest checkpoint is the last good one and a rerun with a lower --learning_rate
(or --clip_norm > 0) resumes from it. metrics.json is written when a run completes, as strict JSON:
a value that is not a finite number (an evaluation loss that overflowed) is written as null.
"""

import contextlib
import json
import math
import os
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags, logging

from shogi_policy.data import input_pipeline, move_match
from shogi_policy.model import checkpoints, model_dir, network
from shogi_policy.training import run_lock
from shogi_policy.training.strategy import (
    JIT_COMPILE,
    STRATEGIES,
    JaxDataParallel,
    compilation_for,
    make_strategy,
)
from shogi_policy.training.tasks import TASKS, hosts

BACKENDS = ("tensorflow", "jax")


def define_flags(flag_values=flags.FLAGS):
    """Registers the trainer's flags on flag_values (run() uses the global FLAGS; tests their own)."""
    kw = {"flag_values": flag_values}
    flags.DEFINE_string(
        "data_dir", None, "Shard directory (shogi-policy-convert output); local or gs://.", **kw
    )
    flags.DEFINE_enum(
        "bad_records",
        "fail",
        list(input_pipeline.BAD_RECORDS),
        "An invalid shard record stops training, naming its file and index (fail), or is skipped and logged.",
        **kw,
    )
    flags.DEFINE_enum(
        "dataset", "shogi", list(TASKS), "shogi shards, or MNIST via tensorflow-datasets.", **kw
    )
    flags.DEFINE_string("model_dir", None, "Output and checkpoint directory; local or gs://.", **kw)
    flags.DEFINE_enum(
        "backend",
        None,
        list(BACKENDS),
        "Keras backend (default: KERAS_BACKEND, else tensorflow). Set by the shogi-policy-train command "
        "before Keras loads; python -m shogi_policy.training.train only checks it.",
        **kw,
    )
    flags.DEFINE_enum(
        "strategy", "auto", list(STRATEGIES), "tf.distribute strategy; under JAX, DataParallel devices.", **kw
    )
    flags.DEFINE_string(
        "tpu",
        "local",
        "TPU address for TPUClusterResolver; 'local' on a TPU VM (the only value under JAX).",
        **kw,
    )
    flags.DEFINE_bool(
        "jax_distributed",
        False,
        "Multi-host JAX (TPU pods): start JAX's distributed runtime (keras.distribution.initialize; on Cloud "
        "TPU every argument is detected) and read this host's shard files. Run the same command on every host.",
        **kw,
    )
    flags.DEFINE_enum(
        "preset", "cpu", sorted(network.PRESETS), "Network preset, refined by the flags below.", **kw
    )
    flags.DEFINE_integer("blocks", None, "Residual blocks (default: the preset's).", **kw)
    flags.DEFINE_integer("filters", None, "Filters per convolution (default: the preset's).", **kw)
    flags.DEFINE_enum(
        "activation", None, list(network.ACTIVATIONS), "Activation (default: the preset's).", **kw
    )
    flags.DEFINE_bool(
        "value_head", None, "Add a value head trained on game results (default: the preset's).", **kw
    )
    flags.DEFINE_float("value_loss_weight", 1.0, "Weight of the value loss beside the policy loss.", **kw)
    flags.DEFINE_integer("batch_size", 256, "Global batch size (split across replicas).", **kw)
    flags.DEFINE_integer("steps", 1000, "Total training steps.", **kw)
    flags.DEFINE_integer(
        "steps_per_epoch", 100, "Steps per Keras epoch (the logging and evaluation period).", **kw
    )
    flags.DEFINE_integer(
        "steps_per_execution", 1, "Steps per compiled call (large on TPU; 1 under mirrored).", **kw
    )
    flags.DEFINE_bool(
        "mixed_bfloat16", False, "Compute in bfloat16 (TPU); weights and logits stay float32.", **kw
    )
    flags.DEFINE_enum("optimizer", "sgd", ["sgd", "adamw"], "SGD with Nesterov momentum 0.9, or AdamW.", **kw)
    flags.DEFINE_float("learning_rate", 0.01, "Peak learning rate.", **kw)
    flags.DEFINE_integer("warmup_steps", 0, "Linear warm-up steps before the cosine decay.", **kw)
    flags.DEFINE_float("weight_decay", 1e-4, "Decoupled weight decay.", **kw)
    flags.DEFINE_float("clip_norm", 10.0, "Global gradient norm clip; 0 disables.", **kw)
    flags.DEFINE_float("label_smoothing", 0.0, "Policy label smoothing.", **kw)
    flags.DEFINE_float(
        "loser_weight", 1.0, "Policy loss weight of the losing side's moves (0: winners only).", **kw
    )
    flags.DEFINE_float("draw_weight", 1.0, "Policy loss weight of moves from drawn games.", **kw)
    flags.DEFINE_bool(
        "mirror", False, "Mirror training positions left-right (files 1<->9) with probability 1/2.", **kw
    )
    flags.DEFINE_integer("checkpoint_every", 500, "Checkpoint period in steps.", **kw)
    flags.DEFINE_integer(
        "eval_steps", None, "Evaluation batches per epoch (default: the whole test split; 0: none).", **kw
    )
    flags.DEFINE_string(
        "eval_tsv",
        None,
        "Also measure move match on this 'split<TAB>sfen<TAB>usi_move' file each epoch.",
        **kw,
    )
    flags.DEFINE_string("eval_tsv_split", "val", "Rows of --eval_tsv to use (its first column).", **kw)
    flags.DEFINE_enum(
        "jit_compile",
        "auto",
        list(JIT_COMPILE),
        "XLA for the whole step; auto: on with a GPU under the default strategy only (strategy.compilation). "
        "JAX compiles the whole step unless false.",
        **kw,
    )
    flags.DEFINE_integer(
        "seed", None, "Seed for weights and data order; makes runs and resumes reproducible.", **kw
    )
    flags.DEFINE_bool(
        "allow_changed_flags",
        False,
        "Resume a --model_dir even though flags that change the optimizer or data stream (RESUME_STREAM) differ "
        "from its train_flags.json; the changes are logged and recorded there.",
        **kw,
    )


# How each trainer flag may differ from the model_dir's train_flags.json when a run resumes its checkpoints.
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
    # the optimizer's course and the objective
    *("learning_rate", "warmup_steps", "weight_decay", "clip_norm"),
    *("label_smoothing", "loser_weight", "draw_weight", "value_loss_weight"),
)
RESUME_FREE = (
    *("model_dir", "allow_changed_flags", "backend", "strategy", "tpu", "jit_compile", "mixed_bfloat16"),
    *("steps", "steps_per_epoch", "steps_per_execution", "checkpoint_every"),
    *("eval_steps", "eval_tsv", "eval_tsv_split"),
)


class TrainingDiverged(RuntimeError):
    """The training loss or the weights stopped being finite numbers; nothing of that state was saved."""


class DivergenceGuard(keras.callbacks.Callback):
    """Raises TrainingDiverged after the first train batch whose logged loss or metric is NaN or infinite.

    Keras logs the epoch's running mean of the loss, already on the host, so the check is free and turns
    positive at the first bad batch. It must run before StepCheckpoint, which would save that state.
    """

    def on_train_batch_end(self, batch, logs=None):
        bad = {name: value for name, value in (logs or {}).items() if not math.isfinite(value)}
        if bad:
            step = int(self.model.optimizer.iterations.numpy())
            raise TrainingDiverged(f"training diverged at step {step}: {bad}")


class StepCheckpoint(keras.callbacks.Callback):
    """Saves a checkpoint every `every` optimizer steps and stops training at `total_steps`.

    Reads optimizer.iterations, so it stays right under steps_per_execution > 1 and after resume.
    Refuses (TrainingDiverged) to save weights or optimizer slots holding NaN or inf: an update can
    break them while the loss logged for that step, computed before it, is still finite.
    """

    def __init__(self, manager, every, total_steps):
        super().__init__()
        self.manager = manager
        self.every = every
        self.total_steps = total_steps

    def _step(self):
        return int(self.model.optimizer.iterations.numpy())

    def on_train_begin(self, logs=None):
        # The run starts from its latest checkpoint (or from scratch).
        self._saved_step = self._step()

    def on_train_batch_end(self, batch, logs=None):
        step = self._step()
        if step // self.every > self._saved_step // self.every or step >= self.total_steps:
            self.save(step)
        if step >= self.total_steps:
            self.model.stop_training = True

    def save(self, step):
        if step == self._saved_step:
            return
        bad = network.non_finite_weights([*self.model.weights, *self.model.optimizer.variables])
        if bad:
            raise TrainingDiverged(f"training diverged by step {step}: NaN or inf in {', '.join(bad[:3])}")
        logging.info("saved checkpoint %s", self.manager.save(checkpoint_number=step))
        self._saved_step = step


class Throughput(keras.callbacks.Callback):
    """Adds positions_per_second (training steps only, evaluation excluded) to each epoch's logs."""

    def __init__(self, batch_size):
        super().__init__()
        self.batch_size = batch_size

    def on_epoch_begin(self, epoch, logs=None):
        self._start_step = int(self.model.optimizer.iterations.numpy())
        self._start_time = time.perf_counter()
        self._end_time = self._start_time

    def on_train_batch_end(self, batch, logs=None):
        self._end_time = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        steps = int(self.model.optimizer.iterations.numpy()) - self._start_step
        rate = steps * self.batch_size / max(self._end_time - self._start_time, 1e-9)
        if logs is not None:
            logs["positions_per_second"] = rate
        logging.info("epoch %d: %d steps, %.1f positions/s", epoch + 1, steps, rate)


class TsvEvaluation(keras.callbacks.Callback):
    """Adds tsv_top1 / tsv_top5 (move match among the legal moves, move_match.move_match) to each epoch's logs.

    Positions are read once.
    """

    def __init__(self, path, split, batch_size):
        super().__init__()
        records, self.mask, self.labels = move_match.tsv_inputs(path, split)
        padded = math.ceil(len(records) / batch_size) * batch_size  # static batch shapes (TPU)
        self.records = np.zeros((padded, records.shape[1]), np.int32)
        self.records[: len(records)] = records
        self.batch_size = batch_size
        logging.info("--eval_tsv: %d positions of %s (split %s)", len(records), path, split)

    def on_epoch_end(self, epoch, logs=None):
        outputs = self.model.predict(self.records, batch_size=self.batch_size, verbose=0)
        logits = outputs["policy"] if isinstance(outputs, dict) else outputs
        accuracy = move_match.move_match(
            np.asarray(logits, np.float32)[: len(self.labels)], self.mask, self.labels
        )
        if logs is not None:
            logs["tsv_top1"], logs["tsv_top5"] = accuracy[1], accuracy[5]
        logging.info("epoch %d: --eval_tsv top-1 %.4f, top-5 %.4f", epoch + 1, accuracy[1], accuracy[5])


class EpochHistory(keras.callbacks.Callback):
    """Appends each epoch's logs, with the step and positions seen, as a JSON line to a file.

    runs: the model_dir's runs (model_dir.read_run_record), this one last: positions seen count each run's
    steps at its own batch size.
    """

    def __init__(self, path, runs):
        super().__init__()
        self.path = path
        self.runs = runs

    def on_epoch_end(self, epoch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        row = {"step": step, "positions": model_dir.positions_seen(self.runs, step)}
        row.update({name: float(value) for name, value in (logs or {}).items()})
        previous = tf.io.gfile.GFile(self.path).read() if tf.io.gfile.exists(self.path) else ""
        with tf.io.gfile.GFile(self.path, "w") as f:  # GFile has no append mode on every filesystem
            f.write(previous + json.dumps(row, sort_keys=True) + "\n")


def network_config(options):
    """NetworkConfig of the preset with the --blocks/--filters/--activation/--value_head overrides."""
    values = network.PRESETS[options.preset].to_dict()
    for name in ("blocks", "filters", "activation", "value_head"):
        if getattr(options, name) is not None:
            values[name] = getattr(options, name)
    return network.NetworkConfig.from_dict(values)


def learning_rate_schedule(options):
    """Linear warm-up to --learning_rate, then cosine decay to 0 at --steps."""
    warmup = options.warmup_steps
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else options.learning_rate,
        decay_steps=max(options.steps - warmup, 1),
        warmup_target=options.learning_rate if warmup else None,
        warmup_steps=warmup,
    )


def make_optimizer(options):
    """SGD or AdamW per the flags. Named: its variables' paths (what Orbax checkpoints match) then do not
    depend on how many optimizers the process made before."""
    clip = {"global_clipnorm": options.clip_norm} if options.clip_norm > 0 else {}
    schedule = learning_rate_schedule(options)
    if options.optimizer == "sgd":
        return keras.optimizers.SGD(
            schedule, momentum=0.9, nesterov=True, weight_decay=options.weight_decay, name="sgd", **clip
        )
    return keras.optimizers.AdamW(schedule, weight_decay=options.weight_decay, name="adamw", **clip)


def _eval_steps(options, task):
    """Evaluation batches per epoch: --eval_steps, or one pass over the test split; 0 for none."""
    examples = task.num_examples("test")
    full_pass = examples // options.batch_size
    steps = full_pass if options.eval_steps is None else options.eval_steps
    if steps > 0 and full_pass == 0:
        logging.warning("test split (%d examples) is smaller than one batch: no evaluation", examples)
        return 0
    return steps


_AT_LEAST_ONE = (lambda value: value >= 1, "an integer >= 1")
_FINITE_NON_NEGATIVE = (lambda value: math.isfinite(value) and value >= 0, "a finite number >= 0")
# What each numeric flag accepts: (test, the range in words). NaN fails every test. A flag left unset
# (None: the preset's network, a full evaluation pass, no seed) is not checked.
_NUMERIC_FLAGS = {
    **dict.fromkeys(
        ("batch_size", "steps", "steps_per_epoch", "steps_per_execution", "checkpoint_every", "filters"),
        _AT_LEAST_ONE,
    ),
    "blocks": (lambda value: value >= 0, "an integer >= 0"),
    "eval_steps": (
        lambda value: value >= 0,
        "an integer >= 0 (0: no evaluation; unset: the whole test split)",
    ),
    "learning_rate": (lambda value: math.isfinite(value) and value > 0, "a finite number > 0"),
    **dict.fromkeys(
        ("weight_decay", "clip_norm", "loser_weight", "draw_weight", "value_loss_weight"),
        _FINITE_NON_NEGATIVE,
    ),
    "label_smoothing": (lambda value: 0 <= value < 1, "a number in [0, 1)"),
    "seed": (lambda value: 0 <= value < 2**32, "an integer in [0, 2**32)"),  # numpy's seed range
}


def _check_numeric_flags(options):
    """app.UsageError for the first numeric flag out of its range (a negative --eval_steps used to hang)."""
    for name, (accepts, expected) in _NUMERIC_FLAGS.items():
        value = getattr(options, name)
        if value is not None and not accepts(value):
            raise app.UsageError(f"--{name} must be {expected}, got {value}")
    if not 0 <= options.warmup_steps < options.steps:
        raise app.UsageError(f"--warmup_steps must lie in [0, --steps), got {options.warmup_steps}")


def _check_replicas(options, strategy):
    """app.UsageError unless --batch_size splits evenly over the strategy's replicas."""
    replicas = strategy.num_replicas_in_sync
    if options.batch_size % replicas:
        raise app.UsageError(
            f"--batch_size={options.batch_size} must be a multiple of the {replicas} replicas of "
            f"{type(strategy).__name__}: each replica takes an equal share of the global batch"
        )


def _check_options(options):
    _check_numeric_flags(options)
    if not options.model_dir:
        raise app.UsageError("--model_dir is required")
    backend = keras.backend.backend()
    if options.backend not in (None, backend):
        raise app.UsageError(
            f"--backend={options.backend}, but Keras was loaded with the {backend} backend: Keras reads it at "
            f"import, so run the shogi-policy-train command (python -m shogi_policy.cli train) or set "
            f"KERAS_BACKEND={options.backend}"
        )
    if options.jax_distributed and backend != "jax":
        raise app.UsageError("--jax_distributed needs the JAX backend (--backend=jax)")
    if options.jax_distributed and options.eval_tsv:
        raise app.UsageError("--eval_tsv is single-host: evaluate the exported model afterwards instead")


def is_primary_host():
    """False on the hosts other than the first of a multi-host JAX run: they write no files of their own."""
    host_index, _ = hosts()
    return host_index == 0


def _check_steps_per_execution(options, steps_per_execution):
    """Keras runs whole executions of steps_per_execution steps on a repeated dataset, even past the end of an
    epoch: with an epoch of 125 steps and 100 per execution, each epoch runs 200 steps, and --steps is
    overshot. So both must be multiples of it."""
    for name in ("steps", "steps_per_epoch"):
        value = min(getattr(options, name), options.steps)
        if value % steps_per_execution:
            raise app.UsageError(
                f"--{name}={value} must be a multiple of --steps_per_execution={steps_per_execution}: Keras "
                "runs whole executions, so training would overshoot"
            )


def _normalized(name, value):
    """A flag value as compared on resume: --data_dir without a trailing slash or ./ segments."""
    if name == "data_dir" and isinstance(value, str):
        return value.rstrip("/") if "://" in value else os.path.normpath(value)
    return value


def flag_changes(recorded, current):
    """{flag: (recorded value, current value)} of the flags that differ, in current's order.

    recorded: a model_dir's train_flags.json flags; current: this run's. A flag missing from recorded (an
    older trainer did not have it) is not compared; nor are RESUME_FREE flags that say where things go
    (model_dir) or whether changes are allowed.
    """
    return {
        name: (recorded[name], value)
        for name, value in current.items()
        if name in recorded
        and name not in ("model_dir", "allow_changed_flags")
        and _normalized(name, recorded[name]) != _normalized(name, value)
    }


def resume_refusal(changes, allow_changed_flags):
    """Why a run may not resume checkpoints made under other flags (a message), or None.

    changes: flag_changes(); RESUME_FIXED changes are always refused, RESUME_STREAM ones unless
    allow_changed_flags.
    """

    def listed(names, why=None):
        return "; ".join(
            f"--{name} {changes[name][0]!r} -> {changes[name][1]!r}" + (f" ({why[name]})" if why else "")
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


def _check_backend_matches_checkpoint(checkpoint_path):
    """app.UsageError when the latest checkpoint is in the other Keras backend's format (shogi_policy.model.checkpoints)."""
    written_by = "jax" if os.path.basename(checkpoint_path).isdigit() else "tensorflow"
    backend = keras.backend.backend()
    if written_by != backend:
        raise app.UsageError(
            f"{checkpoint_path} is a {written_by} checkpoint and this run uses the {backend} backend: a run "
            f"resumes under the backend it started with (--backend={written_by})"
        )


def _claim_model_dir(options, config):
    """Checks a resumed model_dir against this run and writes network.json (first host only).

    Returns the model_dir's run record (model_dir.read_run_record; None for a new directory) and the
    flag changes this run makes to it. app.UsageError when the run may not resume it (resume_refusal,
    another network, another backend's checkpoints).
    """
    record = model_dir.read_run_record(options.model_dir)
    changes = {}
    checkpoint_path = model_dir.latest_checkpoint(options.model_dir)
    if checkpoint_path:
        _check_backend_matches_checkpoint(checkpoint_path)
        changes = flag_changes(record[0], _flag_values(options)) if record else {}
        refusal = resume_refusal(changes, options.allow_changed_flags)
        if refusal:
            raise app.UsageError(f"--model_dir={options.model_dir}: {refusal}")
        if changes:
            logging.warning(
                "resuming %s with changed flags: %s",
                options.model_dir,
                ", ".join(f"--{name} {old!r} -> {new!r}" for name, (old, new) in changes.items()),
            )
    existing = model_dir.read_network_config(options.model_dir)
    if checkpoint_path and existing is not None and existing != config:
        raise app.UsageError(
            f"--model_dir={options.model_dir} holds a {existing} run, not this run's {config}"
        )
    if is_primary_host():
        model_dir.write_json(os.path.join(options.model_dir, model_dir.NETWORK_JSON), config.to_dict())
    return record, changes


def _flag_values(options):
    """{name: value} of the trainer's flags, as train_flags.json records them."""
    return {flag.name: flag.value for flag in options.get_flags_for_module(__name__)}


def _record_run(options, record, changes, initial_step):
    """Writes train_flags.json for this run, starting at initial_step; returns the runs (model_dir.read_run_record)."""
    earlier = (
        [run for run in record[1] if run["start_step"] < initial_step] if record and initial_step else []
    )
    changed = {name: list(values) for name, values in changes.items()}
    runs = [*earlier, {"start_step": initial_step, "batch_size": options.batch_size, "changed": changed}]
    if is_primary_host():
        model_dir.write_run_record(options.model_dir, _flag_values(options), runs)
    return runs


def train(options, callbacks=()):
    """Trains per the parsed trainer flags.

    Args:
      options: absl FlagValues holding define_flags()'s flags, parsed.
      callbacks: extra Keras callbacks, run after the trainer's own (tests use it to interrupt).
    Returns:
      dict of final metrics (also written to model_dir/metrics.json).
    Raises:
      app.UsageError for bad flags; TrainingDiverged when the loss or weights stop being finite.
    """
    _check_options(options)
    if options.seed is not None:
        keras.utils.set_random_seed(options.seed)
    if options.jax_distributed:
        # Before anything touches JAX; every host runs this command. After the seed: initialize() would
        # otherwise seed every host with one random seed of its own making.
        keras.distribution.initialize()
    task = TASKS[options.dataset](options)
    problem = task.check_options()
    if problem:
        raise app.UsageError(problem)
    config = network_config(options)
    try:
        strategy = make_strategy(options.strategy, options.tpu)
    except ValueError as error:  # JAX: a remote --tpu, or --strategy=default on several hosts
        raise app.UsageError(str(error)) from None
    _check_replicas(options, strategy)
    try:
        nested_xla, jit_compile = compilation_for(strategy, options.jit_compile)
    except ValueError as error:  # --jit_compile=true on a host without XLA
        raise app.UsageError(str(error)) from None
    steps_per_execution = options.steps_per_execution
    if steps_per_execution > 1 and isinstance(strategy, tf.distribute.MirroredStrategy):
        # Keras 3 fails with steps_per_execution > 1 under MirroredStrategy (keras issue 19246).
        logging.warning(
            "steps_per_execution=%d is unsupported under MirroredStrategy: using 1", steps_per_execution
        )
        steps_per_execution = 1
    _check_steps_per_execution(options, steps_per_execution)
    tf.io.gfile.makedirs(options.model_dir)
    try:
        # One writer per model_dir: the first host holds the lock for the whole run (shogi_policy.training.run_lock).
        with run_lock.hold(options.model_dir) if is_primary_host() else contextlib.nullcontext():
            record, changes = _claim_model_dir(options, config)
            return _build_and_fit(
                options,
                task,
                config,
                strategy,
                nested_xla,
                jit_compile,
                steps_per_execution,
                callbacks,
                record,
                changes,
            )
    except run_lock.RunDirectoryLocked as error:
        raise app.UsageError(str(error)) from None


def _build_and_fit(
    options, task, config, strategy, nested_xla, jit_compile, steps_per_execution, callbacks, record, changes
):
    """Builds model, optimizer and checkpoint manager, resumes the latest checkpoint and trains (train's second half)."""
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if options.mixed_bfloat16 else "float32")
    try:
        with strategy.scope():
            model = task.build_model(config, nested_xla=nested_xla)
            optimizer = make_optimizer(options)
            model.compile(
                optimizer=optimizer,
                steps_per_execution=steps_per_execution,
                jit_compile=jit_compile,
                **task.compile_args(config),
            )
            optimizer.build(model.trainable_variables)
            manager = checkpoints.manager(
                model, optimizer, os.path.join(options.model_dir, model_dir.CHECKPOINT_DIR)
            )
        # JAX's trainer distributes each batch under the distribution active in fit, and the checkpoint
        # restores onto its shardings; TensorFlow's strategies need their scope only to build.
        with strategy.scope() if isinstance(strategy, JaxDataParallel) else contextlib.nullcontext():
            try:
                if manager.latest_checkpoint:
                    checkpoints.resume(manager, manager.latest_checkpoint)
                runs = _record_run(options, record, changes, int(model.optimizer.iterations.numpy()))
                return _fit(options, task, model, manager, steps_per_execution, config, callbacks, runs)
            except TrainingDiverged as error:
                raise TrainingDiverged(f"{error}. {_divergence_advice(options, manager)}") from None
            finally:
                manager.close()
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def _divergence_advice(options, manager):
    """What to do after TrainingDiverged: which checkpoint a rerun resumes from and which flags to change."""
    resume = (
        f"the latest checkpoint, {manager.latest_checkpoint},"
        if manager.latest_checkpoint
        else "no checkpoint"
    )
    clip = "a smaller --clip_norm" if options.clip_norm else "--clip_norm > 0 (e.g. 10)"
    return (
        f"Nothing of the diverged state was saved: {resume} is the last good state. Rerun the same command "
        f"with --allow_changed_flags and a lower --learning_rate (now {options.learning_rate:g}) or {clip} to "
        "resume from it"
    )


def _eval_metrics(results):
    """Final evaluation results as metrics.json values: eval_<name> -> float, or None (JSON null) if not finite."""
    return {f"eval_{name}": float(value) if math.isfinite(value) else None for name, value in results.items()}


def _fit(options, task, model, manager, steps_per_execution, config, extra_callbacks, runs):
    """Trains from the restored step to --steps, evaluates and saves; runs: model_dir.read_run_record's, this run last."""
    initial_step = int(model.optimizer.iterations.numpy())
    train_data = task.make_dataset("train", options.batch_size, config, shuffle=True, seed=options.seed)
    eval_steps = _eval_steps(options, task)
    eval_data = (
        task.make_dataset("test", options.batch_size, config, shuffle=False, seed=None)
        if eval_steps
        else None
    )
    if options.seed is not None and initial_step:
        # Same seed, same order: skip the batches the interrupted run consumed.
        train_data = train_data.skip(initial_step)
    steps_per_epoch = min(options.steps_per_epoch, options.steps)
    # DivergenceGuard before StepCheckpoint: a diverged step is never saved.
    callbacks = [Throughput(options.batch_size), DivergenceGuard()]
    if options.eval_tsv:
        callbacks.append(TsvEvaluation(options.eval_tsv, options.eval_tsv_split, options.batch_size))
    if is_primary_host():
        callbacks += [
            EpochHistory(os.path.join(options.model_dir, model_dir.HISTORY_JSONL), runs),
            # The graph (feature ops included) is large to write and of little use.
            keras.callbacks.TensorBoard(
                os.path.join(options.model_dir, model_dir.LOG_DIR), write_graph=False
            ),
        ]
    start = time.perf_counter()
    if initial_step < options.steps:
        model.fit(
            train_data,
            # The epoch grid shifts by initial_step % steps_per_epoch after a resume; StepCheckpoint
            # stops at --steps, within the last epoch.
            epochs=math.ceil(options.steps / steps_per_epoch),
            initial_epoch=initial_step // steps_per_epoch,
            steps_per_epoch=steps_per_epoch,
            validation_data=eval_data,
            validation_steps=eval_steps or None,
            callbacks=[
                *callbacks,
                StepCheckpoint(manager, options.checkpoint_every, options.steps),
                *extra_callbacks,
            ],
            shuffle=False,  # the dataset shuffles itself
            # A live bar on a terminal; one line per epoch in logs (CI, nohup, Colab '!' cells).
            verbose=1 if sys.stdout.isatty() else 2,
        )
    elapsed = time.perf_counter() - start
    final_step = int(model.optimizer.iterations.numpy())
    metrics = {"step": final_step, "positions": model_dir.positions_seen(runs, final_step)}
    if final_step > initial_step:
        # Wall-clock over the whole fit, compilation and evaluation included; the per-epoch
        # training-only figure is logged (and in TensorBoard) as positions_per_second.
        metrics["wall_positions_per_second"] = (final_step - initial_step) * options.batch_size / elapsed
    if eval_data is not None:
        results = model.evaluate(eval_data, steps=eval_steps, return_dict=True, verbose=0)
        metrics.update(_eval_metrics(results))
    _save_model(model, options.model_dir)
    if is_primary_host():
        model_dir.write_json(os.path.join(options.model_dir, model_dir.METRICS_JSON), metrics)
    logging.info("final metrics: %s", json.dumps(metrics))
    return metrics


def _save_model(model, directory):
    """model.keras into directory; on the other hosts of a multi-host JAX run into a throwaway directory.

    Every host must save: reading a replicated global array is a collective, and model.save on the first
    host alone waits for the others until JAX's distributed runtime aborts the run.
    """
    if is_primary_host():
        model.save(os.path.join(directory, model_dir.MODEL_KERAS))
        return
    with tempfile.TemporaryDirectory() as scratch:
        model.save(os.path.join(scratch, model_dir.MODEL_KERAS))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        metrics = train(flags.FLAGS)
    except TrainingDiverged as error:
        sys.exit(f"shogi-policy-train: {error}")
    print(json.dumps(metrics, indent=1, sort_keys=True))


def run():
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
