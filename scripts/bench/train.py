"""Training throughput on CPU: positions/s, GFLOP per position and achieved/peak FLOP/s.

Trains the policy network (records -> DlshogiFeatures -> tower -> logits, SGD, PolicyLoss) on one
in-memory batch repeated, so the input pipeline is excluded. Peak is this machine's measured
float32 matmul FLOP/s. Each variant runs in a fresh subprocess, because TF reads the thread counts
and TF_ENABLE_ONEDNN_OPTS only at start-up. Variants: XLA (jit_compile) on/off, oneDNN on/off,
intra-op threads, and the feature layer's forward pass alone (its share of a step).

    python scripts/bench/train.py          # full: cpu preset and 6x128, batch 256
"""

import json
import os
import subprocess
import sys
import time

BATCH = 256
NETWORKS = {"cpu preset 3x64": (3, 64), "6x128": (6, 128)}
_NUM_FEATURES = 119


def forward_flops_per_position(blocks, filters):
    """Analytic forward FLOPs (2 per multiply-add) of the convolutions of one position."""
    macs = 81 * (9 * _NUM_FEATURES * filters + blocks * 2 * 9 * filters * filters + 27 * filters)
    return 2 * macs


def training_flops_per_position(blocks, filters):
    # Backward costs about twice the forward pass (gradients of inputs and of weights).
    return 3 * forward_flops_per_position(blocks, filters)


def matmul_flops_per_second(size, repeats=5):
    """Measured float32 matmul FLOP/s of this machine (best of repeats)."""
    import tensorflow as tf

    a = tf.random.normal((size, size))
    matmul = tf.function(lambda x: tf.matmul(x, x))
    matmul(a).numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def profiler_forward_flops(blocks, filters):
    """Forward FLOPs per position counted by the TF profiler on the model's graph (cross-check)."""
    import tensorflow as tf

    from shogi_policy.model import network, network_config

    model = network.build_policy_model(network_config.NetworkConfig(blocks, filters, "relu"))
    spec = tf.TensorSpec([1, 100], tf.uint8)
    graph = tf.function(model).get_concrete_function(spec).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return tf.compat.v1.profiler.profile(graph, options=options).total_float_ops


def _batch(batch):
    """Records uint8 [batch, 100] (the start position) and random targets int32 [batch]."""
    import cshogi
    import numpy as np

    from shogi_policy.core import policy_labels, record_format

    records = np.tile(record_format.encode_boards([cshogi.Board()]), (batch, 1))
    targets = np.random.default_rng(0).integers(policy_labels.NUM_MOVE_LABELS, size=batch).astype(np.int32)
    return records, targets


def measure(blocks, filters, batch, jit, steps, dtype_policy="float32"):
    """Training positions/s of one network in this process; dtype_policy as the trainer sets it (mixed_bfloat16
    for --mixed_bfloat16)."""
    import keras
    import tensorflow as tf

    from shogi_policy.model import losses, network, network_config
    from shogi_policy.runtime.strategy import host_xla_available

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(dtype_policy)
    try:
        # As the trainer builds it on this host: the feature layer as its own XLA computations where XLA runs.
        model = network.build_policy_model(
            network_config.NetworkConfig(blocks, filters, "relu"), nested_xla=host_xla_available()
        )
    finally:
        keras.mixed_precision.set_global_policy(previous)
    model.compile(
        keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
        loss=losses.PolicyLoss(),
        jit_compile=jit,
    )
    data = tf.data.Dataset.from_tensors(_batch(batch)).repeat()
    model.fit(data, steps_per_epoch=3, epochs=1, shuffle=False, verbose=0)  # trace, compile, warm up
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, shuffle=False, verbose=0)
    return steps * batch / (time.perf_counter() - start)


def measure_features(batch, jit, steps):
    """Forward positions/s of the DlshogiFeatures layer alone (its share of a training step)."""
    import tensorflow as tf

    from shogi_policy.model.features import DlshogiFeatures
    from shogi_policy.runtime.strategy import host_xla_available

    layer = tf.function(DlshogiFeatures(nested_xla=not jit and host_xla_available()), jit_compile=jit)
    records = tf.constant(_batch(batch)[0])
    layer(records).numpy()
    start = time.perf_counter()
    for _ in range(steps):
        layer(records).numpy()
    return steps * batch / (time.perf_counter() - start)


def _worker(spec):
    """Subprocess entry: configure threads, then measure; prints a JSON result."""
    import tensorflow as tf

    if spec.get("threads"):
        tf.config.threading.set_intra_op_parallelism_threads(spec["threads"])
        tf.config.threading.set_inter_op_parallelism_threads(1)
    if spec["features_only"]:
        rate = measure_features(spec["batch"], spec["jit"], spec["steps"])
    else:
        rate = measure(spec["blocks"], spec["filters"], spec["batch"], spec["jit"], spec["steps"])
    print(json.dumps({"positions_per_second": rate}))


def _run_variant(spec, onednn):
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1" if onednn else "0", "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])["positions_per_second"]


def _variants(quick):
    base = {"jit": False, "onednn": True, "threads": 0, "features_only": False}
    if quick:
        return [("cpu preset 3x64", {**base})]
    variants = []
    for name in NETWORKS:
        variants += [
            (name, {**base}),
            (name, {**base, "jit": True}),
        ]
    name = "6x128"
    variants += [
        (name, {**base, "onednn": False}),
        (name, {**base, "threads": 1}),
        (name, {**base, "features_only": True}),
        (name, {**base, "features_only": True, "jit": True}),
    ]
    return variants


def run(quick: bool = False) -> list[dict]:
    """Rows {"benchmark", "value", "unit", "note"}; quick=True runs one small in-process variant."""
    return list(_rows(quick))


def _rows(quick):
    import tensorflow as tf

    peak = matmul_flops_per_second(1024 if quick else 2048)
    yield {
        "benchmark": "matmul float32 peak",
        "value": peak / 1e9,
        "unit": "GFLOP/s",
        "note": f"{os.cpu_count()} cores, TF {tf.__version__}",
    }
    for name, (blocks, filters) in NETWORKS.items():
        analytic = forward_flops_per_position(blocks, filters)
        profiled = profiler_forward_flops(blocks, filters) if not quick else float("nan")
        yield {
            "benchmark": f"{name} training GFLOP/position",
            "value": training_flops_per_position(blocks, filters) / 1e9,
            "unit": "GFLOP",
            "note": f"3x forward; forward analytic {analytic / 1e9:.4f}, TF profiler {profiled / 1e9:.4f}",
        }
    batch = 64 if quick else BATCH
    steps = 5 if quick else 10
    for name, variant in _variants(quick):
        blocks, filters = NETWORKS[name]
        spec = {"blocks": blocks, "filters": filters, "batch": batch, "steps": steps, **variant}
        if quick:
            rate = measure(blocks, filters, batch, variant["jit"], steps)
        else:
            rate = _run_variant({k: v for k, v in spec.items() if k != "onednn"}, variant["onednn"])
        achieved = 0.0 if variant["features_only"] else rate * training_flops_per_position(blocks, filters)
        label = ", ".join(
            [
                f"jit_compile={variant['jit']}",
                f"oneDNN={'on' if variant['onednn'] else 'off'}",
                f"intra-op threads={variant['threads'] or 'default'}",
            ]
            + (["DlshogiFeatures forward only"] if variant["features_only"] else [])
        )
        yield {
            "benchmark": f"{name} train batch {batch}",
            "value": rate,
            "unit": "positions/s",
            "note": f"{label}; {achieved / 1e9:.1f} GFLOP/s = {achieved / peak:.0%} of matmul peak",
        }


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        _worker(json.loads(sys.argv[2]))
    else:
        for row in _rows(quick="--quick" in sys.argv):
            print(f"{row['benchmark']:42s} {row['value']:12.2f} {row['unit']:12s} {row['note']}", flush=True)
