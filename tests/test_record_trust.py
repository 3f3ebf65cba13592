"""Readers against bad bytes and byte-order marks (a bad line costs that line, not the file), records whose result
or ending contradicts their final position (cshogi decides: mate, repetition, declaration), CSA moves with the
other side's sign, and the converter's count of games without a result under --drop_draws.

The games are the repository's own floodgate games (data/floodgate_games.usi.gz), written out by cshogi's CSA
and KIF exporters.
"""

import codecs
import gzip
from pathlib import Path

import cshogi
import cshogi.CSA
import cshogi.KIF
import pytest
from conftest import run_convert

from shogi_policy.data import game_io, records

ROOT = Path(__file__).resolve().parents[1]
NYUGYOKU_SFEN = (
    "+R+R+B+BGGSS1/4K4/GG7/9/9/9/9/9/4k4 b 2P 1"  # black meets the 27-point rule (28 points) exactly
)


@pytest.fixture(scope="module")
def usi_lines():
    """The first 40 lines of data/floodgate_games.usi.gz ('startpos moves ...<TAB>result<TAB>source<TAB>ending')."""
    with gzip.open(ROOT / "data" / "floodgate_games.usi.gz", "rt") as stream:
        return [next(stream).rstrip("\n") for _ in range(40)]


def read(path, content):
    """Every item records.read_games yields for a file holding content (str: UTF-8, or bytes)."""
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return list(records.read_games(str(path)))


def errors_of(items):
    return [(item.line, item.message) for item in items if isinstance(item, game_io.RecordError)]


def test_a_bad_byte_in_a_usi_file_costs_its_line_only(usi_lines, tmp_path):
    """The issue's example: one non-UTF-8 byte on line 3 of a USI file dropped every game after it as 1 error."""
    data = "\n".join(usi_lines).encode("utf-8").split(b"\n")
    data[2] = data[2][:20] + b"\xff" + data[2][20:]
    for name in ("g.usi", "g.usi.gz"):
        content = b"\n".join(data) + b"\n"
        items = read(tmp_path / name, gzip.compress(content) if name.endswith(".gz") else content)
        assert len(items) == 40 and errors_of(items) == [(3, "a line that is not UTF-8 text")], name
        assert str(items[2]).startswith(f"{tmp_path / name}:3: ")


def test_a_byte_order_mark_costs_nothing(usi_lines, tmp_path):
    items = read(tmp_path / "g.usi", codecs.BOM_UTF8 + "\n".join(usi_lines[:3]).encode("utf-8"))
    assert len(items) == 3 and not errors_of(items)


def csa_game(path, moves, special="%TORYO", start=None):
    """Writes cshogi's CSA text of cshogi moves from start (a Board; the initial position by default) to path,
    ending with special; returns the text."""
    exporter = cshogi.CSA.Exporter(str(path))
    exporter.info(start or cshogi.Board(), ["a", "b"])
    for move in moves:
        exporter.move(move)
    exporter.endgame(special)
    exporter.close()
    return path.read_text(encoding="utf-8")


def usi_moves(line):
    board = cshogi.Board()
    return [board.push_usi(usi) or board.peek() for usi in line.split("\t")[0].split()[2:]]


def test_bad_bytes_cost_their_game_in_csa_and_kif(usi_lines, tmp_path):
    games = [csa_game(tmp_path / "one.csa", usi_moves(line)) for line in usi_lines[:3]]
    text = "/\n".join(games).encode("utf-8").split(b"\n")
    bad = len(games[0].split("\n")) + 7  # a move line of the second game (0-based)
    text[bad] += b"\x81"  # a CP932 lead byte without its trail byte: neither UTF-8 nor CP932
    items = read(tmp_path / "g.csa", b"\n".join(text))
    assert [isinstance(item, game_io.Game) for item in items] == [True, False, True]
    assert errors_of(items) == [(bad + 1, "a line that is neither UTF-8 nor CP932 (Shift_JIS) text")]

    for name, encoding in (("g.kifu", "utf-8"), ("g.kif", "cp932")):
        exporter = cshogi.KIF.Exporter(str(tmp_path / name))
        exporter.header(["先手名人", "後手竜王"])
        for move in usi_moves(usi_lines[0]):
            exporter.move(move)
        exporter.end("resign")
        exporter.close()
        lines = (tmp_path / name).read_bytes().split(b"\n")
        index = next(i for i, line in enumerate(lines) if line.lstrip().startswith(b"5 "))
        assert read(tmp_path / name, codecs.BOM_UTF8 * (encoding == "utf-8") + b"\n".join(lines))[0].moves
        lines[index] += b"\x81"
        (error,) = read(tmp_path / name, b"\n".join(lines))
        assert isinstance(error, game_io.RecordError) and error.line == index + 1, (name, error)


def test_a_csa_move_with_the_other_sides_sign_is_refused_naming_its_line(tmp_path):
    """The issue's example: '-2726FU' on black's turn was played as black's move."""
    (error,) = read(tmp_path / "g.csa", "V2.2\nPI\n+\n-2726FU\n-3334FU\n%TORYO\n")
    assert (error.line, error.message) == (4, "'-2726FU' is white's move on black's turn")
    (error,) = read(tmp_path / "g.csa", "V2.2\nPI\n+\n+2726FU,+3334FU\n%TORYO\n")
    assert (error.line, error.message) == (4, "'+3334FU' is black's move on white's turn")
    (error,) = read(tmp_path / "g.csa", "PI\n-\n+3334FU\n%TORYO\n")  # white to move first
    assert error.message == "'+3334FU' is black's move on white's turn"


@pytest.mark.parametrize(
    ("moves", "result", "ending", "message"),
    [
        # data/floodgate_games.usi.gz line 1 ends in mate (white to move, mated): labelled for the mated side.
        ("line1", "white_win", "mate", "the final position is mate (white to move has no legal move), but"),
        ("line1", "draw", "resign", "the final position is mate"),
        ("line2", "black_win", "mate", "the ending is mate, but white to move has legal moves"),
        ("7g7f 3c3d", "draw", "repetition", "the ending is repetition, but the final position did not occur"),
        ("5i5h 5a5b 5h5i", "draw", "repetition", "did not occur before"),
        ("5i5h 5a5b 5h5i 5b5a", "black_win", "repetition", "a repetition that gives draw, but the result"),
        ("7g7f 3c3d 2g2f 4c4d", "black_win", "declare", "black won by declaration, but the final position"),
    ],
)
def test_a_result_that_contradicts_the_final_position_is_refused(
    usi_lines, tmp_path, moves, result, ending, message
):
    if moves.startswith("line"):
        moves = " ".join(usi_lines[int(moves[4:]) - 1].split("\t")[0].split()[2:])
    (error,) = read(tmp_path / "g.usi", f"startpos moves {moves}\t{result}\tsrc\t{ending}\n")
    assert isinstance(error, game_io.RecordError) and error.line == 1 and message in error.message, error


@pytest.mark.parametrize(
    ("line", "result", "ending"),
    [
        ("startpos moves 5i5h 5a5b 5h5i 5b5a", "draw", "repetition"),
        (f"sfen {NYUGYOKU_SFEN}", "black_win", "declare"),
        (f"sfen {NYUGYOKU_SFEN}", "white_win", "declare"),  # a failed declaration is not checked
        ("startpos moves 7g7f", "black_win", "resign"),
        ("startpos moves 7g7f", "", "unknown"),
    ],
)
def test_results_that_agree_with_the_final_position_are_kept(tmp_path, line, result, ending):
    (item,) = read(tmp_path / "g.usi", f"{line}\t{result}\tsrc\t{ending}\n")
    assert isinstance(item, game_io.Game), item


def test_every_repository_game_agrees_with_its_final_position():
    """The oracle's side: the 1,291 floodgate games (400 mates, 6 repetitions) and 1,000 engine games all pass."""
    for name in ("floodgate_games.usi.gz", "engine_games.usi.gz"):
        items = list(records.read_games(str(ROOT / "data" / name)))
        assert len(items) >= 1000 and not errors_of(items), errors_of(items)[:3]


MATE_START = "4k4/9/4P4/9/9/9/9/9/4K4 b G 1"  # black mates with G*5b


@pytest.mark.parametrize(
    ("start", "moves", "special", "expected"),
    [
        (MATE_START, ["G*5b"], "%TSUMI", game_io.BLACK_WIN),
        (MATE_START, ["G*5b"], "%TORYO", game_io.BLACK_WIN),  # the mated side resigns
        (MATE_START, ["G*5b"], "%KACHI", "the final position is mate"),  # the mated side declares
        (None, 20, "%TSUMI", "the ending is mate, but black to move has legal moves"),
        (None, 20, "%KACHI", "black won by declaration, but the final position does not meet"),
        (NYUGYOKU_SFEN, [], "%KACHI", game_io.BLACK_WIN),
        (None, 20, "%SENNICHITE", "the ending is repetition, but the final position did not occur before"),
    ],
)
def test_csa_specials_against_the_final_position(usi_lines, tmp_path, start, moves, special, expected):
    board = cshogi.Board(start) if start else None
    if isinstance(moves, int):
        moves = usi_moves(usi_lines[1])[:moves]
    else:
        moves = [board.copy().move_from_usi(usi) for usi in moves]
    (item,) = read(tmp_path / "g.csa", csa_game(tmp_path / "g.csa", moves, special, board))
    if expected in game_io.RESULTS:
        assert isinstance(item, game_io.Game) and item.result == expected, item
    else:
        assert isinstance(item, game_io.RecordError) and expected in item.message, item


@pytest.mark.parametrize(
    ("word", "message"),
    [
        ("千日手", "the ending is repetition, but the final position did not occur before"),
        ("入玉宣言", "won by declaration, but the final position does not meet the 27-point rule"),
        ("詰み", "the ending is mate, but"),
    ],
)
def test_kif_endings_against_the_final_position(usi_lines, tmp_path, word, message):
    """The issue's examples: KIF 千日手 and 入玉宣言 after 10 ordinary plies were kept."""
    exporter = cshogi.KIF.Exporter(str(tmp_path / "g.kifu"))
    exporter.header(["a", "b"])
    for move in usi_moves(usi_lines[1])[:10]:
        exporter.move(move)
    exporter.end("resign")
    exporter.close()
    text = (tmp_path / "g.kifu").read_text(encoding="utf-8")
    assert "投了" in text
    # Without the exporter's result line ("まで10手で後手の勝ち"), which decides the result when there is one.
    text = "\n".join(line for line in text.split("\n") if not line.startswith("まで"))
    (error,) = read(tmp_path / "g.kifu", text.replace("投了", word))
    assert isinstance(error, game_io.RecordError) and message in error.message, error


def test_drop_draws_drops_games_without_a_result_and_counts_them(usi_lines, tmp_path):
    """The issue's example: --drop_draws kept games of no result and stored their records as draws."""
    lines = [*usi_lines[:4], *(line.split("\t")[0] for line in usi_lines[4:10])]  # 6 without a result
    (tmp_path / "g.usi").write_text("\n".join(lines) + "\n")
    manifest = run_convert(
        f"--inputs={tmp_path / 'g.usi'}", f"--output_dir={tmp_path / 'out'}", "--drop_draws"
    )
    assert manifest["skipped"]["no_result"] == 6 and manifest["skipped"]["draw"] == 0
    assert sum(entry["games"] for entry in manifest["splits"].values()) == 4
    kept = run_convert(f"--inputs={tmp_path / 'g.usi'}", f"--output_dir={tmp_path / 'all'}")
    assert (
        sum(entry["games"] for entry in kept["splits"].values()) == 10 and kept["skipped"]["no_result"] == 0
    )
