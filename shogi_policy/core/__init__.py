"""core: the shogi facts every other folder shares, and the process environment that must precede TensorFlow.

record_format (the 100-byte position record: layout, packing, the one record validator in numpy and TF, policy
targets), policy_labels (dlshogi's move labels and legal-move masks), shogi_rules (pieces and sides, SFEN and USI
position parsing, the one legality rule), quoting (bad input quoted length-capped in error messages), file_io (files
written whole or not at all, and the one writer of JSON files) and tpu_runtime (chips found on the PCI bus, the
variables set before TensorFlow or JAX loads). Pure functions over numpy, cshogi and TensorFlow ops; nothing here
builds a model or reads a shard.

May import: nothing
"""
