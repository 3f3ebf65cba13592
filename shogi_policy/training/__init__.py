"""training: the trainer, callable from Python without absl.

The run configuration (frozen dataclasses that check their own ranges), tasks (shogi shards, MNIST) behind one
interface, strategies (TPUStrategy, MirroredStrategy, the default strategy; DataParallel under JAX), the Keras
callbacks of a run, and `train(config)`. Loads no serving code.

May import: core, data, model
"""
