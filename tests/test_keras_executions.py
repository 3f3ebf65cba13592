"""Keras runs whole executions of steps_per_execution batches, evaluation included, under this process's backend
(the default suite: TensorFlow; .ci/jax_lane: JAX). The trainer's config refuses --eval_steps that are not a
multiple of --steps_per_execution because of this; if a Keras release stops doing it, this test says so."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from shogi_policy.training import config


def batches_evaluated(steps, steps_per_execution):
    """How many batches model.evaluate(steps=steps) reads from an endless dataset whose batch i has labels i."""
    inputs = keras.Input((1,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    # The loss is the label itself: its mean over the batches read 0, 1, ..., n - 1 is (n - 1) / 2.
    model.compile(loss=lambda y_true, y_pred: y_true + 0 * y_pred, steps_per_execution=steps_per_execution)
    data = tf.data.Dataset.range(10_000).map(
        lambda i: (tf.zeros([4, 1]), tf.fill([4, 1], tf.cast(i, tf.float32)))
    )
    loss = model.evaluate(data, steps=steps, verbose=0)
    return int(np.round(2 * loss + 1))


@pytest.mark.parametrize(
    "steps, steps_per_execution, expected", [(3, 1, 3), (4, 2, 4), (3, 2, 4), (50, 100, 100)]
)
def test_evaluation_runs_whole_executions(steps, steps_per_execution, expected):
    # (50, 100): the notebook's old EVAL_STEPS 50 with STEPS_PER_EXECUTION 100 evaluated 100 batches.
    assert batches_evaluated(steps, steps_per_execution) == expected, keras.backend.backend()


def test_config_refuses_eval_steps_keras_would_round_up():
    with pytest.raises(
        config.ConfigError, match=r"--eval_steps=50 must be a multiple of --steps_per_execution=100"
    ):
        config.TrainerConfig(steps_per_execution=100, eval_steps=50)
    config.TrainerConfig(steps_per_execution=100, eval_steps=100)
    config.TrainerConfig(steps_per_execution=100, eval_steps=0)  # no evaluation
    config.TrainerConfig(steps_per_execution=100)  # the whole test split: rounded down to whole executions
