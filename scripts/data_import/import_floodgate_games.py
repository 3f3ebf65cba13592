"""Import real floodgate games into data/: replay them with cshogi, infer each ending, write gzip game lines.

Input: a 'startpos moves ...<TAB>black_win|white_win|draw<TAB>source' file (by default the 1,291 R3500+
floodgate games of ../shared/data/floodgate_games/games.usi, which come from dlshogi hcpe files and
carry no ending). Output: the project's USI game-line format (shogi_policy/data/usi_lines.py, data/README.md),
    'startpos moves ...<TAB>result<TAB>source<TAB>ending'
gzip with mtime 0, lines sorted, duplicates dropped: the same input always gives the same bytes.

Every move must be in cshogi's legal move list of its position (board.is_legal accepts some
impossible promotions, so membership in board.legal_moves is the check). The ending is inferred from
the final position, since the source records keep no reason for the end of a game:
  mate             the side to move has no legal move             (result must be: the side to move lost)
  repetition       the final position occurred a 4th time, no perpetual check       (result must be: draw)
  perpetual_check  4th occurrence while one side checked throughout  (result must be: the checker lost)
  declare          the side to move may declare (cshogi is_nyugyoku)   (result must be: the side to move won)
  resign           any other decisive game that the side to move lost (a resignation, or a loss on time
                   or by disconnection: the records do not say which)
  unknown          anything else (e.g. the side to move won without a declarable position)
Where the final position decides the result (mate, repetition, declaration) and the result column
contradicts it, the rules win: the result is corrected, and the game is counted and named in the summary
(the source's 1,291 games hold 6 fourfold repetitions without checks labelled as wins). --overlap_tsv reports how many positions of a 'split<TAB>sfen<TAB>move' file occur in the games.

  python scripts/data_import/import_floodgate_games.py \\
      --input=../shared/data/floodgate_games/games.usi --output=data/floodgate_games.usi.gz \\
      --overlap_tsv=../shared/data/floodgate_positions/train_val_2000.tsv
"""

import collections
import gzip
import hashlib
import io
import json
import os
from pathlib import Path

import cshogi
from absl import app, flags, logging

from shogi_policy.core import file_io

_SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
RESULTS = ("black_win", "white_win", "draw")
REPETITION_COUNT = 4  # sennichite: the same position (board, hands, side to move) a fourth time

FLAGS = flags.FLAGS


def define_flags():
    """Declares the script's flags (when run, so that tests can import the module's functions)."""
    flags.DEFINE_string(
        "input", str(_SHARED / "floodgate_games" / "games.usi"), "Input game lines (3 columns)."
    )
    flags.DEFINE_string("output", "data/floodgate_games.usi.gz", "Output gzip game lines (4 columns).")
    flags.DEFINE_string(
        "overlap_tsv",
        str(_SHARED / "floodgate_positions" / "train_val_2000.tsv"),
        "Report how many positions of this 'split<TAB>sfen<TAB>move' file occur in the games ('' = skip).",
    )
    flags.DEFINE_string("summary_json", None, "Also write the counts as JSON here.")


class GameError(ValueError):
    """A game that cannot be imported; str() says why."""


def parse_line(line):
    """'startpos moves ...<TAB>result<TAB>source' -> (usi moves list, result, source)."""
    columns = line.rstrip("\n").split("\t")
    if len(columns) < 3:
        raise GameError(f"expected 'position<TAB>result<TAB>source', got {len(columns)} column(s)")
    position, result, source = columns[:3]
    tokens = position.split()
    if tokens[:1] != ["startpos"] or (len(tokens) > 1 and tokens[1] != "moves"):
        raise GameError(f"expected 'startpos moves ...', got {position[:40]!r}")
    if result not in RESULTS:
        raise GameError(f"bad result {result!r}; expected one of {RESULTS}")
    return tokens[2:], result, source


def replay(usi_moves):
    """Replays usi_moves from the start position, checking each against board.legal_moves.

    Returns (final board, Counter of position keys seen, the final position included).
    Raises GameError at the first move that is not legal.
    """
    board = cshogi.Board()
    seen = collections.Counter([position_key(board)])
    for ply, usi in enumerate(usi_moves, start=1):
        legal = {cshogi.move_to_usi(move): move for move in board.legal_moves}
        if usi not in legal:
            raise GameError(f"illegal move {usi!r} at ply {ply}")
        board.push(legal[usi])
        seen[position_key(board)] += 1
    return board, seen


def position_key(board):
    """The repetition identity of a position: board, hands and side to move (SFEN without move number)."""
    return board.sfen().rsplit(" ", 1)[0]


def mover_result(board, won):
    """The result string in which the side to move of board won (won=True) or lost."""
    black_to_move = board.turn == cshogi.BLACK
    return "black_win" if black_to_move == won else "white_win"


def infer_ending(board, seen):
    """(ending, expected result or None) of a game that ended in board's position.

    seen: Counter of position keys of the game (replay's). The expected result is what the final
    position implies; None where it implies nothing (the decision is then up to the result column).
    """
    if not any(True for _ in board.legal_moves):
        return "mate", mover_result(board, won=False)
    if seen[position_key(board)] >= REPETITION_COUNT:
        # cshogi's is_draw looks back over the game for the repetition and who checked throughout.
        kind = board.is_draw(len(board.history))
        if kind == cshogi.REPETITION_WIN:  # the opponent of the side to move checked throughout
            return "perpetual_check", mover_result(board, won=True)
        if kind == cshogi.REPETITION_LOSE:
            return "perpetual_check", mover_result(board, won=False)
        return "repetition", "draw"
    if board.is_nyugyoku():
        return "declare", mover_result(board, won=True)
    return None, None


def ending_of(board, seen, result):
    """(ending, result) of a game with this final position and result column.

    The result is the column's, except where the final position decides it (mate, repetition,
    declaration) and the column contradicts it: then the position's.
    """
    ending, expected = infer_ending(board, seen)
    if ending is not None:
        return ending, expected
    if result == mover_result(board, won=False):
        return "resign", result
    return "unknown", result


def import_line(line):
    """One input line -> (output game line, the input's result); GameError if it cannot be imported."""
    usi_moves, result, source = parse_line(line)
    if not usi_moves:
        raise GameError("no moves")
    board, seen = replay(usi_moves)
    ending, final_result = ending_of(board, seen, result)
    position = " ".join(["startpos", "moves", *usi_moves])
    return "\t".join([position, final_result, source, ending]), result


def import_lines(lines):
    """Imports input lines. Returns (sorted unique output lines, summary dict of counts)."""
    out, errors, corrected = {}, [], []
    duplicates = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.startswith("#"):
            continue
        try:
            game_line, input_result = import_line(line)
        except GameError as error:
            errors.append(f"line {number}: {error}")
            continue
        position, result, _, ending = game_line.split("\t")
        if result != input_result:
            corrected.append(f"line {number}: {input_result} -> {result} ({ending})")
        if position in out:
            duplicates += 1
            continue
        out[position] = game_line
    output = sorted(out.values(), key=lambda game: (game.split("\t")[2], game))
    return output, {**summarize(output, errors, duplicates), "corrected": corrected}


def summarize(game_lines, errors=(), duplicates=0):
    """Counts of games, positions, results, endings (by result) and plies of output game lines."""
    plies = sorted(len(line.split("\t")[0].split()) - 2 for line in game_lines)
    columns = [line.split("\t") for line in game_lines]
    return {
        "games": len(game_lines),
        "positions": sum(plies),
        "dropped": len(errors),
        "dropped_examples": list(errors)[:10],
        "duplicates": duplicates,
        "results": dict(sorted(collections.Counter(c[1] for c in columns).items())),
        "endings": dict(sorted(collections.Counter(f"{c[3]} {c[1]}" for c in columns).items())),
        "sources": dict(sorted(collections.Counter(c[2] for c in columns).items())),
        "plies": {
            "min": plies[0] if plies else 0,
            "median": plies[len(plies) // 2] if plies else 0,
            "max": plies[-1] if plies else 0,
            "mean": round(sum(plies) / len(plies), 1) if plies else 0,
            "under_50": sum(p < 50 for p in plies),
        },
    }


def write_gzip(path, lines):
    """Writes lines as deterministic gzip text (mtime 0, no file name), atomically; returns its sha256."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as f:
        f.write("".join(line + "\n" for line in lines).encode("utf-8"))
    data = buffer.getvalue()
    file_io.write_file_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def game_positions(game_lines):
    """Set of position keys (SFEN without move number) before each move of the games."""
    keys = set()
    for line in game_lines:
        board = cshogi.Board()
        for usi in line.split("\t")[0].split()[2:]:
            keys.add(position_key(board))
            board.push_usi(usi)
    return keys


def overlap(tsv_lines, keys):
    """{split: [rows, rows whose position is among keys]} of 'split<TAB>sfen ...<TAB>move' lines."""
    counts = collections.defaultdict(lambda: [0, 0])
    for line in tsv_lines:
        if not line.strip():
            continue
        split, position, _ = line.rstrip("\n").split("\t")
        sfen = position.split(maxsplit=1)[1] if position.startswith("sfen ") else position
        counts[split][0] += 1
        counts[split][1] += " ".join(sfen.split()[:3]) in keys
    return dict(sorted(counts.items()))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    with open(FLAGS.input, "rb") as f:
        source_sha256 = hashlib.sha256(f.read()).hexdigest()
    with open(FLAGS.input, encoding="utf-8") as f:
        lines = f.read().splitlines()
    game_lines, summary = import_lines(lines)
    for error in summary["dropped_examples"]:
        logging.warning("%s: %s", FLAGS.input, error)
    summary["input"] = FLAGS.input
    summary["input_sha256"] = source_sha256
    summary["output_sha256"] = write_gzip(FLAGS.output, game_lines)
    summary["output_bytes"] = os.path.getsize(FLAGS.output)
    if FLAGS.overlap_tsv and os.path.exists(FLAGS.overlap_tsv):
        with open(FLAGS.overlap_tsv, encoding="utf-8") as f:
            summary["overlap_tsv"] = {
                "file": FLAGS.overlap_tsv,
                "rows_and_rows_in_games": overlap(f.read().splitlines(), game_positions(game_lines)),
            }
    print(json.dumps(summary, indent=1, sort_keys=True))
    if FLAGS.summary_json:
        file_io.write_json(FLAGS.summary_json, summary)


if __name__ == "__main__":
    define_flags()
    app.run(main)
