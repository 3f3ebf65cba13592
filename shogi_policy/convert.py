"""shogi-policy-convert: game records (CSA, KIF, USI move lists, hcpe) -> shuffled record shards.

  shogi-policy-convert --inputs='games/*.csa,more.usi.gz' --output_dir=data/floodgate \\
      --min_rating=3500 --min_plies=50 --endings=resign,repetition,declare --test_fraction=0.1

Games are split into train and test BY GAME: a hash of (seed, start position, moves) decides, so
the same game always lands in the same split, even when it occurs in several inputs or formats.
Bad games are skipped and counted in the manifest with the first few "file:line: message" errors.
"""

import dataclasses
import hashlib
import os

import numpy as np
import tensorflow as tf
from absl import app, flags, logging

from shogi_policy import encoding, records, shards

SKIP_REASONS = ("error", "empty", "no_rating", "rating", "min_plies", "ending", "draw")
MAX_ERROR_EXAMPLES = 10
_BATCH_POSITIONS = 8192  # games_to_records is fastest on batches of a few thousand positions


@dataclasses.dataclass(frozen=True)
class Filters:
    """Which games to keep (the flags of the same names); the defaults keep every game with a move."""

    min_rating: float | None = None  # both known ratings at least this
    require_ratings: bool = False
    min_plies: int = 0
    endings: tuple = ()  # allowed endings; empty allows all
    drop_draws: bool = False

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
        if self.drop_draws and game.result == records.DRAW:
            return "draw"
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
    """Record files named by inputs (files, globs, directories searched recursively; comma lists).

    Returns sorted unique paths with a known record extension (directories) or as named.
    Raises ValueError when an entry matches nothing.
    """
    paths = set()
    for entry in (part.strip() for item in inputs for part in item.split(",")):
        if not entry:
            continue
        if tf.io.gfile.isdir(entry):
            found = [
                os.path.join(root, name)
                for root, _, names in tf.io.gfile.walk(entry)
                for name in names
                if records.record_extension(name) in records.EXTENSIONS
            ]
        elif any(char in entry for char in "*?["):
            found = [path for path in tf.io.gfile.glob(entry) if not tf.io.gfile.isdir(path)]
        else:
            found = [entry] if tf.io.gfile.exists(entry) else []
        if not found:
            raise ValueError(f"--inputs entry {entry!r} matches no record file")
        paths.update(found)
    return sorted(paths)


def game_split(game, seed, test_fraction):
    """'test' or 'train' for a game, from a hash of (seed, start position, moves)."""
    digest = hashlib.blake2b(digest_size=8, key=str(seed).encode())
    digest.update(game.sfen.encode())
    digest.update(np.asarray(game.moves, dtype=np.uint32).tobytes())
    return "test" if int.from_bytes(digest.digest(), "little") / 2.0**64 < test_fraction else "train"


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
    tmp_dir=None,
):
    """Converts record files into a shard directory and writes its manifest; returns the manifest.

    Args:
      paths: record file paths (see records.read_games).
      output_dir: shard directory (local or gs://).
      filters: Filters of the games to keep.
      test_fraction, positions_per_shard, seed, log_every: as the flags.
      inputs: the input entries to record in the manifest (default: paths).
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
    kept = 0
    try:
        games = ((path, item) for path in paths for item in records.read_games(path))
        for seen, (path, item) in enumerate(games, 1):
            if seen % log_every == 0:
                logging.info("%d games read, %d kept (%s)", seen, kept, path)
            if isinstance(item, records.RecordError):
                skipped["error"] += 1
                if len(errors) < MAX_ERROR_EXAMPLES:
                    errors.append(str(item))
                logging.warning("%s", item)
                continue
            reason = filters.skip_reason(item)
            if reason:
                skipped[reason] += 1
                continue
            outputs[game_split(item, seed, test_fraction)].add(kept % (encoding.MAX_GAME_ID + 1), item)
            kept += 1
        splits = {split: output.close() for split, output in outputs.items()}
    finally:
        for output in outputs.values():
            output.writer.discard()
    if not kept:
        raise ValueError(_nothing_kept(skipped, errors))
    manifest = shards.make_manifest(
        splits,
        filters={**dataclasses.asdict(filters), "test_fraction": test_fraction},
        skipped={**skipped, "error_examples": errors},
        inputs=list(inputs if inputs is not None else paths),
        input_files=len(paths),
        seed=seed,
        positions_per_shard=positions_per_shard,
    )
    shards.write_manifest(output_dir, manifest)
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
    flags.DEFINE_list("endings", [], f"Allowed endings (default all), of {', '.join(records.ENDINGS)}.", **kw)
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
    if options.positions_per_shard < 1:
        raise app.UsageError(f"--positions_per_shard must be positive, got {options.positions_per_shard}")
    unknown = sorted(set(options.endings) - set(records.ENDINGS))
    if unknown:
        logging.warning("--endings %s are not endings the CSA/KIF/hcpe readers produce", unknown)
    try:
        paths = expand_inputs(options.inputs)
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    for path in paths:
        if records.record_extension(path) not in records.EXTENSIONS:
            raise app.UsageError(f"{path}: unknown record extension; expected one of {records.EXTENSIONS}")
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
