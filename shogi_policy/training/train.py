"""train(config, model_dir): train the policy network on record shards (or MNIST) under tf.distribute or JAX.

    from shogi_policy.training import config, train
    run = config.TrainConfig(
        task=config.TaskConfig(data_dir="shards/", preset="b3c64"),
        trainer=config.TrainerConfig(batch_size=256, steps=1000, seed=1),
    )
    metrics = train.train(run, "runs/first")

The command shogi-policy-train (shogi_policy.cli.train) maps its flags onto the same config. The model directory
is an argument beside the config, not a field of it: the config is what the run is (recorded in
train_flags.json and compared on resume), the directory only where it goes, and one config can train into
several directories.

The Keras backend is TensorFlow (tf.distribute strategies) or JAX (keras.distribution.DataParallel over JAX's
devices, shogi_policy.runtime.strategy); Keras reads it when it is first imported, so config.runtime.backend is
only checked here. Both backends read the same tf.data shards and write the same model directory, except the
checkpoints' format (shogi_policy.model.checkpoints).

model_dir receives network.json, train_flags.json, checkpoints/ (every checkpoint_every steps and at the end),
logs/ (TensorBoard), model.keras, metrics.json and history.jsonl (shogi_policy.model.model_dir). What is trained
(model, data, loss) comes from a task (shogi_policy.training.tasks).
Training again into the same directory after a preemption resumes from the last checkpoint: weights, optimizer
state and step count are restored, so at most checkpoint_every steps are lost; with a seed the data stream is
fast-forwarded too, so a resumed run sees the same batches. Which changed settings a resume accepts:
shogi_policy.training.resume. One trainer at a time holds a model_dir (shogi_policy.training.run_lock).
Keras's BackupAndRestore is not used: in Keras 3.15 it restores only the epoch number, so a preemption
mid-epoch would repeat the whole epoch and overshoot the steps.

Every range is checked when the config is made (config.ConfigError), and a batch that the strategy's replicas
cannot share before anything is built. A run whose loss or weights stop being finite numbers stops with
TrainingDiverged at that step: the broken state is never checkpointed, so the latest checkpoint is the last
good one. metrics.json is strict JSON: a value that is not a finite number is written as null.
"""

import contextlib
import json
import math
import os
import sys
import tempfile
import time

import keras
import tensorflow as tf
from absl import logging

from shogi_policy.core import file_io
from shogi_policy.data import move_match
from shogi_policy.model import checkpoints, model_dir
from shogi_policy.runtime import hosts, precision
from shogi_policy.runtime.strategy import JaxDataParallel, compilation_for, compute_devices, make_strategy
from shogi_policy.training import resume, run_lock
from shogi_policy.training.callbacks import (
    DivergenceGuard,
    EpochHistory,
    StepCheckpoint,
    Throughput,
    TrainingDiverged,
    TsvEvaluation,
)
from shogi_policy.training.config import AUTO, ConfigError
from shogi_policy.training.tasks import TASKS

__all__ = ["ConfigError", "TrainingDiverged", "make_optimizer", "train"]


def learning_rate_schedule(trainer):
    """Linear warm-up to trainer.learning_rate, then cosine decay to 0 at trainer.steps (a TrainerConfig)."""
    warmup = trainer.warmup_steps
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else trainer.learning_rate,
        decay_steps=max(trainer.steps - warmup, 1),
        warmup_target=trainer.learning_rate if warmup else None,
        warmup_steps=warmup,
    )


def make_optimizer(trainer):
    """SGD or AdamW of a TrainerConfig. Named: its variables' paths (what Orbax checkpoints match) then do not
    depend on how many optimizers the process made before."""
    clip = {"global_clipnorm": trainer.clip_norm} if trainer.clip_norm > 0 else {}
    schedule = learning_rate_schedule(trainer)
    if trainer.optimizer == "sgd":
        return keras.optimizers.SGD(
            schedule, momentum=0.9, nesterov=True, weight_decay=trainer.weight_decay, name="sgd", **clip
        )
    return keras.optimizers.AdamW(schedule, weight_decay=trainer.weight_decay, name="adamw", **clip)


def _eval_steps(trainer, task, steps_per_execution):
    """Evaluation batches per epoch: trainer.eval_steps, or the whole executions of steps_per_execution batches
    in one pass over the test split (Keras evaluates whole executions); 0 for none."""
    examples = task.num_examples("test")
    batches = examples // trainer.batch_size
    whole_pass = trainer.eval_steps is None
    steps = batches - batches % steps_per_execution if whole_pass else trainer.eval_steps
    if (whole_pass and steps == 0) or (steps > 0 and batches == 0):
        logging.warning(
            "test split (%d examples: %d batches) is smaller than one execution of %d batches: no evaluation",
            examples,
            batches,
            steps_per_execution if whole_pass else 1,
        )
        return 0
    return steps


def _check_inputs(config, task):
    """ConfigError, before model_dir is written, when --eval_tsv is no file or a batch is more than the training
    split holds."""
    if config.task.eval_tsv:
        try:
            move_match.check_tsv(config.task.eval_tsv, "--eval_tsv")
        except ValueError as error:
            raise ConfigError(str(error)) from None
    examples = task.num_examples("train")
    if examples < config.trainer.batch_size:
        raise ConfigError(
            f"--batch_size={config.trainer.batch_size} is more than the training split holds ({examples} "
            "examples): lower --batch_size or convert more games"
        )


def _make_model_dir(directory):
    """Creates model_dir (local or gs://); ConfigError naming it when it cannot be created or written.

    Only the first host, which writes the run's files, probes: hosts probing one directory at once would race
    on the probe file.
    """
    try:
        tf.io.gfile.makedirs(directory)
        if hosts.is_primary():
            file_io.check_writable(os.path.join(directory, model_dir.FLAGS_JSON))
    except (OSError, tf.errors.OpError, ValueError) as error:
        raise ConfigError(f"--model_dir={directory}: {file_io.io_error_reason(error)}") from None


def _check_runtime(runtime):
    """ConfigError when the runtime asked for is not the Keras this process loaded."""
    backend = keras.backend.backend()
    if runtime.backend not in (None, backend):
        raise ConfigError(
            f"--backend={runtime.backend}, but Keras was loaded with the {backend} backend: Keras reads it at "
            f"import, so run the shogi-policy-train command (python -m shogi_policy.cli train) or set "
            f"KERAS_BACKEND={runtime.backend}"
        )
    if runtime.jax_distributed and backend != "jax":
        raise ConfigError("--jax_distributed needs the JAX backend (--backend=jax)")


def local_batch_size(batch_size, strategy):
    """This host's share of the global batch (Flax's local_batch_size): what its input pipeline batches.

    ConfigError unless the batch splits evenly over the strategy's replicas and the run's hosts (a multi-host
    JAX run's replicas are the devices of every host).
    """
    replicas, num_hosts = strategy.num_replicas_in_sync, hosts.process()[1]
    if batch_size % math.lcm(replicas, num_hosts):
        on_hosts = f" on {num_hosts} hosts" if num_hosts > 1 else ""
        raise ConfigError(
            f"--batch_size={batch_size} must be a multiple of the {replicas} replicas of "
            f"{type(strategy).__name__}{on_hosts}: each replica takes an equal share of the global batch"
        )
    return batch_size // num_hosts


def _check_steps_per_execution(trainer, steps_per_execution):
    """Keras runs whole executions of steps_per_execution steps on a repeated dataset, even past the end of an
    epoch: with an epoch of 125 steps and 100 per execution, each epoch runs 200 steps, and the steps are
    overshot. So both must be multiples of it."""
    for name in ("steps", "steps_per_epoch"):
        value = min(getattr(trainer, name), trainer.steps)
        if value % steps_per_execution:
            raise ConfigError(
                f"--{name}={value} must be a multiple of --steps_per_execution={steps_per_execution}: Keras "
                "runs whole executions, so training would overshoot"
            )


def _resolve_mixed_bfloat16(config, strategy, directory):
    """config with --mixed_bfloat16=auto resolved to True or False, so train_flags.json records the value: the
    one recorded where the run resumes checkpoints (another host keeps the run's precision), else whether the
    strategy's devices compute bfloat16 natively (shogi_policy.runtime.precision). Logs the choice and why."""
    chosen = config.runtime.mixed_bfloat16
    if chosen != AUTO:
        why = f"--mixed_bfloat16={str(chosen).lower()}"
    elif isinstance(recorded := resume.resumed_flag(directory, "mixed_bfloat16"), bool):
        chosen, why = recorded, "auto: as train_flags.json records it for the checkpoints resumed"
    else:
        chosen, why = precision.native_bfloat16(**compute_devices(strategy))
        why = f"auto: {why}"
    logging.info("precision: %s (%s)", "mixed bfloat16" if chosen else "float32", why)
    return config.replace(mixed_bfloat16=chosen)


def train(config, model_dir, callbacks=()):
    """Trains per a config into a model directory.

    Args:
      config: config.TrainConfig.
      model_dir: the output and checkpoint directory (str or path; local or gs://).
      callbacks: extra Keras callbacks, run after the trainer's own (tests use it to interrupt).
    Returns:
      dict of final metrics (also written to model_dir/metrics.json).
    Raises:
      ConfigError for a configuration or model directory the run cannot use; TrainingDiverged when the loss or
      weights stop being finite.
    """
    if not model_dir:
        raise ConfigError("--model_dir is required")
    directory = os.fspath(model_dir)
    runtime, trainer = config.runtime, config.trainer
    _check_runtime(runtime)
    if trainer.seed is not None:
        keras.utils.set_random_seed(trainer.seed)
    if runtime.jax_distributed:
        # Before anything touches JAX; every host runs this command. After the seed: initialize() would
        # otherwise seed every host with one random seed of its own making.
        keras.distribution.initialize()
    task = TASKS[config.task.dataset](config.task)
    problem = task.check_options()
    if problem:
        raise ConfigError(problem)
    network_config = config.task.network()
    try:
        strategy = make_strategy(runtime.strategy, runtime.tpu)
        # ValueError: --jit_compile=true on a host without XLA
        nested_xla, jit_compile = compilation_for(strategy, runtime.jit_compile)
    except ValueError as error:  # JAX: a remote --tpu, or --strategy=default on several hosts
        raise ConfigError(str(error)) from None
    local_batch = local_batch_size(trainer.batch_size, strategy)
    steps_per_execution = trainer.steps_per_execution
    if steps_per_execution > 1 and isinstance(strategy, tf.distribute.MirroredStrategy):
        # Keras 3 fails with steps_per_execution > 1 under MirroredStrategy (keras issue 19246).
        logging.warning(
            "steps_per_execution=%d is unsupported under MirroredStrategy: using 1", steps_per_execution
        )
        steps_per_execution = 1
    _check_steps_per_execution(trainer, steps_per_execution)
    _check_inputs(config, task)
    _make_model_dir(directory)
    compiled = {
        "nested_xla": nested_xla,
        "jit_compile": jit_compile,
        "steps_per_execution": steps_per_execution,
        "local_batch_size": local_batch,
    }
    try:
        # One writer per model_dir: the first host holds the lock for the whole run (shogi_policy.training.run_lock).
        with run_lock.hold(directory) if hosts.is_primary() else contextlib.nullcontext():
            config = _resolve_mixed_bfloat16(config, strategy, directory)
            record, changes = resume.claim_model_dir(config, directory, network_config, task.data_identity())
            return _build_and_fit(
                config, directory, task, network_config, strategy, compiled, callbacks, record, changes
            )
    except run_lock.RunDirectoryLocked as error:
        raise ConfigError(str(error)) from None


def _build_and_fit(config, directory, task, network_config, strategy, compiled, callbacks, record, changes):
    """Builds model, optimizer and checkpoint manager, resumes the latest checkpoint and trains (train's second half).

    compiled: {"nested_xla", "jit_compile", "steps_per_execution", "local_batch_size"} as train settled them for
    the strategy.
    """
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if config.runtime.mixed_bfloat16 else "float32")
    try:
        with strategy.scope():
            model = task.build_model(network_config, nested_xla=compiled["nested_xla"])
            optimizer = make_optimizer(config.trainer)
            model.compile(
                optimizer=optimizer,
                steps_per_execution=compiled["steps_per_execution"],
                jit_compile=compiled["jit_compile"],
                **task.compile_args(network_config),
            )
            optimizer.build(model.trainable_variables)
            manager = checkpoints.manager(model, optimizer, os.path.join(directory, model_dir.CHECKPOINT_DIR))
        # JAX's trainer distributes each batch under the distribution active in fit, and the checkpoint
        # restores onto its shardings; TensorFlow's strategies need their scope only to build.
        with strategy.scope() if isinstance(strategy, JaxDataParallel) else contextlib.nullcontext():
            try:
                if manager.latest_checkpoint:
                    checkpoints.resume(manager, manager.latest_checkpoint)
                initial_step = int(model.optimizer.iterations.numpy())
                runs = resume.record_run(
                    config, directory, record, changes, initial_step, task.data_identity()
                )
                return _fit(
                    config,
                    directory,
                    task,
                    model,
                    manager,
                    network_config,
                    callbacks,
                    runs,
                    compiled["local_batch_size"],
                )
            except TrainingDiverged as error:
                raise TrainingDiverged(f"{error}. {_divergence_advice(config.trainer, manager)}") from None
            finally:
                manager.close()
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def _divergence_advice(trainer, manager):
    """What to do after TrainingDiverged: which checkpoint a rerun resumes from and which settings to change."""
    resume_from = (
        f"the latest checkpoint, {manager.latest_checkpoint},"
        if manager.latest_checkpoint
        else "no checkpoint"
    )
    clip = "a smaller --clip_norm" if trainer.clip_norm else "--clip_norm > 0 (e.g. 10)"
    return (
        f"Nothing of the diverged state was saved: {resume_from} is the last good state. Rerun the same command "
        f"with --allow_changed_flags and a lower --learning_rate (now {trainer.learning_rate:g}) or {clip} to "
        "resume from it"
    )


def _eval_metrics(results):
    """Final evaluation results as metrics.json values: eval_<name> -> float, or None (JSON null) if not finite."""
    return {f"eval_{name}": float(value) if math.isfinite(value) else None for name, value in results.items()}


def _callbacks(config, directory, runs):
    """The trainer's own callbacks before StepCheckpoint; DivergenceGuard before it: a diverged step is never saved."""
    trainer, task = config.trainer, config.task
    callbacks = [Throughput(trainer.batch_size), DivergenceGuard()]
    if task.eval_tsv:
        callbacks.append(TsvEvaluation(task.eval_tsv, task.eval_tsv_split, trainer.batch_size))
    if hosts.is_primary():
        callbacks += [
            EpochHistory(os.path.join(directory, model_dir.HISTORY_JSONL), runs),
            # The graph (feature ops included) is large to write and of little use.
            keras.callbacks.TensorBoard(os.path.join(directory, model_dir.LOG_DIR), write_graph=False),
        ]
    return callbacks


def _fit(config, directory, task, model, manager, network_config, extra_callbacks, runs, local_batch):
    """Trains from the restored step to the last step, evaluates and saves; runs: model_dir.read_run_record's, this
    run last; local_batch: this host's batch (local_batch_size)."""
    trainer = config.trainer
    initial_step = int(model.optimizer.iterations.numpy())
    train_data = task.make_dataset("train", local_batch, network_config, shuffle=True, seed=trainer.seed)
    eval_steps = _eval_steps(trainer, task, model.steps_per_execution)
    eval_data = (
        task.make_dataset("test", local_batch, network_config, shuffle=False, seed=None)
        if eval_steps
        else None
    )
    if trainer.seed is not None and initial_step:
        # Same seed, same order: skip the batches the interrupted run consumed.
        train_data = train_data.skip(initial_step)
    steps_per_epoch = min(trainer.steps_per_epoch, trainer.steps)
    start = time.perf_counter()
    if initial_step < trainer.steps:
        model.fit(
            train_data,
            # The epoch grid shifts by initial_step % steps_per_epoch after a resume; StepCheckpoint
            # stops at the last step, within the last epoch.
            epochs=math.ceil(trainer.steps / steps_per_epoch),
            initial_epoch=initial_step // steps_per_epoch,
            steps_per_epoch=steps_per_epoch,
            validation_data=eval_data,
            validation_steps=eval_steps or None,
            callbacks=[
                *_callbacks(config, directory, runs),
                StepCheckpoint(manager, trainer.checkpoint_every, trainer.steps),
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
        metrics["wall_positions_per_second"] = (final_step - initial_step) * trainer.batch_size / elapsed
    if eval_data is not None:
        results = model.evaluate(eval_data, steps=eval_steps, return_dict=True, verbose=0)
        metrics.update(_eval_metrics(results))
    _save_model(model, directory)
    if hosts.is_primary():
        file_io.write_json(os.path.join(directory, model_dir.METRICS_JSON), metrics)
    logging.info("final metrics: %s", json.dumps(metrics))
    return metrics


def _save_model(model, directory):
    """model.keras into directory, whole or not at all: saved to a local scratch file, then written through
    file_io.write_file_atomic (temporary file and rename; ValueError naming it on a full disk). On the other hosts
    of a multi-host JAX run only the scratch file: every host must save, as reading a replicated global array is a
    collective, and model.save on the first host alone waits for the others until JAX's distributed runtime aborts.
    """
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, model_dir.MODEL_KERAS)
        model.save(path)
        if hosts.is_primary():
            with open(path, "rb") as stream:
                file_io.write_file_atomic(os.path.join(directory, model_dir.MODEL_KERAS), stream.read())
