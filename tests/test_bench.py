"""The benchmarks run: `python -m scripts.bench.run_all --quick` gives every benchmark's rows their figures."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "scripts" / "bench"


@pytest.mark.slow
def test_every_benchmark_row_has_its_figure(tmp_path):
    """Each module of scripts/bench gives rows (convert only beside ../shared/data), each value a finite number
    (about 2 minutes on 2 idle cores)."""
    report = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "scripts.bench.run_all", "--quick", f"--json_out={report}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(report.read_text())["rows"]
    benchmarks = {path.stem for path in BENCH.glob("*.py")} - {"__init__", "run_all"}
    if not (SHARED_DATA / "floodgate_games").is_dir():
        benchmarks.discard("convert")
    assert {row["stage"] for row in rows} == benchmarks
    for row in rows:
        assert math.isfinite(float(row["value"])), row
        assert row["benchmark"] in result.stdout, f"the table leaves out {row['benchmark']}"
