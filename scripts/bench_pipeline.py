"""Host input pipeline throughput: positions/s of make_dataset over a temporary shard directory.

Iterates the dataset without a model (what the host must sustain to feed an accelerator).
The records are random bytes with valid labels: the pipeline never looks inside a position.

  python scripts/bench_pipeline.py
"""

import os
import tempfile
import time

import numpy as np
import tensorflow as tf

from shogi_policy import encoding, input_pipeline, shards

# Shard lengths deliberately not multiples of the chunk, so tail chunks are part of the measurement.
FULL_SHARDS = (250_007,) * 6  # 1.5 M records, 150 MB
QUICK_SHARDS = (50_003,) * 4


def write_shard_dir(directory, lengths, seed=0):
    """Random records in shards of the given lengths plus their manifest; returns the total."""
    rng = np.random.default_rng(seed)
    names = []
    for index, length in enumerate(lengths):
        records = encoding.pack_records(
            boards=rng.integers(0, 256, (length, encoding.BOARD_BYTES)),
            hands=rng.integers(0, 256, (length, encoding.HAND_BYTES)),
            turns=rng.integers(0, 2, length),
            labels=rng.integers(0, encoding.NUM_MOVE_LABELS, length),
            results=rng.integers(0, 3, length),
            game_ids=np.zeros(length),
        )
        name = shards.shard_name("train", index, len(lengths))
        records.tofile(os.path.join(directory, name))
        names.append(name)
    splits = {"train": {"files": names, "positions": int(sum(lengths)), "games": 0}}
    shards.write_manifest(directory, shards.make_manifest(splits, seed=seed))
    return sum(lengths)


def positions_per_second(dataset, batch_size, batches, warmup=20):
    """Positions/s of iterating `batches` batches after a warm-up (fills shuffle buffers)."""
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


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
            rate = positions_per_second(dataset, batch_size, batches)
            rows.append(
                {
                    "benchmark": f"make_dataset batch {batch_size}"
                    + (" shuffled" if shuffle else " in order")
                    + (" value targets" if value_targets else ""),
                    "value": round(rate),
                    "unit": "positions/s",
                    "note": f"{total} records in {len(QUICK_SHARDS if quick else FULL_SHARDS)} shards, "
                    f"{os.cpu_count()} cores, iterated without a model",
                }
            )
    return rows


if __name__ == "__main__":
    tf.get_logger().setLevel("ERROR")
    for row in run():
        print(row)
