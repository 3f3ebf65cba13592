"""Draw move-match accuracy against positions seen, from the trainer's history.jsonl, to a PNG.

  python scripts/experiments/plot_learning_curve.py --runs="main job=runs/default/model" --output=docs/learning_curve.png

Each run is LABEL=MODEL_DIR (a shogi-policy-train --model_dir). The trainer writes one line of metrics per
epoch to MODEL_DIR/history.jsonl; with --eval_tsv=FILE it measures top-1 / top-5 move match among the legal
moves on FILE's rows (e.g. the 1,000 floodgate val rows) each epoch (tsv_top1, tsv_top5), which is what is
drawn; --metric=val draws the test split's accuracy (val_accuracy, val_top5_accuracy) instead. A resumed run
may repeat steps: the last line of a step counts. Needs matplotlib (pip install -e '.[plot]').
"""

import argparse
import json
from pathlib import Path

# shogi_policy.model.model_dir.HISTORY_JSONL, spelled out so that plotting needs no TensorFlow.
HISTORY_JSONL = "history.jsonl"
METRICS = {"tsv": ("tsv_top1", "tsv_top5"), "val": ("val_accuracy", "val_top5_accuracy")}


def read_history(model_dir):
    """Rows of model_dir/history.jsonl sorted by step, one per step (the last written wins)."""
    path = Path(model_dir) / HISTORY_JSONL
    rows = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            rows[row["step"]] = row
    return [rows[step] for step in sorted(rows)]


def curve(rows, top1, top5):
    """(positions, top-1 %, top-5 %) lists of the rows that hold both metrics."""
    kept = [row for row in rows if top1 in row and top5 in row]
    return (
        [row["positions"] for row in kept],
        [100 * row[top1] for row in kept],
        [100 * row[top5] for row in kept],
    )


def parse_runs(text):
    """'label=dir,label2=dir2' -> [(label, dir)]."""
    runs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        label, _, directory = item.rpartition("=")
        runs.append((label or Path(directory).name, directory))
    return runs


def plot(runs, output, metric="tsv", title=None, target=None):
    """Draws top-1 (solid) and top-5 (dashed) of each run against positions seen; writes output."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise SystemExit("matplotlib is needed: pip install -e '.[plot]'") from error
    top1_name, top5_name = METRICS[metric]
    figure, axis = plt.subplots(figsize=(11, 5), dpi=100)
    for index, (label, directory) in enumerate(runs):
        positions, top1, top5 = curve(read_history(directory), top1_name, top5_name)
        if not positions:
            raise SystemExit(f"{directory}/history.jsonl has no {top1_name}: train with --eval_tsv")
        color = f"C{index}"
        thousands = [p / 1000 for p in positions]
        axis.plot(thousands, top1, "-o", color=color, markersize=3, label=f"{label}: top-1 ({top1[-1]:.1f}%)")
        axis.plot(thousands, top5, "--", color=color, label=f"{label}: top-5 ({top5[-1]:.1f}%)")
    if target is not None:
        axis.axhline(target, color="gray", linewidth=0.8, linestyle=":", label=f"target top-1 {target:g}%")
    axis.set_xlabel("training positions seen (thousands)")
    axis.set_ylabel("move match (%)")
    axis.set_ylim(0, 100)
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axis.set_title(title or "Move match on floodgate positions never trained on")
    figure.tight_layout()
    figure.savefig(output)
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", required=True, help="Comma list of LABEL=MODEL_DIR.")
    parser.add_argument("--output", default="docs/learning_curve.png", help="PNG to write.")
    parser.add_argument(
        "--metric", choices=sorted(METRICS), default="tsv", help="tsv: --eval_tsv rows; val: test split."
    )
    parser.add_argument("--title", default=None)
    parser.add_argument("--target", type=float, default=None, help="Draw a horizontal line at this top-1 %%.")
    args = parser.parse_args(argv)
    plot(parse_runs(args.runs), args.output, args.metric, args.title, args.target)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
