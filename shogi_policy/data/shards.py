"""Shard directories of compact position records: names, reading, and the shuffling writer.

A shard directory holds raw concatenated 100-byte records (no header) in files named
`{split}-{index:05d}-of-{count:05d}.rec`, plus `manifest.json` (shogi_policy.data.shard_manifest: what the
shards hold, their sizes and SHA-256, checked by every reader). All output goes through tf.io.gfile, so gs://
directories work; each file is written under a `.tmp` name and renamed when complete, so a reader never sees
half a shard.

`ShardWriter` shuffles the positions of a whole split with bounded memory: it scatters each position
to one of `num_buckets` local temporary bucket files chosen uniformly at random (in a hidden directory
of the output directory, or of the system's temporary directory for gs:// output; the next writer for
the same output removes those of killed runs), then, on close,
shuffles each bucket in memory and cuts the concatenation of the buckets (in random order) into
equal shards. Since every bucket is a uniformly random subset of the split, the result is a uniform
random permutation of the split: contiguous chunks of a shard mix positions of many games.
Memory: one bucket (about positions * 100 / num_buckets bytes) plus one shard on close, and the
flush buffer (flush_positions records) while adding.
"""

import hashlib
import os
import re
import shutil
import tempfile

import numpy as np
import tensorflow as tf
from absl import logging

from shogi_policy.core import file_io, record_format
from shogi_policy.data import shard_manifest

SPLITS = ("train", "test")
_SHARD_NAME = re.compile(r"^(train|test)-\d{5}-of-\d{5}\.rec$")


def shard_name(split, index, count):
    """Basename of shard index (0-based) of count in split, e.g. 'train-00000-of-00004.rec'."""
    return f"{split}-{index:05d}-of-{count:05d}.rec"


def read_records(data_dir, split, limit=None):
    """Yields (path, records uint8 [n, 100]) of each shard file of split in manifest order, `limit` records in all.

    The records are as stored: record_format.check_records or records_to_boards(records, path) validate them.
    """
    files = shard_manifest.shard_files(data_dir, split)
    remaining = limit
    for path, length in zip(files.paths, files.lengths, strict=True):
        if remaining is not None and remaining <= 0:
            return
        with tf.io.gfile.GFile(path, "rb") as f:
            data = f.read()
        if len(data) != length * record_format.RECORD_BYTES:
            raise ValueError(f"{path} changed while it was read")
        records = np.frombuffer(data, dtype=np.uint8).reshape(-1, record_format.RECORD_BYTES)[:remaining]
        if remaining is not None:
            remaining -= len(records)
        yield path, records


def write_records(data_dir, records_by_split, positions_per_shard=1 << 20, seed=0):
    """A shard directory of in-memory records {split: uint8 [n, 100]}, shuffled, with its manifest.

    For records made outside the converter (tests, benchmarks, generated positions). Returns the manifest.
    """
    splits = {}
    for split, records in records_by_split.items():
        writer = ShardWriter(data_dir, split, positions_per_shard, seed)
        writer.add(records)
        games = len(np.unique(record_format.unpack_records(records)["game_id"]))
        splits[split] = {**writer.close(), "games": games}
    manifest = shard_manifest.make_manifest(splits)
    shard_manifest.write_manifest(data_dir, manifest)
    return manifest


def existing_outputs(data_dir):
    """Basenames of the shard files and manifest (or their .tmp leftovers) in data_dir."""
    if not tf.io.gfile.isdir(data_dir):
        return []
    names = tf.io.gfile.listdir(data_dir)
    return sorted(
        name
        for name in names
        if _SHARD_NAME.match(name.removesuffix(".tmp"))
        or name.removesuffix(".tmp") == shard_manifest.MANIFEST
    )


def check_writable(data_dir):
    """Creates data_dir if needed and writes and removes a probe file there; ValueError saying why it cannot.

    Permissions alone do not tell (root writes anywhere; gs:// has none): only writing does.
    """
    probe = os.path.join(data_dir, f".write-probe-{os.getpid()}")
    try:
        tf.io.gfile.makedirs(data_dir)
        with tf.io.gfile.GFile(probe, "wb") as stream:
            stream.write(b"")
        tf.io.gfile.remove(probe)
    except (OSError, tf.errors.OpError) as error:
        raise ValueError(f"cannot write to {data_dir}: {error}") from None


def bucket_parent(output_dir):
    """Local directory for a ShardWriter's temporary buckets: output_dir itself when it is local, else the system's.

    Beside the output, a killed run's buckets (about 100 bytes a position) are visible and cleaned by the
    next run into the same directory; a gs:// output cannot hold them.
    """
    return tempfile.gettempdir() if "://" in output_dir else output_dir


def _bucket_prefix(output_dir):
    """Name prefix of the bucket directories of output_dir's writers (hidden; one per output directory)."""
    where = output_dir if "://" in output_dir else os.path.realpath(output_dir)
    return f".tmp-shogi_policy-buckets-{hashlib.blake2b(where.encode(), digest_size=6).hexdigest()}-"


def _remove_dead_buckets(parent, prefix):
    """Removes the bucket directories prefix<pid>-... in parent whose process is gone; their paths."""
    removed = []
    for name in os.listdir(parent):
        pid = name[len(prefix) :].split("-", 1)[0] if name.startswith(prefix) else ""
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
            removed.append(os.path.join(parent, name))
    return removed


def _process_alive(pid):
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's
        return True
    return True


class ShardWriter:
    """Collects the records of one split and writes them, shuffled, as shards on close().

    Args:
      output_dir: shard directory (local or gs://); created if needed.
      split: "train" or "test".
      positions_per_shard: the most positions of one shard.
      seed: int; the same seed and the same sequence of add() calls give identical shards.
      num_buckets: temporary buckets (memory on close is about one bucket).
      flush_positions: positions buffered in memory before they go to the bucket files.
      tmp_dir: local directory for the bucket files (default: bucket_parent(output_dir)).
    """

    def __init__(
        self,
        output_dir,
        split,
        positions_per_shard,
        seed,
        *,
        num_buckets=256,
        flush_positions=1 << 16,
        tmp_dir=None,
    ):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if positions_per_shard < 1:
            raise ValueError(f"positions_per_shard must be positive, got {positions_per_shard}")
        self.output_dir, self.split = output_dir, split
        self.positions_per_shard, self.num_buckets, self.flush_positions = (
            positions_per_shard,
            num_buckets,
            flush_positions,
        )
        self.positions = 0
        self._rng = np.random.default_rng([seed, SPLITS.index(split)])
        self._pending, self._pending_positions = [], 0
        check_writable(output_dir)  # early: a bad output path fails before any conversion work
        parent = bucket_parent(output_dir) if tmp_dir is None else tmp_dir
        prefix = _bucket_prefix(output_dir)
        for stale in _remove_dead_buckets(parent, prefix):
            logging.info("removed %s, left by a killed run", stale)
        self._tmp_dir = tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-{split}-", dir=parent)

    def add(self, records):
        """Adds uint8 [n, 100] records."""
        records = np.asarray(records, dtype=np.uint8).reshape(-1, record_format.RECORD_BYTES)
        self._pending.append(records)
        self._pending_positions += len(records)
        self.positions += len(records)
        if self._pending_positions >= self.flush_positions:
            self._flush()

    def close(self):
        """Writes the shards; returns {"files": [basenames], "positions": int, "bytes": [int], "sha256": [hex]}.

        Removes the buckets.
        """
        try:
            self._flush()
            files, sizes, checksums = self._write_shards()
        finally:
            self.discard()
        return {"files": files, "positions": self.positions, "bytes": sizes, "sha256": checksums}

    def discard(self):
        """Removes the temporary buckets without writing shards."""
        shutil.rmtree(self._tmp_dir, ignore_errors=True)

    def _bucket_path(self, bucket):
        return os.path.join(self._tmp_dir, f"bucket-{bucket:05d}.bin")

    def _flush(self):
        """Appends the pending records to uniformly random buckets."""
        if not self._pending_positions:
            return
        records = np.concatenate(self._pending)
        self._pending, self._pending_positions = [], 0
        buckets = self._rng.integers(self.num_buckets, size=len(records))
        order = np.argsort(buckets, kind="stable")
        bounds = np.cumsum(np.bincount(buckets, minlength=self.num_buckets))
        records = records[order]
        start = 0
        for bucket, end in enumerate(bounds.tolist()):
            if end > start:
                path = self._bucket_path(bucket)
                try:
                    with open(path, "ab") as stream:
                        stream.write(records[start:end].tobytes())
                except OSError as error:  # a full disk: name the file, not just the errno
                    raise ValueError(f"cannot write {path}: {file_io.io_error_reason(error)}") from None
            start = end

    def _write_shards(self):
        """Shuffles each bucket and cuts the buckets, in random order, into equal shards; (names, sizes, sha256s)."""
        if not self.positions:
            return [], [], []
        count = -(-self.positions // self.positions_per_shard)
        sizes = [self.positions // count + (i < self.positions % count) for i in range(count)]
        files, file_bytes, checksums = [], [], []
        held, held_positions = [], 0  # held: shuffled records not yet in a shard
        for bucket in self._rng.permutation(self.num_buckets).tolist():
            path = self._bucket_path(bucket)
            if not os.path.exists(path):
                continue
            records = np.fromfile(path, dtype=np.uint8).reshape(-1, record_format.RECORD_BYTES)
            os.remove(path)
            held.append(records[self._rng.permutation(len(records))])
            held_positions += len(records)
            while len(files) < count and held_positions >= sizes[len(files)]:
                size, name = sizes[len(files)], shard_name(self.split, len(files), count)
                records = np.concatenate(held)
                data = records[:size].tobytes()
                file_io.write_file_atomic(os.path.join(self.output_dir, name), data)
                files.append(name)
                file_bytes.append(len(data))
                checksums.append(shard_manifest.sha256(data))
                held, held_positions = [records[size:]], held_positions - size
        assert len(files) == count and not held_positions, "bucket sizes must add up to the positions"
        return files, file_bytes, checksums
