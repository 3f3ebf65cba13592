"""The shipped floodgate games (data/floodgate_games.usi.gz), refereed move by move with cshogi.

Reads only data/ (no ../shared needed), except the reproduction test, which reruns the import script
on ../shared/data/floodgate_games/games.usi and skips where it is absent.
"""

import collections
import gzip
import subprocess
import sys
from pathlib import Path

import cshogi
import pytest

from scripts.data_import import import_floodgate_games
from shogi_policy.data import game_io, records

ROOT = Path(__file__).resolve().parents[1]
FLOODGATE = ROOT / "data" / "floodgate_games.usi.gz"
SCRIPT = ROOT / "scripts" / "data_import" / "import_floodgate_games.py"
# data/README.md's counts.
GAMES, POSITIONS = 1291, 127_415


def _lines(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def _referee(line):
    """Replays one game line, every move from cshogi's legal move list; checks result against ending.

    Returns the number of moves.
    """
    position, result, source, ending = line.split("\t")
    tokens = position.split()
    assert tokens[:2] == ["startpos", "moves"] and len(tokens) > 2, line[:80]
    assert source, line[:80]
    board = cshogi.Board()
    seen = collections.Counter([board.sfen().rsplit(" ", 1)[0]])
    # No check that a game stops at its first fourfold repetition: one floodgate game shuffles kings
    # back to the start position 3 times (4 occurrences with the start) and plays on.
    for ply, usi in enumerate(tokens[2:], start=1):
        legal = {cshogi.move_to_usi(move): move for move in board.legal_moves}
        assert usi in legal, f"illegal {usi} at ply {ply}: {source}"
        board.push(legal[usi])
        seen[board.sfen().rsplit(" ", 1)[0]] += 1
    mover_won = "black_win" if board.turn == cshogi.BLACK else "white_win"
    mover_lost = "white_win" if board.turn == cshogi.BLACK else "black_win"
    has_legal_move = any(True for _ in board.legal_moves)
    fourfold = seen[board.sfen().rsplit(" ", 1)[0]] >= 4
    if ending == "mate":
        assert not has_legal_move and result == mover_lost, line[-120:]
    elif ending == "repetition":
        assert fourfold and result == "draw" and board.is_draw(len(board.history)) == cshogi.REPETITION_DRAW
    elif ending == "declare":
        assert board.is_nyugyoku() and result == mover_won
    else:
        # Decisive games that end in none of the positions above: the side to move resigned (or lost
        # on time); the records cannot tell which, data/README.md says so.
        assert ending == "resign", ending
        assert result == mover_lost and has_legal_move and not fourfold and not board.is_nyugyoku()
    return len(tokens) - 2


def test_floodgate_games_are_legal_and_endings_agree():
    lines = _lines(FLOODGATE)
    assert len(lines) == GAMES and lines == sorted(lines, key=lambda line: (line.split("\t")[2], line))
    assert len({line.split("\t")[0] for line in lines}) == GAMES, "duplicate games"
    assert sum(_referee(line) for line in lines) == POSITIONS
    endings = collections.Counter(line.split("\t")[3] for line in lines)
    assert set(endings) <= set(game_io.ENDINGS)
    assert endings["mate"] >= 300 and endings["resign"] >= 800


def test_floodgate_games_read_as_games():
    games = [game for game in records.read_games(str(FLOODGATE))]
    assert all(isinstance(game, game_io.Game) for game in games)
    assert sum(len(game.moves) for game in games) == POSITIONS
    assert collections.Counter(game.result for game in games)[game_io.DRAW] == 6


def test_import_script_reproduces_the_shipped_file(shared_data, tmp_path):
    output = tmp_path / "floodgate_games.usi.gz"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), f"--input={shared_data / 'floodgate_games' / 'games.usi'}",
         f"--output={output}", "--overlap_tsv="],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert output.read_bytes() == FLOODGATE.read_bytes()


def test_import_endings_on_made_up_games():
    lines = [
        "startpos moves 5i5h 5a5b 5h5i 5b5a 5i5h 5a5b 5h5i 5b5a 5i5h 5a5b 5h5i 5b5a\twhite_win\tx",
        "startpos moves 7g7f 3c3d\twhite_win\ty",
        "startpos moves 7g7f 8c8d\tblack_win\tz",
        "startpos moves 7g7f 3c3c\tblack_win\tbad",
    ]
    out, summary = import_floodgate_games.import_lines(lines)
    assert summary["dropped"] == 1 and "illegal move '3c3c' at ply 2" in summary["dropped_examples"][0]
    by_source = {line.split("\t")[2]: line.split("\t") for line in out}
    assert by_source["x"][1:] == ["draw", "x", "repetition"]  # fourfold: the result is corrected
    assert summary["corrected"] == ["line 1: white_win -> draw (repetition)"]
    assert by_source["y"][1:] == ["white_win", "y", "resign"]  # Black to move lost
    assert by_source["z"][1:] == ["black_win", "z", "unknown"]  # Black to move won: no known reason


def test_infer_ending_mate_and_declare():
    mated = cshogi.Board("4k4/4G4/4G4/9/9/9/9/9/4K4 w - 1")  # head gold, protected: White is mated
    assert import_floodgate_games.infer_ending(mated, collections.Counter()) == ("mate", "black_win")
    assert import_floodgate_games.ending_of(mated, collections.Counter(), "white_win") == (
        "mate",
        "black_win",
    )
    declarable = cshogi.Board("LNSGKG1NL/1R3S1B1/PPPPPPPPP/9/9/9/ppppppppp/1b3s1r1/lnsg1gsnl b S 1")
    if declarable.is_nyugyoku():
        assert import_floodgate_games.infer_ending(declarable, collections.Counter())[0] == "declare"


def test_import_rejects_impossible_promotion():
    # A rook that does not start or end in the promotion zone cannot promote; cshogi's is_legal
    # would still accept some such moves, the legal move list does not.
    with pytest.raises(import_floodgate_games.GameError, match="illegal move '2h3h\\+'"):
        import_floodgate_games.replay(["2h3h+"])
