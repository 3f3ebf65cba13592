"""The rules of engine games, refereed move by move by cshogi, and the opening lines they start from.

Shared by the match runner (`shogi_policy.match`) and the data generator (`scripts/generate_games.py`).
Results are records.BLACK_WIN / WHITE_WIN / DRAW; endings use the names of records.ENDINGS.
"""

import collections
from pathlib import Path

import cshogi

from shogi_policy import encoding, records

# Floodgate opening lines beside a checkout (../shared/data); absent elsewhere.
DEFAULT_OPENINGS = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "floodgate_openings" / "records2016_10818.sfen"
)
REPETITIONS = 4  # sennichite: the same position (board, hands, side to move) for the fourth time


def winner(color):
    """The result when `color` (cshogi.BLACK / WHITE) wins."""
    return records.BLACK_WIN if color == cshogi.BLACK else records.WHITE_WIN


def loser(color):
    """The result when `color` loses."""
    return records.WHITE_WIN if color == cshogi.BLACK else records.BLACK_WIN


def read_opening_lines(path):
    """USI move lists of an openings file: one 'startpos moves ...' line each -> [(line number, moves tuple)]."""
    lines = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            tokens = line.split()
            if not tokens:
                continue
            if tokens[:2] != ["startpos", "moves"] and tokens != ["startpos"]:
                raise ValueError(f"{path}:{number}: expected 'startpos moves ...', got {line[:60]!r}")
            lines.append((number, tuple(tokens[2:])))
    return lines


def _position_key(board):
    """Board, side to move and hands: the SFEN without its move number."""
    return board.sfen().rsplit(" ", 1)[0]


class Game:
    """A game from the start position: the moves so far, checked by cshogi, and how it ended.

    Each method that can end the game returns (result, ending) when it does, else None.
    Raises ValueError (naming the ply, the move and the position) for an illegal opening move.
    """

    def __init__(self, opening=()):
        self.board = cshogi.Board()
        self.moves = []
        self._counts = collections.Counter([_position_key(self.board)])
        for usi in opening:
            try:
                self.play(usi)
            except ValueError as error:
                raise ValueError(f"opening {error}") from None

    def adjudicate(self, max_plies, auto_declare=False):
        """The end before the side to move moves: mate (no legal move), max_plies (a draw) or,
        with auto_declare, a declarable entering-king position (a win for the side to move)."""
        turn = self.board.turn
        if self.board.is_game_over():  # no legal move: mated (shogi has no stalemate)
            return loser(turn), "mate"
        if auto_declare and self.board.is_nyugyoku():
            return winner(turn), "declare"
        if len(self.moves) >= max_plies:
            return records.DRAW, "max_plies"
        return None

    def play(self, usi):
        """Plays the side to move's USI move; the end by repetition (sennichite), else None.

        Raises ValueError for an illegal or unreadable move (the game is unchanged).
        Fourfold repetition is a draw unless one side gave check with every move of the cycle
        (cshogi is_draw): that side loses ('perpetual_check').
        """
        try:
            move = encoding.legal_move(self.board, usi)
        except ValueError as error:
            raise ValueError(f"ply {len(self.moves) + 1}: {error} in {self.board.sfen()}") from None
        self.board.push(move)
        self.moves.append(usi)
        key = _position_key(self.board)
        self._counts[key] += 1
        if self._counts[key] < REPETITIONS:
            return None
        repetition = self.board.is_draw()
        if repetition == cshogi.REPETITION_WIN:  # the opponent (the side that moved) checked throughout
            return winner(self.board.turn), "perpetual_check"
        if repetition == cshogi.REPETITION_LOSE:
            return loser(self.board.turn), "perpetual_check"
        return records.DRAW, "repetition"

    def declare(self):
        """The side to move declares an entering-king win ('bestmove win'): upheld when cshogi's
        is_nyugyoku agrees (27-point rule), else a loss ('illegal')."""
        if self.board.is_nyugyoku():
            return winner(self.board.turn), "declare"
        return self.mover_loses("illegal")

    def mover_loses(self, ending):
        """The side to move loses (resign, timeout, crash, illegal move)."""
        return loser(self.board.turn), ending
