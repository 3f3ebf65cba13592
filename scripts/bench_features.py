"""dlshogi feature planes: the in-graph DlshogiFeatures layer beside cshogi's make_input_features.

Same positions (from seeded random games) in the same run: cshogi fills preallocated float32 arrays
one position at a time (one core); the layer runs on batches under tf.function, plain and with
jit_compile=True (XLA), on all cores TensorFlow is given.

  python scripts/bench_features.py
"""

import os
import time

import cshogi
import cshogi.dlshogi
import numpy as np
import tensorflow as tf

from shogi_policy import encoding, features

BATCH = 1024


def random_sfens(count, seed=0):
    """SFENs along uniformly random games (many captures, promotions and pieces in hand)."""
    rng = np.random.default_rng(seed)
    board, sfens = cshogi.Board(), []
    while len(sfens) < count:
        if board.is_game_over() or board.move_number > 300:
            board = cshogi.Board()
        sfens.append(board.sfen())
        legal = list(board.legal_moves)
        board.push(legal[rng.integers(len(legal))])
    return sfens


def cshogi_rate(boards):
    """Positions/s of cshogi.dlshogi.make_input_features into zeroed preallocated arrays."""
    features1 = np.zeros((len(boards), cshogi.dlshogi.FEATURES1_NUM, 9, 9), np.float32)
    features2 = np.zeros((len(boards), cshogi.dlshogi.FEATURES2_NUM, 9, 9), np.float32)
    start = time.perf_counter()
    for i, board in enumerate(boards):
        cshogi.dlshogi.make_input_features(board, features1[i], features2[i])
    return len(boards) / (time.perf_counter() - start)


def layer_rate(records, jit_compile, repeats):
    """Positions/s of DlshogiFeatures (float32 output fetched to numpy) on batches of BATCH records."""
    compute = tf.function(features.DlshogiFeatures(dtype="float32"), jit_compile=jit_compile)
    batches = [tf.constant(records[i : i + BATCH]) for i in range(0, len(records) - BATCH + 1, BATCH)]
    compute(batches[0]).numpy()  # trace and compile
    start = time.perf_counter()
    for _ in range(repeats):
        for batch in batches:
            compute(batch).numpy()
    return repeats * len(batches) * BATCH / (time.perf_counter() - start)


def run(quick: bool = False) -> list[dict]:
    sfens = random_sfens(2 * BATCH if quick else 8 * BATCH)
    boards = [cshogi.Board(sfen) for sfen in sfens]
    records = encoding.encode_boards(boards)
    reference = cshogi_rate(boards)
    note = f"{len(sfens)} random-game positions, batch {BATCH}, {os.cpu_count()} cores"
    rows = [
        {
            "benchmark": "cshogi make_input_features (1 thread)",
            "value": round(reference),
            "unit": "positions/s",
            "note": note,
        }
    ]
    for name, jit_compile in (("tf.function", False), ("tf.function jit_compile=True", True)):
        rate = layer_rate(records, jit_compile, repeats=1 if quick else 3)
        rows.append(
            {
                "benchmark": f"DlshogiFeatures {name}",
                "value": round(rate),
                "unit": "positions/s",
                "note": note,
            }
        )
        rows.append(
            {
                "benchmark": f"DlshogiFeatures {name} / cshogi",
                "value": round(rate / reference, 2),
                "unit": "ratio",
                "note": "same positions, same run",
            }
        )
    return rows


if __name__ == "__main__":
    tf.get_logger().setLevel("ERROR")
    for row in run():
        print(row)
