"""Runs every benchmark (the modules of scripts/bench) and prints one table of figures. From the checkout's root:

  python -m scripts.bench.run_all                 # full run
  python -m scripts.bench.run_all --quick         # smoke run, each benchmark < 30 s
  python -m scripts.bench.run_all --only=train --json_out=bench.json

Each bench module defines run(quick) -> [{"benchmark", "value", "unit", "note"}]. Ratios inside a module are
measured in the same run (ours beside cshogi and the like), which is what stays comparable across runs on
shared machines; the header records what the figures were measured on.
"""

import importlib
import os
import platform
import sys
import time
from pathlib import Path

from absl import app, flags

from shogi_policy.core import file_io

SCRIPTS = Path(__file__).resolve().parent
BENCH_ORDER = ("convert", "pipeline", "features", "train", "precision", "backends", "sampling", "evaluate")

QUICK = flags.DEFINE_bool("quick", False, "Short runs (smoke test).")
ONLY = flags.DEFINE_list("only", [], f"Subset of {', '.join(BENCH_ORDER)}.")
JSON_OUT = flags.DEFINE_string("json_out", None, "Also write the rows as JSON here.")


def bench_modules(only=()):
    """(name, module path) of scripts/bench/<name>.py in data-flow order, restricted to `only` when given."""
    found = {
        p.stem: f"scripts.bench.{p.stem}"
        for p in SCRIPTS.glob("*.py")
        if p.stem not in ("__init__", "run_all")
    }
    unknown = set(only) - set(found)
    if unknown:
        raise app.UsageError(f"unknown benchmarks {sorted(unknown)}; have {sorted(found)}")
    names = [n for n in BENCH_ORDER if n in found] + sorted(set(found) - set(BENCH_ORDER))
    return [(n, found[n]) for n in names if not only or n in only]


def machine_header():
    import tensorflow as tf

    return (
        f"{platform.node()} {platform.machine()} cores={os.cpu_count()} python={platform.python_version()} "
        f"tensorflow={tf.__version__}"
    )


def format_table(rows):
    widths = [max(len(str(r[k])) for r in rows) for k in ("stage", "benchmark", "value", "unit")]
    lines = []
    for r in rows:
        cells = [
            str(r[k]).ljust(w) for k, w in zip(("stage", "benchmark", "value", "unit"), widths, strict=True)
        ]
        lines.append("  ".join(cells) + "  " + r.get("note", ""))
    return "\n".join(lines)


def main(argv):
    del argv
    sys.path.insert(0, str(SCRIPTS))
    rows = []
    for name, path in bench_modules(ONLY.value):
        start = time.perf_counter()
        for row in importlib.import_module(path).run(quick=QUICK.value):
            value = row["value"]
            rows.append(
                {**row, "stage": name, "value": f"{value:.4g}" if isinstance(value, float) else value}
            )
        print(f"[{name}] done in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    print(machine_header())
    print(
        format_table([{"stage": "stage", "benchmark": "benchmark", "value": "value", "unit": "unit"}, *rows])
    )
    if JSON_OUT.value:
        file_io.write_json(JSON_OUT.value, {"machine": machine_header(), "rows": rows})


if __name__ == "__main__":
    app.run(main)
