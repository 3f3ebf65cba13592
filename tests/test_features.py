"""DlshogiFeatures against cshogi.dlshogi.make_input_features, bit for bit, with and without XLA.

Runs under the Keras backend of the process: KERAS_BACKEND=jax (.ci/jax_lane) checks the same planes under
jax.jit, on uint8 records and on the int32 records the trainer feeds.
"""

import itertools

import cshogi
import cshogi.dlshogi
import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import random_game_plies

from shogi_policy.core import record_format
from shogi_policy.model import features
from shogi_policy.runtime.strategy import host_xla_available

BATCH = 2048

# Hand-made positions for cases random games reach rarely; is_check says whether the side to move is in check.
SPECIAL_SFENS = {
    "start, White to move": ("lnsgkgsnl/1r5b1/ppppppppp/9/9/9/PPPPPPPPP/1B5R1/LNSGKGSNL w - 1", False),
    "all pieces in Black's hand": ("4k4/9/9/9/9/9/9/9/4K4 b 2R2B4G4S4N4L18P 1", False),
    "all pieces in White's hand, White to move": ("4k4/9/9/9/9/9/9/9/4K4 w 2r2b4g4s4n4l18p 1", False),
    "18 pawns split, both hands": ("4k4/9/9/9/9/9/9/9/4K4 b R2B3G2S4N4L9Prg2s9p 1", False),
    "knight check": ("4k4/9/9/9/9/9/5n3/9/4K4 b - 1", True),
    "distant lance check, White to move": ("4k4/9/9/9/9/9/9/9/4L3K w - 1", True),
    "double check by rook and bishop": ("4k4/9/9/9/9/9/9/3b5/r3K4 b - 1", True),
    "pinned gold": ("4k4/4r4/9/9/9/9/9/4G4/4K4 b - 1", False),
    "pinned silver, White to move": ("4k4/4s4/9/9/4R4/9/9/9/4K4 w - 1", False),
    "promoted pieces of both sides": ("+R1+P1k3+B/+S8/9/9/9/9/4+n4/1+l7/+rN2K2+b1 b - 1", False),
    "squares attacked by three": ("4k4/9/9/2GGG4/1R1+P5/9/9/9/4K4 w 2P 1", False),
    "White in check by dragon": ("4k4/9/4+R4/9/9/9/9/9/4K4 w - 1", True),
}


def oracle_planes(board):
    """cshogi's dlshogi planes of a Board: float32 [119, 9, 9]."""
    features1 = np.zeros((cshogi.dlshogi.FEATURES1_NUM, 9, 9), np.float32)
    features2 = np.zeros((cshogi.dlshogi.FEATURES2_NUM, 9, 9), np.float32)
    cshogi.dlshogi.make_input_features(board, features1, features2)
    return np.concatenate([features1, features2])


def random_boards(count, seed):
    """Boards of positions along uniformly random games (captures, promotions, drops, checks).

    Games are cut after 300 plies; each Board is advanced once the next one is asked for.
    """
    return (board for _, board, _ in itertools.islice(random_game_plies(seed, max_plies=300), count))


def floodgate_boards(shared_data):
    """Board of every position of every game of games.usi (before each move)."""
    for line in (shared_data / "floodgate_games" / "games.usi").read_text().splitlines():
        game = cshogi.Board()
        game.set_position(line.split("\t")[0])
        board = cshogi.Board()
        for move in game.history:
            yield board
            board.push(move)


def batches(boards):
    """(records uint8 [n, 100], oracle float32 [n, 62, 9, 9] and [n, 57, 9, 9]) of successive BATCH boards."""
    boards = iter(boards)
    while True:
        features1 = np.zeros((BATCH, cshogi.dlshogi.FEATURES1_NUM, 9, 9), np.float32)
        features2 = np.zeros((BATCH, cshogi.dlshogi.FEATURES2_NUM, 9, 9), np.float32)
        pieces, hands, turns = [], [], []
        for board in itertools.islice(boards, BATCH):
            cshogi.dlshogi.make_input_features(board, features1[len(turns)], features2[len(turns)])
            board_pieces, board_hands = record_format.board_arrays(board)
            pieces.append(board_pieces)
            hands.append(board_hands)
            turns.append(board.turn)
        if not turns:
            return
        n = len(turns)
        records = record_format.pack_records(pieces, hands, turns, np.zeros(n), np.zeros(n), np.zeros(n))
        yield records, features1[:n], features2[:n]


def _numpy(function):
    return lambda records: keras.ops.convert_to_numpy(function(records))


@pytest.fixture(scope="module")
def layer_functions():
    """Records uint8 [n, 100] -> planes as numpy, per mode: how the backend compiles the layer.

    TF: plain tf.function, and where the host has XLA, as its own XLA computations and inside one.
    JAX: jax.jit on uint8 and on int32 records (nested_xla is ignored there).
    """
    layer = features.DlshogiFeatures(dtype="float32")
    if keras.backend.backend() == "jax":
        jitted = features.compiled(layer)
        return {"jax.jit": _numpy(jitted), "jax.jit int32": _numpy(lambda r: jitted(r.astype(np.int32)))}
    if not host_xla_available():  # the tensorflow-tpu wheel
        return {"graph": _numpy(tf.function(layer))}
    return {
        "graph": _numpy(tf.function(layer)),
        "nested xla": _numpy(tf.function(features.DlshogiFeatures(nested_xla=True, dtype="float32"))),
        "xla": _numpy(tf.function(layer, jit_compile=True)),
    }


def assert_matches_oracle(layer_functions, boards):
    """Checks every board in both modes; returns the number of positions."""
    count = 0
    padded = np.zeros((BATCH, record_format.RECORD_BYTES), np.uint8)  # one batch shape: one trace per mode
    for records, features1, features2 in batches(boards):
        n = len(records)
        padded[:n] = records
        for mode, function in layer_functions.items():
            ours = function(padded)[:n].transpose(0, 3, 1, 2)  # cshogi's [n, 119, 9, 9]
            if np.array_equal(ours[:, :62], features1) and np.array_equal(ours[:, 62:], features2):
                continue
            oracle = np.concatenate([features1, features2], axis=1)
            wrong = np.argwhere(ours != oracle)
            index, channel, file, rank = wrong[0]
            sfen = record_format.record_to_board(records[index]).sfen()
            pytest.fail(
                f"{mode}: {len(wrong)} wrong values; first: {sfen} channel {channel} file {file} rank {rank}:"
                f" ours {ours[index, channel, file, rank]}, cshogi {oracle[index, channel, file, rank]}"
            )
        count += n
    return count


@pytest.mark.slow
def test_every_floodgate_position_matches_cshogi(shared_data, layer_functions):
    assert assert_matches_oracle(layer_functions, floodgate_boards(shared_data)) == 127_415


def test_random_game_positions_match_cshogi(layer_functions):
    assert assert_matches_oracle(layer_functions, random_boards(20_480, seed=1)) == 20_480


def test_special_positions_match_cshogi():
    planes = features.dlshogi_planes([sfen for sfen, _ in SPECIAL_SFENS.values()])
    assert planes.shape == (len(SPECIAL_SFENS), features.NUM_FEATURES, 9, 9) and planes.dtype == np.float32
    for ours, (name, (sfen, in_check)) in zip(planes, SPECIAL_SFENS.items(), strict=True):
        board = cshogi.Board(sfen)
        assert board.is_check() == in_check, f"{name}: the position is not what its name says"
        np.testing.assert_array_equal(ours, oracle_planes(board), err_msg=name)


def test_layer_serialises_and_computes_in_bfloat16():
    layer = keras.layers.deserialize(keras.layers.serialize(features.DlshogiFeatures(dtype="mixed_bfloat16")))
    assert isinstance(layer, features.DlshogiFeatures)
    sfens = [board.sfen() for board in random_boards(64, seed=2)]
    out = layer(record_format.encode_boards([cshogi.Board(sfen) for sfen in sfens]))
    assert out.shape == (64, 9, 9, features.NUM_FEATURES)
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(out).astype(np.float32).transpose(0, 3, 1, 2),
        features.dlshogi_planes(sfens),
    )
