"""Readers (CSA, KIF, USI, hcpe) and position extraction, against cshogi and the shared floodgate games.

games.usi, the *.hcpe files and csa/ hold the same real games (games.usi lists hozon_train, hozon_test,
then kapi_test; csa/game_0000i.csa is line i+1), so the readers must agree with each other exactly.
"""

import gzip
import shutil

import cshogi
import cshogi.CSA
import cshogi.dlshogi
import cshogi.KIF
import numpy as np
import pytest
from conftest import SHARED_DATA, random_game_groups

from shogi_policy.core import record_format
from shogi_policy.data import game_io, records

HCPE_FILES = (("hozon_train.hcpe", 543), ("hozon_test.hcpe", 60), ("kapi_test.hcpe", 688))


@pytest.fixture(scope="module")
def floodgate():
    """(games of games.usi, the games.usi lines), read once per module; skipped without shared data."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present")
    data = SHARED_DATA / "floodgate_games"
    games = list(records.read_games(str(data / "games.usi")))
    return games, (data / "games.usi").read_text().splitlines()


def games_only(items):
    errors = [item for item in items if isinstance(item, game_io.RecordError)]
    assert not errors, errors[:3]
    return items


def same_game(a, b):
    return (a.sfen, a.moves, a.result) == (b.sfen, b.moves, b.result)


def replayed_boards(game):
    """cshogi boards before each move of a game (the oracle of game_to_records)."""
    board = cshogi.Board(game.sfen)
    for move in game.moves:
        yield board
        board.push(move)


def test_usi_reader_replays_games_like_cshogi(floodgate):
    games, lines = floodgate
    assert len(games_only(games)) == len(lines) == 1291
    assert sum(len(game.moves) for game in games) == 127415
    for game, line in zip(games, lines, strict=True):
        position, result, _ = line.split("\t")
        board = cshogi.Board()
        board.set_position(position)
        assert game.moves == list(board.history) and game.result == result
        assert game.sfen == cshogi.Board().sfen() and game.ending == "unknown"


def test_hcpe_reader_finds_game_boundaries_and_agrees_with_usi(shared_data, floodgate):
    usi_games, _ = floodgate
    offset = 0
    for name, count in HCPE_FILES:
        games = games_only(list(records.read_games(str(shared_data / "floodgate_games" / name))))
        assert len(games) == count
        for game, usi_game in zip(games, usi_games[offset : offset + count], strict=True):
            assert same_game(game, usi_game), game.source
        offset += count


def test_hcpe_records_equal_the_raw_rows_read_by_set_hcp(shared_data):
    path = shared_data / "floodgate_games" / "hozon_test.hcpe"
    rows = np.fromfile(path, dtype=cshogi.HuffmanCodedPosAndEval)
    games = games_only(list(records.read_games(str(path))))
    records_ = records.games_to_records(games, range(len(games)))
    fields = record_format.unpack_records(records_)
    assert len(records_) == len(rows)
    board = cshogi.Board()
    for i, row in enumerate(rows):
        board.set_hcp(row["hcp"])
        assert record_format.record_to_board(records_[i]).sfen() == board.sfen()
        move = board.move_from_move16(int(row["bestMove16"]))
        assert fields["label"][i] == cshogi.dlshogi.make_move_label(move, board.turn)
        black_result = {0: 1, 1: 2, 2: 0}[int(row["gameResult"])]  # hcpe: 0 draw, 1 black win, 2 white win
        assert fields["result"][i] == (black_result if board.turn == cshogi.BLACK else 2 - black_result)


def test_records_round_trip_to_the_replayed_board_for_every_position(floodgate):
    games, _ = floodgate
    ids = np.arange(len(games)) * 7919 % (1 << 24)
    records_ = np.concatenate(
        [records.games_to_records(games[i : i + 64], ids[i : i + 64]) for i in range(0, len(games), 64)]
    )
    fields = {key: value.tolist() for key, value in record_format.unpack_records(records_).items()}
    decoded = cshogi.Board()
    row = 0
    for game_id, game in zip(ids.tolist(), games, strict=True):
        black_result = {"black_win": 2, "white_win": 0, "draw": 1}[game.result]
        expected = {key: [] for key in ("sfen", "label", "turn", "result")}
        for board, move in zip(replayed_boards(game), game.moves, strict=True):
            expected["sfen"].append(board.sfen().rsplit(" ", 1)[0])
            expected["label"].append(cshogi.dlshogi.make_move_label(move, board.turn))
            expected["turn"].append(board.turn)
            expected["result"].append(black_result if board.turn == cshogi.BLACK else 2 - black_result)
        rows = slice(row, row + len(game.moves))
        sfens = []
        for i in range(rows.start, rows.stop):
            # record_format.record_to_board costs ~100 us (single-record numpy): every 64th position goes
            # through it, every position through the same set_pieces call on the batch-unpacked fields.
            if i % 64 == 0:
                decoded = record_format.record_to_board(records_[i])
            else:
                hands = fields["hands"][i]
                decoded.set_pieces(fields["board"][i], (hands[:7], hands[7:]))
                decoded.turn = fields["turn"][i]
            sfens.append(decoded.sfen().rsplit(" ", 1)[0])
        assert sfens == expected["sfen"], game.source
        for key in ("label", "turn", "result"):
            assert fields[key][rows] == expected[key], (game.source, key)
        assert set(fields["game_id"][rows]) == {game_id}
        row = rows.stop
    assert row == len(records_) == 127415


def test_records_of_random_games_from_a_handicap_start(tmp_path):
    """Random play reaches promotions, drops of every piece and recaptures of promoted pieces."""
    rng = np.random.default_rng(5)
    start = "lnsgkgsnl/1r7/ppppppppp/9/9/9/PPPPPPPPP/1B5R1/LNSGKGSNL w - 1"  # bishop handicap
    games = []
    for _ in range(20):
        board = cshogi.Board(start)
        moves = []
        while len(moves) < 250 and not board.is_game_over():
            legal = list(board.legal_moves)
            moves.append(legal[rng.integers(len(legal))])
            board.push(moves[-1])
        games.append(game_io.Game(sfen=start, moves=moves, result=None))
    records_ = records.games_to_records(games, range(20))
    boards = [board.sfen().rsplit(" ", 1)[0] for game in games for board in replayed_boards(game)]
    assert [record_format.record_to_board(r).sfen().rsplit(" ", 1)[0] for r in records_] == boards
    assert set(record_format.unpack_records(records_)["result"].tolist()) == {record_format.RESULT_DRAW}


def test_csa_files_agree_with_usi(shared_data, floodgate):
    usi_games, _ = floodgate
    for i in range(100):
        path = shared_data / "floodgate_games" / "csa" / f"game_{i:05d}.csa"
        (game,) = games_only(list(records.read_games(str(path))))
        assert same_game(game, usi_games[i]) and game.ending == "resign"
        assert game.black_rating is None and game.source == f"{path}:1"


def floodgate_csa(shared_data, index=0):
    """csa/game_{index}.csa with floodgate-style rating comments in the header."""
    text = (shared_data / "floodgate_games" / "csa" / f"game_{index:05d}.csa").read_text()
    header = "'black_rate:Suisho+0123abcd:3612.5\n'white_rate:gikou+4567ef:3488.0\n"
    return text.replace("PI\n", header + "PI\n", 1)


def test_csa_ratings_endings_and_multiple_games(shared_data, floodgate, tmp_path):
    usi_games, _ = floodgate
    text = floodgate_csa(shared_data)
    declared = text.replace("%TORYO", "%KACHI")
    path = tmp_path / "two.csa"
    path.write_text(text + "/\n" + declared)
    first, second = list(records.read_games(str(path)))
    oracle = cshogi.CSA.Parser.parse_str(text)[0]
    assert (first.black_rating, first.white_rating) == tuple(oracle.ratings) == (3612.5, 3488.0)
    assert same_game(first, usi_games[0]) and first.ending == "resign"
    # %KACHI: the side to move (white, after game 0's 83 moves) would win by declaration, but it is mated.
    assert isinstance(second, game_io.RecordError) and second.line == text.count(chr(10)) + 2
    assert (
        second.message
        == "the final position is mate (white to move has no legal move), but the result is white_win"
    )


def test_illegal_move_in_csa_is_reported_with_its_line(shared_data, tmp_path):
    lines = floodgate_csa(shared_data).split("\n")
    index = [i for i, line in enumerate(lines) if line.startswith("+") and len(line) > 1][10]
    lines[index] = "+5152FU"  # a pawn that is not there
    path = tmp_path / "bad.csa"
    path.write_text("\n".join(lines))
    (error,) = list(records.read_games(str(path)))
    assert isinstance(error, game_io.RecordError) and error.line == index + 1
    assert str(error).startswith(f"{path}:{index + 1}: illegal move '+5152FU'")


def export_kif(game, path):
    """Writes a game with cshogi's KIF exporter (.kifu -> UTF-8, otherwise CP932)."""
    exporter = cshogi.KIF.Exporter(str(path))
    exporter.header(["先手名人", "後手竜王"])
    for move in game.moves:
        exporter.move(move)
    exporter.end("resign")
    exporter.close()


def test_kif_in_shift_jis_and_utf8_agree_with_usi(floodgate, tmp_path):
    usi_games, _ = floodgate
    for i in (0, 1, 700):
        export_kif(usi_games[i], tmp_path / f"g{i}.kif")
        export_kif(usi_games[i], tmp_path / f"g{i}.kifu")
        shutil.copy(tmp_path / f"g{i}.kifu", tmp_path / f"g{i}_utf8.kif")  # UTF-8 under .kif: detected
        raw = (tmp_path / f"g{i}.kif").read_bytes()
        with pytest.raises(UnicodeDecodeError):
            raw.decode("utf-8")  # really Shift_JIS
        for name in (f"g{i}.kif", f"g{i}.kifu", f"g{i}_utf8.kif"):
            (game,) = games_only(list(records.read_games(str(tmp_path / name))))
            assert same_game(game, usi_games[i]) and game.ending == "resign", name


def test_illegal_move_in_kif_is_reported_with_its_line(floodgate, tmp_path):
    usi_games, _ = floodgate
    export_kif(usi_games[0], tmp_path / "g.kifu")
    lines = (tmp_path / "g.kifu").read_text(encoding="utf-8").split("\n")
    index = next(i for i, line in enumerate(lines) if line.lstrip().startswith("5 "))
    lines[index] = "   5 ５一金(69)   ( 0:00/00:00:00)"  # the gold cannot jump to 5a
    (tmp_path / "g.kifu").write_text("\n".join(lines), encoding="utf-8")
    (error,) = list(records.read_games(str(tmp_path / "g.kifu")))
    assert isinstance(error, game_io.RecordError) and error.line == index + 1, error


def test_usi_gz_and_sfen_starts_and_bad_lines(floodgate, tmp_path):
    usi_games, lines = floodgate
    good = lines[:5]
    sfen_line = "sfen lnsgkgsnl/1r5b1/ppppppppp/9/9/9/PPPPPPPPP/1B5R1/LNSGKGSNL b - 1 moves 5i5h 5a5b 5h5i 5b5a\tdraw\tx\trepetition"
    bad = [
        "startpos moves 7g7f 7g7f",  # illegal second move
        "startpos moves 7g7f\tblack_wins",  # bad result
        "sfen not/a/board b - 1 moves 7g7f",
        "hello world",
    ]
    path = tmp_path / "games.usi.gz"
    with gzip.open(path, "wt") as stream:
        stream.write("\n".join(["# comment", *good, sfen_line, "", *bad]) + "\n")
    items = list(records.read_games(str(path)))
    assert all(same_game(a, b) for a, b in zip(items[:5], usi_games[:5], strict=True))
    assert items[5].ending == "repetition" and items[5].result == "draw" and len(items[5].moves) == 4
    errors = items[6:]
    assert [type(e) for e in errors] == [game_io.RecordError] * 4
    assert [e.line for e in errors] == [9, 10, 11, 12]
    assert "illegal move '7g7f' at ply 2" in str(errors[0]) and "black_wins" in str(errors[1])


def test_truncated_hcpe_empty_and_garbage_files_give_errors(shared_data, tmp_path):
    raw = (shared_data / "floodgate_games" / "hozon_test.hcpe").read_bytes()
    (tmp_path / "truncated.hcpe").write_bytes(raw[: 38 * 100 + 5])
    (error,) = list(records.read_games(str(tmp_path / "truncated.hcpe")))
    assert "not a multiple of 38" in str(error)
    with gzip.open(tmp_path / "truncated.hcpe.gz", "wb") as stream:
        stream.write(raw[: 38 * 100 + 5])
    *games, error = list(records.read_games(str(tmp_path / "truncated.hcpe.gz")))
    assert sum(len(g.moves) for g in games_only(games)) == 100 and "5 trailing bytes" in str(error)

    rng = np.random.default_rng(6)
    (tmp_path / "garbage.hcpe").write_bytes(rng.integers(0, 256, 38 * 50, dtype=np.uint8).tobytes())
    (tmp_path / "garbage.csa").write_text("hello\nworld\n")
    (tmp_path / "garbage.kif").write_bytes(b"\xff\xfe\x00garbage\x81")
    (tmp_path / "garbage.usi").write_text("hello\n")
    for name in ("empty.csa", "empty.kif", "empty.usi", "empty.hcpe"):
        (tmp_path / name).write_bytes(b"")
    for name in ("garbage.hcpe", "garbage.csa", "garbage.kif", "garbage.usi", "empty.csa", "empty.kif"):
        items = list(records.read_games(str(tmp_path / name)))
        assert items and all(isinstance(item, game_io.RecordError) for item in items), name
    assert list(records.read_games(str(tmp_path / "empty.usi"))) == []
    assert list(records.read_games(str(tmp_path / "empty.hcpe"))) == []
    with pytest.raises(ValueError, match="unknown record extension"):
        list(records.read_games(str(tmp_path / "games.pgn")))


KIF_HEADER = "手合割：平手\n先手：a\n後手：b\n手数----指手---------消費時間--\n"


def hcpe_rows(sfens_and_usi_moves):
    """hcpe rows (black wins) of (sfen, usi move) pairs; the move16 keeps extra flag bits (move16 | flags)."""
    rows = np.zeros(len(sfens_and_usi_moves), cshogi.HuffmanCodedPosAndEval)
    for row, (sfen, usi, flags) in zip(rows, sfens_and_usi_moves, strict=True):
        board = cshogi.Board(sfen)  # cshogi takes impossible positions too: what an hcpe file may hold
        board.to_hcp(row["hcp"])
        row["bestMove16"] = cshogi.move16(board.move_from_usi(usi)) | flags
        row["gameResult"] = 1
    return rows


@pytest.mark.parametrize(
    "name, content, line, message",
    [
        ("p.usi", "startpos moves 7g7f 3c3d 7f7e+\n", 1, "illegal move '7f7e+' at ply 3"),
        ("p.csa", "V2.2\nPI\n+\n+7776FU\n-3334FU\n+7675TO\n%TORYO\n", 6, "illegal move '+7675TO'"),
        (
            "p.kifu",
            KIF_HEADER + "   1 ７六歩(77)\n   2 ３四歩(33)\n   3 ７五歩成(76)\n   4 投了\n",
            7,
            "illegal or unreadable move '3 ７五歩成(76)'",
        ),
    ],
)
def test_promotions_outside_the_zone_are_errors_in_every_text_format(tmp_path, name, content, line, message):
    """Issue 15 item 2: cshogi's is_legal accepts 7f7e+, so it became training data."""
    (tmp_path / name).write_text(content, encoding="utf-8")
    (error,) = list(records.read_games(str(tmp_path / name)))
    assert isinstance(error, game_io.RecordError) and (error.line, error.message) == (line, message)


def test_hcpe_promotion_flag_on_a_move_that_cannot_promote_is_an_error(tmp_path):
    start = cshogi.Board().sfen()
    after = "lnsgkgsnl/1r5b1/ppppppppp/9/9/2P6/PP1PPPPPP/1B5R1/LNSGKGSNL w - 1"  # hcp holds no move number
    hcpe_rows([(start, "7g7f", 1 << 14), (after, "3c3d", 0)]).tofile(tmp_path / "p.hcpe")
    error, game = records.read_games(str(tmp_path / "p.hcpe"))
    assert isinstance(error, game_io.RecordError) and error.line == 1 and "illegal move16" in error.message
    assert game.sfen == after and len(game.moves) == 1  # the next row starts a game of its own


@pytest.mark.parametrize(
    "sfen, message",
    [
        ("P3k4/9/9/9/9/9/9/9/4K4 b - 1", "could never move"),
        ("4k4/9/9/9/9/4P4/4P4/9/4K4 b - 1", "two unpromoted pawns"),
        ("4k4/9/9/9/9/9/9/9/4K3r w - 1", "side not to move in check"),
    ],
)
def test_hcpe_positions_obey_the_placement_rules_of_sfen_positions(tmp_path, sfen, message):
    usi = next(cshogi.move_to_usi(move) for move in cshogi.Board(sfen).legal_moves)
    hcpe_rows([(sfen, usi, 0)]).tofile(tmp_path / "p.hcpe")
    (error,) = list(records.read_games(str(tmp_path / "p.hcpe")))
    assert isinstance(error, game_io.RecordError) and message in error.message, error


def test_usi_illegal_move_late_in_a_game_is_reported_at_its_ply(tmp_path):
    """Issue 15 item 6: a line whose ply 50 is illegal was reported as ply 2."""
    _, plies = next(random_game_groups(seed=11, max_plies=60))
    moves = []
    for _, board, move in plies:
        moves.append(cshogi.move_to_usi(move))
        if len(moves) == 50:
            moves[-1] = next(
                m for m in ("5e5d", "P*5e", "1a1b", "9i9h") if board.move_from_usi(m) not in board.legal_moves
            )
    assert len(moves) == 60
    (tmp_path / "g.usi").write_text("startpos moves " + " ".join(moves) + "\n")
    (error,) = list(records.read_games(str(tmp_path / "g.usi")))
    assert error.message == f"illegal move {moves[49]!r} at ply 50"


def test_csa_cut_mid_line_names_the_cut_line(tmp_path):
    """Issue 15 item 6: a truncated CSA file reported line 1 and a C++ 'basic_string::substr' message."""
    _, plies = next(random_game_groups(seed=12, max_plies=40))
    exporter = cshogi.CSA.Exporter(str(tmp_path / "full.csa"))
    exporter.info(cshogi.STARTING_SFEN, ["a", "b"])
    for _, _, move in plies:
        exporter.move(move)
    exporter.endgame("%TORYO")
    exporter.close()
    lines = (tmp_path / "full.csa").read_text().split("\n")
    cut_at = [i for i, line in enumerate(lines) if line[:1] in "+-" and len(line) > 1][20]
    for keep in range(2, len(lines[cut_at])):
        (tmp_path / "cut.csa").write_text("\n".join(lines[:cut_at] + [lines[cut_at][:keep]]))
        (error,) = list(records.read_games(str(tmp_path / "cut.csa")))
        assert isinstance(error, game_io.RecordError) and error.line == cut_at + 1, error
        assert "cut short" in error.message and "basic_string" not in error.message


BOARD_ROWS = [
    "P1-KY-KE-GI-KI-OU-KI-GI-KE-KY",
    "P2 * -HI *  *  *  *  * -KA * ",
    "P3-FU-FU-FU-FU-FU-FU-FU-FU-FU",
    *[f"P{rank} *  *  *  *  *  *  *  *  * " for rank in (4, 5, 6)],
    "P7+FU+FU+FU+FU+FU+FU+FU+FU+FU",
    "P8 * +KA *  *  *  *  * +HI * ",
    "P9+KY+KE+GI+KI+OU+KI+GI+KE+KY",
]


@pytest.mark.parametrize(
    "position, line, message",
    [
        (BOARD_ROWS[:3] + BOARD_ROWS[4:], 6, "board row out of order (P4 expected)"),  # cshogi: SIGSEGV
        (BOARD_ROWS[:8], 10, "board rows end at P8"),
        (["P+00KI"], 3, "pieces placed before the board is set"),  # cshogi: SIGSEGV
        (["P+56KY", "P-00AL"], 3, "pieces placed before the board is set"),  # cshogi: SIGSEGV
        ([], 3, "'+' before the start position is set"),  # cshogi: SIGSEGV
        (["+", "PI"], 3, "'+' before the start position is set"),  # cshogi: SIGSEGV
        (["PI", "+", "+7776FU", "PI"], 6, "a CSA position line after the moves"),
        (["P1"], 3, "malformed CSA position line: 'P1'"),  # cshogi: line 1, basic_string::substr
        ([BOARD_ROWS[0] + "P2 * "], 3, "malformed CSA position line"),  # two rows run together
    ],
)
def test_csa_position_lines_that_crash_cshogi_are_errors_at_their_line(tmp_path, position, line, message):
    """Found by tests/test_fuzz_inputs.py: cshogi's CSA parser segfaults on these."""
    (tmp_path / "p.csa").write_text("\n".join(["N+a", "N-b", *position, "+", "+7776FU", "%TORYO", ""]))
    (error,) = list(records.read_games(str(tmp_path / "p.csa")))
    assert isinstance(error, game_io.RecordError) and error.line == line and message in error.message, error


def test_csa_board_rows_and_removals_from_the_initial_position_still_read(tmp_path):
    for position, sfen in (
        (BOARD_ROWS, cshogi.STARTING_SFEN),
        (["PI82HI22KA"], "lnsgkgsnl/9/ppppppppp/9/9/9/PPPPPPPPP/1B5R1/LNSGKGSNL b - 1"),
    ):
        (tmp_path / "p.csa").write_text("\n".join(["N+a", "N-b", *position, "+", "+7776FU", "%TORYO", ""]))
        (game,) = games_only(list(records.read_games(str(tmp_path / "p.csa"))))
        assert game.sfen == sfen and len(game.moves) == 1


def test_kif_board_diagram_start_is_refused_not_read_from_the_initial_position(tmp_path):
    """Found by tests/test_fuzz_inputs.py: cshogi's KIF parser skips a board diagram (BOD), so the moves were
    replayed from the initial position: garbage when they happen to be legal there."""
    board = cshogi.Board("lnsgkgsnl/1r5b1/ppppppppp/9/9/9/PPPPPPPPP/1B1G3R1/LNS1KGSNL b - 1")
    exporter = cshogi.KIF.Exporter(str(tmp_path / "bod.kifu"))
    exporter.header(["a", "b"], handicap=board)
    exporter.move(board.move_from_usi("7g7f"))  # legal from the initial position too
    exporter.end("resign")
    exporter.close()
    (error,) = list(records.read_games(str(tmp_path / "bod.kifu")))
    assert isinstance(error, game_io.RecordError) and "board diagram (BOD)" in error.message
    assert (
        (tmp_path / "bod.kifu")
        .read_text(encoding="utf-8")
        .split("\n")[error.line - 1]
        .startswith("後手の持駒")
    )
