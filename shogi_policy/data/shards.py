"""Shard directories of compact position records, and their manifest.

A shard directory holds raw concatenated 100-byte records (no header) in files named
`{split}-{index:05d}-of-{count:05d}.rec`, plus `manifest.json`. All output goes through
tf.io.gfile, so gs:// directories work; each file is written under a `.tmp` name and renamed when
complete, so a reader never sees half a shard.

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
import json
import os
import re
import shutil
import tempfile

import numpy as np
import tensorflow as tf
from absl import logging

from shogi_policy.core import quoting, record_format

FORMAT = "shogi_policy.records"
MANIFEST = "manifest.json"
SPLITS = ("train", "test")
MANIFEST_CHECKSUM = "manifest_sha256"
_VERIFIED = set()  # (real path, size, mtime) of local shard files whose SHA-256 matched their manifest
_SHARD_NAME = re.compile(r"^(train|test)-\d{5}-of-\d{5}\.rec$")


def shard_name(split, index, count):
    """Basename of shard index (0-based) of count in split, e.g. 'train-00000-of-00004.rec'."""
    return f"{split}-{index:05d}-of-{count:05d}.rec"


def write_file_atomic(path, data):
    """Writes bytes to path (local or gs://) under path + '.tmp', then renames it to path.

    Raises ValueError naming the path when it cannot (a full disk: 'No space left on device').
    """
    tmp = path + ".tmp"
    try:
        with tf.io.gfile.GFile(tmp, "wb") as stream:
            stream.write(data)
        tf.io.gfile.rename(tmp, path, overwrite=True)
    except (OSError, tf.errors.OpError) as error:
        raise ValueError(f"cannot write {path}: {_reason(error)}") from None
    finally:
        if tf.io.gfile.exists(tmp):
            tf.io.gfile.remove(tmp)


def _reason(error):
    """The reason in an I/O error: strerror for an OSError, the message of a TensorFlow OpError."""
    return getattr(error, "strerror", None) or getattr(error, "message", None) or str(error)


def sha256(data):
    """Hex SHA-256 of bytes: the checksum of shard files and of the manifest."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path):
    """Hex SHA-256 of a file's bytes (local or gs://), read in 16 MiB pieces."""
    digest = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as stream:
        while piece := stream.read(1 << 24):
            digest.update(piece)
    return digest.hexdigest()


def make_manifest(splits, **details):
    """A manifest dict: format fields, splits ({split: {"files", "positions", "games"[, "bytes", "sha256"]}}) and
    details (filters...)."""
    return {
        "format": FORMAT,
        "format_version": record_format.RECORD_FORMAT_VERSION,
        "record_bytes": record_format.RECORD_BYTES,
        "splits": splits,
        **details,
    }


def _manifest_body_sha256(manifest):
    """SHA-256 of a manifest's content less its own checksum: canonical JSON, so spacing does not count."""
    body = {key: value for key, value in manifest.items() if key != MANIFEST_CHECKSUM}
    return sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8"))


def write_manifest(data_dir, manifest):
    """Writes manifest (a dict) as data_dir/manifest.json, atomically, with its own checksum.

    A split entry without "bytes" and "sha256" (shards written outside ShardWriter) gets them from its files.
    """
    manifest = {**manifest, "splits": dict(manifest["splits"])}
    for split, entry in manifest["splits"].items():
        if "bytes" not in entry or "sha256" not in entry:
            paths = [os.path.join(data_dir, name) for name in entry["files"]]
            sizes = [tf.io.gfile.stat(path).length for path in paths]
            manifest["splits"][split] = {**entry, "bytes": sizes, "sha256": [file_sha256(p) for p in paths]}
    manifest[MANIFEST_CHECKSUM] = _manifest_body_sha256(manifest)
    write_file_atomic(os.path.join(data_dir, MANIFEST), json.dumps(manifest, indent=1).encode("utf-8"))


def read_manifest(data_dir):
    """The manifest dict of a shard directory; ValueError naming the file and what is wrong with it.

    Checks that it parses, that its checksum matches its content (a changed byte is refused, never read as
    other counts), format, format_version and record_bytes against this code, and the shape of each split.
    """
    path = os.path.join(data_dir, MANIFEST)
    if not tf.io.gfile.exists(path):
        raise ValueError(f"{path} not found: not a shard directory (run shogi-policy-convert)")
    with tf.io.gfile.GFile(path, "rb") as stream:
        data = stream.read()
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}): damaged; convert again") from None
    if not isinstance(manifest, dict):
        raise ValueError(
            f"{path} holds {type(manifest).__name__}, not a manifest object: damaged; convert again"
        )
    for key, value in make_manifest({}).items():
        if key != "splits" and key not in manifest:
            raise ValueError(f"{path} has no {key!r}: not a manifest of {FORMAT}, or damaged; convert again")
        if key != "splits" and manifest.get(key) != value:
            got = quoting.quote(json.dumps(manifest.get(key)))
            raise ValueError(f"{path}: {key} is {got}, this code reads {value!r}")
    if MANIFEST_CHECKSUM not in manifest:
        raise ValueError(
            f"{path} has no {MANIFEST_CHECKSUM}: written by an older shogi-policy-convert, without the shard sizes "
            "and checksums that are checked before training; convert again (shogi-policy-convert --overwrite)"
        )
    if manifest[MANIFEST_CHECKSUM] != _manifest_body_sha256(manifest):
        raise ValueError(
            f"{path}: its content does not match its {MANIFEST_CHECKSUM} (changed or damaged); convert again"
        )
    problem = _splits_problem(manifest.get("splits"))
    if problem:
        raise ValueError(f"{path}: {problem}")
    return manifest


def _splits_problem(splits):
    """What is wrong with a manifest's "splits" (each: files, positions, games, bytes, sha256 agreeing), or None."""
    if not isinstance(splits, dict):
        return '"splits" is not an object'
    for split, entry in splits.items():
        if not isinstance(entry, dict) or not {"files", "positions", "bytes", "sha256"} <= set(entry):
            return f'split {quoting.quote(split)} needs "files", "positions", "bytes" and "sha256"'
        files, sizes, sums = entry["files"], entry["bytes"], entry["sha256"]
        if not all(isinstance(column, list) and len(column) == len(files) for column in (sizes, sums)):
            return f'split {split!r}: "files", "bytes" and "sha256" must be lists of one length'
        if not all(isinstance(name, str) and name == os.path.basename(name) and name for name in files):
            return f"split {split!r}: a shard file name is not a plain file name"
        if not all(
            isinstance(size, int) and size >= 0 and size % record_format.RECORD_BYTES == 0 for size in sizes
        ):
            return f"split {split!r}: shard sizes must be whole numbers of {record_format.RECORD_BYTES}-byte records"
        positions = entry["positions"]
        if not isinstance(positions, int) or positions * record_format.RECORD_BYTES != sum(sizes):
            return f"split {split!r}: {json.dumps(positions)[: quoting.QUOTE_CHARS]} positions disagree with its shards' {sum(sizes)} bytes"
    return None


def split_manifest(data_dir, split):
    """The manifest entry {"files", "positions", "bytes", "sha256", ...} of one split of data_dir; ValueError if none."""
    manifest = read_manifest(data_dir)
    if split not in manifest["splits"]:
        raise ValueError(f"{data_dir}: no split {split!r}; the manifest has {sorted(manifest['splits'])}")
    return manifest["splits"][split]


def num_positions(data_dir, split):
    """Positions of split in the shard directory data_dir (from its manifest)."""
    return int(split_manifest(data_dir, split)["positions"])


def shard_paths(data_dir, split):
    """Full paths of the shard files of split listed in the manifest of data_dir, checked against it.

    Each file must exist with the manifest's size (a stat each: cheap anywhere); local files must also match
    the manifest's SHA-256 (read once per process and file version; gs:// files are not read here).
    Raises ValueError naming the first file that is not what the manifest says.
    """
    entry = split_manifest(data_dir, split)
    paths = [os.path.join(data_dir, name) for name in entry["files"]]
    for path, size, checksum in zip(paths, entry["bytes"], entry["sha256"], strict=True):
        _check_shard(path, size, checksum)
    return paths


def nonempty_shard_paths(data_dir, split):
    """shard_paths of a split that must hold positions (training); ValueError saying so when it has none."""
    paths = shard_paths(data_dir, split)
    if not paths:
        raise ValueError(
            f"{data_dir}: split {split!r} is empty: the conversion put no game in it "
            "(shogi-policy-convert --test_fraction decides which games go to 'test')"
        )
    return paths


def _check_shard(path, size, checksum):
    """ValueError unless the shard file at path has size bytes and (local files) SHA-256 checksum."""
    try:
        stat = tf.io.gfile.stat(path)
    except tf.errors.NotFoundError:
        raise ValueError(f"{path}: listed in {MANIFEST} but missing; convert again") from None
    if stat.length != size:
        raise ValueError(
            f"{path}: {stat.length} bytes, the manifest says {size} ({size // record_format.RECORD_BYTES} records): "
            "truncated or replaced; convert again"
        )
    if "://" in path:
        return
    version = (os.path.realpath(path), stat.length, stat.mtime_nsec)
    if version not in _VERIFIED and file_sha256(path) != checksum:
        raise ValueError(f"{path}: its SHA-256 is not the manifest's (the file changed); convert again")
    _VERIFIED.add(version)


def shard_lengths(paths):
    """Records in each shard file; ValueError naming a file whose size is not a whole number of records."""
    lengths = []
    for path in paths:
        size = tf.io.gfile.stat(path).length
        if size % record_format.RECORD_BYTES:
            raise ValueError(
                f"{path}: {size} bytes is not a multiple of {record_format.RECORD_BYTES}-byte records"
            )
        lengths.append(size // record_format.RECORD_BYTES)
    return lengths


def read_records(data_dir, split, limit=None):
    """Yields (path, records uint8 [n, 100]) of each shard file of split in manifest order, `limit` records in all.

    The records are as stored: record_format.check_records or records_to_boards(records, path) validate them.
    """
    paths = shard_paths(data_dir, split)
    remaining = limit
    for path, length in zip(paths, shard_lengths(paths), strict=True):
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
    manifest = make_manifest(splits)
    write_manifest(data_dir, manifest)
    return manifest


def existing_outputs(data_dir):
    """Basenames of the shard files and manifest (or their .tmp leftovers) in data_dir."""
    if not tf.io.gfile.isdir(data_dir):
        return []
    names = tf.io.gfile.listdir(data_dir)
    return sorted(
        name
        for name in names
        if _SHARD_NAME.match(name.removesuffix(".tmp")) or name.removesuffix(".tmp") == MANIFEST
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
                    raise ValueError(f"cannot write {path}: {_reason(error)}") from None
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
                write_file_atomic(os.path.join(self.output_dir, name), data)
                files.append(name)
                file_bytes.append(len(data))
                checksums.append(sha256(data))
                held, held_positions = [records[size:]], held_positions - size
        assert len(files) == count and not held_positions, "bucket sizes must add up to the positions"
        return files, file_bytes, checksums
