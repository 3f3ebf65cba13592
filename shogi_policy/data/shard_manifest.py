"""The manifest of a shard directory: what its shards hold, and the checks every reader makes against it.

manifest.json holds the format fields (format, format_version, record_bytes), per split the shard files, their
positions, games, sizes and SHA-256 checksums, the converter's details (filters, skipped games) and the SHA-256
of its own content (manifest_sha256), so a changed byte is refused, never read as other counts. A reader gets a
split's shard files only through shard_files, which checks each file's size (and, for local files, SHA-256)
against the manifest; a reader that needs several splits reads the manifest once and passes it along.
"""

import hashlib
import json
import os
import typing

import tensorflow as tf

from shogi_policy.core import file_io, quoting, record_format

FORMAT = "shogi_policy.records"
MANIFEST = "manifest.json"
MANIFEST_CHECKSUM = "manifest_sha256"
_VERIFIED = set()  # (real path, size, mtime) of local shard files whose SHA-256 matched their manifest


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
    file_io.write_json(os.path.join(data_dir, MANIFEST), manifest)


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


def split_manifest(data_dir, split, manifest=None):
    """The manifest entry {"files", "positions", "bytes", "sha256", ...} of one split of data_dir; ValueError if none.

    manifest: data_dir's, as read_manifest returned it; None: read here (every read is a round trip on gs://).
    """
    manifest = read_manifest(data_dir) if manifest is None else manifest
    if split not in manifest["splits"]:
        raise ValueError(f"{data_dir}: no split {split!r}; the manifest has {sorted(manifest['splits'])}")
    return manifest["splits"][split]


def num_positions(data_dir, split, manifest=None):
    """Positions of split in the shard directory data_dir (from its manifest, or the one given: split_manifest)."""
    return int(split_manifest(data_dir, split, manifest)["positions"])


class ShardFiles(typing.NamedTuple):
    """A split's shard files as checked against its manifest: full paths, and the records in each (its size)."""

    paths: list
    lengths: list


def shard_files(data_dir, split, manifest=None):
    """ShardFiles of split, as listed in the manifest of data_dir (or the one given: split_manifest), checked.

    Each file must exist with the manifest's size (a stat each: cheap anywhere); local files must also match
    the manifest's SHA-256 (read once per process and file version; gs:// files are not read here).
    Raises ValueError naming the first file that is not what the manifest says.
    """
    entry = split_manifest(data_dir, split, manifest)
    paths = [os.path.join(data_dir, name) for name in entry["files"]]
    for path, size, checksum in zip(paths, entry["bytes"], entry["sha256"], strict=True):
        _check_shard(path, size, checksum)
    return ShardFiles(paths, [size // record_format.RECORD_BYTES for size in entry["bytes"]])


def check_nonempty(files, data_dir, split):
    """files (ShardFiles of a split that must hold positions: training); ValueError saying so when it has none."""
    if not files.paths:
        raise ValueError(
            f"{data_dir}: split {split!r} is empty: the conversion put no game in it "
            "(shogi-policy-convert --test_fraction decides which games go to 'test')"
        )
    return files


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
