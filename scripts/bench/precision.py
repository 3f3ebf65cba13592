"""float32 against mixed bfloat16 training on this CPU, interleaved: what --mixed_bfloat16=auto is checked by.

The cpu preset (3x64) at batch 256 on one in-memory batch (scripts/bench/train.py's measure: the input pipeline
excluded), trained in float32 and in mixed bfloat16 in turn, `rounds` times each, in one process, so the pair
shares the machine's load. The header row says what shogi_policy.runtime.precision decides for this CPU; where
bfloat16 is not faster here, auto must stay off on CPUs like it.

    python -m scripts.bench.precision [--quick]        # from the checkout's root
"""

import sys

from scripts.bench.train import BATCH, NETWORKS, measure

POLICIES = ("float32", "mixed_bfloat16")


def run(quick: bool = False) -> list[dict]:
    """Rows {"benchmark", "value", "unit", "note"}: each run's positions/s, then the bfloat16/float32 ratios."""
    return list(_rows(quick))


def _rows(quick, rounds=2):
    from shogi_policy.runtime import precision

    blocks, filters = NETWORKS["cpu preset 3x64"]
    batch, steps = (64, 5) if quick else (BATCH, 20)
    on, why = precision.native_bfloat16("cpu")
    yield {"benchmark": "auto precision on this CPU", "value": int(on), "unit": "bfloat16 on", "note": why}
    rates = {policy: [] for policy in POLICIES}
    for round_ in range(rounds):
        for policy in POLICIES:
            rate = measure(blocks, filters, batch, False, steps, dtype_policy=policy)
            rates[policy].append(rate)
            yield {
                "benchmark": f"cpu preset 3x64 train batch {batch}, {policy}",
                "value": rate,
                "unit": "positions/s",
                "note": f"round {round_ + 1} of {rounds}, {steps} steps",
            }
    for round_, (fp32, bf16) in enumerate(zip(*rates.values(), strict=True)):
        yield {
            "benchmark": "bfloat16 / float32 training speed",
            "value": bf16 / fp32,
            "unit": "x",
            "note": f"round {round_ + 1}",
        }


if __name__ == "__main__":
    for row in _rows(quick="--quick" in sys.argv):
        print(f"{row['benchmark']:48s} {row['value']:10.2f} {row['unit']:12s} {row['note']}", flush=True)
