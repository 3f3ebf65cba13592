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

Every record is validated (record_format.record_problems_tf) once rebatched, where tf.data's cost per op
is shared by a whole batch, in the map that also shuffles rows and casts ("fail"; one stage fewer
to pay). Each record carries its location (shard number and index in the shard) that far, so an
invalid record stops the pipeline with an error naming the file and the record's index in it
("fail"), or is dropped with a logged warning and a running count and the batches are refilled
("skip"; a split without valid records then fails instead of being read forever).
"""

import functools
import sys

import tensorflow as tf

from shogi_policy.core import record_format
from shogi_policy.core.bad_records import BAD_RECORDS
from shogi_policy.data import augment, shard_manifest

DEFAULT_CHUNK_RECORDS = 256
DEFAULT_SHUFFLE_CHUNKS = 1024  # 262,144 records (26 MB) with the default chunk
DEFAULT_CYCLE_LENGTH = 16
_LOCATION_FILE = 1 << 40  # a record's location: shard number * this + index in the shard
_SKIP_HINT = (
    "; shogi-policy-train --bad_records=skip (make_dataset argument bad_records) skips invalid records"
)
_READ_BUFFER_BYTES = 4 << 20  # larger reads help gs://


def _read_chunks(number, path, length, chunk_records):
    """Dataset of (bytes, location of the first record) of the chunks of shard `number`, then its tail chunk.

    A location is number * _LOCATION_FILE + index of the record in its shard.
    """
    chunk_bytes = chunk_records * record_format.RECORD_BYTES
    tail = length % chunk_records
    main = tf.data.FixedLengthRecordDataset(
        path, chunk_bytes, footer_bytes=tail * record_format.RECORD_BYTES, buffer_size=_READ_BUFFER_BYTES
    )
    rest = tf.data.FixedLengthRecordDataset(
        path,
        tf.maximum(tail, 1) * record_format.RECORD_BYTES,  # a record length of 0 is invalid; empty then
        header_bytes=(length - tail) * record_format.RECORD_BYTES,
    )
    first = number * _LOCATION_FILE
    starts = tf.data.Dataset.range(first, first + length, chunk_records)  # the tail starts at a multiple too
    return tf.data.Dataset.zip(main.concatenate(rest.take(tf.minimum(tail, 1))), starts)


def _decode(chunk, start):
    """(records uint8 [n, 100], locations int64 [n]) of one chunk's bytes and its first record's location."""
    records = tf.reshape(tf.io.decode_raw(chunk, tf.uint8), [-1, record_format.RECORD_BYTES])
    return records, start + tf.range(tf.shape(records, out_type=tf.int64)[0])


def _first_invalid(problems, locations, paths):
    """'path: record i: problem' of the first nonzero of problems int32 [B] (of records at locations int64 [B])."""
    first = tf.argmax(tf.cast(problems != 0, tf.int32), output_type=tf.int32)
    return tf.strings.join(
        [
            tf.gather(paths, locations[first] // _LOCATION_FILE),
            ": record ",
            tf.strings.as_string(locations[first] % _LOCATION_FILE),
            ": ",
            tf.gather(record_format.RECORD_PROBLEMS, problems[first]),
        ]
    )


def _fail_on_invalid(records, locations, paths):
    """records uint8 [B, 100] at locations int64 [B]; InvalidArgumentError naming the first invalid one."""
    problems = record_format.record_problems_tf(records)

    def refuse():
        message = tf.strings.join([_first_invalid(problems, locations, paths), _SKIP_HINT])
        with tf.control_dependencies([tf.debugging.Assert(False, [message])]):
            return tf.identity(records)

    return tf.cond(tf.reduce_all(problems == 0), lambda: records, refuse)


def _drop_invalid(records, locations, paths):
    """(valid rows of records uint8 [B, 100], int64 count dropped, 'path: record i: problem' of the first or '')."""
    problems = record_format.record_problems_tf(records)
    valid = problems == 0
    first = tf.cond(
        tf.reduce_all(valid), lambda: tf.constant(""), lambda: _first_invalid(problems, locations, paths)
    )
    return tf.boolean_mask(records, valid), tf.size(valid, tf.int64) - tf.math.count_nonzero(valid), first


def _count_dropped(state, batch, limit):
    """Scan step over _drop_invalid's batches: state (dropped in a row, dropped in all) int64, logs each drop.

    More than `limit` invalid records in a row raise InvalidArgumentError: a split without valid records
    would otherwise be read forever.
    """
    in_a_row, total = state
    records, dropped, first = batch
    in_a_row = tf.where(tf.shape(records)[0] > 0, tf.constant(0, tf.int64), in_a_row + dropped)
    total += dropped

    def log():
        # To stderr: TF's C++ log (absl's output stream in tf.print) hides warnings at TF_CPP_MIN_LOG_LEVEL=2.
        as_string = tf.strings.as_string
        line = tf.strings.join(
            [
                "WARNING: skipped ",
                as_string(dropped),
                " invalid records (",
                as_string(total),
                " so far); the first: ",
                first,
            ]
        )
        logged = tf.print(line, output_stream=sys.stderr)
        with tf.control_dependencies([logged]):
            return tf.identity(dropped)

    logged = tf.cond(dropped > 0, log, lambda: dropped)
    message = tf.strings.join(
        [
            "skipped ",
            tf.strings.as_string(in_a_row),
            " invalid records in a row (no valid record in the split?); the latest: ",
            first,
        ]
    )
    with tf.control_dependencies([logged, tf.debugging.Assert(in_a_row <= limit, [message])]):
        return (in_a_row, total), tf.identity(records)


def targets(records, value_targets=False):
    """Training targets of records uint8 [B, 100].

    Returns:
      int32 [B] policy target (record_format.pack_policy_targets), or with value_targets the dict
      {"policy": that, "value": float32 [B] result / 2}.
    """
    fields = record_format.unpack_records_tf(records)
    policy = record_format.pack_policy_targets(fields["label"], fields["result"])
    if not value_targets:
        return policy
    return {"policy": policy, "value": tf.cast(fields["result"], tf.float32) / record_format.RESULT_WIN}


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
    bad_records="fail",
    host_index=0,
    num_hosts=1,
    files=None,
):
    """Batches of validated records and targets from a shard directory.

    Args:
      data_dir: shard directory (local or gs://) with manifest.json.
      split: "train" or "test".
      batch_size: records per batch (static; the last partial batch of a finite pass is dropped); in a
        multi-host run this host's share of the global batch (the trainer's local_batch_size).
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
      bad_records: one of BAD_RECORDS: an invalid record (record_format.record_problems) stops iteration with
        an InvalidArgumentError naming its shard file and index ("fail"), or is dropped and logged ("skip").
      host_index, num_hosts: read only the shard files host_index::num_hosts (multi-host JAX: each host
        feeds its own devices).
      files: the split's shard_manifest.ShardFiles, already checked against the manifest (a trainer's task
        reads the manifest once for all its splits); None: read and checked here.
    Returns:
      tf.data.Dataset of (records int32 [batch_size, 100], target int32 [batch_size]) or
      (records, {"policy": int32 [batch_size], "value": float32 [batch_size]}).
    """
    _check_arguments(batch_size, chunk_records, bad_records)
    if files is None:
        files = shard_manifest.shard_files(data_dir, split)  # sizes, and SHA-256s of local files
    paths, lengths = _host_files(
        shard_manifest.check_nonempty(files, data_dir, split), data_dir, split, host_index, num_hosts
    )
    if sum(lengths) < batch_size:
        raise ValueError(f"{data_dir}: split {split!r} has {sum(lengths)} positions, fewer than a batch")
    deterministic = seed is not None or not shuffle
    parallel = {"num_parallel_calls": tf.data.AUTOTUNE, "deterministic": deterministic}
    file_seed, chunk_seed, row_seed, mirror_seed = _stream_seeds(seed)
    chunks = _chunks(paths, lengths, chunk_records, cycle_length, shuffle, repeat, file_seed, deterministic)
    if shuffle:
        chunks = chunks.shuffle(shuffle_chunks, seed=chunk_seed, reshuffle_each_iteration=seed is None)
    names = tf.constant(paths)
    batches = chunks.map(_decode, **parallel)
    if bad_records == "fail":
        batches = batches.rebatch(batch_size, drop_remainder=True)  # checked in _finish
    else:
        limit = _skip_limit(sum(lengths), shuffle_chunks * chunk_records if shuffle else 0)
        batches = _valid_batches(batches, names, batch_size, limit, parallel)
    finish = functools.partial(
        _finish,
        names=names,
        check=bad_records == "fail",
        shuffle=shuffle,
        mirror=mirror,
        value_targets=value_targets,
    )
    row_seeds, mirror_seeds = (
        tf.data.Dataset.random(seed=stream_seed, rerandomize_each_iteration=stream_seed is None).batch(2)
        for stream_seed in (row_seed, mirror_seed)
    )
    dataset = tf.data.Dataset.zip(batches, row_seeds, mirror_seeds).map(finish, **parallel)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _check_arguments(batch_size, chunk_records, bad_records):
    """ValueError for a batch or chunk below one record, or bad_records not one of BAD_RECORDS."""
    if batch_size < 1 or chunk_records < 1:
        raise ValueError(f"batch_size ({batch_size}) and chunk_records ({chunk_records}) must be positive")
    if bad_records not in BAD_RECORDS:
        raise ValueError(f"bad_records must be one of {BAD_RECORDS}, got {bad_records!r}")


def _host_files(files, data_dir, split, host_index, num_hosts):
    """(paths, lengths) of the shard files host_index::num_hosts of a split's ShardFiles; ValueError if too few."""
    if not 0 <= host_index < num_hosts <= len(files.paths):
        raise ValueError(
            f"{data_dir}: split {split!r} has {len(files.paths)} shard files, too few for host {host_index} of "
            f"{num_hosts} (each host reads its own files: convert with at least {num_hosts} shards a split)"
        )
    return files.paths[host_index::num_hosts], files.lengths[host_index::num_hosts]


def _stream_seeds(seed):
    """Seeds of the files, chunks and rows shuffles and the mirror draws: distinct (one seed would correlate
    them), or four Nones without a seed."""
    return [None] * 4 if seed is None else [seed, seed + 1, seed + 2, seed + 3]


def _chunks(paths, lengths, chunk_records, cycle_length, shuffle, repeat, file_seed, deterministic):
    """Dataset of (chunk bytes, location of its first record) over the files, pass after pass (one if not repeat).

    With a seed, every iterator of the dataset yields the same stream: Keras may open one to inspect a batch
    before training, and a resumed run's skip() must land where the interrupted run was. So the files' order of
    each pass is drawn from (seed, pass) rather than reshuffled per iterator.
    """
    file_table = (tf.range(len(paths), dtype=tf.int64), tf.constant(paths), tf.constant(lengths, tf.int64))

    def one_pass(pass_index):
        order = tf.range(len(paths), dtype=tf.int64)
        if shuffle and file_seed is not None:
            order = tf.random.experimental.stateless_shuffle(
                order, tf.stack([tf.constant(file_seed, tf.int64), pass_index])
            )
        elif shuffle:
            order = tf.random.shuffle(order)
        files = tf.data.Dataset.from_tensor_slices(tuple(tf.gather(column, order) for column in file_table))
        return files.interleave(
            lambda number, path, length: _read_chunks(number, path, length, chunk_records),
            cycle_length=min(cycle_length, len(paths)),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=deterministic,
        )

    return (tf.data.Dataset.counter() if repeat else tf.data.Dataset.range(1)).flat_map(one_pass)


def _skip_limit(positions, shuffle_buffer_records):
    """Invalid records in a row after which "skip" gives up: in a row, a valid record of the split comes within
    one pass plus the time it can spend in the chunk shuffle buffer (many buffer lengths, at the outside)."""
    return 2 * positions + 20 * shuffle_buffer_records


def _valid_batches(batches, names, batch_size, limit, parallel):
    """Full batches of the valid records of decoded (records, locations) chunks ("skip"): dropping shortens
    batches, so they are cut to size again after the check; more than limit invalid records in a row fail."""
    batches = batches.rebatch(batch_size).map(
        lambda records, locations: _drop_invalid(records, locations, names), **parallel
    )
    zero = tf.constant(0, tf.int64)
    batches = batches.scan((zero, zero), lambda state, batch: _count_dropped(state, batch, limit))
    return batches.rebatch(batch_size, drop_remainder=True)


def _finish(batch, row_seed, mirror_seed, *, names, check, shuffle, mirror, value_targets):
    """(int32 records, targets) of a batch: checked (check: "fail"), rows shuffled and mirrored; one map, as
    tf.data pays per stage."""
    records = _fail_on_invalid(*batch, names) if check else batch
    if shuffle:
        records = tf.random.experimental.stateless_shuffle(records, row_seed)
    if mirror:
        records = augment.random_mirror(records, mirror_seed)
    # int32 from here on: the model's input dtype, and 400 bytes a position is nothing to infeed.
    return tf.cast(records, tf.int32), targets(records, value_targets)
