"""core: the shogi facts and file primitives every other folder shares.

record_format (the 100-byte position record: layout, packing, the one record validator in numpy and TF, policy
targets), policy_labels (dlshogi's move labels and legal-move masks), shogi_rules (pieces and sides, SFEN and USI
position parsing, the one legality rule), quoting (bad input quoted length-capped in error messages), file_io
(files written whole or not at all, and the one writer of JSON files) and bad_records (what a reader does with an
invalid record). Pure functions over numpy, cshogi and
TensorFlow ops; nothing here builds a model, reads a shard or sets up the process.

May import: nothing
"""
