"""tf.distribute strategy selection: TPU, GPUs (mirrored) or the default strategy on CPU."""

import tensorflow as tf
from absl import logging

STRATEGIES = ("auto", "tpu", "mirrored", "default")


def _tpu_strategy(tpu):
    """TPUStrategy on `tpu` ("local" on a TPU VM, a name or grpc:// address for TPU Node / pods)."""
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    if tpu != "local":
        # Remote TPU workers (TPU Node, pods) need the cluster connected first; a TPU VM does not.
        tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def _auto_strategy(tpu):
    """TPUStrategy when a TPU answers, else mirrored over the GPUs, else the default strategy."""
    try:
        return _tpu_strategy(tpu)
    except (tf.errors.NotFoundError, ValueError) as error:  # 'TPUs not found' on CPU/GPU hosts
        logging.info("no TPU (%s)", str(error).splitlines()[0])
    if tf.config.list_physical_devices("GPU"):
        return _mirrored_strategy()
    return tf.distribute.get_strategy()


def _mirrored_strategy():
    """MirroredStrategy over all GPUs, or over all logical CPUs where there is no GPU (tests)."""
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([device.name for device in devices])


def make_strategy(name="auto", tpu="local"):
    """A tf.distribute.Strategy by name.

    Args:
      name: "tpu", "mirrored" (all GPUs, or all logical CPUs when there is no GPU), "default",
        or "auto": TPU when one answers at `tpu`, else mirrored over GPUs when there are any,
        else the default strategy.
      tpu: TPUClusterResolver address; "local" for the TPU of a TPU VM (Colab, Cloud TPU VM).
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")
    strategy = {
        "auto": lambda: _auto_strategy(tpu),
        "tpu": lambda: _tpu_strategy(tpu),
        "mirrored": _mirrored_strategy,
        "default": tf.distribute.get_strategy,
    }[name]()
    logging.info("strategy %s with %d replicas", type(strategy).__name__, strategy.num_replicas_in_sync)
    return strategy
