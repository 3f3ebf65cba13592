"""Host input pipeline throughput: positions/s of make_dataset over a temporary shard directory.

Iterates the dataset without a model (what the host must sustain to feed an accelerator). The records
are the positions of the embedded default data (data/engine_games.usi.gz), tiled to the shard lengths:
the pipeline validates every record, so they must be real positions.

  python scripts/bench/pipeline.py
"""

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from shogi_policy.data import game_io, input_pipeline, records, shard_manifest, shards

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "data" / "engine_games.usi.gz"
# Shard lengths deliberately not multiples of the chunk, so tail chunks are part of the measurement.
FULL_SHARDS = (250_007,) * 6  # 1.5 M records, 150 MB
QUICK_SHARDS = (50_003,) * 4


def default_data_records():
    """uint8 [141583, 100] records of the default data's games (about 1 s)."""
    games = [game for game in records.read_games(str(DEFAULT_DATA)) if isinstance(game, game_io.Game)]
    return records.games_to_records(games, np.arange(len(games)))


def write_shard_dir(directory, lengths, seed=0):
    """Shards of the given lengths (default-data records, tiled and shuffled) and their manifest; the total."""
    rng = np.random.default_rng(seed)
    positions = default_data_records()
    names = []
    for index, length in enumerate(lengths):
        name = shards.shard_name("train", index, len(lengths))
        positions[rng.integers(len(positions), size=length)].tofile(os.path.join(directory, name))
        names.append(name)
    splits = {"train": {"files": names, "positions": int(sum(lengths)), "games": 0}}
    shard_manifest.write_manifest(directory, shard_manifest.make_manifest(splits, seed=seed))
    return sum(lengths)


def positions_per_second(dataset, batch_size, batches, warmup=20):
    """(positions/s, process CPU microseconds a position) of iterating `batches` batches after a warm-up.

    The CPU cost is the figure that stays comparable on a shared machine, where the wall rate follows the load.
    """
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(iterator)
    positions = batches * batch_size
    return positions / (time.perf_counter() - start), (time.process_time() - cpu_start) / positions * 1e6


def run(quick: bool = False) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        total = write_shard_dir(directory, QUICK_SHARDS if quick else FULL_SHARDS)
        for batch_size, value_targets, shuffle in (
            (1024, False, True),
            (4096, False, True),
            (4096, True, False),
        ):
            dataset = input_pipeline.make_dataset(
                directory, "train", batch_size, shuffle=shuffle, value_targets=value_targets
            )
            batches = (total // batch_size) // (4 if quick else 1)  # about one epoch (full run)
            rate, cpu_us = positions_per_second(dataset, batch_size, batches)
            rows.append(
                {
                    "benchmark": f"make_dataset batch {batch_size}"
                    + (" shuffled" if shuffle else " in order")
                    + (" value targets" if value_targets else ""),
                    "value": round(rate),
                    "unit": "positions/s",
                    "note": f"{total} records in {len(QUICK_SHARDS if quick else FULL_SHARDS)} shards, "
                    f"{os.cpu_count()} cores (load {os.getloadavg()[0]:.1f}), iterated without a model, "
                    f"{cpu_us:.2f} us CPU a position",
                }
            )
    return rows


if __name__ == "__main__":
    tf.get_logger().setLevel("ERROR")
    for row in run():
        print(row)
