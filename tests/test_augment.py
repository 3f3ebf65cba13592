"""Left-right mirror of records and labels against cshogi's planes and labels of independently mirrored games."""

import re

import cshogi
import cshogi.dlshogi
import numpy as np
import pytest
import tensorflow as tf
from conftest import random_game_records

from shogi_policy.core import policy_labels, record_format
from shogi_policy.data import augment, game_io, input_pipeline, records, shard_manifest, shards
from shogi_policy.model import features

FEATURE_BATCH = 1024
_SFEN_TOKEN = re.compile(r"\+?[A-Za-z]|[1-9]")


def mirror_sfen(sfen):
    """The SFEN of the left-right mirrored position: each rank's tokens reversed (files 9..1 -> 1..9)."""
    board, rest = sfen.split(" ", 1)
    return "/".join("".join(reversed(_SFEN_TOKEN.findall(rank))) for rank in board.split("/")) + " " + rest


def mirror_usi(usi):
    """The mirrored USI move: file digit d -> 10 - d for the from- and to-squares (a drop has only 'to')."""
    if usi[1] == "*":
        return usi[:2] + str(10 - int(usi[2])) + usi[3:]
    return str(10 - int(usi[0])) + usi[1] + str(10 - int(usi[2])) + usi[3:]


def mirrored_game_labels(sfen, usi_moves):
    """cshogi labels of the mirrored moves, replayed on a board set up from the mirrored start SFEN."""
    board = cshogi.Board(mirror_sfen(sfen))
    labels = []
    for usi in usi_moves:
        move = board.move_from_usi(mirror_usi(usi))
        assert move in board.legal_moves, f"{mirror_usi(usi)} not legal in {board.sfen()}"
        labels.append(cshogi.dlshogi.make_move_label(move, board.turn))
        board.push(move)
    return labels


def cshogi_planes(sfens):
    """cshogi.dlshogi.make_input_features of each SFEN: float32 [n, 119, 9, 9]."""
    features1 = np.zeros((len(sfens), cshogi.dlshogi.FEATURES1_NUM, 9, 9), np.float32)
    features2 = np.zeros((len(sfens), cshogi.dlshogi.FEATURES2_NUM, 9, 9), np.float32)
    for i, sfen in enumerate(sfens):
        cshogi.dlshogi.make_input_features(cshogi.Board(sfen), features1[i], features2[i])
    return np.concatenate([features1, features2], axis=1)


_layer = tf.function(features.DlshogiFeatures(dtype="float32"))


def our_planes(records_):
    """DlshogiFeatures of records, in cshogi's [n, 119, 9, 9] layout (fixed batch: one trace)."""
    out = []
    for start in range(0, len(records_), FEATURE_BATCH):
        chunk = records_[start : start + FEATURE_BATCH]
        padded = np.zeros((FEATURE_BATCH, record_format.RECORD_BYTES), np.uint8)
        padded[: len(chunk)] = chunk
        out.append(_layer(padded).numpy()[: len(chunk)].transpose(0, 3, 1, 2))
    return np.concatenate(out)


def check_games(games, feature_every):
    """Checks mirrored labels of every position of games, and mirrored planes of every feature_every-th."""
    originals = records.games_to_records(games, np.arange(len(games)))
    mirrored = augment.mirror_records(originals).numpy()
    assert mirrored.dtype == np.uint8
    np.testing.assert_array_equal(mirrored, augment.mirror_records_np(originals))
    fields, mirrored_fields = record_format.unpack_records(originals), record_format.unpack_records(mirrored)
    for name in ("hands", "turn", "result", "game_id"):
        np.testing.assert_array_equal(mirrored_fields[name], fields[name], err_msg=name)

    expected_labels, sfens = [], []
    for game in games:
        board = cshogi.Board(game.sfen)
        usi_moves = []
        for move in game.moves:
            sfens.append(board.sfen())
            usi_moves.append(cshogi.move_to_usi(move))
            board.push(move)
        expected_labels.extend(mirrored_game_labels(game.sfen, usi_moves))
    np.testing.assert_array_equal(mirrored_fields["label"], expected_labels)

    sample = np.arange(0, len(sfens), feature_every)
    ours = our_planes(mirrored[sample])
    theirs = cshogi_planes([mirror_sfen(sfens[i]) for i in sample])
    wrong = np.argwhere((ours != theirs).any(axis=(1, 2, 3)))
    assert not len(wrong), f"planes differ, first at {mirror_sfen(sfens[sample[wrong[0, 0]]])}"
    return len(sfens), len(sample)


def test_mirror_sfen_and_usi_helpers():
    start = cshogi.Board()
    assert mirror_sfen(start.sfen()) == "lnsgkgsnl/1b5r1/ppppppppp/9/9/9/PPPPPPPPP/1R5B1/LNSGKGSNL b - 1"
    assert mirror_sfen("+R1+P1k3+B/9/9/9/9/9/9/9/4K4 w P 3") == "+B3k1+P1+R/9/9/9/9/9/9/9/4K4 w P 3"
    assert [mirror_usi(u) for u in ("7g7f", "8h2b+", "P*5e", "B*1a")] == ["3g3f", "2h8b+", "P*5e", "B*9a"]


def test_permutations_are_involutions_that_swap_left_and_right():
    labels = np.arange(policy_labels.NUM_MOVE_LABELS)
    np.testing.assert_array_equal(augment.mirror_labels(augment.mirror_labels(labels)), labels)
    # UP to 5e (file index 4 is its own mirror) stays; UP_LEFT at square 0 -> UP_RIGHT at square 72.
    assert augment.mirror_labels([0 * 81 + 40, 1 * 81 + 0, 11 * 81 + 9, 20 * 81 + 3]).tolist() == [
        40, 2 * 81 + 72, 12 * 81 + 63, 20 * 81 + 75,
    ]  # fmt: skip
    assert (
        augment.mirror_squares(np.arange(81)).reshape(9, 9)[::-1].tolist()
        == np.arange(81).reshape(9, 9).tolist()
    )


def test_mirroring_twice_is_the_identity():
    rng = np.random.default_rng(0)
    records_ = rng.integers(0, 256, (512, record_format.RECORD_BYTES), dtype=np.uint8)
    meta = rng.integers(0, policy_labels.NUM_MOVE_LABELS, 512) | (rng.integers(0, 4, 512) << 12)
    records_[:, 95], records_[:, 96] = meta & 0xFF, meta >> 8 | (records_[:, 96] & 0xC0)
    once = augment.mirror_records(records_)
    np.testing.assert_array_equal(augment.mirror_records(once).numpy(), records_)
    np.testing.assert_array_equal(augment.mirror_records_np(augment.mirror_records_np(records_)), records_)
    as_int32 = augment.mirror_records(tf.constant(records_, tf.int32))
    assert as_int32.dtype == tf.int32
    np.testing.assert_array_equal(as_int32.numpy(), once.numpy())
    # Pure TF: compiles under XLA, as a TPU step would.
    np.testing.assert_array_equal(tf.function(augment.mirror_records, jit_compile=True)(records_), once)


def test_random_game_positions_mirror_exactly():
    records_ = random_game_records(num_games=24, max_plies=200, seed=5)
    mirrored = augment.mirror_records(records_).numpy()
    sfens = [record_format.record_to_board(record).sfen() for record in records_]
    np.testing.assert_array_equal(our_planes(mirrored), cshogi_planes([mirror_sfen(sfen) for sfen in sfens]))
    # Labels: rebuild each move from the original label's board via its USI string.
    labels = record_format.unpack_records(records_)["label"]
    expected = []
    for record, label in zip(records_, labels, strict=True):
        board = record_format.record_to_board(record)
        move = next(m for m in board.legal_moves if cshogi.dlshogi.make_move_label(m, board.turn) == label)
        mirror_board = cshogi.Board(mirror_sfen(board.sfen()))
        mirrored_move = mirror_board.move_from_usi(mirror_usi(cshogi.move_to_usi(move)))
        assert mirrored_move in mirror_board.legal_moves
        expected.append(cshogi.dlshogi.make_move_label(mirrored_move, mirror_board.turn))
    np.testing.assert_array_equal(record_format.unpack_records(mirrored)["label"], expected)
    assert len(records_) > 2000


def test_every_floodgate_position_mirrors_exactly(shared_data):
    games = [g for g in records.read_games(str(shared_data / "floodgate_games" / "games.usi"))]
    assert all(isinstance(game, game_io.Game) for game in games)
    positions, featured = check_games(games, feature_every=40)
    assert positions == 127_415 and featured > 3000


def test_shipped_floodgate_games_mirror_exactly():
    """The same on data/ (no ../shared needed): labels of every 10th game, planes of a sample."""
    path = shards.__file__.replace("shogi_policy/data/shards.py", "data/floodgate_games.usi.gz")
    games = [g for g in records.read_games(path)][::10]
    positions, _ = check_games(games, feature_every=50)
    assert positions > 10_000


def _write_shards(directory, records_):
    """A one-shard directory in the manifest's format."""
    name = shards.shard_name("train", 0, 1)
    (directory / name).write_bytes(records_.tobytes())
    split = {"files": [name], "positions": len(records_), "games": 1}
    shard_manifest.write_manifest(str(directory), shard_manifest.make_manifest({"train": split}))
    return str(directory)


def test_pipeline_mirrors_half_the_rows_reproducibly(tmp_path):
    records_ = random_game_records(num_games=8, max_plies=120, seed=9)
    data_dir = _write_shards(tmp_path, records_)

    def rows(mirror, seed):
        dataset = input_pipeline.make_dataset(
            data_dir, "train", 64, shuffle=False, repeat=False, seed=seed, mirror=mirror
        )
        return np.concatenate([batch.numpy() for batch, _ in dataset])

    plain, mirrored = rows(False, 3), rows(True, 3)
    np.testing.assert_array_equal(mirrored, rows(True, 3))  # same seed, same draws
    flipped = (mirrored != plain).any(axis=1)
    # Positions that are their own mirror (rare) cannot tell; the rest are either kept or mirrored.
    np.testing.assert_array_equal(mirrored[flipped], augment.mirror_records_np(plain[flipped]))
    assert 0.4 < flipped.mean() < 0.6
    assert not (rows(True, 4) == mirrored).all()
    # Targets follow the mirrored labels.
    dataset = input_pipeline.make_dataset(
        data_dir, "train", 64, shuffle=False, repeat=False, seed=3, mirror=True
    )
    for batch, target in dataset.take(2):
        np.testing.assert_array_equal(
            target.numpy() & 0xFFF, record_format.unpack_records(batch.numpy())["label"]
        )


@pytest.mark.parametrize("dtype", [tf.uint8, tf.int32])
def test_random_mirror_is_stateless(dtype):
    records_ = tf.constant(random_game_records(num_games=2, max_plies=60, seed=1), dtype)
    seed = tf.constant([7, 8], tf.int64)
    first = augment.random_mirror(records_, seed)
    np.testing.assert_array_equal(first, augment.random_mirror(records_, seed))
    assert first.dtype == dtype
