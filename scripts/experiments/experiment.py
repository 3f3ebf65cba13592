"""One training experiment end to end: convert (cached per data mix) -> train -> export -> evaluate -> a TSV row.

  python scripts/experiments/experiment.py --name=baseline --data=data/engine_games.usi.gz --runs_dir=runs/experiments \\
      -- --preset=cpu --batch_size=256 --steps=1400 ...

Everything after '--' goes to shogi-policy-train unchanged (besides --data_dir and --model_dir, which this
script sets). The shards of a data mix (the --data files and --convert_flags) are converted once into
RUNS_DIR/shards/<hash> and reused by every experiment on that mix. The run lands in RUNS_DIR/NAME/
(model/, export/, val.json, test.json); rerunning a name resumes its training and re-evaluates.

The row appended to --results (tab-separated, header written once): name, data mix, convert flags, train
flags, steps, positions seen, training wall seconds (the whole shogi-policy-train process: start-up,
compilation and per-epoch evaluation included), training positions/s (median of the per-epoch training-only
rates of history.jsonl, first epoch excluded: it includes tracing), the machine's load average when the
run started, top-1 / top-5 move match on the --tsv rows of --split (by default the 1,000 floodgate
val rows of train_val_2000.tsv, which never train), and top-1 / top-5 on the mix's own held-out test split.
"""

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TSV = ROOT.parent / "shared" / "data" / "floodgate_positions" / "train_val_2000.tsv"
COLUMNS = (
    "name", "data", "convert_flags", "train_flags", "steps", "positions", "train_wall_s",
    "train_positions_per_s", "load_avg", "val_top1", "val_top5", "test_top1", "test_top5", "date",
)  # fmt: skip


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--name", required=True, help="Experiment name (its directory under --runs_dir).")
    parser.add_argument("--data", required=True, help="Comma list of record files (the data mix).")
    parser.add_argument("--convert_flags", default="--seed=1", help="Extra shogi-policy-convert flags.")
    parser.add_argument(
        "--runs_dir", default=str(ROOT / "runs" / "experiments"), help="Where shards and runs go."
    )
    parser.add_argument(
        "--results", default=None, help="TSV to append a row to (default RUNS_DIR/results.tsv)."
    )
    parser.add_argument("--tsv", default=str(DEFAULT_TSV), help="'split<TAB>sfen<TAB>usi_move' positions.")
    parser.add_argument("--split", default="val", help="Rows of --tsv to evaluate on.")
    parser.add_argument("--test_limit", type=int, default=10000, help="Test-split positions to evaluate.")
    parser.add_argument("--nice", type=int, default=10, help="Niceness of the child processes.")
    parser.add_argument("train_flags", nargs="*", help="shogi-policy-train flags (after '--').")
    return parser.parse_args(argv)


def mix_key(data, convert_flags):
    """A short stable key of a data mix: the file list, the files' sizes and the convert flags."""
    digest = hashlib.sha256()
    for path in data.split(","):
        digest.update(f"{path}:{os.path.getsize(ROOT / path) if (ROOT / path).exists() else -1};".encode())
    digest.update(convert_flags.encode())
    return digest.hexdigest()[:12]


def run(command, nice, log_path):
    """Runs a command niced with this checkout first on PYTHONPATH, its output to log_path; seconds taken."""
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}".rstrip(os.pathsep),
    }
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    start = time.perf_counter()
    with open(log_path, "a") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        done = subprocess.run(["nice", "-n", str(nice), *command], cwd=ROOT, env=env, stdout=log, stderr=log)
    if done.returncode:
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}; see {log_path}")
    return time.perf_counter() - start


def training_rate(history_path):
    """Median training-only positions/s over the epochs of history.jsonl (the first excluded when possible)."""
    rows = [json.loads(line) for line in Path(history_path).read_text().splitlines() if line.strip()]
    rates = [row["positions_per_second"] for row in rows if "positions_per_second" in row]
    return statistics.median(rates[1:] if len(rates) > 1 else rates) if rates else float("nan")


def append_row(path, row):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with open(path, "a") as f:
        if new:
            f.write("\t".join(COLUMNS) + "\n")
        f.write("\t".join(str(row[column]) for column in COLUMNS) + "\n")


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    runs = Path(args.runs_dir)
    shard_dir = runs / "shards" / mix_key(args.data, args.convert_flags)
    run_dir = runs / args.name
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / "log.txt"
    if not (shard_dir / "manifest.json").exists():
        convert = [
            "shogi-policy-convert",
            f"--inputs={args.data}",
            f"--output_dir={shard_dir}",
            "--overwrite",
        ]
        seconds = run([*convert, *args.convert_flags.split()], args.nice, log)
        print(f"converted {args.data} in {seconds:.0f} s -> {shard_dir}", flush=True)
    load_avg = os.getloadavg()[0]
    train = [
        "shogi-policy-train",
        f"--data_dir={shard_dir}",
        f"--model_dir={run_dir / 'model'}",
        *args.train_flags,
    ]
    train_seconds = run(train, args.nice, log)
    metrics = json.loads((run_dir / "model" / "metrics.json").read_text())
    run(
        [
            "shogi-policy-export",
            f"--model_dir={run_dir / 'model'}",
            f"--export_dir={run_dir / 'export'}",
            "--overwrite",
        ],
        args.nice,
        log,
    )
    evaluate = ["shogi-policy-evaluate", f"--model={run_dir / 'export'}"]
    run(
        [*evaluate, f"--tsv={args.tsv}", f"--split={args.split}", f"--json_out={run_dir / 'val.json'}"],
        args.nice,
        log,
    )
    run(
        [*evaluate, f"--data_dir={shard_dir}", "--split=test", f"--limit={args.test_limit}",
         f"--json_out={run_dir / 'test.json'}"],
        args.nice, log,
    )  # fmt: skip
    val = json.loads((run_dir / "val.json").read_text())
    test = json.loads((run_dir / "test.json").read_text())
    row = {
        "name": args.name,
        "data": args.data,
        "convert_flags": args.convert_flags,
        "train_flags": " ".join(args.train_flags),
        "steps": metrics["step"],
        "positions": metrics["positions"],
        "train_wall_s": round(train_seconds),
        "train_positions_per_s": round(training_rate(run_dir / "model" / "history.jsonl")),
        "load_avg": round(load_avg, 2),
        "val_top1": round(val["top1"], 4),
        "val_top5": round(val["top5"], 4),
        "test_top1": round(test["top1"], 4),
        "test_top5": round(test["top5"], 4),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    append_row(args.results or runs / "results.tsv", row)
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
