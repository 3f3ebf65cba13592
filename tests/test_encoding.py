"""shogi_policy.encoding against cshogi: dlshogi move labels and the compact record layout."""

import itertools

import cshogi
import cshogi.dlshogi
import numpy as np
import pytest
from conftest import random_game_groups

from shogi_policy import encoding


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
        np.testing.assert_array_equal(encoding.move_labels(moves, turns), oracle_labels(board, moves))
        games += 1
    assert games == 1291


def test_labels_of_all_legal_moves_in_random_games_match_cshogi_and_are_distinct():
    positions = drops = promotions = 0
    for board, moves in random_games(count=30, max_plies=160, seed=1):
        for move in moves:
            legal, labels = encoding.legal_moves_and_labels(board)
            expected = [cshogi.dlshogi.make_move_label(int(m), board.turn) for m in legal]
            np.testing.assert_array_equal(labels, expected)
            assert len(set(labels.tolist())) == len(labels), board.sfen()
            assert labels.min() >= 0 and labels.max() < encoding.NUM_MOVE_LABELS
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
    records = encoding.encode_boards(boards)
    assert records.shape == (len(boards), encoding.RECORD_BYTES) and records.dtype == np.uint8
    for board, record in zip(boards, records, strict=True):
        assert encoding.record_to_board(record).sfen().rsplit(" ", 1)[0] == board.sfen().rsplit(" ", 1)[0]


def test_pack_and_unpack_records_agree_in_numpy_and_tf():
    rng = np.random.default_rng(4)
    n = 64
    fields = {
        "board": rng.integers(0, 31, (n, 81)),
        "hands": rng.integers(0, 19, (n, 14)),
        "turn": rng.integers(0, 2, n),
        "label": rng.integers(0, encoding.NUM_MOVE_LABELS, n),
        "result": rng.integers(0, 3, n),
        "game_id": rng.integers(0, encoding.MAX_GAME_ID + 1, n),
    }
    records = encoding.pack_records(
        fields["board"], fields["hands"], fields["turn"], fields["label"], fields["result"], fields["game_id"]
    )
    for unpacked in (encoding.unpack_records(records), encoding.unpack_records_tf(records)):
        for key, value in fields.items():
            np.testing.assert_array_equal(np.asarray(unpacked[key]), value, err_msg=key)
    with pytest.raises(ValueError, match="game ids"):
        encoding.pack_records(fields["board"][:1], fields["hands"][:1], [0], [0], [0], [1 << 24])
