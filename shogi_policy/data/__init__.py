"""data: game records in, training batches out.

Readers per record format (csa, kif, usi_lines, hcpe) yield the Games of game_io; records dispatches a file to
its reader and turns Games into 100-byte position records. shards writes and reads the shard files, shard_manifest
their manifest and the checks against it, convert runs records -> shards, input_pipeline is the tf.data pipeline
(shards -> static batches of validated records; pure TF ops, what runs on a TPU host), augment the exact
left-right mirror, move_match the evaluation positions of the move-match measure, and mnist the smoke-test
dataset from tensorflow-datasets.

May import: core
"""
