"""Shards that prove themselves: the manifest's sizes and SHA-256s, and its own checksum, are checked by every
reader, so nothing trains on a shard that is not what the manifest says (issue 19)."""

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shogi_policy.data import convert, input_pipeline, shard_manifest, shards
from shogi_policy.training import config, tasks

FLOODGATE = Path(__file__).resolve().parents[1] / "data" / "floodgate_games.usi.gz"
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The first 200 floodgate games of data/, converted into 2 train shards and a test split."""
    root = tmp_path_factory.mktemp("checks")
    games = root / "games.usi"
    with gzip.open(FLOODGATE, "rt", encoding="utf-8") as stream:
        games.write_text("".join(next(stream) for _ in range(200)))
    output = root / "shards"
    convert.convert([str(games)], str(output), positions_per_shard=12000, seed=1)
    return output


def copy_of(converted, tmp_path):
    target = tmp_path / "shards"
    shutil.copytree(converted, target)
    return target


def train_options(data_dir):
    return tasks.ShogiTask(config.TaskConfig(data_dir=str(data_dir)))


def readers(data_dir):
    """Each reader of a shard directory, as a function of the split: training, evaluation and the task check."""
    return {
        "make_dataset": lambda split: input_pipeline.make_dataset(str(data_dir), split, 32),
        "read_records": lambda split: list(shards.read_records(str(data_dir), split)),  # evaluate --data_dir
        "check_options": lambda split: _raise(train_options(data_dir).check_options()),
    }


def _raise(problem):
    if problem:
        raise ValueError(problem)


def test_manifest_lists_sizes_and_checksums_of_its_shards(converted):
    manifest = shard_manifest.read_manifest(str(converted))
    for split in shards.SPLITS:
        entry = manifest["splits"][split]
        paths = [converted / name for name in entry["files"]]
        assert entry["bytes"] == [path.stat().st_size for path in paths]
        assert entry["sha256"] == [shard_manifest.file_sha256(str(path)) for path in paths]
        assert sum(entry["bytes"]) == 100 * entry["positions"] > 0
    assert len(manifest["splits"]["train"]["files"]) >= 2


def test_the_issue_example_a_truncated_train_shard_is_refused_by_every_reader(converted, tmp_path):
    """truncate -s 6400 on a train shard: training learnt from 64 positions and exited 0."""
    data_dir = copy_of(converted, tmp_path)
    shard = data_dir / shard_manifest.read_manifest(str(data_dir))["splits"]["train"]["files"][1]
    os.truncate(shard, 6400)
    for name, read in readers(data_dir).items():
        with pytest.raises(ValueError, match=f"{shard}: 6400 bytes, the manifest says") as error:
            read("train")
        assert "truncated or replaced" in str(error.value), name


def test_the_trainers_set_up_reads_the_manifest_once_and_stats_each_shard_once(converted, monkeypatch):
    """In train.train's order: check the options, count the test split, make the datasets (the training one here:
    the test split's takes the same path). Each read of the manifest or stat of a shard is a round trip on gs://; a
    run read the manifest 6 times and stat'ed each training shard 3 times."""
    reads, stats = [], []
    read_manifest, stat = shard_manifest.read_manifest, tf.io.gfile.stat
    monkeypatch.setattr(
        shard_manifest, "read_manifest", lambda path: reads.append(path) or read_manifest(path)
    )
    monkeypatch.setattr(tf.io.gfile, "stat", lambda path: stats.append(path) or stat(path))
    task = train_options(converted)
    assert task.check_options() is None
    assert task.num_examples("test") > 32
    network = config.TaskConfig().network()
    task.make_dataset("train", 32, network, shuffle=True, seed=1)
    assert reads == [str(converted)]
    splits = read_manifest(str(converted))["splits"]
    shard_files = [str(converted / name) for entry in splits.values() for name in entry["files"]]
    assert sorted(stats) == sorted(shard_files)


@pytest.mark.slow
def test_training_on_a_truncated_shard_exits_with_a_usage_error_before_writing_anything(converted, tmp_path):
    """End to end (a child process: about 15 s, TensorFlow's import)."""
    data_dir = copy_of(converted, tmp_path)
    shard = data_dir / shard_manifest.read_manifest(str(data_dir))["splits"]["train"]["files"][0]
    os.truncate(shard, 6400)
    model_dir = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "shogi_policy.cli.train",
        f"--data_dir={data_dir}",
        f"--model_dir={model_dir}",
    ]
    result = subprocess.run(
        [*command, "--steps=2", "--preset=cpu"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1 and f"{shard}: 6400 bytes" in result.stderr
    assert "Traceback" not in result.stderr and not model_dir.exists()


@SETTINGS
@given(data=st.data())
def test_any_truncated_or_changed_shard_is_refused_naming_it(converted, tmp_path_factory, data):
    data_dir = copy_of(converted, tmp_path_factory.mktemp("damaged"))
    split = data.draw(st.sampled_from(shards.SPLITS))
    entry = shard_manifest.read_manifest(str(data_dir))["splits"][split]
    shard = data_dir / data.draw(st.sampled_from(entry["files"]))
    content = bytearray(shard.read_bytes())
    if data.draw(st.booleans()):
        del content[data.draw(st.integers(0, len(content) - 1)) :]
    else:  # same size, other bytes
        content[data.draw(st.integers(0, len(content) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    shard.write_bytes(bytes(content))
    with pytest.raises(ValueError, match=str(shard)):
        input_pipeline.make_dataset(str(data_dir), split, 8)


@pytest.fixture(scope="module")
def manifest_bytes(converted):
    return (converted / shard_manifest.MANIFEST).read_bytes()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bit=st.integers(0, 10**9))
def test_a_bit_flip_in_the_manifest_is_refused_or_changes_nothing(
    converted, manifest_bytes, tmp_path_factory, bit
):
    """Flips mostly ended in a bare JSONDecodeError or KeyError, and 9 of 704 silently changed the counts."""
    bit %= 8 * len(manifest_bytes)
    data_dir = tmp_path_factory.mktemp("flip")
    flipped = bytearray(manifest_bytes)
    flipped[bit // 8] ^= 1 << (bit % 8)
    (data_dir / shard_manifest.MANIFEST).write_bytes(bytes(flipped))
    for name in os.listdir(converted):
        if name != shard_manifest.MANIFEST:
            os.symlink(converted / name, data_dir / name)
    try:
        manifest = shard_manifest.read_manifest(str(data_dir))
    except ValueError as error:
        assert str(error).startswith(str(data_dir / shard_manifest.MANIFEST)), error
        assert len(str(error)) < 600
    else:  # a flip that JSON does not see (spacing): the same manifest
        assert manifest == json.loads(manifest_bytes)


def test_manifest_problems_name_the_file_and_what_is_wrong(converted, tmp_path):
    data_dir = copy_of(converted, tmp_path)
    path = data_dir / shard_manifest.MANIFEST
    manifest = json.loads(path.read_bytes())
    cases = {
        b"{not json": "is not valid JSON",
        b"[1, 2]": "holds list, not a manifest object",
        json.dumps(
            {k: v for k, v in manifest.items() if k != "manifest_sha256"}
        ).encode(): "written by an older",
        json.dumps({**manifest, "seed": 2}).encode(): "does not match its manifest_sha256",
    }
    for content, message in cases.items():
        path.write_bytes(content)
        with pytest.raises(ValueError, match=message) as error:
            shard_manifest.read_manifest(str(data_dir))
        assert str(error.value).startswith(str(path))
    # A well-formed checksum over a manifest whose counts disagree with its shards.
    bad = {
        **manifest,
        "splits": {**manifest["splits"], "test": {**manifest["splits"]["test"], "positions": 1}},
    }
    shard_manifest.write_manifest(str(data_dir), {k: v for k, v in bad.items() if k != "manifest_sha256"})
    with pytest.raises(ValueError, match="1 positions disagree with its shards"):
        shard_manifest.read_manifest(str(data_dir))


def test_a_missing_shard_is_named(converted, tmp_path):
    data_dir = copy_of(converted, tmp_path)
    shard = data_dir / shard_manifest.read_manifest(str(data_dir))["splits"]["test"]["files"][0]
    shard.unlink()
    with pytest.raises(ValueError, match=f"{shard}: listed in manifest.json but missing"):
        list(shards.read_records(str(data_dir), "test"))


def test_an_empty_train_split_says_so(tmp_path):
    """'0 shard files, too few for host 0 of 1' before."""
    games = tmp_path / "g.usi"
    games.write_text("startpos moves 7g7f 3c3d 2g2f\n")
    convert.convert([str(games)], str(tmp_path / "out"), test_fraction=1.0)
    for name in ("make_dataset", "check_options"):  # evaluation of an empty split: "no positions to evaluate"
        with pytest.raises(ValueError, match="split 'train' is empty: the conversion put no game in it"):
            readers(tmp_path / "out")[name]("train")
