"""One writer per run directory (run_lock), resume rules for changed flags, positions seen across runs."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import keras
import pytest
from absl import app
from conftest import FUZZ_SETTINGS, parse_flags, random_game_records
from hypothesis import given
from hypothesis import strategies as st

from shogi_policy.cli import train as train_command
from shogi_policy.data import shard_manifest, shards
from shogi_policy.model import model_dir
from shogi_policy.training import resume, run_lock, tasks


def _recorded_flags(**values):
    """The train_flags.json flags of a run with these flag values (the rest default)."""
    return resume.saved_flags(*train_command.config_from_flags(parse_flags(**values)))


def test_every_trainer_flag_has_one_resume_class():
    classes = [set(resume.RESUME_FIXED), set(resume.RESUME_STREAM), set(resume.RESUME_FREE)]
    assert sum(len(names) for names in classes) == len(set.union(*classes)), "a flag in two classes"
    assert set.union(*classes) == set(_recorded_flags()), (
        "every flag is compared on resume, or said not to be"
    )


def _other_value(value):
    """A value of the same flag type that differs from value."""
    if isinstance(value, bool):
        return not value
    if value is None:
        return 3
    if isinstance(value, (int, float)):
        return value * 2 + 1
    return value + "_other"


@FUZZ_SETTINGS
@given(
    changed=st.sets(st.sampled_from(sorted(_recorded_flags(data_dir="shards", seed=1)))),
    allow=st.booleans(),
)
def test_resume_refuses_exactly_the_flags_that_change_the_run(changed, allow):
    recorded = _recorded_flags(data_dir="shards", seed=1)
    current = {name: _other_value(value) if name in changed else value for name, value in recorded.items()}
    changes = resume.flag_changes(recorded, current)
    assert set(changes) == changed - {"model_dir", "allow_changed_flags"}
    refusal = resume.resume_refusal(changes, allow)
    fixed = changed & set(resume.RESUME_FIXED)
    stream = changed & set(resume.RESUME_STREAM)
    refused = fixed or (stream and not allow)
    assert (refusal is not None) == bool(refused)
    for name in fixed or (stream if refused else set()):
        assert f"{resume.setting_name(name)} {recorded[name]!r} -> {current[name]!r}" in refusal
    if fixed:
        assert "new --model_dir" in refusal
    elif refused:
        assert "--allow_changed_flags" in refusal


def test_flag_comparison_reads_paths_and_older_records():
    recorded = {"data_dir": "runs/../shards/", "batch_size": 32}
    assert resume.flag_changes(recorded, {"data_dir": "shards", "batch_size": 32, "mirror": True}) == {}
    assert resume.flag_changes({"data_dir": "gs://b/s/"}, {"data_dir": "gs://b/s"}) == {}
    assert resume.flag_changes({"data_dir": "gs://b/s"}, {"data_dir": "gs://b/t"}) == {
        "data_dir": ("gs://b/s", "gs://b/t")
    }


@FUZZ_SETTINGS
@given(
    segments=st.lists(
        st.tuples(st.integers(0, 20), st.sampled_from([16, 32, 64, 1024])), min_size=1, max_size=5
    ),
    extra=st.integers(0, 20),
)
def test_positions_seen_counts_each_step_at_its_runs_batch_size(segments, extra):
    runs, start = [], 0
    for length, batch_size in segments:
        runs.append({"start_step": start, "batch_size": batch_size, "changed": {}})
        start += length
    step = start + extra
    # Oracle: step by step, the batch size of the last run started at or before it.
    expected = sum(
        next(run["batch_size"] for run in reversed(runs) if run["start_step"] <= s) for s in range(step)
    )
    assert model_dir.positions_seen(runs, step) == expected


def test_lock_refuses_a_second_holder_naming_it_and_is_free_after(tmp_path):
    with run_lock.hold(str(tmp_path)):
        with pytest.raises(run_lock.RunDirectoryLocked) as error:
            with run_lock.hold(str(tmp_path)):
                pass
        assert f"pid {os.getpid()} on host {socket.gethostname()}" in str(error.value)
    assert (tmp_path / run_lock.LOCK_FILE).read_text() == "", "a normal end leaves nothing to take over"
    with run_lock.hold(str(tmp_path)):
        pass


def test_lock_of_a_killed_process_is_taken_over(tmp_path, caplog):
    script = (
        "import os, signal, sys\n"
        "from shogi_policy.training import run_lock\n"
        "with run_lock.hold(sys.argv[1]):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    dead = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)])
    assert dead.wait(timeout=60) == -signal.SIGKILL
    assert json.loads((tmp_path / run_lock.LOCK_FILE).read_text())["pid"] == dead.pid
    with run_lock.hold(str(tmp_path)):
        holder = json.loads((tmp_path / run_lock.LOCK_FILE).read_text())
        assert holder["pid"] == os.getpid()
    assert "taking over the lock of pid" in caplog.text


def test_remote_run_directory_is_not_locked(caplog):
    with run_lock.hold("gs://bucket/run"), run_lock.hold("gs://bucket/run"):
        pass
    assert "no lock keeps a second trainer out" in caplog.text


@pytest.mark.slow
def test_two_trainers_on_one_model_dir(small_shards, tmp_path):
    """End to end, two processes: the second refuses at once naming the first, which finishes alone."""
    run = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "shogi_policy.cli.train",
        f"--data_dir={small_shards}",
        f"--model_dir={run}",
        *("--blocks=1", "--filters=8", "--batch_size=16", "--strategy=default", "--eval_steps=0"),
        *("--steps=4", "--steps_per_epoch=2", "--checkpoint_every=2"),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lock = run / run_lock.LOCK_FILE
        deadline = time.monotonic() + 120
        while not (lock.exists() and lock.read_text()):
            assert first.poll() is None and time.monotonic() < deadline, (
                "the first trainer never took the lock"
            )
            time.sleep(0.05)
        os.kill(first.pid, signal.SIGSTOP)  # holds the lock, mid-run, while the second one starts
        start = time.monotonic()
        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        seconds = time.monotonic() - start
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _, first_stderr = first.communicate(timeout=300)
    assert first.returncode == 0, first_stderr[-3000:]
    assert second.returncode == 1
    assert f"pid {first.pid} on host {socket.gethostname()}" in second.stderr, second.stderr[-2000:]
    assert "Traceback" not in second.stderr
    print(f"second trainer refused in {seconds:.1f} s")
    history = [json.loads(line) for line in (run / model_dir.HISTORY_JSONL).read_text().splitlines()]
    assert [row["step"] for row in history] == [2, 4]
    flags, runs = model_dir.read_run_record(str(run))
    assert flags["batch_size"] == 16 and len(runs) == 1
    assert not [name for name in os.listdir(run / model_dir.CHECKPOINT_DIR) if "temp" in name]


def _train(model_dir_path, data_dir, **values):
    common = {"data_dir": data_dir, "model_dir": model_dir_path, "eval_steps": 0, "checkpoint_every": 2}
    return train_command.train(parse_flags(**{"steps": 4, "steps_per_epoch": 2, **common, **values}))


@pytest.mark.slow
def test_resume_with_changed_flags(small_shards, tmp_path):
    run = tmp_path / "run"
    assert _train(run, small_shards, batch_size=16)["positions"] == 4 * 16
    with pytest.raises(app.UsageError, match=r"--optimizer 'sgd' -> 'adamw' \(the optimizer's slot"):
        _train(run, small_shards, batch_size=16, optimizer="adamw", allow_changed_flags=True)
    with pytest.raises(app.UsageError, match="--batch_size 16 -> 32; --seed None -> 4") as error:
        _train(run, small_shards, batch_size=32, seed=4, steps=6)
    assert "--allow_changed_flags" in str(error.value)
    assert model_dir.read_run_record(str(run))[0]["batch_size"] == 16, "a refused resume writes nothing"

    # --steps alone is no change of the run; with --allow_changed_flags the new batch size counts from step 4.
    metrics = _train(run, small_shards, batch_size=32, steps=6, allow_changed_flags=True)
    assert metrics["step"] == 6 and metrics["positions"] == 4 * 16 + 2 * 32
    flags, runs = model_dir.read_run_record(str(run))
    assert flags["batch_size"] == 32 and flags["steps"] == 6
    assert runs == [
        {"start_step": 0, "batch_size": 16, "changed": {}},
        {"start_step": 4, "batch_size": 32, "changed": {"batch_size": [16, 32], "steps": [4, 6]}},
    ]
    history = [json.loads(line) for line in (run / model_dir.HISTORY_JSONL).read_text().splitlines()]
    assert [(row["step"], row["positions"]) for row in history] == [(2, 32), (4, 64), (6, 128)]


def _reconvert(data_dir):
    """Changes data_dir's shards and manifest in place, as shogi-policy-convert --overwrite under the same name does."""
    manifest = shard_manifest.read_manifest(str(data_dir))
    shards.write_records(
        str(data_dir),
        {"train": random_game_records(6, 30, seed=22), "test": random_game_records(2, 30, seed=23)},
    )
    return manifest[shard_manifest.MANIFEST_CHECKSUM], shard_manifest.read_manifest(str(data_dir))[
        shard_manifest.MANIFEST_CHECKSUM
    ]


def test_train_flags_record_the_shards_identity(small_shards, tmp_path):
    run = train_command.config_from_flags(parse_flags(data_dir=str(small_shards)))[0]
    identity = tasks.TASKS["shogi"](run.task).data_identity()
    flags = resume.saved_flags(run, None, identity)
    checksum = shard_manifest.read_manifest(str(small_shards))[shard_manifest.MANIFEST_CHECKSUM]
    assert flags[resume.DATA_IDENTITY] == checksum
    mnist_run = train_command.config_from_flags(parse_flags(dataset="mnist"))[0]
    assert tasks.TASKS["mnist"](mnist_run.task).data_identity() is None
    model_dir.write_run_record(str(tmp_path), flags, [])
    assert resume.recorded_config(str(tmp_path)).task.data_dir == str(small_shards)  # not read back as a flag
    refusal = resume.resume_refusal(
        resume.flag_changes(flags, {**flags, resume.DATA_IDENTITY: "other"}), False
    )
    assert f"the --data_dir shards' manifest_sha256 {checksum!r} -> 'other'" in refusal


@pytest.mark.slow
def test_resume_on_reconverted_shards_is_a_changed_stream(small_shards, tmp_path):
    """The issue's example: a data_dir converted again with --overwrite resumed, logging only --steps."""
    data = tmp_path / "shards"
    shutil.copytree(small_shards, data)
    run = tmp_path / "run"
    _train(run, data, batch_size=16)
    old, new = _reconvert(data)
    with pytest.raises(app.UsageError, match=f"the --data_dir shards' manifest_sha256 '{old}' -> '{new}'"):
        _train(run, data, batch_size=16, steps=6)
    metrics = _train(run, data, batch_size=16, steps=6, allow_changed_flags=True)
    assert metrics["step"] == 6
    assert model_dir.read_run_record(str(run))[1][-1]["changed"][resume.DATA_IDENTITY] == [old, new]
    # A train_flags.json written before the checksum was recorded still resumes.
    flags, runs = model_dir.read_run_record(str(run))
    del flags[resume.DATA_IDENTITY]
    model_dir.write_run_record(str(run), flags, runs)
    assert _train(run, data, batch_size=16, steps=8)["step"] == 8


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="fakes a JAX run's checkpoint")
def test_resume_refuses_the_other_backends_checkpoints(small_shards, tmp_path):
    run = tmp_path / "run"
    (run / model_dir.CHECKPOINT_DIR / "4").mkdir(parents=True)  # an Orbax step directory, as JAX runs write
    with pytest.raises(app.UsageError, match=r"4 is a jax checkpoint .* tensorflow backend.*--backend=jax"):
        _train(run, small_shards)
    assert sorted(os.listdir(run)) == [model_dir.CHECKPOINT_DIR, run_lock.LOCK_FILE], "refused before writing"
