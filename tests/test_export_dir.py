"""Export directories written whole, exports checked on load, checkpoints read while a trainer rotates them."""

import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY_CONFIG

from shogi_policy.cli import command
from shogi_policy.cli import evaluate as evaluate_command
from shogi_policy.cli import export as export_command
from shogi_policy.cli import sample as sample_command
from shogi_policy.core import file_io
from shogi_policy.model import model_dir, network
from shogi_policy.serving import evaluate, export, inference, policy_ops, sample

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="export and TF checkpoints: the default suite"
)


def _run_main(command_name, **values):
    """Runs shogi-policy-<command_name>'s call on these --name=value flags, parsed as the command parses them."""
    config_type, call = {
        "export": (export.ExportConfig, export_command.export_and_report),
        "sample": (sample.SampleConfig, sample_command.sample_and_print),
        "evaluate": (evaluate.EvaluateConfig, evaluate_command.evaluate_and_print),
    }[command_name]
    argv = [command_name, *(f"--{name}={value}" for name, value in values.items())]
    call(command.parse_config(config_type, argv))


def _listing(directory):
    return sorted(
        os.path.relpath(os.path.join(root, name), directory)
        for root, _, names in os.walk(directory)
        for name in names
    )


def test_export_refuses_a_non_empty_directory_and_overwrite_replaces_it_whole(tiny_export, tmp_path):
    run_dir, good_export = tiny_export
    target = tmp_path / "export"
    shutil.copytree(good_export, target)
    (target / "variables" / "variables.data-00001-of-00002").write_bytes(b"stale shard of an older export")
    (target / "notes.txt").write_text("mine")
    before = _listing(target)
    with pytest.raises(ValueError, match=f"{target} is not empty .*notes.txt.*--overwrite"):
        _run_main("export", model_dir=run_dir, export_dir=target)
    assert _listing(target) == before, "a refused export touches nothing"

    _run_main("export", model_dir=run_dir, export_dir=target, overwrite=True)
    assert _listing(target) == _listing(good_export), "nothing of the old directory stays"
    assert sorted(os.listdir(tmp_path)) == ["export"], "no staging or old directory left beside it"
    inference.PolicyModel(str(target))


def test_write_directory_keeps_the_old_one_until_the_new_one_is_complete(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")

    def write(path):
        assert (target / "old.txt").read_text() == "old", "readers see the old directory while writing"
        (tmp_path / "staging_name").write_text(os.path.basename(path))
        with open(os.path.join(path, "new.txt"), "w") as f:
            f.write("new")
        return "done"

    def fail(path):
        with open(os.path.join(path, "half.txt"), "w") as f:
            f.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        export.write_directory(str(target), fail, overwrite=True)
    assert _listing(target) == ["old.txt"] and sorted(os.listdir(tmp_path)) == ["out"]
    assert export.write_directory(str(target) + "/", write, overwrite=True) == "done"
    assert _listing(target) == ["new.txt"]
    assert sorted(os.listdir(tmp_path)) == ["out", "staging_name"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        export.write_directory(str(tmp_path / "file"), write, overwrite=True)


@pytest.fixture(scope="module")
def damaged_exports(tiny_export, tmp_path_factory):
    """{problem: export directory} of exports a loader must refuse, each beside the good one's metadata."""
    good = tiny_export[1]
    root = tmp_path_factory.mktemp("damaged")
    damaged = {}

    truncated = root / "truncated"
    shutil.copytree(good, truncated)
    (data,) = (truncated / "variables").glob("variables.data-*")
    os.truncate(data, data.stat().st_size // 2)
    damaged["does not load .*truncated or damaged"] = truncated

    class Foreign(tf.Module):  # a SavedModel of someone else's, with our metadata copied beside it
        @tf.function(input_signature=[tf.TensorSpec([None, 100], tf.float32, name="records")])
        def logits(self, records):
            return {"logits": records}

    foreign = Foreign()
    tf.saved_model.save(foreign, str(root / "foreign"), signatures={"logits": foreign.logits})
    damaged["signature 'logits' takes \\(records float32 .*not a shogi_policy export"] = root / "foreign"
    tf.saved_model.save(tf.Module(), str(root / "empty_module"))
    damaged["has no 'logits' signature"] = root / "empty_module"
    for directory in (root / "foreign", root / "empty_module"):
        shutil.copy(good / policy_ops.METADATA_FILENAME, directory)

    torn = root / "torn_metadata"
    shutil.copytree(good, torn)
    metadata = torn / policy_ops.METADATA_FILENAME
    metadata.write_text(metadata.read_text()[:40])
    damaged["shogi_policy_export.json is not valid JSON"] = torn
    return damaged


def test_damaged_or_foreign_exports_are_refused_naming_the_directory(damaged_exports, tmp_path):
    tsv = tmp_path / "one.tsv"
    tsv.write_text("val\tsfen lnsgkgsnl/1r5b1/ppppppppp/9/9/9/PPPPPPPPP/1B5R1/LNSGKGSNL b - 1\t7g7f\n")
    for problem, directory in damaged_exports.items():
        with pytest.raises(ValueError, match=f"{directory}.*{problem}"):
            inference.PolicyModel(str(directory))
        # The command-line readers load through PolicyModel: a usage error, no traceback.
        with pytest.raises(ValueError, match=problem):
            _run_main("sample", model=directory)
        with pytest.raises(ValueError, match=problem):
            _run_main("evaluate", model=directory, tsv=tsv)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"limit": -5}, "--limit must be an integer >= 1, got -5"),
        ({"limit": 0}, "--limit must be an integer >= 1, got 0"),
        ({"batch_size": 0}, "--batch_size must be an integer >= 1, got 0"),
    ],
)
def test_evaluate_checks_its_numeric_flags(tmp_path, values, message):
    with pytest.raises(ValueError, match=message):
        _run_main("evaluate", model=tmp_path, data_dir=tmp_path, **values)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        inference.PolicyModel(str(tmp_path), batch_size=0)


def _checkpointed_run(directory):
    """A model directory with checkpoints 1 and 2 of a tiny network (weights distinct per step); its manager."""
    model = network.build_policy_model(TINY_CONFIG)
    file_io.write_json(os.path.join(directory, model_dir.NETWORK_JSON), TINY_CONFIG.to_dict())
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=model), os.path.join(directory, model_dir.CHECKPOINT_DIR), max_to_keep=3
    )
    for step in (1, 2):
        _save_step(model, manager, step)
    return model, manager


def _save_step(model, manager, step):
    for variable in model.weights:
        variable.assign(np.full(variable.shape, step, variable.dtype))
    return manager.save(checkpoint_number=step)


def test_restore_follows_a_checkpoint_rotated_away_while_read(tmp_path, monkeypatch):
    """The race of export against a running trainer, made deterministic: the trainer saves step 3 and deletes
    step 2 between the reader's choice of step 2 and its reading of it."""
    model, manager = _checkpointed_run(str(tmp_path))
    real_latest = model_dir.latest_checkpoint
    rotated = []

    def latest_then_rotate(directory):
        path = real_latest(directory)
        if not rotated:
            _save_step(model, manager, 3)
            for name in tf.io.gfile.glob(path + ".*"):
                os.remove(name)
            rotated.append(path)
        return path

    monkeypatch.setattr(model_dir, "latest_checkpoint", latest_then_rotate)
    restored = model_dir.restore_model(str(tmp_path))
    assert rotated and rotated[0].endswith("ckpt-2")
    for variable in restored.weights:
        np.testing.assert_array_equal(variable.numpy(), np.full(variable.shape, 3), err_msg=variable.path)


def test_restore_reports_a_damaged_newest_checkpoint(tmp_path):
    _checkpointed_run(str(tmp_path))
    (data,) = tf.io.gfile.glob(os.path.join(tmp_path, model_dir.CHECKPOINT_DIR, "ckpt-2.data-*"))
    os.truncate(data, 10)
    with pytest.raises(ValueError, match="ckpt-2 cannot be read, truncated or damaged"):
        model_dir.restore_model(str(tmp_path))


def test_run_record_json_is_written_whole(tmp_path):
    path = tmp_path / model_dir.FLAGS_JSON
    file_io.write_json(path, {"flags": {"batch_size": 32}, "runs": []})
    assert json.loads(path.read_text())["flags"] == {"batch_size": 32}
    assert sorted(os.listdir(tmp_path)) == [model_dir.FLAGS_JSON], "no temporary file left"
    path.write_text('{"flags": {"batch')
    with pytest.raises(ValueError, match=f"{path} is not valid JSON"):
        model_dir.read_run_record(str(tmp_path))
