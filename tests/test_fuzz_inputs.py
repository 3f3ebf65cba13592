"""Property-based fuzzing of the data inputs (hypothesis): record files, SFEN/USI positions, 100-byte records.

The rule, whatever the input: no crash and no hang; either a clear error (RecordError "file:line: message"
from a reader, ValueError elsewhere) or a legal result: every move of a returned Game is in cshogi's legal
move list from its start, and every board passes board_from_sfen of its own SFEN. Inputs are random legal
games (cshogi) written in each format, then mutated: characters or bytes inserted, deleted, replaced, or the
text cut short. The numpy and TF record validators must agree on every record. Bounded and derandomized, so
the suite is reproducible and fast.
"""

import datetime
import tempfile
from pathlib import Path

import cshogi
import cshogi.CSA
import cshogi.KIF
import numpy as np
import pytest
import tensorflow as tf
from conftest import FUZZ_SETTINGS
from hypothesis import given, settings
from hypothesis import strategies as st

from shogi_policy.core import policy_labels, record_format, shogi_rules
from shogi_policy.data import game_io, records

FUZZ = settings(FUZZ_SETTINGS, max_examples=100)
# What each format is made of, and some characters it is not.
USI_ALPHABET = "PLNSGBRKplnsgbrk+*/-0123456789abcdefghi bw\tmovestartpos\x00７歩"
CSA_ALPHABET = "+-0123456789FUKYKEGIKIKAHIOUTONYNKNGUMRY%TORYO,PIN'$/ \n\x00歩"
KIF_ALPHABET = "１２３４５６７８９一二三四五六七八九歩香桂銀金角飛玉と成打同投了()0123456789 \n：　"


@st.composite
def random_games(draw, max_plies=80):
    """(start cshogi.Board, legal cshogi moves) of a game of random legal moves, from the start or a few plies in."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    board = cshogi.Board()
    for _ in range(
        draw(st.sampled_from([0, 0, 0, 1, 6]))
    ):  # sometimes a start that is not the initial position
        board.push(rng.choice(list(board.legal_moves)))
    start, moves = board.copy(), []
    for _ in range(draw(st.integers(0, max_plies))):
        legal = list(board.legal_moves)
        if not legal:
            break
        moves.append(int(rng.choice(legal)))
        board.push(moves[-1])
    return start, moves


@st.composite
def mutated(draw, text, alphabet):
    """text with 0-3 edits drawn by hypothesis: insert, delete or replace a character, or cut the rest."""
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(["insert", "delete", "replace", "cut"]))
        char = draw(st.sampled_from(alphabet))
        if edit == "insert":
            text = text[:at] + char + text[at:]
        elif edit == "cut":
            text = text[:at]
        else:
            text = text[:at] + (char if edit == "replace" else "") + text[at + 1 :]
    return text


def assert_legal_result(item):
    """A reader's item is a RecordError with a message, or a Game whose moves are all legal from its start."""
    if isinstance(item, game_io.RecordError):
        assert item.message and isinstance(item.line, int) and str(item).startswith(f"{item.source}:")
        return
    assert isinstance(item, game_io.Game)
    board = shogi_rules.board_from_sfen(item.sfen)
    for move in item.moves:
        assert shogi_rules.is_legal_move(board, move), (item.source, cshogi.move_to_usi(move))
        board.push(move)


def assert_legal_board(board):
    """A board of the parser passes board_from_sfen of its own SFEN (it is a possible position)."""
    assert shogi_rules.board_from_sfen(board.sfen()).sfen() == board.sfen()


@pytest.fixture(scope="module")
def scratch():
    """A directory for the fuzzed files (hypothesis runs many examples per test function)."""
    with tempfile.TemporaryDirectory() as directory:
        yield Path(directory)


def read_all(path, content):
    """Every item records.read_games yields for a file holding content (str: UTF-8, or bytes)."""
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return list(records.read_games(str(path)))


def usi_line(start, moves):
    return f"sfen {start.sfen()} moves {' '.join(cshogi.move_to_usi(move) for move in moves)}"


@FUZZ
@given(data=st.data(), game=random_games())
def test_usi_lines_and_positions(scratch, data, game):
    start, moves = game
    line = usi_line(start, moves)
    (item,) = read_all(scratch / "g.usi", line + "\n")
    assert isinstance(item, game_io.Game) and item.moves == moves  # unmutated: read back exactly
    text = data.draw(mutated(line, USI_ALPHABET))
    for item in read_all(scratch / "m.usi", text + "\tdraw\n"):
        assert_legal_result(item)
    try:
        board = shogi_rules.parse_position(text)
    except ValueError as error:
        assert str(error)
    else:
        assert_legal_board(board)


def csa_text(path, start, moves):
    """The text cshogi's CSA exporter writes for a game."""
    exporter = cshogi.CSA.Exporter(str(path))
    exporter.info(start, ["a", "b"])  # a Board: cshogi fails on an SFEN string other than the start
    for move in moves:
        exporter.move(move)
    exporter.endgame("%TORYO")
    exporter.close()
    return path.read_text(encoding="utf-8")


def kif_text(path, start, moves):
    """The text cshogi's KIF exporter writes for a game (UTF-8 under .kifu; a board diagram unless initial)."""
    exporter = cshogi.KIF.Exporter(str(path))
    drawn = None if start.sfen() == cshogi.STARTING_SFEN else start
    exporter.header(["a", "b"], datetime.datetime(2026, 1, 1), handicap=drawn)
    for move in moves:
        exporter.move(move)
    exporter.end("resign")
    exporter.close()
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "write, name, alphabet",
    [(csa_text, "g.csa", CSA_ALPHABET), (kif_text, "g.kifu", KIF_ALPHABET)],
    ids=["csa", "kif"],
)
@FUZZ
@given(data=st.data(), game=random_games())
def test_csa_and_kif_files(scratch, write, name, alphabet, data, game):
    start, moves = game
    text = write(scratch / name, start, moves)
    (item,) = read_all(scratch / name, text)
    if name.endswith(".kifu") and start.sfen() != cshogi.STARTING_SFEN:
        # Drawn as a board, which the reader refuses (cshogi's KIF parser would read the initial position).
        assert isinstance(item, game_io.RecordError) and "board diagram" in item.message
    else:
        assert isinstance(item, game_io.Game) and item.moves == moves
    for item in read_all(scratch / f"m{name}", data.draw(mutated(text, alphabet))):
        assert_legal_result(item)


@st.composite
def mutated_bytes(draw, data, row_bytes, max_edits=4):
    """data (bytes of rows of row_bytes) with 0-max_edits bytes replaced, and sometimes cut short.

    The replaced byte is often a small value (a piece code or count), and its column in the row is drawn
    apart, so that every field of a row gets hit, not mostly the widest.
    """
    out = bytearray(data)
    rows = len(out) // row_bytes
    for _ in range(draw(st.integers(0, max_edits)) if rows else 0):
        at = draw(st.integers(0, rows - 1)) * row_bytes + draw(st.integers(0, row_bytes - 1))
        out[at] = draw(st.one_of(st.integers(0, 255), st.integers(0, 31)))
    if draw(st.integers(0, 3)) == 0:
        out = out[: draw(st.integers(0, len(out)))]
    return bytes(out)


@FUZZ
@given(data=st.data(), game=random_games(max_plies=40))
def test_hcpe_files(scratch, data, game):
    start, moves = game
    rows = np.zeros(len(moves), cshogi.HuffmanCodedPosAndEval)
    board = start.copy()
    for row, move in zip(rows, moves, strict=True):
        board.to_hcp(row["hcp"])
        row["bestMove16"] = cshogi.move16(move)
        row["gameResult"] = 1
        board.push(move)
    items = read_all(scratch / "g.hcpe", rows.tobytes())
    assert [item.moves for item in items] == ([moves] if moves else [])
    for item in read_all(scratch / "m.hcpe", data.draw(mutated_bytes(rows.tobytes(), rows.itemsize))):
        assert_legal_result(item)


def game_records(start, moves):
    """uint8 [len(moves), 100] records of a game (record_format.encode_boards of each position, with its label)."""
    board, boards = start.copy(), []
    for move in moves:
        boards.append(board.copy())
        board.push(move)
    out = record_format.encode_boards(boards)
    labels = policy_labels.move_labels(moves, [b.turn for b in boards])
    meta = labels.astype(np.uint16) | (np.array([b.turn for b in boards], np.uint16) << 14)
    out[:, record_format.META_OFFSET : record_format.META_OFFSET + 2] = (
        meta.astype("<u2").view(np.uint8).reshape(-1, 2)
    )
    return out


@tf.function(input_signature=[tf.TensorSpec([None, record_format.RECORD_BYTES], tf.uint8)])
def record_problems_tf(records_):
    return record_format.record_problems_tf(records_)


@FUZZ
@given(data=st.data(), game=random_games(max_plies=30))
def test_records_validators_agree_and_boards_are_possible(data, game):
    start, moves = game
    valid = game_records(start, moves)
    assert not record_format.record_problems(valid).any()
    raw = np.concatenate([valid, np.full((1, record_format.RECORD_BYTES), 0xFF, np.uint8)]).tobytes()
    mutated_records = np.frombuffer(
        data.draw(mutated_bytes(raw, record_format.RECORD_BYTES, max_edits=12)), np.uint8
    )
    whole = len(mutated_records) // record_format.RECORD_BYTES * record_format.RECORD_BYTES
    fuzzed = mutated_records[:whole].reshape(-1, record_format.RECORD_BYTES)
    problems = record_format.record_problems(fuzzed)
    np.testing.assert_array_equal(record_problems_tf(fuzzed).numpy(), problems)
    for record, problem in zip(fuzzed, problems, strict=True):
        try:
            board = record_format.record_to_board(record)
        except ValueError as error:
            assert str(error)
        else:
            assert not problem
            assert_legal_board(board)
