"""dlshogi feature planes: the in-graph DlshogiFeatures layer beside cshogi's make_input_features.

Same positions (from seeded random games) in the same run: cshogi fills preallocated float32 arrays
one position at a time (one core); the layer runs on batches under tf.function, as the trainer runs it
on CPU (nested XLA: its own two XLA computations), as exports and hosts without XLA run it (plain TF
ops) and inside an outer jit_compile=True (XLA fuses the whole layer as it likes), on all cores
TensorFlow is given. On a host without XLA (the tensorflow-tpu wheel) only the plain ops run. They take turns, pass after pass, and each reports its median pass,
so load from other processes hits them alike.

The layer's planes stay in the TF tensor it returns, as they do when the next layer consumes them:
EagerTensor.numpy() would add a copy of 39 MB per 1024 positions into fresh memory. cshogi is timed
twice: into freshly zeroed arrays (each page is first touched, and faulted in, during the timing, as
for a pipeline that allocates every batch) and into arrays it filled before (reused, already mapped).

The layer's output tensor is allocated anew every call. TF's default CPU allocator takes a block that
large from the OS each time (glibc mmap above 32 MB) and faults its pages in again, which costs about
as much as computing the planes; TF's BFC allocator (TF_CPU_ALLOCATOR_USE_BFC=true) reuses freed
blocks, as cshogi's reused arrays do. The allocator is fixed when TensorFlow starts, so each is
measured in a child process of its own.

  python scripts/bench/features.py
"""

import itertools
import json
import os
import subprocess
import sys
import time

import cshogi
import cshogi.dlshogi
import numpy as np
import tensorflow as tf

from shogi_policy.core import record_format
from shogi_policy.data import random_games
from shogi_policy.model import features
from shogi_policy.runtime.strategy import host_xla_available

BATCH = 1024


def random_sfens(count, seed=0):
    """SFENs along uniformly random games (many captures, promotions and pieces in hand)."""
    plies = random_games.random_game_plies(seed, max_plies=300)
    return [board.sfen() for _, board, _ in itertools.islice(plies, count)]


def cshogi_seconds(boards, features1=None, features2=None):
    """Seconds of cshogi.dlshogi.make_input_features for every board, into the arrays given or fresh zeroed ones."""
    if features1 is None:
        features1 = np.zeros((len(boards), cshogi.dlshogi.FEATURES1_NUM, 9, 9), np.float32)
        features2 = np.zeros((len(boards), cshogi.dlshogi.FEATURES2_NUM, 9, 9), np.float32)
    start = time.perf_counter()
    for i, board in enumerate(boards):
        cshogi.dlshogi.make_input_features(board, features1[i], features2[i])
    return time.perf_counter() - start


def layer_seconds(compute, batches):
    """Seconds of one compiled DlshogiFeatures call per batch (float32 planes left in the tensor)."""
    start = time.perf_counter()
    for batch in batches:
        planes = compute(batch)
    memoryview(planes)  # zero-copy view of the last output: it is computed (CPU eager runs synchronously)
    return time.perf_counter() - start


def measure(quick: bool, allocator: str) -> list[dict]:
    """Rows of one process; allocator names the TF CPU allocator it was started with."""
    sfens = random_sfens(2 * BATCH if quick else 8 * BATCH)
    boards = [cshogi.Board(sfen) for sfen in sfens]
    records = record_format.encode_boards(boards)
    batches = [tf.constant(records[i : i + BATCH]) for i in range(0, len(records), BATCH)]
    features1 = np.zeros((len(boards), cshogi.dlshogi.FEATURES1_NUM, 9, 9), np.float32)
    features2 = np.zeros((len(boards), cshogi.dlshogi.FEATURES2_NUM, 9, 9), np.float32)
    layers = {"plain ops (serving)": tf.function(features.DlshogiFeatures(dtype="float32"))}
    if host_xla_available():
        layers["nested XLA (training)"] = tf.function(
            features.DlshogiFeatures(nested_xla=True, dtype="float32")
        )
        layers["in jit_compile=True"] = tf.function(
            features.DlshogiFeatures(dtype="float32"), jit_compile=True
        )
    for compute in layers.values():
        compute(batches[0])  # trace and compile
    cshogi_seconds(boards, features1, features2)  # map the reused arrays
    seconds = {name: [] for name in ("cshogi", "cshogi reused", *layers)}
    passes = 3 if quick else 7
    for _ in range(passes):
        seconds["cshogi"].append(cshogi_seconds(boards))
        seconds["cshogi reused"].append(cshogi_seconds(boards, features1, features2))
        for name, compute in layers.items():
            seconds[name].append(layer_seconds(compute, batches))
    rates = {name: len(boards) / float(np.median(times)) for name, times in seconds.items()}
    note = (
        f"{len(sfens)} random-game positions, batch {BATCH}, {os.cpu_count()} cores, median of {passes}"
        f" interleaved passes, load average {os.getloadavg()[0]:.1f}, TF {allocator} allocator"
    )
    rows = [
        {
            "benchmark": "cshogi make_input_features (1 thread)",
            "value": round(rates["cshogi"]),
            "unit": "positions/s",
            "note": note,
        },
        {
            "benchmark": "cshogi make_input_features (1 thread, reused arrays)",
            "value": round(rates["cshogi reused"]),
            "unit": "positions/s",
            "note": note,
        },
    ]
    for name in layers:
        name_as_run = f"{name}, {allocator} allocator"
        rows.append(
            {
                "benchmark": f"DlshogiFeatures {name_as_run}",
                "value": round(rates[name]),
                "unit": "positions/s",
                "note": note,
            }
        )
        rows.append(
            {
                "benchmark": f"DlshogiFeatures {name_as_run} / cshogi",
                "value": round(rates[name] / rates["cshogi"], 2),
                "unit": "ratio",
                "note": "same positions, same run",
            }
        )
        rows.append(
            {
                "benchmark": f"DlshogiFeatures {name_as_run} / cshogi reused arrays",
                "value": round(rates[name] / rates["cshogi reused"], 2),
                "unit": "ratio",
                "note": "same positions, same run",
            }
        )
    return rows


ALLOCATORS = {"BFC": "true", "default": "false"}


def run(quick: bool = False) -> list[dict]:
    """Rows of one child process per TF CPU allocator (cshogi's rows from the first only); quick: BFC's alone."""
    rows = []
    for allocator, use_bfc in list(ALLOCATORS.items())[: 1 if quick else None]:
        env = dict(os.environ, TF_CPU_ALLOCATOR_USE_BFC=use_bfc, TF_CPP_MIN_LOG_LEVEL="2")
        command = [sys.executable, __file__, "--child", allocator] + (["--quick"] if quick else [])
        child = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
        child_rows = json.loads(child.stdout.splitlines()[-1])
        rows += [row for row in child_rows if not rows or not row["benchmark"].startswith("cshogi")]
    return rows


if __name__ == "__main__":
    tf.get_logger().setLevel("ERROR")
    if "--child" in sys.argv:
        allocator = sys.argv[sys.argv.index("--child") + 1]
        print(json.dumps(measure("--quick" in sys.argv, allocator)))
    else:
        for row in run("--quick" in sys.argv):
            print(row)
