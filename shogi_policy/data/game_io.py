"""What every game-record reader shares: the Game it yields, the RecordError it yields instead, the names of
results and endings, and reading a record file (local or gs://, .gz allowed, UTF-8 or CP932).

Readers (csa, kif, usi_lines, hcpe) yield `Game`s, or a `RecordError` for each game (or file) they cannot use;
they never raise for one bad game, so a converter can count and report bad input and go on. Every move of a
yielded Game is legal: readers replay each game on a cshogi.Board.
"""

import dataclasses
import gzip
import io
import os

import tensorflow as tf

from shogi_policy.core import shogi_rules

BLACK_WIN, WHITE_WIN, DRAW = "black_win", "white_win", "draw"
RESULTS = (BLACK_WIN, WHITE_WIN, DRAW)
ENDINGS = (
    "resign",
    "mate",
    "repetition",
    "declare",
    "timeout",
    "illegal",
    "max_plies",
    "impasse",
    "abort",
    "perpetual_check",
    "unknown",
)


@dataclasses.dataclass
class Game:
    """One game: the start position and the legal cshogi moves (full 32-bit values) played from it.

    result is black_win / white_win / draw, or None when unknown; ending is one of ENDINGS for
    CSA/KIF/hcpe (USI files may name others). Ratings are None when the record has none.
    source is "file:line" of the game's first line (the 1-based row for hcpe).
    """

    sfen: str
    moves: list
    result: str | None = None
    ending: str = "unknown"
    black_rating: float | None = None
    white_rating: float | None = None
    source: str = ""


class RecordError(ValueError):
    """A game (or file) that cannot be used; str() is "file:line: message"."""

    def __init__(self, source, line, message):
        super().__init__(f"{source}:{line}: {message}")
        self.source, self.line, self.message = source, line, message


def is_gzip(path):
    """Whether a record file is gzipped: its name ends with .gz in any case ('a.USI.GZ')."""
    return path.lower().endswith(".gz")


def record_extension(path):
    """The lower-case extension of a record file, ignoring a trailing .gz ('.csa' for 'a.CSA.gz')."""
    return os.path.splitext(path[:-3] if is_gzip(path) else path)[1].lower()


def open_binary(path):
    """A binary file object of path (local or gs://), gunzipped when it ends with .gz."""
    stream = tf.io.gfile.GFile(path, "rb")
    return gzip.GzipFile(fileobj=stream, mode="rb") if is_gzip(path) else stream


def open_lines(path):
    """A UTF-8 text file object of path (local or gs://, .gz allowed) iterating over lines."""
    if is_gzip(path):
        return io.TextIOWrapper(open_binary(path), encoding="utf-8")
    return tf.io.gfile.GFile(path, "r")  # GFile is no io.IOBase; it decodes UTF-8 in text mode


def read_text(path):
    """The whole text of a record file: UTF-8 (BOM or not), else CP932 (Shift_JIS); '\\n' newlines."""
    with open_binary(path) as stream:
        data = stream.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp932")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def first_illegal(board, moves):
    """Pushes moves on board; the index of the first illegal (or null) move, else None."""
    for index, move in enumerate(moves):
        if not shogi_rules.is_legal_move(board, move):
            return index
        board.push(move)
    return None


def result_of(rule, turn):
    """The result of a game ended under rule ('mover_loses', ...) with turn (0/1) to move at the end."""
    if rule == "mover_loses":
        return WHITE_WIN if turn == shogi_rules.BLACK else BLACK_WIN
    if rule == "mover_wins":
        return BLACK_WIN if turn == shogi_rules.BLACK else WHITE_WIN
    return {"draw": DRAW, "black_loses": WHITE_WIN, "white_loses": BLACK_WIN}.get(rule)
