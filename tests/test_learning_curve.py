"""scripts/experiments/plot_learning_curve.py and scripts/experiments/experiment.py's helpers on a made-up trainer history."""

import json

import pytest

from scripts.experiments import experiment, plot_learning_curve
from shogi_policy.model import model_dir


def _history(directory, rows):
    directory.mkdir(parents=True)
    (directory / model_dir.HISTORY_JSONL).write_text("".join(json.dumps(row) + "\n" for row in rows))
    return directory


ROWS = [
    {"step": 100, "positions": 25600, "positions_per_second": 100.0, "tsv_top1": 0.1, "tsv_top5": 0.3},
    {"step": 200, "positions": 51200, "positions_per_second": 500.0, "tsv_top1": 0.2, "tsv_top5": 0.5},
    {"step": 200, "positions": 51200, "positions_per_second": 520.0, "tsv_top1": 0.21, "tsv_top5": 0.5},
    {"step": 300, "positions": 76800, "positions_per_second": 540.0, "tsv_top1": 0.25, "tsv_top5": 0.55},
]


def test_curve_reads_the_last_row_of_each_step(tmp_path):
    rows = plot_learning_curve.read_history(_history(tmp_path / "run", ROWS))
    positions, top1, top5 = plot_learning_curve.curve(rows, "tsv_top1", "tsv_top5")
    assert positions == [25600, 51200, 76800]
    assert top1 == pytest.approx([10.0, 21.0, 25.0]) and top5 == pytest.approx([30.0, 50.0, 55.0])
    assert plot_learning_curve.parse_runs("main=a/b, c/d") == [("main", "a/b"), ("d", "c/d")]


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    run = _history(tmp_path / "run", ROWS)
    output = tmp_path / "curve.png"
    plot_learning_curve.main([f"--runs=main job={run},again={run}", f"--output={output}", "--target=30"])
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_experiment_training_rate_skips_the_first_epoch(tmp_path):
    assert experiment.training_rate(_history(tmp_path / "run", ROWS) / model_dir.HISTORY_JSONL) == 520.0
    assert experiment.mix_key("a,b", "--seed=1") != experiment.mix_key("a,b", "--seed=2")


def test_the_plot_reads_the_file_the_trainer_writes():
    assert plot_learning_curve.HISTORY_JSONL == model_dir.HISTORY_JSONL
