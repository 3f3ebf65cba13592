"""Which host of a run this process is: the one place the trainer, its tasks and its strategies ask.

A multi-host run is JAX's (--jax_distributed on a TPU pod): every host runs the same command, reads its own
shard files and feeds its share of the global batch; only the first host writes files of its own. Under
TensorFlow, and under JAX on one host, this process is host 0 of 1.
"""

import keras


def process():
    """(this process's index, number of processes): JAX's multi-host runtime, else (0, 1)."""
    if keras.backend.backend() != "jax":
        return 0, 1
    import jax  # (JAX backend only)

    return jax.process_index(), jax.process_count()


def is_primary():
    """False on the hosts other than the first of a multi-host JAX run: they write no files of their own."""
    return process()[0] == 0
