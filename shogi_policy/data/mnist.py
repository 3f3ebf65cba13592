"""MNIST through the same trainer (--dataset=mnist): a smoke test of strategies, checkpoints and logging.

Images come from tensorflow-datasets (tfds.load("mnist")); the model is shogi_policy.model.mnist_net.
tensorflow-datasets downloads MNIST
into its data directory (TFDS_DATA_DIR, default ~/tensorflow_datasets) the first time; without the network
that download retries for minutes, so unavailable() answers first, in seconds.
"""

import socket
import threading

import tensorflow as tf
import tensorflow_datasets as tfds

_SHUFFLE_BUFFER = 10_000

# Where tensorflow-datasets downloads MNIST from (its mnist builder's URLs), probed before a download.
DOWNLOAD_ADDRESS = ("storage.googleapis.com", 443)
_PROBE_SECONDS = 5


def _reachable(address, seconds=_PROBE_SECONDS):
    """Whether a TCP connection to (host, port) opens within seconds (name lookup included)."""
    opened = []

    def connect():
        try:
            socket.create_connection(address, timeout=seconds).close()
            opened.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=connect, daemon=True)  # getaddrinfo has no timeout of its own
    thread.start()
    thread.join(seconds)
    return bool(opened)


def unavailable():
    """Why MNIST cannot be read (a message), or None: it is prepared in the data directory or can be downloaded."""
    try:
        tfds.load("mnist", split="test", download=False)
        return None
    except AssertionError as error:  # tfds: "Dataset mnist: could not find data in <data_dir>. ..."
        missing = str(error).split(".")[0]
    if _reachable(DOWNLOAD_ADDRESS):
        return None
    return (
        f"--dataset=mnist: {missing}, and {DOWNLOAD_ADDRESS[0]} cannot be reached to download it: "
        "tensorflow-datasets needs the network once, or TFDS_DATA_DIR naming a directory where MNIST is "
        "prepared (tfds build mnist --data_dir=DIR on a machine with the network, then copy DIR)"
    )


def _load(split):
    """tf.data of (image uint8 [28, 28, 1], label int64 []) for split "train" or "test"."""
    return tfds.load("mnist", split=split, as_supervised=True)


def num_examples(split):
    """Number of examples in a split."""
    dataset = _load(split)
    count = int(dataset.cardinality())
    if count < 0:  # unknown, e.g. under tfds.testing.mock_data: count once
        count = int(dataset.reduce(0, lambda total, _: total + 1))
    return count


def make_dataset(split, batch_size, *, shuffle=True, repeat=True, seed=None):
    """Batches (images float32 [B, 28, 28, 1] in 0..255, labels int32 [B]) with a static batch size.

    Images leave the pipeline as float32 because TPUs take no uint8 tensors.
    """
    dataset = _load(split).map(lambda image, label: (tf.cast(image, tf.float32), tf.cast(label, tf.int32)))
    if shuffle:
        dataset = dataset.shuffle(_SHUFFLE_BUFFER, seed=seed)
    if repeat:
        dataset = dataset.repeat()
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
