"""Sampling latency and throughput of an exported policy SavedModel, host-side legal-move mask included.

  python scripts/bench/sampling.py [--quick]

Exports a random-weights network of the "cpu" preset to a temporary directory, then times
PolicyModel.sample on 1 and 256 positions (cshogi legal moves + record encoding on the host, the
"sample" signature in TensorFlow), and the host and SavedModel parts separately in the same run; then the USI
engine's 'go' latency: the real engine process (`python -m shogi_policy.cli usi`, as shogi-policy-usi) answering
`position sfen ...` + `go` round trips, median from sending 'go' to reading 'bestmove' (the engine runs the
shogi_policy that PYTHONPATH names: PYTHONPATH=<another checkout> times that one's engine on the same export).
Positions come from random legal playouts, so the script needs no data files.
"""

import itertools
import statistics
import subprocess
import sys
import tempfile
import time

import keras

from shogi_policy.core import policy_labels, record_format
from shogi_policy.data import random_games
from shogi_policy.model import network, network_config
from shogi_policy.serving import export, inference

BATCH = 256


def random_positions(count, seed=0, max_plies=120):
    """cshogi.Boards along random legal games of up to max_plies plies (each with a legal move)."""
    plies = random_games.random_game_plies(seed, max_plies)
    return [board.copy() for _, board, _ in itertools.islice(plies, count)]


def _median_seconds(fn, repeats):
    fn()  # warm-up (tracing, caches)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def usi_go_seconds(export_dir, boards, round_trips):
    """Median seconds from 'go' to 'bestmove' of the USI engine process over round_trips positions of boards."""
    engine = subprocess.Popen(
        [sys.executable, "-m", "shogi_policy.cli", "usi", f"--model={export_dir}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )

    def send(command, until=None):
        engine.stdin.write(command + "\n")
        engine.stdin.flush()
        while until and not engine.stdout.readline().startswith(until):
            pass

    try:
        send("usi", "usiok")
        send("isready", "readyok")  # loads the export and warms it up
        times = []
        for index in range(round_trips):
            send(f"position sfen {boards[index % len(boards)].sfen()}")
            start = time.perf_counter()
            send("go byoyomi 1000", "bestmove")
            times.append(time.perf_counter() - start)
        send("quit")
        engine.wait(timeout=60)
    finally:
        engine.kill()
    return statistics.median(times)


def run(quick=False):
    repeats = 1 if quick else 20
    config = network_config.PRESETS["cpu"]
    keras.utils.set_random_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as export_dir:
        export.export_model(
            network.build_policy_model(config), export_dir, config.to_dict(), "random weights"
        )
        model = inference.PolicyModel(export_dir, batch_size=BATCH)
        boards = random_positions(BATCH)
        one = boards[:1]
        note = f"preset cpu {config.blocks}x{config.filters}, random weights, T 1.0"

        single = _median_seconds(lambda: model.sample(one, 1.0, 0), repeats * 4)
        rows.append(
            {"benchmark": "sample latency, 1 position", "value": single * 1e3, "unit": "ms", "note": note}
        )
        rows.append(
            {
                "benchmark": "sample, 1 position",
                "value": 1 / single,
                "unit": "positions/s",
                "note": "end to end",
            }
        )
        batched = _median_seconds(lambda: model.sample(boards, 1.0, 0), repeats)
        rows.append(
            {
                "benchmark": f"sample, batch {BATCH}",
                "value": BATCH / batched,
                "unit": "positions/s",
                "note": f"end to end; {batched * 1e3:.1f} ms per batch",
            }
        )

        def host_part():
            mask, _, _ = policy_labels.legal_move_mask(boards)
            return record_format.encode_boards(boards), mask

        host = _median_seconds(host_part, repeats)
        records, mask = host_part()
        graph = _median_seconds(lambda: model.sample_record_labels(records, mask, 1.0, 0), repeats)
        rows.append(
            {
                "benchmark": f"host legal mask + records, batch {BATCH}",
                "value": BATCH / host,
                "unit": "positions/s",
                "note": "cshogi legal moves, labels, record packing",
            }
        )
        rows.append(
            {
                "benchmark": f"SavedModel sample signature, batch {BATCH}",
                "value": BATCH / graph,
                "unit": "positions/s",
                "note": "network + masked softmax + stateless sampling",
            }
        )
        rows.append(
            {
                "benchmark": "host share of batched sampling",
                "value": 100 * host / batched,
                "unit": "%",
                "note": "host mask time / end-to-end time, same run",
            }
        )
        round_trips = 5 if quick else 100
        usi_go = usi_go_seconds(export_dir, boards, round_trips)
        rows.append(
            {
                "benchmark": "USI go latency",
                "value": usi_go * 1e3,
                "unit": "ms",
                "note": f"engine process, median of {round_trips} position + go round trips, 'go' to 'bestmove'",
            }
        )
    return rows


if __name__ == "__main__":
    for row in run():
        print(f"{row['benchmark']:45s} {row['value']:10.4g} {row['unit']:12s} {row['note']}")
