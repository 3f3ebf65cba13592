"""MNIST through the trainer, on tensorflow-datasets' mock data (downloads fail in CI), and offline."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds
from absl import app
from conftest import parse_flags

from shogi_policy.cli import train as train_command
from shogi_policy.data import mnist
from shogi_policy.model import mnist_net, model_dir


def test_mnist_trains_and_restores_under_mock_data(tmp_path):
    with tfds.testing.mock_data(num_examples=96):
        assert mnist.num_examples("test") == 96
        images, labels = next(iter(mnist.make_dataset("train", 16, seed=0)))
        assert images.dtype == "float32" and tuple(images.shape) == (16, 28, 28, 1)
        assert labels.dtype == "int32" and tuple(labels.shape) == (16,)
        options = parse_flags(dataset="mnist", model_dir=tmp_path / "run", steps=6, steps_per_epoch=3, seed=0)
        metrics = train_command.train(options)
    assert metrics["step"] == 6
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0 and np.isfinite(metrics["eval_loss"])
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["step"] == 6
    model = model_dir.restore_model(tmp_path / "run", mnist_net.build_model)
    assert model.name == "mnist"
    assert model(images).shape == (16, mnist_net.NUM_CLASSES)


def test_mnist_offline_is_refused_at_once(tmp_path, monkeypatch):
    """MNIST absent from the data directory and its download host unreachable (a closed local port stands in)."""
    monkeypatch.setattr(tfds.core.constants, "DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.setattr(mnist, "DOWNLOAD_ADDRESS", ("127.0.0.1", 1))
    start = time.monotonic()
    with pytest.raises(app.UsageError, match=f"could not find data in {tmp_path / 'tfds'}.*TFDS_DATA_DIR"):
        train_command.train(parse_flags(dataset="mnist", model_dir=tmp_path / "run", steps=2))
    assert time.monotonic() - start < 10
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_mnist_cli_offline_fails_in_seconds(tmp_path):
    """The command as a user without the network runs it (skipped where the download host answers)."""
    if mnist._reachable(mnist.DOWNLOAD_ADDRESS):
        pytest.skip(f"{mnist.DOWNLOAD_ADDRESS[0]} is reachable: not offline")
    start = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "shogi_policy.cli.train",
            "--dataset=mnist",
            f"--model_dir={tmp_path / 'run'}",
        ],
        env={**os.environ, "TFDS_DATA_DIR": str(tmp_path / "tfds")},
        capture_output=True,
        text=True,
        timeout=120,  # the download's retries took 210 s
    )
    seconds = time.monotonic() - start
    assert result.returncode == 1 and "needs the network once, or TFDS_DATA_DIR" in result.stderr
    assert "Traceback" not in result.stderr
    assert seconds < 60, f"{seconds:.0f} s"
