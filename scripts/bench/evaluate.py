"""Peak memory of shogi-policy-evaluate --tsv against the number of rows: it streams the rows in batches, so the
peak should stay flat (a 1M-row file once needed 24 GB, about 28 KB a row).

  python -m scripts.bench.evaluate [--quick]

Exports a random-weights network of the "cpu" preset, writes TSV files of 10k and 100k rows (1k and 10k with
--quick) of positions from random legal playouts, and runs `python -m shogi_policy.cli evaluate --tsv=...` on
each in a child process, reading the child's own peak RSS (os.wait4). Needs no data files.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cshogi
import keras
import numpy as np

from scripts.bench.sampling import random_positions
from shogi_policy.model import network, network_config
from shogi_policy.serving import export


def write_rows(path, count, distinct=1000):
    """A 'split<TAB>sfen<TAB>usi_move' file of count rows: `distinct` random playout positions, repeated."""
    rng = np.random.default_rng(1)
    rows = []
    for board in random_positions(distinct):
        moves = list(board.legal_moves)
        rows.append(f"val\tsfen {board.sfen()}\t{cshogi.move_to_usi(moves[rng.integers(len(moves))])}\n")
    with open(path, "w") as stream:
        for index in range(count):
            stream.write(rows[index % distinct])


def peak_rss_mb(command):
    """(exit status, peak RSS in MB) of a child process running command (Linux: ru_maxrss in KB)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_maxrss / 1024


def run(quick=False):
    counts = (1_000, 10_000) if quick else (10_000, 100_000)
    config = network_config.PRESETS["cpu"]
    keras.utils.set_random_seed(0)
    rows, peaks = [], []
    with tempfile.TemporaryDirectory() as directory:
        export_dir = Path(directory) / "export"
        export.export_model(
            network.build_policy_model(config), str(export_dir), config.to_dict(), "random weights"
        )
        for count in counts:
            tsv = Path(directory) / f"rows_{count}.tsv"
            write_rows(tsv, count)
            command = [
                sys.executable,
                "-m",
                "shogi_policy.cli",
                "evaluate",
                f"--model={export_dir}",
                f"--tsv={tsv}",
            ]
            status, peak = peak_rss_mb(command)
            if status:
                raise RuntimeError(f"{' '.join(command)} exited with status {status}")
            peaks.append(peak)
            rows.append(
                {
                    "benchmark": f"evaluate --tsv peak RSS, {count:,} rows",
                    "value": round(peak),
                    "unit": "MB",
                    "note": "child process, batch 256",
                }
            )
    rows.append(
        {
            "benchmark": f"evaluate --tsv peak RSS growth, {counts[0]:,} -> {counts[1]:,} rows",
            "value": round((peaks[1] - peaks[0]) * 1024 / (counts[1] - counts[0]), 2),
            "unit": "KB/row",
            "note": f"{peaks[1] / peaks[0]:.2f}x the peak for {counts[1] // counts[0]}x the rows",
        }
    )
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(f"{row['benchmark']}: {row['value']} {row['unit']} ({row['note']})")
