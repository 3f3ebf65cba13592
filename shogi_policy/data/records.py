"""Game records (CSA, KIF, USI move lines, dlshogi hcpe) -> Games -> compact position records.

read_games reads one record file with the reader of its extension (shogi_policy.data.csa, kif, usi_lines,
hcpe), which yield `Game`s or `RecordError`s (shogi_policy.data.game_io).

`games_to_records` turns Games into uint8 [n, 100] records (record_format.pack_records) without a board
per position: the board before each move is rebuilt in numpy from the moves' cshogi bit fields.
"""

import functools
import gzip
import itertools
import os

import cshogi
import numpy as np
import tensorflow as tf

from shogi_policy.core import policy_labels, quoting, record_format, shogi_rules
from shogi_policy.data import csa, game_io, hcpe, kif, usi_lines

# Record file extension (before an optional .gz) -> its reader.
_READERS = {
    ".csa": csa.read_csa,
    ".kif": kif.read_kif,
    ".kifu": kif.read_kif,
    ".usi": usi_lines.read_usi,
    ".txt": usi_lines.read_usi,
    ".sfen": usi_lines.read_usi,
    ".hcpe": hcpe.read_hcpe,
}
EXTENSIONS = tuple(_READERS)


def read_games(path):
    """Yields the Games and RecordErrors of one record file, by extension (optionally .gz).

    .csa -> csa.read_csa, .kif/.kifu -> kif.read_kif, .usi/.txt/.sfen -> usi_lines.read_usi, .hcpe -> hcpe.read_hcpe.
    A file that cannot be read (I/O, bad gzip) ends with a RecordError instead of raising.
    Raises ValueError for an unknown extension.
    """
    path = os.fspath(path)
    extension = game_io.record_extension(path)
    if extension not in _READERS:
        raise ValueError(
            f"{path}: unknown record extension {quoting.quote(extension)}; expected one of {EXTENSIONS}"
        )
    try:
        yield from _READERS[extension](path)
    except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile, tf.errors.OpError) as error:
        yield game_io.RecordError(path, 0, f"cannot read: {error}")


# cshogi Move bit fields: to 0-6, from 7-13 (81 + piece type - 1 for drops), promotion 14,
# moved piece type 16-19, captured piece type 20-23.
_RESULT_FOR_BLACK = {
    game_io.BLACK_WIN: record_format.RESULT_WIN,
    game_io.WHITE_WIN: record_format.RESULT_LOSS,
    game_io.DRAW: record_format.RESULT_DRAW,
    None: record_format.RESULT_DRAW,
}


def games_to_records(games, game_ids):
    """The positions of games as records: the board before each move and the move played.

    Vectorised over all positions of all games (no cshogi call per position): a square holds the
    value of its last write, where a game's first row writes its whole start board and each move
    writes its from- and to-squares. A game of unknown result is stored as a draw. Fastest on
    batches of a few thousand positions.

    Args:
      games: sequence of game_io.Game; game_ids: int [len(games)] in [0, 2**24).
    Returns:
      uint8 [total moves, 100] records (record_format.pack_records layout), games in order.
    """
    lengths = np.fromiter((len(game.moves) for game in games), dtype=np.int64, count=len(games))
    moves = np.fromiter(itertools.chain.from_iterable(game.moves for game in games), np.int64, lengths.sum())
    starts = np.cumsum(lengths) - lengths
    rows = len(moves)
    start_boards, start_hands, start_turns = _start_positions([game.sfen for game in games])
    game_of_row = np.repeat(np.arange(len(games)), lengths)
    ply = np.arange(rows) - starts[game_of_row]
    turns = (start_turns[game_of_row] + ply) & 1

    to_sq = moves & 0x7F
    from_sq = (moves >> 7) & 0x7F
    is_drop = from_sq >= shogi_rules.NUM_SQUARES
    moved_type = np.where(is_drop, from_sq - shogi_rules.NUM_SQUARES + 1, (moves >> 16) & 0xF)
    placed = (
        moved_type
        + shogi_rules.PROMOTED_OFFSET * ((moves >> 14) & 1)
        + shogi_rules.WHITE_PIECE_OFFSET * turns
    )

    # written[r, sq]: row of the last write to sq at or before row r (forward-filled below).
    written = np.full((rows, shogi_rules.NUM_SQUARES), -1, dtype=np.int32)
    value = np.zeros((rows, shogi_rules.NUM_SQUARES), dtype=np.uint8)
    nonempty = lengths > 0
    first_rows = starts[nonempty]
    written[first_rows] = first_rows[:, np.newaxis]
    value[first_rows] = start_boards[nonempty]
    after = np.flatnonzero(ply[1:] > 0)  # moves followed by a row of the same game
    board_moves = after[~is_drop[after]]
    written[board_moves + 1, from_sq[board_moves]] = board_moves + 1
    value[board_moves + 1, from_sq[board_moves]] = 0
    written[after + 1, to_sq[after]] = after + 1
    value[after + 1, to_sq[after]] = placed[after]
    written = np.maximum.accumulate(written, axis=0)
    boards = value[written, np.arange(shogi_rules.NUM_SQUARES)]

    # Hands: +1 for a capture (demoted: type & 7), -1 for a drop, in the mover's half; the running
    # sum restarts at each game's start hands.
    captured = (moves >> 20) & 0xF
    hand_type = np.where(is_drop, moved_type, captured & 7)
    delta = np.zeros((rows, record_format.HAND_BYTES), dtype=np.int16)
    changed = np.flatnonzero(is_drop | (captured > 0))
    delta[changed, turns[changed] * 7 + shogi_rules.HAND_SLOT_OF_TYPE[hand_type[changed]]] = np.where(
        is_drop[changed], -1, 1
    )
    before = np.cumsum(delta, axis=0) - delta  # sum of the deltas of earlier rows
    hands = start_hands[game_of_row] + before - before[starts[game_of_row]]

    black_result = np.array([_RESULT_FOR_BLACK[game.result] for game in games], dtype=np.int64)
    results = np.where(turns == shogi_rules.BLACK, black_result[game_of_row], 2 - black_result[game_of_row])
    labels = policy_labels.move_labels(moves, turns)
    return record_format.pack_records(
        boards, hands, turns, labels, results, np.asarray(game_ids)[game_of_row]
    )


@functools.lru_cache(maxsize=4096)
def _start_position(sfen):
    """(pieces uint8 [81], hands int16 [14], turn) of an SFEN; cached since most games share one."""
    board = cshogi.Board(sfen)
    pieces, hands = record_format.board_arrays(board)
    return pieces, hands.astype(np.int16), board.turn


def _start_positions(sfens):
    """Start boards uint8 [G, 81], hands int16 [G, 14] and turns int64 [G] of SFENs."""
    if not sfens:
        return (
            np.zeros((0, record_format.BOARD_BYTES), np.uint8),
            np.zeros((0, record_format.HAND_BYTES), np.int16),
            np.zeros(0, np.int64),
        )
    pieces, hands, turns = zip(*(_start_position(sfen) for sfen in sfens), strict=True)
    return np.stack(pieces), np.stack(hands), np.array(turns, dtype=np.int64)
