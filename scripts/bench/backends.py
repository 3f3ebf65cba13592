"""Training positions/s on CPU under both Keras backends, and the TensorFlow path against another checkout.

One run, interleaved: each round trains the same network (records -> DlshogiFeatures -> tower -> logits, SGD,
PolicyLoss, one in-memory batch repeated: scripts/bench/train.py's measure) once per variant, each in a fresh
child process (one Keras backend per process):

  tensorflow   this checkout, KERAS_BACKEND=tensorflow (the feature layer as its own XLA computations)
  jax          this checkout, KERAS_BACKEND=jax (the whole step jax.jit-compiled, one CPU device)
  tensorflow @ --compare_with   another checkout (e.g. main before the keras.ops port), same script
  features tensorflow [@ --compare_with]   the feature layer's forward pass alone (bench_train's measure_features)

The machine is shared, so only ratios within a round mean much: the summary gives each variant's median over
rounds and the median of the per-round ratios.

    python scripts/bench/backends.py --rounds=3 --compare_with=../main
    python -m scripts.bench.run_all --only=backends     # this checkout's rows only (run())
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parents[1]


def _worker(spec):
    """Child: one measurement in this process's backend and checkout; prints positions/s as JSON."""
    from scripts.bench import train as bench_train

    if spec["kind"] == "features":
        rate = bench_train.measure_features(spec["batch"], False, spec["steps"])
    else:
        jit = os.environ["KERAS_BACKEND"] == "jax"  # JAX without jit runs op by op; TF on CPU: oneDNN, no XLA
        rate = bench_train.measure(spec["blocks"], spec["filters"], spec["batch"], jit, spec["steps"])
    print(json.dumps({"positions_per_second": rate}))


def _measure(variant, shape):
    """positions/s of one variant (name, kind, backend, checkout) in a child process; shape: blocks, filters, batch, steps."""
    _, kind, backend, checkout = variant
    # The checkout's package first; this checkout's scripts package for the measuring code.
    env = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "PYTHONPATH": os.pathsep.join((str(checkout), str(REPO))),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    result = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps({"kind": kind, **shape})],
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode:
        raise RuntimeError(f"{variant[0]} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])["positions_per_second"]


def _variants(compare_with):
    variants = [("train tensorflow", "train", "tensorflow", REPO), ("train jax", "train", "jax", REPO)]
    if compare_with:
        variants.append((f"train tensorflow @ {compare_with}", "train", "tensorflow", compare_with))
    variants.append(("features tensorflow", "features", "tensorflow", REPO))
    if compare_with:
        variants.append((f"features tensorflow @ {compare_with}", "features", "tensorflow", compare_with))
    return variants


def measure_rounds(rounds, shape, compare_with=None, log=lambda line: None):
    """{variant name: [positions/s per round]}, the variants interleaved in each round."""
    variants = _variants(compare_with)
    rates = {name: [] for name, *_ in variants}
    for round_index in range(rounds):
        for variant in variants:
            rates[variant[0]].append(_measure(variant, shape))
            log(f"round {round_index + 1} {variant[0]:60s} {rates[variant[0]][-1]:10.1f} positions/s")
    return rates


def _ratio(rates, numerator, denominator):
    return statistics.median(a / b for a, b in zip(rates[numerator], rates[denominator], strict=True))


def run(quick=False):
    """Rows {"benchmark", "value", "unit", "note"} for scripts/bench/run_all.py (this checkout only)."""
    shape = {"blocks": 3, "filters": 64, "batch": 64 if quick else 256, "steps": 5 if quick else 20}
    rates = measure_rounds(1 if quick else 3, shape)
    rows = [
        {
            "benchmark": f"{name} batch {shape['batch']}",
            "value": statistics.median(values),
            "unit": "positions/s",
            "note": "cpu preset 3x64" if name.startswith("train") else "DlshogiFeatures forward",
        }
        for name, values in rates.items()
    ]
    jax_ratio = _ratio(rates, "train jax", "train tensorflow")
    return rows + [
        {"benchmark": "train jax / tensorflow", "value": jax_ratio, "unit": "ratio", "note": "same batch"}
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="timed training steps (after 3 warm-up steps)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--blocks", type=int, default=3, help="the cpu preset: 3x64")
    parser.add_argument("--filters", type=int, default=64)
    parser.add_argument("--compare_with", type=Path, help="another checkout whose TensorFlow path to compare")
    args = parser.parse_args()
    compare_with = args.compare_with and args.compare_with.resolve()
    shape = {"blocks": args.blocks, "filters": args.filters, "batch": args.batch, "steps": args.steps}
    print(f"load average {os.getloadavg()[0]:.1f}; {os.cpu_count()} cores", flush=True)
    rates = measure_rounds(args.rounds, shape, compare_with, log=lambda line: print(line, flush=True))
    print(
        f"\n{args.blocks}x{args.filters}, batch {args.batch}, median of {args.rounds} rounds (load now "
        f"{os.getloadavg()[0]:.1f}):"
    )
    for name, values in rates.items():
        print(f"  {name:60s} {statistics.median(values):10.1f} positions/s")
    names = list(rates)
    print(f"  jax / tensorflow training: {_ratio(rates, 'train jax', 'train tensorflow'):.2f}")
    if compare_with:
        print(f"  this / compared checkout, training: {_ratio(rates, 'train tensorflow', names[2]):.2f}")
        print(f"  this / compared checkout, features: {_ratio(rates, 'features tensorflow', names[-1]):.2f}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        _worker(json.loads(sys.argv[2]))
    else:
        main()
