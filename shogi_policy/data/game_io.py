"""What every game-record reader shares: the Game it yields, the RecordError it yields instead, the names of
results and endings, and reading a record file (local or gs://, .gz allowed, UTF-8 or CP932).

Readers (csa, kif, usi_lines, hcpe) yield `Game`s, or a `RecordError` for each game (or file) they cannot use;
they never raise for one bad game, so a converter can count and report bad input and go on. Every move of a
yielded Game is legal: readers replay each game on a cshogi.Board.
"""

import codecs
import dataclasses
import gzip
import os

import cshogi
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


def read_lines(path):
    """Yields (line number, text) of a UTF-8 text file (local or gs://, .gz allowed), lazily, a leading byte-order
    mark dropped; text keeps its newline and is None for a line that is not UTF-8, so that a reader can refuse
    that line, naming it, and go on with the next."""
    with open_binary(path) as stream:
        for number, line in enumerate(stream, 1):
            try:
                yield number, (line.removeprefix(codecs.BOM_UTF8) if number == 1 else line).decode("utf-8")
            except UnicodeDecodeError:
                yield number, None


def _decoded(line, encoding):
    """line (bytes) decoded, or None where it is not text in encoding."""
    try:
        return line.decode(encoding)
    except UnicodeDecodeError:
        return None


def read_text_lines(path):
    """The lines of a record file (no newlines; '\r\n' and '\r' end lines too): UTF-8 (BOM or not), else CP932
    (Shift_JIS), whichever more lines decode as (UTF-8 on a tie); a line that is not text in it is None.

    Lines are decoded one by one, so one bad byte costs its line (the reader names it), not the file.
    """
    with open_binary(path) as stream:
        data = stream.read()
    lines = data.removeprefix(codecs.BOM_UTF8).replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    utf8 = [_decoded(line, "utf-8") for line in lines]
    if None not in utf8:
        return utf8
    cp932 = [_decoded(line, "cp932") for line in lines]
    return cp932 if cp932.count(None) < utf8.count(None) else utf8


def undecodable(lines, first_line=1):
    """(line number, message) of the first line of read_text_lines that is None, or None."""
    index = next((i for i, line in enumerate(lines) if line is None), None)
    if index is None:
        return None
    return first_line + index, "a line that is neither UTF-8 nor CP932 (Shift_JIS) text"


def first_illegal(board, moves):
    """Pushes moves on board; the index of the first illegal (or null) move, else None."""
    for index, move in enumerate(moves):
        if not shogi_rules.is_legal_move(board, move):
            return index
        board.push(move)
    return None


def endings(**words_by_rule):
    """{terminal word: (ending, rule)} of a reader's terminal words grouped by result rule: each keyword is a rule
    of result_of ('mover_loses', 'mover_wins', 'black_loses', 'white_loses', 'draw'), or 'unscored' (no result),
    and maps the words that end a game under it to their ending (ENDINGS)."""
    return {
        word: (ending, None if rule == "unscored" else rule)
        for rule, words in words_by_rule.items()
        for word, ending in words.items()
    }


def result_of(rule, turn):
    """The result of a game ended under rule ('mover_loses', ...) with turn (0/1) to move at the end."""
    if rule == "mover_loses":
        return WHITE_WIN if turn == shogi_rules.BLACK else BLACK_WIN
    if rule == "mover_wins":
        return BLACK_WIN if turn == shogi_rules.BLACK else WHITE_WIN
    return {"draw": DRAW, "black_loses": WHITE_WIN, "white_loses": BLACK_WIN}.get(rule)


def _mover(turn, wins):
    """The result of a win (wins) or loss of the side to move, turn (0 black, 1 white)."""
    return (BLACK_WIN, WHITE_WIN)[turn ^ (not wins)]


# cshogi's repetition kinds (Board.is_draw) -> whether the side to move wins (None: a draw).
_REPETITION_WINNER = {
    cshogi.REPETITION_DRAW: None,
    cshogi.REPETITION_WIN: True,
    cshogi.REPETITION_LOSE: False,
}


def final_position_problem(board, result, ending):
    """How a game's result or ending contradicts its final position (the cshogi.Board after its moves), or None.

    The final position decides three endings: a side to move without a legal move is mated and lost (whatever
    the ending says); 'repetition' and 'perpetual_check' need a position that occurred before (cshogi's
    is_draw: a draw, or a loss for the side that checked throughout); a declaration win ('declare', the side
    to move declares) needs cshogi's is_nyugyoku (the 27-point rule). An unknown result (None) contradicts none.
    """
    side = ("black", "white")[board.turn]
    if board.is_game_over():
        if result not in (None, _mover(board.turn, wins=False)):
            return (
                f"the final position is mate ({side} to move has no legal move), but the result is {result}"
            )
        return None
    if ending == "mate":
        return f"the ending is mate, but {side} to move has legal moves in the final position"
    if ending in ("repetition", "perpetual_check"):
        kind = board.is_draw()
        if kind not in _REPETITION_WINNER:
            return f"the ending is {ending}, but the final position did not occur before"
        winner = _REPETITION_WINNER[kind]
        expected = DRAW if winner is None else _mover(board.turn, wins=winner)
        if result not in (None, expected):
            return f"the final position is a repetition that gives {expected}, but the result is {result}"
    if ending == "declare" and result == _mover(board.turn, wins=True) and not board.is_nyugyoku():
        return f"{side} won by declaration, but the final position does not meet the 27-point rule"
    return None


def finished(game, board, path, line):
    """game, or a RecordError at path:line when its result or ending contradicts board, its final position."""
    problem = final_position_problem(board, game.result, game.ending)
    return game if problem is None else RecordError(path, line, problem)
