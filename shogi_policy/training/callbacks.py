"""The Keras callbacks of a training run, in the order the trainer runs them.

Throughput      positions_per_second (training steps only) in each epoch's logs
DivergenceGuard TrainingDiverged at the first batch whose loss or metric is not finite
TsvEvaluation   tsv_top1 / tsv_top5 move match on a 'split<TAB>sfen<TAB>usi_move' file each epoch
EpochHistory    each epoch's logs as a line of history.jsonl (first host only)
StepCheckpoint  a checkpoint every N optimizer steps, and the stop at the last step
"""

import json
import math
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from shogi_policy.data import move_match
from shogi_policy.model import model_dir, network


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
