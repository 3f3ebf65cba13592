"""What the trainer trains: a task bundles the model builder, the datasets, the loss and metrics.

  ShogiTask  policy (and optional value) network on record shards (--data_dir)
  MnistTask  the residual tower on MNIST from tensorflow-datasets: the smoke test of a runtime

The trainer picks one by --dataset (TASKS) and never asks which it holds.
"""

import keras

from shogi_policy.data import input_pipeline, mnist, shards
from shogi_policy.model import losses, mnist_net, network


def hosts():
    """(this process's index, number of processes): JAX's multi-host runtime, else (0, 1)."""
    if keras.backend.backend() != "jax":
        return 0, 1
    import jax  # noqa: PLC0415

    return jax.process_index(), jax.process_count()


class ShogiTask:
    """Shogi policy training on a shard directory, with the trainer's loss flags."""

    def __init__(self, options):
        self.options = options

    def check_options(self):
        """A problem with the flags this task needs, as a message, or None.

        The shard directory is checked here, before anything is built or written: every shard of its
        manifest whole (shards.shard_paths) and a training split that holds positions.
        """
        data_dir = self.options.data_dir
        if not data_dir:
            return "--data_dir is required for --dataset=shogi"
        try:
            shards.nonempty_shard_paths(data_dir, "train")
            for split in set(shards.read_manifest(data_dir)["splits"]) - {"train"}:
                shards.shard_paths(data_dir, split)
        except ValueError as error:
            return str(error)
        return None

    def build_model(self, config, nested_xla=False):
        return network.build_policy_model(config, nested_xla=nested_xla)

    def num_examples(self, split):
        return shards.num_positions(self.options.data_dir, split)

    def make_dataset(self, split, batch_size, config, *, shuffle, seed):
        """Global batches of a split, repeated: (records int32 [B, 100], targets).

        Multi-host JAX: this host's shard files and its share of the global batch (Keras assembles the
        global batch from the hosts' parts).
        """
        host_index, num_hosts = hosts()
        if batch_size % num_hosts:
            raise ValueError(f"batch size {batch_size} is not a multiple of the {num_hosts} hosts")
        return input_pipeline.make_dataset(
            self.options.data_dir,
            split,
            batch_size // num_hosts,
            host_index=host_index,
            num_hosts=num_hosts,
            shuffle=shuffle,
            repeat=True,
            seed=seed,
            value_targets=config.value_head,
            mirror=self.options.mirror and split == "train",
            bad_records=self.options.bad_records,
        )

    def compile_args(self, config):
        """loss, loss_weights and metrics of Model.compile for the network's heads."""
        options = self.options
        policy_loss = losses.PolicyLoss(
            label_smoothing=options.label_smoothing,
            loser_weight=options.loser_weight,
            draw_weight=options.draw_weight,
        )
        if not config.value_head:
            return {"loss": policy_loss, "metrics": losses.policy_metrics()}
        return {
            "loss": {"policy": policy_loss, "value": losses.value_loss()},
            "loss_weights": {"policy": 1.0, "value": options.value_loss_weight},
            "metrics": {"policy": losses.policy_metrics(), "value": losses.value_metrics()},
        }


class MnistTask:
    """MNIST digits through the same trainer, strategies and checkpoints."""

    def __init__(self, options):
        self.options = options

    def check_options(self):
        if self.options.jax_distributed:
            return "--dataset=mnist is single-host: drop --jax_distributed"
        if self.options.eval_tsv:
            return "--eval_tsv needs --dataset=shogi"
        return mnist.unavailable()

    def build_model(self, config, nested_xla=False):
        del nested_xla  # images need no feature layer
        return mnist_net.build_model(config)

    def num_examples(self, split):
        return mnist.num_examples(split)

    def make_dataset(self, split, batch_size, config, *, shuffle, seed):
        del config
        return mnist.make_dataset(split, batch_size, shuffle=shuffle, repeat=True, seed=seed)

    def compile_args(self, config):
        del config
        return {"loss": mnist_net.loss(), "metrics": mnist_net.metrics()}


TASKS = {"shogi": ShogiTask, "mnist": MnistTask}
