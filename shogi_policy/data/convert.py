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
from absl import app, flags, logging

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


def define_flags(flag_values=flags.FLAGS):
    """Registers the app's flags on flag_values (run() uses the global FLAGS; tests their own)."""
    kw = {"flag_values": flag_values}
    flags.DEFINE_multi_string(
        "inputs", None, "Record files, globs or directories (repeatable or comma list).", **kw
    )
    flags.DEFINE_string("output_dir", None, "Shard directory to write (local or gs://).", **kw)
    flags.DEFINE_float("min_rating", None, "Skip games where a known rating of either player is lower.", **kw)
    flags.DEFINE_bool("require_ratings", False, "Skip games without both players' ratings.", **kw)
    flags.DEFINE_integer("min_plies", 0, "Skip games with fewer moves.", **kw)
    flags.DEFINE_list("endings", [], f"Allowed endings (default all), of {', '.join(game_io.ENDINGS)}.", **kw)
    flags.DEFINE_bool("drop_draws", False, "Skip drawn games.", **kw)
    flags.DEFINE_float("test_fraction", 0.1, "Fraction of games in the test split.", **kw)
    flags.DEFINE_integer("positions_per_shard", 1 << 20, "The most positions of one shard file.", **kw)
    flags.DEFINE_integer("seed", 0, "Seed of the split and the shuffle.", **kw)
    flags.DEFINE_integer("log_every", 10000, "Log progress every this many games read.", **kw)
    flags.DEFINE_bool("overwrite", False, "Replace the shards and manifest already in --output_dir.", **kw)


def convert_with_options(options):
    """Validates parsed flag values and runs the conversion; app.UsageError on bad flags."""
    if not options.inputs or not options.output_dir:
        raise app.UsageError("--inputs and --output_dir are required")
    if not 0.0 <= options.test_fraction <= 1.0:
        raise app.UsageError(f"--test_fraction must lie in [0, 1], got {options.test_fraction}")
    for name in ("positions_per_shard", "log_every"):
        if options[name].value < 1:
            raise app.UsageError(f"--{name} must be an integer >= 1, got {options[name].value}")
    if not 0 <= options.seed < MAX_SEED:
        raise app.UsageError(f"--seed must be an integer in [0, 2^63), got {options.seed}")
    if options.min_plies < 0:
        raise app.UsageError(f"--min_plies must be an integer >= 0, got {options.min_plies}")
    if options.min_rating is not None and not math.isfinite(options.min_rating):
        raise app.UsageError(f"--min_rating must be a finite number, got {options.min_rating}")
    unknown = sorted(set(options.endings) - set(game_io.ENDINGS))
    if unknown:
        logging.warning("--endings %s are not endings the CSA/KIF/hcpe readers produce", unknown)
    try:
        paths, ignored = expand_inputs(options.inputs)
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    if ignored:
        logging.warning(
            "ignoring %d files of --inputs directories without a record extension %s: %s",
            len(ignored),
            records.EXTENSIONS,
            ignored[:5],
        )
    for path in paths:
        if game_io.record_extension(path) not in records.EXTENSIONS:
            raise app.UsageError(
                f"{path}: unknown record extension {quoting.quote(game_io.record_extension(path))}; "
                f"expected one of {records.EXTENSIONS} (optionally .gz)"
            )
    existing = shards.existing_outputs(options.output_dir)
    if existing and not options.overwrite:
        raise app.UsageError(f"{options.output_dir} already holds {existing[:3]}...; pass --overwrite")
    for name in existing:
        tf.io.gfile.remove(os.path.join(options.output_dir, name))
    logging.info("converting %d files into %s", len(paths), options.output_dir)
    convert(
        paths,
        options.output_dir,
        filters=Filters(
            min_rating=options.min_rating,
            require_ratings=options.require_ratings,
            min_plies=options.min_plies,
            endings=tuple(options.endings),
            drop_draws=options.drop_draws,
        ),
        test_fraction=options.test_fraction,
        positions_per_shard=options.positions_per_shard,
        seed=options.seed,
        log_every=options.log_every,
        inputs=options.inputs,
        ignored=ignored,
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        convert_with_options(flags.FLAGS)
    except ValueError as error:  # no game kept, an unwritable output: no traceback, exit status 1
        raise SystemExit(f"shogi-policy-convert: {error}") from None


def run():
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
