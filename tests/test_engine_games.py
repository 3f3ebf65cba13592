"""The shipped engine games (data/engine_games.usi.gz), refereed move by move with cshogi."""

import collections
import gzip
from pathlib import Path

import cshogi
import pytest
from conftest import referee_game_line

SHIPPED = Path(__file__).resolve().parents[1] / "data" / "engine_games.usi.gz"


def _read_lines(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def test_shipped_games_are_legal_and_refereed():
    if not SHIPPED.exists():
        pytest.skip(f"{SHIPPED} not generated")
    lines = _read_lines(SHIPPED)
    assert len(set(lines)) == len(lines)
    assert len({line.split("\t")[0] for line in lines}) == len(lines), "duplicate games"
    positions = sum(
        referee_game_line(line, max_plies=256) for line in lines
    )  # data/README.md: a 256-ply limit
    assert positions >= 100_000
    results = collections.Counter(line.split("\t")[1] for line in lines)
    assert min(results["black_win"], results["white_win"]) >= 0.25 * len(lines)
    # The engine resigns when it sees a forced mate against it. cshogi's mate search (checking moves
    # only, 7 plies) proves about 3/4 of them (the rest need quiet moves or more plies) and none
    # when the other side is made to resign.
    resigned = [_final_board(line) for line in lines if line.endswith("\tresign")]
    proved = sum(all(_mated_after(board, move, 7) for move in board.legal_moves) for board in resigned)
    assert proved >= 0.6 * len(resigned)


def _final_board(line):
    board = cshogi.Board()
    for usi in line.split("\t")[0].split()[2:]:
        board.push_usi(usi)
    return board


def _mated_after(board, move, plies):
    """Whether, after `move`, the opponent mates within `plies` (cshogi's checking-move search)."""
    board.push(move)
    mates = bool(board.mate_move(plies))
    board.pop()
    return mates
