"""data: game records in, training batches out.

Readers per record format (CSA, KIF, USI move lines, hcpe) into games, duplicate detection, the shard files and
their manifest, the converter (records -> shards), the tf.data pipeline (shards -> static batches of validated
records; pure TF ops, what runs on a TPU host), the exact left-right mirror, the evaluation positions of the
move-match measure, and MNIST from tensorflow-datasets (the smoke-test dataset).

May import: core
"""
