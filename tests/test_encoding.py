"""shogi_policy.core (record_format, policy_labels, shogi_rules) against cshogi: dlshogi move labels, the compact record layout and the position rules."""

import itertools

import cshogi
import cshogi.dlshogi
import numpy as np
import pytest
from conftest import random_game_groups, random_game_records

from shogi_policy.core import policy_labels, record_format, shogi_rules


def random_games(count, max_plies, seed):
    """Yields (start Board, moves) of games of uniformly random legal moves (many drops/promotions)."""
    for _, plies in itertools.islice(random_game_groups(seed, max_plies), count):
        yield cshogi.Board(), [move for _, _, move in plies]


def oracle_labels(board, moves):
    """cshogi's labels of moves played in sequence from board (board is advanced)."""
    labels = []
    for move in moves:
        labels.append(cshogi.dlshogi.make_move_label(move, board.turn))
        board.push(move)
    return labels


def usi_games(shared_data):
    """(Board, moves) of every game of games.usi."""
    for line in (shared_data / "floodgate_games" / "games.usi").read_text().splitlines():
        board = cshogi.Board()
        board.set_position(line.split("\t")[0])
        yield cshogi.Board(), list(board.history)


def test_labels_of_floodgate_games_match_cshogi(shared_data):
    games = 0
    for board, moves in usi_games(shared_data):
        turns = (np.arange(len(moves)) + board.turn) % 2
        np.testing.assert_array_equal(policy_labels.move_labels(moves, turns), oracle_labels(board, moves))
        games += 1
    assert games == 1291


def test_labels_of_all_legal_moves_in_random_games_match_cshogi_and_are_distinct():
    positions = drops = promotions = 0
    for board, moves in random_games(count=30, max_plies=160, seed=1):
        for move in moves:
            legal, labels = policy_labels.legal_moves_and_labels(board)
            expected = [cshogi.dlshogi.make_move_label(int(m), board.turn) for m in legal]
            np.testing.assert_array_equal(labels, expected)
            assert len(set(labels.tolist())) == len(labels), board.sfen()
            assert labels.min() >= 0 and labels.max() < policy_labels.NUM_MOVE_LABELS
            drops += int(np.count_nonzero(((legal >> 7) & 0x7F) >= 81))
            promotions += int(np.count_nonzero((legal >> 14) & 1))
            positions += 1
            board.push(move)
    assert positions > 3000 and drops > 10000 and promotions > 1000  # the oracle saw every kind


@pytest.mark.parametrize("seed", [2, 3])
def test_encode_boards_round_trip_gives_the_same_sfen(seed):
    boards = []
    for board, moves in random_games(count=10, max_plies=200, seed=seed):
        for move in moves:
            boards.append(board.copy())
            board.push(move)
    records = record_format.encode_boards(boards)
    assert records.shape == (len(boards), record_format.RECORD_BYTES) and records.dtype == np.uint8
    for board, record in zip(boards, records, strict=True):
        assert (
            record_format.record_to_board(record).sfen().rsplit(" ", 1)[0] == board.sfen().rsplit(" ", 1)[0]
        )


def test_pack_and_unpack_records_agree_in_numpy_and_tf():
    rng = np.random.default_rng(4)
    n = 64
    fields = {
        "board": rng.integers(0, 31, (n, 81)),
        "hands": rng.integers(0, 19, (n, 14)),
        "turn": rng.integers(0, 2, n),
        "label": rng.integers(0, policy_labels.NUM_MOVE_LABELS, n),
        "result": rng.integers(0, 3, n),
        "game_id": rng.integers(0, record_format.MAX_GAME_ID + 1, n),
    }
    records = record_format.pack_records(
        fields["board"], fields["hands"], fields["turn"], fields["label"], fields["result"], fields["game_id"]
    )
    for unpacked in (record_format.unpack_records(records), record_format.unpack_records_tf(records)):
        for key, value in fields.items():
            np.testing.assert_array_equal(np.asarray(unpacked[key]), value, err_msg=key)
    with pytest.raises(ValueError, match="game ids"):
        record_format.pack_records(fields["board"][:1], fields["hands"][:1], [0], [0], [0], [1 << 24])


def record_problem_oracle(record):
    """The RECORD_PROBLEMS index of one record by the rules as written, one by one (plain Python)."""
    board, hands = record[:81].tolist(), record[81:95].tolist()
    meta = int(record[95]) | int(record[96]) << 8
    rules = [
        any(code not in record_format.PIECE_CODES for code in board),
        board.count(8) != 1 or board.count(24) != 1,  # black king 8, white king 24
        any(count > limit for count, limit in zip(hands, shogi_rules.PIECE_SET * 2, strict=True)),
        meta & 0xFFF >= policy_labels.NUM_MOVE_LABELS,
        (meta >> 12) & 3 == 3,
        meta >> 15 == 1,
    ]
    return rules.index(True) + 1 if any(rules) else 0


def mutated_records(records, count, seed):
    """count records of records with 1-3 random bytes changed (board, hands or the label word)."""
    rng = np.random.default_rng(seed)
    out = records[rng.integers(len(records), size=count)].copy()
    for row in out:
        for at in rng.integers(0, record_format.GAME_ID_OFFSET, size=rng.integers(1, 4)):
            row[at] = rng.choice([rng.integers(256), rng.integers(31), row[at] ^ (1 << rng.integers(8))])
    return out


def test_record_validator_numpy_and_tf_agree_with_the_rules_one_by_one():
    records = random_game_records(num_games=10, max_plies=120, seed=7)
    assert (
        not record_format.record_problems(records).any()
        and not record_format.record_problems_tf(records).numpy().any()
    )
    mutated = np.concatenate([mutated_records(records, 5000, seed=8), np.full((1, 100), 0xFF, np.uint8)])
    expected = np.array([record_problem_oracle(record) for record in mutated])
    np.testing.assert_array_equal(record_format.record_problems(mutated), expected)
    np.testing.assert_array_equal(record_format.record_problems_tf(mutated).numpy(), expected)
    assert set(expected.tolist()) == set(range(len(record_format.RECORD_PROBLEMS))), "every rule is exercised"


def test_record_to_board_refuses_invalid_records_before_cshogi_sees_them():
    """Issue 15 item 1: cshogi segfaulted on a record whose bytes 0..94 are 0xFF."""
    record = random_game_records(num_games=1, max_plies=10, seed=9)[3]
    record[:95] = 0xFF
    with pytest.raises(ValueError, match="record 0: a board byte is not a piece code"):
        record_format.record_to_board(record)
    with pytest.raises(ValueError, match="shape"):
        record_format.record_to_board(record[:99])


@pytest.mark.parametrize(
    "sfen, message",
    [
        ("4k4/9/9/9/9/9/9/9/4K3r b - 1", None),  # Black to move in check: a position like any other
        ("4k4/9/9/9/9/9/9/9/4K3r w - 1", "side not to move in check"),
        ("4k3P/9/9/9/9/9/9/9/4K4 b - 1", "could never move"),
        ("4k4/9/9/9/9/4P4/4P4/9/4K4 b - 1", "two unpromoted pawns"),
        ("4k4/9/9/9/9/9/9/9/4K4 b 18P 1", None),
        ("4k4/9/9/9/9/9/9/9/4K3P b 18P 1", "more than 18 pieces of kind P"),
    ],
)
def test_records_to_boards_apply_the_position_rules_and_name_the_record(sfen, message):
    board = cshogi.Board(sfen)
    records = record_format.encode_boards([cshogi.Board(), board])
    if message is None:
        assert record_format.records_to_boards(records, "x.rec")[1].sfen() == board.sfen()
    else:
        with pytest.raises(ValueError, match=f"x.rec: record 1: .*{message}"):
            record_format.records_to_boards(records, "x.rec")


def test_an_sfen_without_move_number_gives_a_board_whose_sfen_reads_back():
    """Found by tests/test_fuzz_inputs.py: cshogi numbered such a position 0, which its sfen() then wrote."""
    board = shogi_rules.board_from_sfen(cshogi.STARTING_SFEN.rsplit(" ", 1)[0])
    assert board.sfen() == cshogi.STARTING_SFEN
    assert shogi_rules.board_from_sfen(board.sfen()).sfen() == board.sfen()
