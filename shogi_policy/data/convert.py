"""shogi-policy-convert: game records (CSA, KIF, USI move lists, hcpe) -> shuffled record shards.

  shogi-policy-convert --inputs='games/*.csa,more.usi.gz' --output_dir=data/floodgate \\
      --min_rating=3500 --min_plies=50 --endings=resign,repetition,declare --test_fraction=0.1

Games are identified by content (start position without its move number, and moves): a game met again,
in another file, format or spelling, is dropped and counted in the manifest (skipped.duplicate), before
the split. Games are split into train and test BY GAME: a hash of (seed, start position, moves) decides,
so no game is ever on both sides. Bad games are skipped and counted in the manifest with the first few
"file:line: message" errors.
"""

import dataclasses
import hashlib
import math
import os

import numpy as np
import tensorflow as tf
from absl import logging

from shogi_policy.core import quoting, record_format
from shogi_policy.data import game_io, records, shard_manifest, shards

SKIP_REASONS = (
    "error",
    "empty",
    "no_rating",
    "rating",
    "min_plies",
    "ending",
    "draw",
    "no_result",
    "duplicate",
)
MAX_ERROR_EXAMPLES = 10
# --seed keys a blake2b hash (a key of at most 64 bytes) and seeds numpy, which takes no negative seed.
MAX_SEED = 2**63
_BATCH_POSITIONS = 8192  # games_to_records is fastest on batches of a few thousand positions
# Files that make a directory a trainer's run or an export (model.model_dir's FLAGS_JSON and CHECKPOINT_DIR,
# serving's metadata and ONNX file; tests/test_convert.py checks the names): convert never writes among them.
FOREIGN_MARKERS = {
    "train_flags.json": "a trainer's run",
    "checkpoints": "a trainer's run",
    "shogi_policy_export.json": "an export",
    "model.onnx": "an export",
}


@dataclasses.dataclass(frozen=True)
class Filters:
    """Which games to keep (the flags of the same names); the defaults keep every game with a move."""

    min_rating: float | None = None  # both known ratings at least this
    require_ratings: bool = False
    min_plies: int = 0
    endings: tuple = ()  # allowed endings; empty allows all
    drop_draws: bool = False  # also drops games of unknown result, which would be stored as draws

    def skip_reason(self, game):
        """Why a game is filtered out (one of SKIP_REASONS), or None."""
        ratings = (game.black_rating, game.white_rating)
        if not game.moves:
            return "empty"
        if self.require_ratings and None in ratings:
            return "no_rating"
        if self.min_rating is not None and any(r is not None and r < self.min_rating for r in ratings):
            return "rating"
        if len(game.moves) < self.min_plies:
            return "min_plies"
        if self.endings and game.ending not in self.endings:
            return "ending"
        if self.drop_draws and game.result == game_io.DRAW:
            return "draw"
        if self.drop_draws and game.result is None:  # its records would be stored as draws
            return "no_result"
        return None


class _SplitOutput:
    """One split's shard writer, its game count and the games not yet turned into records."""

    def __init__(self, writer):
        self.writer = writer
        self.games = 0
        self._pending, self._pending_positions = [], 0  # (game id, Game)

    def add(self, game_id, game):
        self.games += 1
        self._pending.append((game_id, game))
        self._pending_positions += len(game.moves)
        if self._pending_positions >= _BATCH_POSITIONS:
            self.flush()

    def flush(self):
        if self._pending:
            ids, games = zip(*self._pending, strict=True)
            self.writer.add(records.games_to_records(games, ids))
            self._pending, self._pending_positions = [], 0

    def close(self):
        """Writes the shards; the split's manifest entry."""
        self.flush()
        return {**self.writer.close(), "games": self.games}


def expand_inputs(inputs):
    """Record files named by inputs (files, globs, directories searched recursively; comma lists), each once.

    Local paths are resolved to real paths, so a file named several ways ('a.usi,./a.usi,x/../a.usi') or
    reached through a symbolic link is read once, and a directory reached again (a link loop) is not
    walked again. In a directory, files without a record extension (any case, .gz or not) are ignored.
    Returns (sorted unique paths, sorted ignored paths). Raises ValueError when an entry matches nothing.
    """
    paths, ignored = set(), set()
    for entry in (part.strip() for item in inputs for part in item.split(",")):
        if not entry:
            continue
        if tf.io.gfile.isdir(entry):
            files = _walk(entry)
            found = [path for path in files if game_io.record_extension(path) in records.EXTENSIONS]
            ignored.update(path for path in files if game_io.record_extension(path) not in records.EXTENSIONS)
        elif any(char in entry for char in "*?["):
            found = [_resolved(path) for path in tf.io.gfile.glob(entry) if not tf.io.gfile.isdir(path)]
        else:
            found = [_resolved(entry)] if tf.io.gfile.exists(entry) else []
        if not found:
            raise ValueError(f"--inputs entry {quoting.quote(entry)} matches no record file")
        paths.update(found)
    return sorted(paths), sorted(ignored - paths)


def _resolved(path):
    """The real path of a local file (links and '..' resolved); a gs:// path as it is."""
    return path if "://" in path else os.path.realpath(path)


def _walk(directory):
    """Real paths of the files under directory; a local directory is walked once however often links reach it."""
    if "://" in directory:
        return [os.path.join(root, name) for root, _, names in tf.io.gfile.walk(directory) for name in names]
    files, walked = [], set()
    for root, subdirectories, names in os.walk(directory, followlinks=True):
        real = os.path.realpath(root)
        if real in walked:
            subdirectories[:] = []
            continue
        walked.add(real)
        files.extend(_resolved(os.path.join(root, name)) for name in names)
    return files


def start_position(sfen):
    """A game's start position as its identity sees it: the SFEN with move number 1 (a move number is no position)."""
    return " ".join(sfen.split()[:3] + ["1"])


def _game_digest(game, digest_size, key=b""):
    """blake2b digest of a game's content: its start position (start_position) and its moves."""
    digest = hashlib.blake2b(digest_size=digest_size, key=key)
    digest.update(start_position(game.sfen).encode())
    digest.update(np.asarray(game.moves, dtype=np.uint32).tobytes())
    return digest.digest()


def game_key(game):
    """16 bytes that identify a game by content: the same game in any format, file or spelling has the same key."""
    return _game_digest(game, 16)


def game_split(game, seed, test_fraction):
    """'test' or 'train' for a game, from a hash of (seed, start position, moves)."""
    digest = _game_digest(game, 8, key=str(seed).encode())
    return "test" if int.from_bytes(digest, "little") / 2.0**64 < test_fraction else "train"


def convert(
    paths,
    output_dir,
    *,
    filters=Filters(),
    test_fraction=0.1,
    positions_per_shard=1 << 20,
    seed=0,
    log_every=10000,
    inputs=None,
    ignored=(),
    tmp_dir=None,
):
    """Converts record files into a shard directory and writes its manifest; returns the manifest.

    Args:
      paths: record file paths (see records.read_games).
      output_dir: shard directory (local or gs://).
      filters: Filters of the games to keep.
      test_fraction, positions_per_shard, seed, log_every: as the flags.
      inputs: the input entries to record in the manifest (default: paths).
      ignored: files of input directories that are no record files (counted in the manifest).
      tmp_dir: local directory for the writers' temporary buckets (default: shards.bucket_parent).
    Raises:
      ValueError before reading any input when output_dir cannot be written; after reading, when no game
      is kept, saying why (all games bad: the first error; else the skip counts). No manifest then.
    """
    outputs = {
        split: _SplitOutput(shards.ShardWriter(output_dir, split, positions_per_shard, seed, tmp_dir=tmp_dir))
        for split in shards.SPLITS
    }
    skipped, errors = dict.fromkeys(SKIP_REASONS, 0), []
    kept, keys = 0, set()  # keys: game_key of each kept game (16 bytes, about 90 bytes of memory a game)
    try:
        games = ((path, item) for path in paths for item in records.read_games(path))
        for seen, (path, item) in enumerate(games, 1):
            if seen % log_every == 0:
                logging.info("%d games read, %d kept (%s)", seen, kept, path)
            if isinstance(item, game_io.RecordError):
                skipped["error"] += 1
                if len(errors) < MAX_ERROR_EXAMPLES:
                    errors.append(str(item))
                logging.warning("%s", item)
                continue
            reason = filters.skip_reason(item)
            key = None if reason else game_key(item)
            if key in keys:
                reason = "duplicate"
            if reason:
                skipped[reason] += 1
                continue
            keys.add(key)
            outputs[game_split(item, seed, test_fraction)].add(kept % (record_format.MAX_GAME_ID + 1), item)
            kept += 1
        splits = {split: output.close() for split, output in outputs.items()}
    finally:
        for output in outputs.values():
            output.writer.discard()
    if not kept:
        raise ValueError(_nothing_kept(skipped, errors))
    manifest = shard_manifest.make_manifest(
        splits,
        filters={**dataclasses.asdict(filters), "test_fraction": test_fraction},
        skipped={**skipped, "error_examples": errors},
        inputs=list(inputs if inputs is not None else paths),
        input_files=len(paths),
        ignored_files={"count": len(ignored), "examples": list(ignored[:MAX_ERROR_EXAMPLES])},
        seed=seed,
        positions_per_shard=positions_per_shard,
    )
    shard_manifest.write_manifest(output_dir, manifest)
    if not splits["train"]["positions"]:
        logging.warning("no training positions: every game kept went to the test split (--test_fraction)")
    logging.info(
        "wrote %s: train %d games / %d positions, test %d games / %d positions, skipped %s",
        output_dir,
        splits["train"]["games"],
        splits["train"]["positions"],
        splits["test"]["games"],
        splits["test"]["positions"],
        skipped,
    )
    return manifest


def _nothing_kept(skipped, errors):
    """Why a conversion kept no game, from the skip counts and the first error messages."""
    seen = sum(skipped.values())
    if not seen:
        return "the inputs hold no game"
    if skipped["error"] == seen:
        return f"all {seen} games had errors; first: {errors[0]}"
    reasons = {reason: count for reason, count in skipped.items() if count}
    message = f"no game of {seen} kept: skipped {reasons}"
    if {"ending", "no_rating", "rating"} & set(reasons):
        message += (
            " (hcpe and plain USI games have no ratings, and ending 'unknown' unless a USI line names one)"
        )
    return message


@dataclasses.dataclass(frozen=True)
class ConvertConfig:
    """One conversion, as shogi-policy-convert's flags give it (each field is the flag of its name)."""

    inputs: tuple | None = dataclasses.field(
        default=None,
        metadata={
            "help": "Record files, globs or directories (repeatable or comma list).",
            "flag": "multi_string",
        },
    )
    output_dir: str | None = dataclasses.field(
        default=None, metadata={"help": "Shard directory to write (local or gs://)."}
    )
    min_rating: float | None = dataclasses.field(
        default=None, metadata={"help": "Skip games where a known rating of either player is lower."}
    )
    require_ratings: bool = dataclasses.field(
        default=False, metadata={"help": "Skip games without both players' ratings."}
    )
    min_plies: int = dataclasses.field(default=0, metadata={"help": "Skip games with fewer moves."})
    endings: tuple = dataclasses.field(
        default=(),
        metadata={"help": f"Allowed endings (default all), of {', '.join(game_io.ENDINGS)}.", "flag": "list"},
    )
    drop_draws: bool = dataclasses.field(
        default=False, metadata={"help": "Skip drawn games and games with no result."}
    )
    test_fraction: float = dataclasses.field(
        default=0.1, metadata={"help": "Fraction of games in the test split."}
    )
    positions_per_shard: int = dataclasses.field(
        default=1 << 20, metadata={"help": "The most positions of one shard file."}
    )
    seed: int = dataclasses.field(default=0, metadata={"help": "Seed of the split and the shuffle."})
    log_every: int = dataclasses.field(
        default=10000, metadata={"help": "Log progress every this many games read."}
    )
    overwrite: bool = dataclasses.field(
        default=False,
        metadata={
            "help": "Replace the shards and manifest already in --output_dir (the old ones stay until the new "
            "ones are complete)."
        },
    )

    def __post_init__(self):
        """ValueError naming the flag of a value out of range."""
        if not self.inputs or not self.output_dir:
            raise ValueError("--inputs and --output_dir are required")
        if isinstance(self.inputs, str):
            object.__setattr__(self, "inputs", (self.inputs,))
        if not 0.0 <= self.test_fraction <= 1.0:
            raise ValueError(f"--test_fraction must lie in [0, 1], got {self.test_fraction}")
        for name in ("positions_per_shard", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be an integer >= 1, got {getattr(self, name)}")
        if not 0 <= self.seed < MAX_SEED:
            raise ValueError(f"--seed must be an integer in [0, 2^63), got {self.seed}")
        if self.min_plies < 0:
            raise ValueError(f"--min_plies must be an integer >= 0, got {self.min_plies}")
        if self.min_rating is not None and not math.isfinite(self.min_rating):
            raise ValueError(f"--min_rating must be a finite number, got {self.min_rating}")

    def filters(self):
        return Filters(
            min_rating=self.min_rating,
            require_ratings=self.require_ratings,
            min_plies=self.min_plies,
            endings=tuple(self.endings),
            drop_draws=self.drop_draws,
        )


def record_paths(inputs):
    """(sorted record paths, ignored paths) of --inputs (expand_inputs); ValueError naming a file of another kind."""
    paths, ignored = expand_inputs(inputs)
    if ignored:
        logging.warning(
            "ignoring %d files of --inputs directories without a record extension %s: %s",
            len(ignored),
            records.EXTENSIONS,
            ignored[:5],
        )
    for path in paths:
        if game_io.record_extension(path) not in records.EXTENSIONS:
            raise ValueError(
                f"{path}: unknown record extension {quoting.quote(game_io.record_extension(path))}; "
                f"expected one of {records.EXTENSIONS} (optionally .gz)"
            )
    return paths, ignored


def check_output_dir(output_dir, overwrite):
    """The shard outputs already in output_dir (shards.existing_outputs) that --overwrite will replace.

    ValueError when output_dir is a file, holds a trainer's run or an export (FOREIGN_MARKERS: never written
    among), or already holds shards and not overwrite.
    """
    if not tf.io.gfile.exists(output_dir):
        return []
    if not tf.io.gfile.isdir(output_dir):
        raise ValueError(f"cannot write to {output_dir}: it is a file, not a directory")
    present = {name.rstrip("/") for name in tf.io.gfile.listdir(output_dir)}
    foreign = sorted(present & set(FOREIGN_MARKERS))
    if foreign:
        raise ValueError(
            f"--output_dir {output_dir} holds {FOREIGN_MARKERS[foreign[0]]} ({', '.join(foreign)}): shards go "
            "in a directory of their own"
        )
    existing = shards.existing_outputs(output_dir)
    if existing and not overwrite:
        raise ValueError(f"{output_dir} already holds {existing[:3]}...; pass --overwrite")
    return existing


def replace_outputs(staging, output_dir, existing):
    """Moves a complete conversion from staging into output_dir in place of the old shard outputs `existing`.

    The old manifest goes first and the new one comes last: between the two, output_dir holds no manifest,
    which every reader of shards refuses, never a mix of old and new shards. Other files of output_dir stay.
    """
    ordered = sorted(existing, key=lambda name: name != shard_manifest.MANIFEST)
    for name in ordered:
        tf.io.gfile.remove(os.path.join(output_dir, name))
    names = sorted(tf.io.gfile.listdir(staging), key=lambda name: name == shard_manifest.MANIFEST)
    for name in names:
        tf.io.gfile.rename(os.path.join(staging, name), os.path.join(output_dir, name), overwrite=True)
    tf.io.gfile.rmtree(staging)


def convert_with_config(config):
    """Runs one conversion per a ConvertConfig (what shogi-policy-convert does); returns the manifest.

    With --overwrite over existing shards the conversion is written to a sibling directory first and moved in
    only when complete (replace_outputs): a conversion that fails or keeps no game leaves the old shards as
    they were. Raises ValueError naming the flag or file when it cannot run.
    """
    unknown = sorted(set(config.endings) - set(game_io.ENDINGS))
    if unknown:
        logging.warning("--endings %s are not endings the CSA/KIF/hcpe readers produce", unknown)
    paths, ignored = record_paths(config.inputs)
    output_dir = config.output_dir.rstrip("/") or config.output_dir
    existing = check_output_dir(output_dir, config.overwrite)
    parent, name = os.path.split(output_dir)
    target = os.path.join(parent, f".{name}.tmp-{os.getpid()}") if existing else output_dir
    if existing and tf.io.gfile.exists(target):  # from an earlier process of this pid that died half-way
        tf.io.gfile.rmtree(target)
    logging.info("converting %d files into %s", len(paths), output_dir)
    try:
        manifest = convert(
            paths,
            target,
            filters=config.filters(),
            test_fraction=config.test_fraction,
            positions_per_shard=config.positions_per_shard,
            seed=config.seed,
            log_every=config.log_every,
            inputs=config.inputs,
            ignored=ignored,
        )
    except BaseException:
        if existing and tf.io.gfile.exists(target):
            tf.io.gfile.rmtree(target)
        raise
    if existing:
        replace_outputs(target, output_dir, existing)
    return manifest
