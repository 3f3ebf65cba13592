"""CSA read as the format defines it: several statements a line, specials ending the game where they stand
(and KIF's terminal words likewise).

Oracle: cshogi's own CSA parser (cshogi.CSA.Parser) on the 100 real floodgate CSA files, and on the same
games written one statement a line, which it reads correctly (it reads one move a line and lets a later
special override an earlier one, so it cannot be the oracle of the rewritten files themselves).
"""

import datetime

import cshogi
import cshogi.CSA
import cshogi.KIF
import pytest
from conftest import SHARED_DATA
from hypothesis import given, settings
from hypothesis import strategies as st

from shogi_policy.data import game_io, records

CSA_DIR = SHARED_DATA / "floodgate_games" / "csa"
CSA_FILES = sorted(CSA_DIR.glob("*.csa")) if CSA_DIR.is_dir() else []
needs_csa = pytest.mark.skipif(not CSA_FILES, reason=f"{CSA_DIR} not present")
ORACLE_RESULT = {
    cshogi.BLACK_WIN: game_io.BLACK_WIN,
    cshogi.WHITE_WIN: game_io.WHITE_WIN,
    cshogi.DRAW: game_io.DRAW,
}
# Specials whose result cshogi's parser knows (it draws %TSUMI and %CHUDAN: tested on their own below and in
# tests/test_record_trust.py).
ORACLE_SPECIALS = (
    "%TORYO",
    "%TIME_UP",
    "%ILLEGAL_MOVE",
    "%+ILLEGAL_ACTION",
    "%-ILLEGAL_ACTION",
    "%KACHI",
    "%SENNICHITE",
    "%JISHOGI",
    "%HIKIWAKE",
)


def read_one(path, text):
    path.write_text(text)
    (item,) = list(records.read_games(str(path)))
    return item


def oracle(text):
    """(sfen, moves, result) of cshogi's parser on one game of one statement a line."""
    parser = cshogi.CSA.Parser.parse_str(text)[0]
    return cshogi.Board(parser.sfen).sfen(), list(parser.moves), ORACLE_RESULT[parser.win]


def contradicts_its_final_position(text, special):
    """Whether cshogi's reading of a game ended by special contradicts the final position, by cshogi: a mate whose
    result is not the mated side's loss, a %KACHI short of the 27-point rule, a %SENNICHITE without a repetition."""
    parser = cshogi.CSA.Parser.parse_str(text)[0]
    board = cshogi.Board(parser.sfen)
    for move in parser.moves:
        board.push(move)
    if board.is_game_over():
        return parser.win != (cshogi.WHITE_WIN if board.turn == cshogi.BLACK else cshogi.BLACK_WIN)
    return {"%KACHI": not board.is_nyugyoku(), "%SENNICHITE": board.is_draw() != cshogi.REPETITION_DRAW}.get(
        special, False
    )


def ours(game):
    assert isinstance(game, game_io.Game), game
    return game.sfen, game.moves, game.result


def header_and_moves(text):
    """(header lines up to the side to move, move lines, the rest) of a one-statement-a-line CSA game."""
    lines = text.split("\n")
    first = next(i for i, line in enumerate(lines) if line[:1] in "+-" and len(line) > 1)
    last = max(i for i, line in enumerate(lines) if line[:1] in "+-" and len(line) > 1)
    return lines[:first], lines[first : last + 1], lines[last + 1 :]


@needs_csa
@pytest.mark.parametrize("path", CSA_FILES, ids=lambda path: path.name)
def test_every_floodgate_file_reads_as_cshogi_reads_it(path):
    text = path.read_text()
    (game,) = list(records.read_games(str(path)))
    assert ours(game) == oracle(text) and game.ending == "resign"


@needs_csa
@settings(max_examples=40, deadline=None)
@given(data=st.data(), index=st.integers(0, len(CSA_FILES) - 1) if CSA_FILES else st.just(0))
def test_several_moves_and_times_a_line_read_like_one_a_line(tmp_path_factory, data, index):
    text = CSA_FILES[index].read_text()
    header, moves, rest = header_and_moves(text)
    timed = [
        f"{move},T{data.draw(st.integers(0, 600))}" if data.draw(st.booleans()) else move for move in moves
    ]
    lines, at = [], 0
    while at < len(timed):
        size = data.draw(st.integers(1, 5))
        lines.append(",".join(timed[at : at + size]))
        at += size
    if data.draw(st.booleans()):  # the special on the last move's line
        lines[-1] += "," + rest[0]
        rest = rest[1:]
    rewritten = "\n".join([*header, *lines, *rest])
    game = read_one(tmp_path_factory.mktemp("csa") / "g.csa", rewritten)
    assert ours(game) == oracle(text)


@needs_csa
def test_the_issue_example_two_moves_a_line_keeps_the_last_move_and_the_winner(tmp_path):
    text = CSA_FILES[0].read_text()
    assert "-7362GI\n+3262RY\n%TORYO" in text
    game = read_one(tmp_path / "g.csa", text.replace("-7362GI\n+3262RY", "-7362GI,+3262RY"))
    assert ours(game) == oracle(text) and game.result == game_io.BLACK_WIN


@needs_csa
@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    index=st.integers(0, len(CSA_FILES) - 1) if CSA_FILES else st.just(0),
    special=st.sampled_from(ORACLE_SPECIALS),
)
def test_a_special_ends_the_game_where_it_stands(tmp_path_factory, data, index, special):
    """Cut after any move with a special: the result is cshogi's on that text; moves or a special after it refuse."""
    header, moves, _ = header_and_moves(CSA_FILES[index].read_text())
    cut = data.draw(st.integers(1, len(moves) - 1))
    ended = [*header, *moves[:cut], special, "T3", "'a comment"]
    directory = tmp_path_factory.mktemp("csa")
    game = read_one(directory / "ended.csa", "\n".join(ended))
    if contradicts_its_final_position("\n".join(ended), special):
        assert isinstance(game, game_io.RecordError) and "final position" in game.message, game
    else:
        assert ours(game) == oracle("\n".join(ended))
    after = data.draw(st.sampled_from([moves[cut], "%KACHI", "%TORYO", f"{moves[cut]},{special}"]))
    error = read_one(directory / "on.csa", "\n".join([*ended, after]))
    assert isinstance(error, game_io.RecordError) and error.line == len(ended) + 1, error
    assert f"after {special}, which ended the game" in error.message


def test_toryo_then_kachi_is_refused_not_read_as_a_declaration(tmp_path):
    """The issue's example: '%TORYO' then '%KACHI' became a declaration win for the other side."""
    error = read_one(tmp_path / "g.csa", "PI\n+\n+7776FU\n-3334FU\n%TORYO\n%KACHI\n")
    assert isinstance(error, game_io.RecordError) and error.line == 6
    assert error.message == "'%KACHI' after %TORYO, which ended the game"


@pytest.mark.parametrize(
    ("ending_lines", "ending", "result"),
    [
        (["%CHUDAN"], "abort", None),
        (["'summary:max_moves:a draw:b draw"], "max_plies", game_io.DRAW),
        (["%TORYO", "'summary:abnormal:a win:b lose"], "resign", game_io.WHITE_WIN),
    ],
)
def test_result_from_the_ending_and_the_side_to_move(tmp_path, ending_lines, ending, result):
    moves = ["+2726FU", "-5142OU", "+2625FU", "-4251OU"]
    game = read_one(tmp_path / "g.csa", "\n".join(["PI", "+", *moves, *ending_lines, ""]))
    assert (game.ending, game.result, len(game.moves)) == (ending, result, 4), game


def test_unknown_specials_are_refused_naming_them(tmp_path):
    error = read_one(tmp_path / "g.csa", "PI\n+\n+7776FU\n%MATTA\n-3334FU\n")
    assert isinstance(error, game_io.RecordError) and error.line == 4
    assert error.message.startswith("unsupported CSA special '%MATTA'")


def test_a_huge_token_is_quoted_capped(tmp_path):
    error = read_one(tmp_path / "g.csa", "PI\n+\n+7776FU\n%" + "X" * 1_000_000 + "\n")
    assert isinstance(error, game_io.RecordError) and len(str(error)) < 400
    assert "(1,000,001 characters)" in error.message


def test_a_kif_move_after_the_end_is_refused_too(tmp_path):
    path = tmp_path / "g.kifu"
    kif = cshogi.KIF.Exporter(str(path))
    kif.header(["a", "b"], datetime.datetime(2026, 1, 1))
    board = cshogi.Board()
    for usi in ("7g7f", "3c3d"):
        kif.move(board.move_from_usi(usi))
        board.push_usi(usi)
    kif.end("resign")
    kif.close()
    lines = path.read_text(encoding="utf-8").rstrip("\n").split("\n")
    end = next(i for i, line in enumerate(lines) if "投了" in line)
    (game,) = list(records.read_games(str(path)))
    assert isinstance(game, game_io.Game) and len(game.moves) == 2 and game.result == game_io.WHITE_WIN
    lines.insert(end + 1, "   4 ２六歩(27)   ( 0:00/00:00:00)")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (error,) = list(records.read_games(str(path)))
    assert isinstance(error, game_io.RecordError) and error.line == end + 2, error
    assert error.message.endswith("after 投了, which ended the game")
