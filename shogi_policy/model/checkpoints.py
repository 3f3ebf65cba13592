"""Training checkpoints (model and optimizer, by optimizer step): one interface, one format per Keras backend.

  TensorFlow  tf.train.CheckpointManager over tf.train.Checkpoint(model, optimizer): checkpoints/ckpt-<step>
  JAX         Orbax (orbax-checkpoint's v1 training.Checkpointer): checkpoints/<step>/, a pytree in Keras's
              state-tree layout {trainable_variables, non_trainable_variables, optimizer_variables}, each
              a nested dict by variable path (metrics are not saved). Orbax coordinates the hosts of a
              multi-host run; every host calls save and restore.

Under JAX, Keras's own keras.callbacks.OrbaxCheckpoint is not used: it saves Model.get_state_tree(), which
refuses our value-head model (two metrics named "accuracy"), its loader skips variables missing from the
checkpoint without a word, it cannot open a step directory in Keras 3.15, it counts batches of the current
fit rather than optimizer steps, and Colab's preinstalled Keras (3.13) lacks it. Restoring here is strict:
every variable of the model and optimizer must be in the checkpoint with its shape.

Both managers: latest_checkpoint (path or None), save(checkpoint_number) -> path, restore(path) ->
(optimizer step after restoring, the checkpoint's number as a string), close().
"""

import os

import keras
import numpy as np
import tensorflow as tf  # tf.train checkpoints, and tf.io.gfile for gs:// (tf.data needs TF under JAX too)
from absl import logging

MAX_TO_KEEP = 3
STATE_GROUPS = ("trainable_variables", "non_trainable_variables", "optimizer_variables")


class TFCheckpoints:
    """tf.train.CheckpointManager of model and optimizer (TensorFlow backend)."""

    def __init__(self, model, optimizer, directory):
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=MAX_TO_KEEP)

    @property
    def latest_checkpoint(self):
        return self.manager.latest_checkpoint

    def save(self, checkpoint_number):
        return self.manager.save(checkpoint_number=checkpoint_number)

    def restore(self, path):
        self.checkpoint.restore(path)
        return int(self.checkpoint.optimizer.iterations.numpy()), path.rsplit("-", 1)[-1]

    def close(self):
        pass


def _tree(variables, leaf):
    """{"a": {"b": leaf(v)}} for variables (keras.Variables) with paths "a/b": Keras's state-tree layout."""
    tree = {}
    for variable in variables:
        *scopes, name = variable.path.split("/")
        node = tree
        for scope in scopes:
            node = node.setdefault(scope, {})
        if name in node:
            raise ValueError(f"two variables with the path {variable.path}")
        node[name] = leaf(variable)
    return tree


def _flatten(tree, prefix=""):
    """(path, leaf) pairs of a nested dict, paths joined by "/"."""
    for name, value in tree.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{name}/")
        else:
            yield prefix + name, value


def _absolute(path):
    """Orbax refuses relative paths ("Checkpoint path should be absolute"); gs:// stays as it is."""
    return path if "://" in path else os.path.abspath(path)


def _load_groups(path, groups, leaf, partial):
    """Assigns the Orbax checkpoint at path to groups {group: variables}, by path; ValueError if one is missing.

    leaf(variable) is the abstract leaf Orbax reads into (its shape, dtype and where it goes).
    partial: read a subset of the saved groups (Orbax then needs partial_load).
    """
    from orbax.checkpoint import v1 as ocp  # (optional: orbax-checkpoint, JAX runs)

    abstract = {group: _tree(variables, leaf) for group, variables in groups.items()}
    context = ocp.Context()
    context.pytree.loading.partial_load = partial
    try:
        with context:
            loaded = ocp.load_checkpointables(_absolute(path), {"pytree": abstract})["pytree"]
    except Exception as error:  # Orbax wraps a missing or misshapen variable in its own errors
        raise ValueError(f"{path}: {error.__cause__ or error}") from None
    for group, variables in groups.items():
        values = dict(_flatten(loaded.get(group, {})))
        for variable in variables:
            if variable.path not in values:
                raise ValueError(f"{path} has no {group} {variable.path}")
            variable.assign(values[variable.path])


class OrbaxCheckpoints:
    """Orbax checkpoints of model and optimizer variables (JAX backend); see the module docstring."""

    def __init__(self, model, optimizer, directory):
        from orbax.checkpoint import v1 as ocp  # (optional: orbax-checkpoint, JAX runs)

        self.groups = dict(
            zip(
                STATE_GROUPS,
                (model.trainable_variables, model.non_trainable_variables, optimizer.variables),
                strict=True,
            )
        )
        self.optimizer = optimizer
        self.directory = _absolute(directory)
        self.checkpointer = ocp.training.Checkpointer(
            directory=self.directory,
            preservation_policy=ocp.training.preservation_policies.LatestN(MAX_TO_KEEP),
        )

    @property
    def latest_checkpoint(self):
        latest = self.checkpointer.latest
        return None if latest is None else os.path.join(self.directory, str(latest.step))

    def save(self, checkpoint_number):
        # Synchronous: a run preempted right after finds this step complete (Orbax writes a temporary
        # directory and renames it once every host has written its part).
        tree = {group: _tree(variables, lambda v: v.value) for group, variables in self.groups.items()}
        self.checkpointer.save_checkpointables(checkpoint_number, {"pytree": tree})
        return os.path.join(self.directory, str(checkpoint_number))

    def restore(self, path):
        import jax

        # Read straight onto each variable's current sharding (the mesh of this run's DataParallel).
        _load_groups(
            path,
            self.groups,
            lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=v.value.sharding),
            partial=False,
        )
        return int(self.optimizer.iterations.numpy()), os.path.basename(path)

    def close(self):
        self.checkpointer.close()


def manager(model, optimizer, directory):
    """The checkpoint manager of the process's Keras backend for model and optimizer in directory."""
    if keras.backend.backend() == "jax":
        return OrbaxCheckpoints(model, optimizer, directory)
    return TFCheckpoints(model, optimizer, directory)


def resume(checkpoints, path):
    """Restores model and optimizer from path; the optimizer step must equal the checkpoint's number."""
    step, number = checkpoints.restore(path)
    if str(step) != number:
        raise ValueError(f"restoring {path} gave optimizer step {step}: the checkpoint does not match")
    logging.info("resumed from %s at step %d", path, step)
    return step


def latest_orbax_checkpoint(directory):
    """The newest Orbax step directory <directory>/<digits> (a JAX run's), or None (local or gs://)."""
    if not tf.io.gfile.isdir(directory):
        return None
    steps = [int(name.rstrip("/")) for name in tf.io.gfile.listdir(directory) if name.rstrip("/").isdigit()]
    return os.path.join(directory, str(max(steps))) if steps else None


def load_orbax_model_weights(model, path):
    """The model variables (not the optimizer's) of a JAX run's Orbax checkpoint, under either backend.

    Read as numpy arrays, so a checkpoint saved on 8 TPU chips loads on one CPU, and under the TF backend
    (export). A variable missing from the checkpoint raises ValueError.
    """
    groups = {
        "trainable_variables": model.trainable_variables,
        "non_trainable_variables": model.non_trainable_variables,
    }
    _load_groups(path, groups, lambda v: np.empty(v.shape, v.dtype), partial=True)
