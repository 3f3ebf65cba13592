"""Policy loss and metrics on packed targets, checked against Keras's own losses and metrics."""

import keras
import numpy as np
import pytest

from shogi_policy.core import policy_labels, record_format
from shogi_policy.model import losses

BATCH = 64


@pytest.fixture
def batch():
    """(targets int32 [B], labels [B], results [B], logits float32 [B, 2187])."""
    rng = np.random.default_rng(0)
    labels = rng.integers(policy_labels.NUM_MOVE_LABELS, size=BATCH)
    results = rng.integers(3, size=BATCH)
    logits = (3 * rng.standard_normal((BATCH, policy_labels.NUM_MOVE_LABELS))).astype(np.float32)
    logits[np.arange(0, BATCH, 3), labels[::3]] += 15  # some hits for the accuracy metrics
    return (labels | results << 12).astype(np.int32), labels, results, logits


def test_policy_loss_is_sparse_crossentropy(batch):
    targets, labels, _, logits = batch
    expected = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    np.testing.assert_allclose(losses.PolicyLoss()(targets, logits), expected, rtol=1e-5)


def test_label_smoothing_is_keras_categorical_smoothing(batch):
    targets, labels, _, logits = batch
    one_hot = np.eye(policy_labels.NUM_MOVE_LABELS, dtype=np.float32)[labels]
    expected = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2)(one_hot, logits)
    np.testing.assert_allclose(losses.PolicyLoss(label_smoothing=0.2)(targets, logits), expected, rtol=1e-5)


def test_result_weights_are_keras_sample_weights(batch):
    targets, labels, results, logits = batch
    weights = np.select(
        [results == record_format.RESULT_WIN, results == record_format.RESULT_DRAW], [1.0, 0.5], 0.0
    )
    expected = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
        labels, logits, sample_weight=weights
    )
    loss = losses.PolicyLoss(loser_weight=0.0, draw_weight=0.5)
    np.testing.assert_allclose(loss(targets, logits), expected, rtol=1e-5)


def test_accuracy_metrics_read_the_label_bits(batch):
    targets, labels, _, logits = batch
    for ours, reference in (
        (losses.PolicyAccuracy(), keras.metrics.SparseCategoricalAccuracy()),
        (losses.PolicyTop5Accuracy(), keras.metrics.SparseTopKCategoricalAccuracy(k=5)),
    ):
        ours.update_state(targets, logits)
        reference.update_state(labels, logits)
        assert float(reference.result()) > 0.25
        np.testing.assert_allclose(ours.result(), reference.result(), rtol=1e-6)


def test_value_loss_is_binary_crossentropy_of_result(batch):
    _, _, results, logits = batch
    value_logits = logits[:, :1]
    target = results / 2
    probability = 1 / (1 + np.exp(-value_logits[:, 0].astype(np.float64)))
    expected = -np.mean(target * np.log(probability) + (1 - target) * np.log(1 - probability))
    np.testing.assert_allclose(
        losses.value_loss()(target.astype(np.float32), value_logits), expected, rtol=1e-4
    )


def test_saved_model_keeps_loss_config(batch, tmp_path):
    targets, _, _, logits = batch
    inputs = keras.Input(shape=(policy_labels.NUM_MOVE_LABELS,))
    model = keras.Model(inputs, keras.layers.Dense(policy_labels.NUM_MOVE_LABELS)(inputs))
    loss = losses.PolicyLoss(label_smoothing=0.15, loser_weight=0.0, draw_weight=0.25)
    model.compile(optimizer="sgd", loss=loss, metrics=losses.policy_metrics())
    before = model.evaluate(logits, targets, return_dict=True, verbose=0)
    model.save(tmp_path / "model.keras")

    reloaded = keras.models.load_model(tmp_path / "model.keras")
    assert isinstance(reloaded.loss, losses.PolicyLoss)
    assert reloaded.loss.get_config() == loss.get_config()
    after = reloaded.evaluate(logits, targets, return_dict=True, verbose=0)
    assert set(after) == {"loss", "accuracy", "top5_accuracy"}
    for name, value in before.items():
        np.testing.assert_allclose(after[name], value, rtol=1e-5, err_msg=name)


def test_bad_arguments():
    with pytest.raises(ValueError, match="label_smoothing"):
        losses.PolicyLoss(label_smoothing=1.0)
    with pytest.raises(ValueError, match="weights"):
        losses.PolicyLoss(loser_weight=-1.0)


def test_loss_and_metrics_equal_a_float64_oracle_on_either_backend(batch):
    """The same numbers under KERAS_BACKEND=tensorflow and jax (.ci/jax_lane): both held to one oracle."""
    targets, labels, results, logits = batch
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    nll = -log_probs[np.arange(BATCH), labels]
    smoothed = 0.9 * nll + 0.1 * -log_probs.mean(axis=1)
    weights = np.select(
        [results == record_format.RESULT_WIN, results == record_format.RESULT_DRAW], [1.0, 0.25], 0.5
    )
    loss = losses.PolicyLoss(label_smoothing=0.1, loser_weight=0.5, draw_weight=0.25)
    np.testing.assert_allclose(float(loss(targets, logits)), np.mean(smoothed * weights), rtol=1e-6)
    top5 = np.argsort(-logits, axis=1)[:, :5]
    for metric, expected in (
        (losses.PolicyAccuracy(), np.mean(logits.argmax(axis=1) == labels)),
        (losses.PolicyTop5Accuracy(), np.mean((top5 == labels[:, None]).any(axis=1))),
    ):
        metric.update_state(targets.astype(np.float32), logits)  # Keras hands targets over as float32
        assert float(metric.result()) == pytest.approx(expected, abs=1e-7)
