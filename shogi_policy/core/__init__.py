"""core: the shogi facts every other folder shares, and the process environment that must precede TensorFlow.

The 100-byte position record (layout, packing, the one record validator in numpy and TF), dlshogi's move labels
and legal-move masks, positions (SFEN and USI parsing, the one legality rule), the JSON files every command
writes, and the TPU runtime environment (chips found on the PCI bus, the variables set before TensorFlow or JAX
loads). Pure functions over numpy, cshogi and TensorFlow ops; nothing here builds a model or reads a shard.

May import: nothing
"""
