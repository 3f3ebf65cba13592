"""MNIST through the trainer, on tensorflow-datasets' mock data (downloads fail in CI)."""

import json

import numpy as np
import tensorflow_datasets as tfds
from conftest import parse_flags

from shogi_policy import mnist, model_dir, train


def test_mnist_trains_and_restores_under_mock_data(tmp_path):
    with tfds.testing.mock_data(num_examples=96):
        assert mnist.num_examples("test") == 96
        images, labels = next(iter(mnist.make_dataset("train", 16, seed=0)))
        assert images.dtype == "float32" and tuple(images.shape) == (16, 28, 28, 1)
        assert labels.dtype == "int32" and tuple(labels.shape) == (16,)
        options = parse_flags(dataset="mnist", model_dir=tmp_path / "run", steps=6, steps_per_epoch=3, seed=0)
        metrics = train.train(options)
    assert metrics["step"] == 6
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0 and np.isfinite(metrics["eval_loss"])
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["step"] == 6
    model = model_dir.restore_model(tmp_path / "run", mnist.build_model)
    assert model.name == "mnist"
    assert model(images).shape == (16, mnist.NUM_CLASSES)
