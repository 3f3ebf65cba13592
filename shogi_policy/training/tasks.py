"""What the trainer trains: a task bundles the model builder, the datasets, the loss and metrics.

  ShogiTask  policy (and optional value) network on record shards (--data_dir)
  MnistTask  the residual tower on MNIST from tensorflow-datasets: the smoke test of a runtime

The trainer picks one by TaskConfig.dataset (TASKS), makes it of the run's config.TaskConfig and never asks
which it holds.
"""

from shogi_policy.data import input_pipeline, mnist, shard_manifest
from shogi_policy.model import losses, mnist_net, network
from shogi_policy.runtime import hosts
from shogi_policy.training.config import DATASETS


class ShogiTask:
    """Shogi policy training on a shard directory, with the loss settings of a config.TaskConfig."""

    def __init__(self, config):
        self.config = config
        self._shards = None

    def _checked_shards(self):
        """(manifest, {split: shard_manifest.ShardFiles}) of --data_dir: the manifest read once, each split's files
        checked against it once (every read and stat is a round trip on gs://); ValueError naming what is wrong."""
        if self._shards is None:
            data_dir = self.config.data_dir
            manifest = shard_manifest.read_manifest(data_dir)
            train = shard_manifest.shard_files(data_dir, "train", manifest)
            files = {"train": shard_manifest.check_nonempty(train, data_dir, "train")}
            for split in manifest["splits"].keys() - files:
                files[split] = shard_manifest.shard_files(data_dir, split, manifest)
            self._shards = manifest, files
        return self._shards

    def check_options(self):
        """A problem with the settings this task needs, as a message naming the flag, or None.

        The shard directory is checked here, before anything is built or written: every shard of its
        manifest whole (shard_manifest.shard_files) and a training split that holds positions.
        """
        if not self.config.data_dir:
            return "--data_dir is required for --dataset=shogi"
        try:
            self._checked_shards()
        except ValueError as error:
            return str(error)
        return None

    def data_identity(self):
        """The manifest checksum of --data_dir's shards (shard_manifest.MANIFEST_CHECKSUM): what a resume checks."""
        return self._checked_shards()[0][shard_manifest.MANIFEST_CHECKSUM]

    def build_model(self, network_config, nested_xla=False):
        return network.build_policy_model(network_config, nested_xla=nested_xla)

    def num_examples(self, split):
        manifest, _ = self._checked_shards()
        return shard_manifest.num_positions(self.config.data_dir, split, manifest)

    def make_dataset(self, split, local_batch_size, network_config, *, shuffle, seed):
        """This host's batches of a split, repeated: (records int32 [local_batch_size, 100], targets).

        Multi-host JAX: this host's shard files and its share of the global batch (Keras assembles the
        global batch from the hosts' parts).
        """
        host_index, num_hosts = hosts.process()
        return input_pipeline.make_dataset(
            self.config.data_dir,
            split,
            local_batch_size,
            host_index=host_index,
            num_hosts=num_hosts,
            shuffle=shuffle,
            repeat=True,
            seed=seed,
            value_targets=network_config.value_head,
            mirror=self.config.mirror and split == "train",
            bad_records=self.config.bad_records,
            files=self._checked_shards()[1].get(split),  # None for a split not in the manifest: read, refused
        )

    def compile_args(self, network_config):
        """loss, loss_weights and metrics of Model.compile for the network's heads."""
        task = self.config
        policy_loss = losses.PolicyLoss(
            label_smoothing=task.label_smoothing,
            loser_weight=task.loser_weight,
            draw_weight=task.draw_weight,
        )
        if not network_config.value_head:
            return {"loss": policy_loss, "metrics": losses.policy_metrics()}
        return {
            "loss": {"policy": policy_loss, "value": losses.value_loss()},
            "loss_weights": {"policy": 1.0, "value": task.value_loss_weight},
            "metrics": {"policy": losses.policy_metrics(), "value": losses.value_metrics()},
        }


class MnistTask:
    """MNIST digits through the same trainer, strategies and checkpoints (single-host: config.TrainConfig)."""

    def __init__(self, config):
        self.config = config

    def check_options(self):
        if self.config.eval_tsv:
            return "--eval_tsv needs --dataset=shogi"
        return mnist.unavailable()

    def data_identity(self):
        """None: tensorflow-datasets names and versions MNIST itself."""
        return None

    def build_model(self, network_config, nested_xla=False):
        del nested_xla  # images need no feature layer
        return mnist_net.build_model(network_config)

    def num_examples(self, split):
        return mnist.num_examples(split)

    def make_dataset(self, split, local_batch_size, network_config, *, shuffle, seed):
        del network_config
        return mnist.make_dataset(split, local_batch_size, shuffle=shuffle, repeat=True, seed=seed)

    def compile_args(self, network_config):
        del network_config
        return {"loss": mnist_net.loss(), "metrics": mnist_net.metrics()}


TASKS = dict(zip(DATASETS, (ShogiTask, MnistTask), strict=True))  # by TaskConfig.dataset
