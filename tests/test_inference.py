"""PolicyModel and position parsing, against cshogi's rules and a numpy softmax over its legal moves."""

import itertools
import subprocess
import sys

import cshogi
import cshogi.dlshogi
import numpy as np
import pytest
from conftest import numpy_probabilities

from shogi_policy.core import policy_labels, record_format, shogi_rules
from shogi_policy.serving import inference

# White to move, mated: the gold on 5b is guarded by the pawn on 5c and covers 4a, 6a, 4b, 6b.
MATED_SFEN = "4k4/4G4/4P4/9/9/9/9/9/4K4 w - 1"


@pytest.fixture(scope="module")
def policy(tiny_export):
    return inference.PolicyModel(str(tiny_export[1]))


def cshogi_board(position):
    board = cshogi.Board()
    board.set_position(position)
    return board


def floodgate_games(shared_data, count):
    lines = (shared_data / "floodgate_games" / "games.usi").read_text().splitlines()[:count]
    return [line.split("\t")[0] for line in lines]


def test_parse_position_forms_match_cshogi(shared_data):
    moves = "7g7f 3c3d 8h2b+ 3a2b"
    expected = cshogi_board(f"startpos moves {moves}").sfen()
    sfen = cshogi.STARTING_SFEN
    for text in (
        f"position startpos moves {moves}",
        f"startpos moves {moves}",
        f"sfen {sfen} moves {moves}",
        f"position sfen {sfen} moves {moves}",
        f"{sfen} moves {moves}",
    ):
        assert shogi_rules.parse_position(text).sfen() == expected, text
    assert shogi_rules.parse_position(sfen).sfen() == sfen
    board = cshogi_board("startpos moves 7g7f")
    copy = shogi_rules.parse_position(board)
    assert copy is not board and copy.sfen() == board.sfen()
    for game in floodgate_games(shared_data, 30):  # whole real games, drops and promotions included
        assert shogi_rules.parse_position(game).sfen() == cshogi_board(game).sfen()


@pytest.mark.parametrize(
    "position, message",
    [
        ("garbage", "SFEN"),
        ("", "empty"),
        ("lnsgkgsnl/1r5b1/ppppppppp/9/9/9/PPPPPPPPP/1B5R1/LNSGKGSN b - 1", "8 squares"),
        ("lnsgkgsnl/1r5b1/ppppppppp/9/9/9/PPPPPPPPP/1B5R1/LNSGKGSNLL b - 1", "10 squares"),
        ("lnsgkgsnl/1r5b1/ppppppppp/9/9/9/PPPPPPPPP/1B5R1/LNSGKGSNL x - 1", "side to move"),
        ("lnsgkgsnl/1r5b1/ppppppppp/9/9/9/PPPPPPPPP/1B5R1 b - 1", "9 ranks"),
        ("lnsgkgsnl/1r5b1/ppppppppp/9/9/9/PPPPPPPPP/1B5R1/LNSGKGSNL b 3Q 1", "hands"),
        ("lnsgkgsnl/1r5b1/ppppppppp/9/9/9/PPPPPPPPP/1B5R1/LNSGKGSNL b - x", "move number"),
        (
            "lnsgkgsnl/1r5b1/ppppppppp/9/9/9/PPPPPPPPP/1B5R1/LNSGKGSNL b - \u0661",
            "move number",
        ),  # Arabic-Indic 1
        ("lnsgggsnl/1r5b1/ppppppppp/9/9/9/PPPPPPPPP/1B5R1/LNSGKGSNL b - 1", "one king"),
        ("lnsgkgsnl/1r5b1/ppppppppp/9/9/9/PPPPPPPPP/1B5R1/LNSGKGSNL b P 1", "more than 18"),
        ("4k4/9/9/9/4R4/9/9/9/4K4 b - 1", "not to move in check"),
        ("lnsgkgsnl/1r5b1/ppppppppp/9/9/9/PPPPPPPPP/1B5R1/LNSG+KGSNL b - 1", "SFEN rank 9"),
        ("startpos moves 7g7f 3c3e", "illegal move '3c3e' at ply 2"),
        ("startpos moves 7g7f+", "illegal move '7g7f\\+' at ply 1"),  # cshogi's is_legal accepts it
        ("startpos moves P*5e", "illegal move"),
        ("startpos moves ７六歩", "illegal move"),
    ],
)
def test_parse_position_rejects_bad_input(position, message):
    # Several of these abort the whole process inside cshogi's set_sfen if they reach it.
    with pytest.raises(ValueError, match=message):
        shogi_rules.parse_position(position)


def test_move_probabilities_are_softmax_over_cshogi_legal_moves(policy, shared_data):
    games = floodgate_games(shared_data, 8)
    boards = [cshogi_board(game) for game in games]
    boards = [board for board in boards if len(board.legal_moves)]
    records = record_format.encode_boards(boards)
    logits = policy.record_logits(records)
    for temperature in (0.5, 1.0):
        result = policy.move_probabilities(boards, temperature)
        for board, row_logits, moves in zip(boards, logits, result, strict=True):
            legal = {cshogi.move_to_usi(m): m for m in board.legal_moves}
            assert sorted(usi for usi, _ in moves) == sorted(legal)
            labels = [cshogi.dlshogi.make_move_label(legal[usi], board.turn) for usi, _ in moves]
            mask = np.zeros((1, policy_labels.NUM_MOVE_LABELS), bool)
            mask[0, labels] = True
            expected = numpy_probabilities(row_logits[None], mask, temperature)[0, labels]
            np.testing.assert_allclose([p for _, p in moves], expected, atol=2e-6)
            assert all(a[1] >= b[1] for a, b in zip(moves, moves[1:], strict=False))


def test_top_k_sample_and_batching(policy, shared_data):
    positions = [
        line.split("\t")[1]
        for line in (shared_data / "floodgate_positions" / "train_val_2000.tsv").read_text().splitlines()[:40]
    ]
    top = policy.top_k(positions, k=3, temperature=1.0)
    assert [len(moves) for moves in top] == [min(3, len(cshogi_board(p).legal_moves)) for p in positions]
    greedy = policy.sample(positions, temperature=0.0)
    assert greedy == [moves[0][0] for moves in top]
    drawn = policy.sample(positions, temperature=1.0, seed=11)
    assert drawn == policy.sample(positions, temperature=1.0, seed=11)
    assert drawn != policy.sample(positions, temperature=1.0, seed=12)
    for position, move in zip(positions, drawn, strict=True):
        assert move in {cshogi.move_to_usi(m) for m in cshogi_board(position).legal_moves}
    small_batches = inference.PolicyModel(policy.export_dir, batch_size=7)
    records, mask, _, _ = inference.encode_positions(positions)
    np.testing.assert_allclose(
        small_batches.record_probabilities(records, mask),
        policy.record_probabilities(records, mask),
        atol=1e-6,
    )
    assert policy.sample("startpos", 0.0) == [policy.top_k("startpos", 1)[0][0][0]]


@pytest.mark.parametrize(
    "temperature", [-0.1, float("nan"), float("inf"), 1e39, 3.5e38, 10**400, "hot", None]
)
def test_bad_temperature(policy, temperature):
    with pytest.raises(ValueError, match="temperature"):
        policy.sample(["startpos"], temperature)
    with pytest.raises(ValueError, match="temperature"):
        policy.move_probabilities(["startpos"], temperature)


@pytest.mark.parametrize(
    ("sfen", "message"),
    [
        ("lnsg1gsnl/1r5b1/ppppppppp/9/9/9/PPPPPPPPP/1B5R1/LNSG1GSNL b - 1", "one king per side, got 0 and 0"),
        ("4k4/9/9/9/4R4/9/9/9/4K4 b - 1", "not to move in check"),
        ("P3k4/9/9/9/9/9/9/9/4K4 b - 1", "could never move"),
    ],
)
def test_boards_get_the_checks_of_position_strings(policy, sfen, message):
    """The issue's example: PolicyModel.sample([cshogi.Board(<no kings>)]) returned a move; cshogi.Board takes it."""
    board = cshogi.Board(sfen)
    with pytest.raises(ValueError, match=message):
        shogi_rules.parse_position(board)
    for call in (policy.sample, policy.top_k, policy.move_probabilities):
        with pytest.raises(ValueError, match=message):
            call([cshogi.Board(), board])


def test_bad_requests(policy, tmp_path):
    assert len(cshogi.Board(MATED_SFEN).legal_moves) == 0
    with pytest.raises(ValueError, match="no legal move"):
        policy.sample([MATED_SFEN])
    with pytest.raises(ValueError, match="no legal move"):
        policy.top_k(["startpos", MATED_SFEN])
    for k in (0, 2.5, "3", True):
        with pytest.raises(ValueError, match="k must be an integer"):
            policy.top_k(["startpos"], k=k)
    with pytest.raises(ValueError, match="seed"):
        policy.sample(["startpos"], seed=1.5)
    with pytest.raises(ValueError, match="not a shogi_policy export"):
        inference.PolicyModel(str(tmp_path))


def test_record_batches_are_checked(policy):
    records, mask, _, _ = inference.encode_positions(["startpos", "startpos moves 7g7f"])
    for bad_records, bad_mask, message in [
        (records, mask[:1], "legal_mask must be bool \\[2, 2187\\] for 2 records"),  # never broadcast
        (records[:1], mask, "legal_mask must be bool \\[1, 2187\\]"),
        (records, mask & False, "row 0 has no legal move"),
        (records.astype(np.int32), mask, "records must be uint8"),
        (records[:, :99], mask, "records must be uint8 \\[N, 100\\]"),
        (records, mask.astype(np.float32), "legal_mask must be bool"),
    ]:
        with pytest.raises(ValueError, match=message):
            policy.record_probabilities(bad_records, bad_mask)
        with pytest.raises(ValueError, match=message):
            policy.sample_record_labels(bad_records, bad_mask)


def test_no_positions_give_empty_results(policy):
    records, mask, _, _ = inference.encode_positions([])
    assert policy.record_logits(records).shape == (0, policy_labels.NUM_MOVE_LABELS)
    assert policy.record_probabilities(records, mask).shape == (0, policy_labels.NUM_MOVE_LABELS)
    assert policy.sample_record_labels(records, mask).shape == (0,)
    assert policy.sample([]) == [] and policy.top_k([]) == []


@pytest.mark.slow
def test_sample_cli(policy):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "shogi_policy.cli.sample",
            f"--model={policy.export_dir}",
            "--position=startpos moves 7g7f 3c3d",
            "--temperature=0",
            "--top_k=4",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    (best,) = policy.sample(["startpos moves 7g7f 3c3d"], 0.0)
    assert f"sampled: {best} " in result.stdout
    assert sum(line.strip()[:2] in ("1.", "2.", "3.", "4.") for line in lines) == 4


@pytest.mark.slow
def test_sample_cli_refuses_an_impossible_position(policy):
    # A pawn on Black's last rank: no move is sampled. (A bad temperature takes the same ValueError path.)
    position = "lnsgkgsnP/1r5b1/ppppppppp/9/9/9/PPPPPPPP1/1B5R1/LNSGKGSNL b - 1"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "shogi_policy.cli.sample",
            f"--model={policy.export_dir}",
            f"--position={position}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout  # absl's app.UsageError
    assert "could never move" in result.stderr and "sampled:" not in result.stdout


@pytest.mark.parametrize("temperature, rank_temperature", [(1.0, None), (0.0, 1.0), (0.5, 2.0)])
def test_sample_and_rank_is_sample_and_top_k_from_one_run(tiny_export, temperature, rank_temperature):
    """One network run gives the moves of the sample signature and the ranking of the probabilities signature,
    over several batches (each batch's seed as sample_record_labels derives it)."""
    from conftest import random_game_plies

    boards = [board.copy() for _, board, _ in itertools.islice(random_game_plies(5, 60), 0, 350, 7)]
    policy = inference.PolicyModel(str(tiny_export[1]), batch_size=16)
    for seed in (0, 7, -3):
        moves, ranked = policy.sample_and_rank(
            boards, temperature, seed, k=4, rank_temperature=rank_temperature
        )
        assert moves == policy.sample(boards, temperature, seed)
        expected = policy.top_k(boards, 4, temperature if rank_temperature is None else rank_temperature)
        assert [[move for move, _ in row] for row in ranked] == [
            [move for move, _ in row] for row in expected
        ]
        np.testing.assert_allclose(
            [[p for _, p in row] for row in ranked],
            [[p for _, p in row] for row in expected],
            rtol=1e-5,
            atol=1e-7,
        )
    assert policy.sample_and_rank([], 1.0, 0) == ([], [])
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        policy.sample_and_rank(boards[:1], 1.0, 0, k=0)
