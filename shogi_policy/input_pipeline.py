"""tf.data pipeline from shard directories to batches of compact records and training targets.

Pure tf.data and TF ops (no Python in the loop), local or gs:// paths. Per-element tf.data overhead
is what limits throughput, so an element is a chunk of `chunk_records` consecutive records, not
one record: files are read in chunks (FixedLengthRecordDataset with record_bytes = chunk * 100),
chunks of several files are interleaved and shuffled, decoded, re-cut into batches of records
(Dataset.rebatch: one copy) and the rows of each batch are shuffled. Shards are pre-shuffled
by the converter, so shuffling chunks plus rows within batches mixes positions well.

A shard whose length is not a multiple of the chunk ends in a shorter tail chunk (read with the
main part as footer). It flows through the same stream: rebatch joins chunks of any length into
full batches, so no record is skipped; only the last partial batch of a finite (repeat=False)
pass is dropped, as batching with drop_remainder requires. With repeat=True the chunk stream repeats
before batching, so batches straddle epochs and nothing is dropped at all.
"""

import tensorflow as tf

from shogi_policy import augment, encoding, shards

DEFAULT_CHUNK_RECORDS = 256
DEFAULT_SHUFFLE_CHUNKS = 1024  # 262,144 records (26 MB) with the default chunk
DEFAULT_CYCLE_LENGTH = 16
_READ_BUFFER_BYTES = 4 << 20  # larger reads help gs://


def _read_chunks(path, length, chunk_records):
    """Dataset of the byte strings of one shard in chunks of chunk_records records, then its shorter tail."""
    chunk_bytes = chunk_records * encoding.RECORD_BYTES
    tail = length % chunk_records
    main = tf.data.FixedLengthRecordDataset(
        path, chunk_bytes, footer_bytes=tail * encoding.RECORD_BYTES, buffer_size=_READ_BUFFER_BYTES
    )
    rest = tf.data.FixedLengthRecordDataset(
        path,
        tf.maximum(tail, 1) * encoding.RECORD_BYTES,  # a record length of 0 is invalid; empty then
        header_bytes=(length - tail) * encoding.RECORD_BYTES,
    )
    return main.concatenate(rest.take(tf.minimum(tail, 1)))


def _decode(chunk):
    """uint8 [n, 100] records of one chunk's bytes."""
    return tf.reshape(tf.io.decode_raw(chunk, tf.uint8), [-1, encoding.RECORD_BYTES])


def targets(records, value_targets=False):
    """Training targets of records uint8 [B, 100].

    Returns:
      int32 [B] policy target (encoding.pack_policy_targets), or with value_targets the dict
      {"policy": that, "value": float32 [B] result / 2}.
    """
    fields = encoding.unpack_records_tf(records)
    policy = encoding.pack_policy_targets(fields["label"], fields["result"])
    if not value_targets:
        return policy
    return {"policy": policy, "value": tf.cast(fields["result"], tf.float32) / encoding.RESULT_WIN}


def make_dataset(
    data_dir,
    split,
    batch_size,
    *,
    shuffle=True,
    repeat=True,
    seed=None,
    value_targets=False,
    mirror=False,
    chunk_records=DEFAULT_CHUNK_RECORDS,
    shuffle_chunks=DEFAULT_SHUFFLE_CHUNKS,
    cycle_length=DEFAULT_CYCLE_LENGTH,
):
    """Batches of records and targets from a shard directory.

    Args:
      data_dir: shard directory (local or gs://) with manifest.json.
      split: "train" or "test".
      batch_size: records per batch (static; the last partial batch of a finite pass is dropped).
      shuffle: shuffle files, chunks and rows within batches (each epoch differently).
      repeat: repeat forever (set steps_per_epoch in fit).
      seed: int for a deterministic order (tests); None for the fastest, non-deterministic one.
      value_targets: targets as {"policy", "value"} dict for a model with a value head.
      mirror: mirror each record left-right (augment.mirror_records: board and move label) with
        probability 1/2, drawn statelessly from a seeded stream (with seed, the same records are
        mirrored on every run and a resumed run's skip() lands on the same stream). For training only.
      chunk_records: records read per tf.data element.
      shuffle_chunks: chunks in the shuffle buffer.
      cycle_length: shards read at the same time.
    Returns:
      tf.data.Dataset of (records int32 [batch_size, 100], target int32 [batch_size]) or
      (records, {"policy": int32 [batch_size], "value": float32 [batch_size]}).
    """
    if batch_size < 1 or chunk_records < 1:
        raise ValueError(f"batch_size ({batch_size}) and chunk_records ({chunk_records}) must be positive")
    paths = shards.shard_paths(data_dir, split)
    lengths = shards.shard_lengths(paths)
    if sum(lengths) < batch_size:
        raise ValueError(f"{data_dir}: split {split!r} has {sum(lengths)} positions, fewer than a batch")
    deterministic = seed is not None or not shuffle
    # Distinct seeds for the files, chunks and rows shuffles and the mirror draws (one seed would correlate them).
    seeds = [None] * 4 if seed is None else [seed, seed + 1, seed + 2, seed + 3]

    files = tf.data.Dataset.from_tensor_slices((paths, tf.constant(lengths, tf.int64)))
    if shuffle:
        files = files.shuffle(len(paths), seed=seeds[0], reshuffle_each_iteration=True)
    chunks = files.interleave(
        lambda path, length: _read_chunks(path, length, chunk_records),
        cycle_length=min(cycle_length, len(paths)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic,
    )
    if repeat:
        chunks = chunks.repeat()
    if shuffle:
        chunks = chunks.shuffle(shuffle_chunks, seed=seeds[1], reshuffle_each_iteration=True)
    batches = chunks.map(_decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    batches = batches.rebatch(batch_size, drop_remainder=True)
    if shuffle:
        row_seeds = tf.data.Dataset.random(seed=seeds[2], rerandomize_each_iteration=True).batch(2)
        batches = tf.data.Dataset.zip(batches, row_seeds).map(
            lambda records, row_seed: tf.random.experimental.stateless_shuffle(records, row_seed),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=deterministic,
        )
    if mirror:
        mirror_seeds = tf.data.Dataset.random(seed=seeds[3], rerandomize_each_iteration=True).batch(2)
        batches = tf.data.Dataset.zip(batches, mirror_seeds).map(
            augment.random_mirror, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic
        )
    dataset = batches.map(
        # int32 from here on: the model's input dtype, and 400 bytes a position is nothing to infeed.
        lambda records: (tf.cast(records, tf.int32), targets(records, value_targets)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)
