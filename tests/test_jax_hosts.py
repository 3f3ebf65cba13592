"""shogi-policy-train --backend=jax --jax_distributed on two "hosts" (processes x 2 CPU devices), killed and rerun.

Runs under KERAS_BACKEND=jax (.ci/jax_lane). Each host is the console command's launcher in its own process,
started by keras.distribution.initialize from the KERAS_DISTRIBUTION_* variables (a TPU pod detects them), over
gloo on localhost: DataParallel over the 4 devices, each host reading its own shard files. Both hosts are killed
with SIGKILL after a checkpoint, as a preemption would, and the same commands rerun: the run must end with the
weights of an uninterrupted one, bit for bit.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import random_game_records

from shogi_policy.data import shard_manifest, shards
from shogi_policy.model import model_dir

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX multi-host (.ci/jax_lane)"),
]

REPO = Path(__file__).resolve().parents[1]
HOSTS = 2
STEPS = 40
CHECKPOINT_EVERY = 5


def _free_port():
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def _start_hosts(data, run, log_dir):
    """The hosts' training processes (Popen), one command line for all, as on a pod."""
    port = _free_port()
    processes = []
    for host in range(HOSTS):
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
            "JAX_PLATFORMS": "cpu",
            "JAX_CPU_COLLECTIVES_IMPLEMENTATION": "gloo",
            "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"localhost:{port}",
            "KERAS_DISTRIBUTION_NUM_PROCESSES": str(HOSTS),
            "KERAS_DISTRIBUTION_PROCESS_ID": str(host),
        }
        command = [
            sys.executable,
            "-m",
            "shogi_policy.cli",
            "train",
            "--backend=jax",
            "--jax_distributed",
            f"--data_dir={data}",
            f"--model_dir={run}",
            "--blocks=1",
            "--filters=16",
            "--batch_size=64",  # 32 per host, 16 per device
            f"--steps={STEPS}",
            "--steps_per_epoch=20",
            f"--checkpoint_every={CHECKPOINT_EVERY}",
            "--eval_steps=1",
            "--seed=9",
        ]
        log = open(log_dir / f"host{host}.log", "a")  # closed with the process, below
        processes.append((subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    return processes


def _wait(processes, log_dir, timeout=600):
    for process, log in processes:
        process.wait(timeout=timeout)
        log.close()
    for host, (process, _) in enumerate(processes):
        assert process.returncode == 0, (log_dir / f"host{host}.log").read_text()[-4000:]


def _kill_after_first_checkpoint(processes, run, timeout=600):
    """SIGKILLs every host once the first checkpoint is complete (Orbax renames it into place when written)."""
    first = run / model_dir.CHECKPOINT_DIR / str(CHECKPOINT_EVERY)
    deadline = time.monotonic() + timeout
    while not first.is_dir() and time.monotonic() < deadline:
        assert all(process.poll() is None for process, _ in processes), (
            "a host ended before its first checkpoint"
        )
        time.sleep(0.02)
    for process, log in processes:
        process.send_signal(signal.SIGKILL)
        process.wait()
        log.close()


def _final_metrics(run):
    """metrics.json without its wall-clock rate."""
    metrics = json.loads((run / model_dir.METRICS_JSON).read_text())
    del metrics["wall_positions_per_second"]
    return metrics


@pytest.fixture
def host_shards(tmp_path):
    """Shards with 6 train and 2 test files: each of the 2 hosts reads 3 and 1."""
    data = tmp_path / "shards"
    splits = {
        "train": random_game_records(num_games=30, max_plies=40, seed=40),
        "test": random_game_records(num_games=8, max_plies=40, seed=41),
    }
    shards.write_records(str(data), splits, positions_per_shard=200)
    assert len(shard_manifest.shard_files(str(data), "test").paths) == HOSTS
    return data


def test_two_hosts_killed_and_rerun_end_as_an_uninterrupted_run(host_shards, tmp_path):
    straight = tmp_path / "straight"
    _wait(_start_hosts(host_shards, straight, tmp_path), tmp_path)
    metrics = _final_metrics(straight)
    assert metrics["step"] == STEPS
    assert "DataParallel (4 cpu devices, 2 processes)" in (tmp_path / "host1.log").read_text()

    resumed = tmp_path / "resumed"
    _kill_after_first_checkpoint(_start_hosts(host_shards, resumed, tmp_path), resumed)
    assert not (resumed / model_dir.METRICS_JSON).exists(), "killed before the end"
    _wait(_start_hosts(host_shards, resumed, tmp_path), tmp_path)
    assert "resumed from" in (tmp_path / "host0.log").read_text()
    assert _final_metrics(resumed) == metrics
    for a, b in zip(
        model_dir.restore_model(straight).weights, model_dir.restore_model(resumed).weights, strict=True
    ):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
