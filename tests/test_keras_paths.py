"""The Keras paths a TPU run takes, on CPU: many steps per compiled call, and metrics across replicas.

A TPU run uses steps_per_execution=100 (Keras broke above 32 before 3.7, keras issue 20344) and splits
each global batch across replicas, so losses and metrics are aggregated across them (Keras 3 got that
wrong before 3.7 and 3.10, keras issues 19891 and 21054). TPUStrategy needs a TPU; MirroredStrategy over
conftest's two logical CPUs splits and aggregates the same way.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import app
from conftest import parse_flags, random_game_records

from shogi_policy.cli import train as train_command
from shogi_policy.data import input_pipeline, shards
from shogi_policy.model import model_dir, network
from shogi_policy.runtime import strategy
from shogi_policy.training import tasks

TINY = {"blocks": 0, "filters": 8}


@pytest.fixture(scope="module")
def game_shards(tmp_path_factory):
    """Random cshogi games: 12 train games, 4 test games (about 40 plies each)."""
    directory = tmp_path_factory.mktemp("keras_paths_shards")
    shards.write_records(
        str(directory),
        {
            "train": random_game_records(num_games=12, max_plies=40, seed=20),
            "test": random_game_records(num_games=4, max_plies=40, seed=21),
        },
    )
    return directory


@pytest.mark.slow
def test_steps_per_execution_100_trains_like_one_step_per_call(game_shards, tmp_path):
    common = {
        **TINY,
        "data_dir": game_shards,
        "batch_size": 8,
        "steps": 200,
        "steps_per_epoch": 100,
        "checkpoint_every": 100,
        "eval_steps": 0,  # the weights are compared, not an evaluation
        "seed": 5,
    }
    runs = {}
    for steps_per_execution in (100, 1):
        run_dir = tmp_path / f"spe{steps_per_execution}"
        options = parse_flags(model_dir=run_dir, steps_per_execution=steps_per_execution, **common)
        runs[steps_per_execution] = train_command.train(options), model_dir.restore_model(run_dir)
    (metrics, model), (metrics_one, model_one) = runs[100], runs[1]
    assert metrics["step"] == metrics_one["step"] == 200
    for a, b in zip(model.weights, model_one.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5, err_msg=a.path)


def test_epochs_must_be_whole_executions(game_shards, tmp_path):
    # Keras would run 200 steps in each epoch of 150 (two whole executions of 100) and overshoot --steps.
    options = parse_flags(
        data_dir=game_shards, model_dir=tmp_path, steps=300, steps_per_epoch=150, steps_per_execution=100
    )
    with pytest.raises(
        app.UsageError, match="--steps_per_epoch=150 must be a multiple of --steps_per_execution"
    ):
        train_command.train(options)


def synchronized_batch_norm(model):
    """A copy of the model whose BatchNormalization layers take statistics over the global batch.

    Under MirroredStrategy each replica normalises its half of the batch with its own mean and variance
    unless the layer is synchronized, which changes the numbers, not only their rounding. With
    synchronized statistics both strategies compute the same function of the same global batch.
    """

    def clone_layer(layer):
        config = layer.get_config()
        if isinstance(layer, keras.layers.BatchNormalization):
            config["synchronized"] = True
        return layer.__class__.from_config(config)

    return keras.models.clone_model(model, clone_function=clone_layer)


def fit_per_step(distribution, initial_weights, options, config, steps):
    """(per-step training logs, evaluation logs) of SGD from initial_weights, one epoch per step."""
    task = tasks.ShogiTask(train_command.config_from_flags(options)[0].task)
    with distribution.scope():
        model = synchronized_batch_norm(network.build_policy_model(config))
        model.set_weights(initial_weights)
        model.compile(optimizer=keras.optimizers.SGD(0.05), jit_compile=False, **task.compile_args(config))

    def dataset(split):
        # One file order, one chunk order, no row shuffle: both runs see the same global batches.
        return input_pipeline.make_dataset(
            options.data_dir, split, 32, shuffle=False, seed=0, value_targets=config.value_head
        )

    history = model.fit(dataset("train"), epochs=steps, steps_per_epoch=1, verbose=0)
    evaluation = model.evaluate(dataset("test"), steps=2, return_dict=True, verbose=0)
    return history.history, evaluation


@pytest.mark.slow
def test_mirrored_loss_and_metrics_equal_the_default_strategy(game_shards, monkeypatch):
    """Per-step loss and accuracies under MirroredStrategy (2 replicas) equal the default strategy's.

    Tolerances: losses relative 1e-5 (the replicas' gradients are summed in another order than one
    batch's, so float32 rounding differs a little and compounds over the steps; measured: 1e-7 after 6
    steps, Keras 3.15 / TF 2.21); accuracies within one
    position of the 32 in a batch (2 in the 64 of the evaluation), for a near tie whose argmax the rounding
    flips. Metric aggregation errors are far larger: a replica's value alone, or a sum instead of a mean.
    """
    options = parse_flags(data_dir=game_shards, model_dir="unused", value_head=True, **TINY)
    config = train_command.config_from_flags(options)[0].task.network()
    keras.utils.set_random_seed(3)
    initial_weights = network.build_policy_model(config).get_weights()
    # Every MirroredStrategy numbers its collective ops from the same key, so a second one in this process
    # (test_train's) would meet this one's collectives under the same keys with other shapes; TF's own tests
    # give each strategy a key base of its own ("Only set this in tests").
    monkeypatch.setattr(tf.distribute.MirroredStrategy, "_collective_key_base", 10_000)
    mirrored = strategy.make_strategy("mirrored")
    assert mirrored.num_replicas_in_sync == 2
    default_logs, default_eval = fit_per_step(
        tf.distribute.get_strategy(), initial_weights, options, config, 6
    )
    mirrored_logs, mirrored_eval = fit_per_step(mirrored, initial_weights, options, config, 6)

    assert set(default_logs) == set(mirrored_logs) >= {"loss", "policy_accuracy", "value_accuracy"}
    assert default_logs["loss"][-1] < default_logs["loss"][0], "SGD learns"
    for name in default_logs:
        tolerance = {"atol": 1.01 / 32} if "accuracy" in name else {"rtol": 1e-5}
        np.testing.assert_allclose(mirrored_logs[name], default_logs[name], **tolerance, err_msg=name)
    for name in default_eval:
        tolerance = {"atol": 2.01 / 64} if "accuracy" in name else {"rtol": 1e-5}
        np.testing.assert_allclose(mirrored_eval[name], default_eval[name], **tolerance, err_msg=name)
