"""shogi-policy-convert and the shard writer: manifest, filters, split by game, shuffle, determinism."""

import collections
import errno
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import SHARED_DATA, run_convert

from shogi_policy.core import file_io, record_format
from shogi_policy.data import records, shard_manifest, shards


def read_split(data_dir, split):
    """All records of a split, shard by shard: list of uint8 [n, 100]."""
    return [
        np.frombuffer(tf.io.gfile.GFile(path, "rb").read(), np.uint8).reshape(-1, record_format.RECORD_BYTES)
        for path in shard_manifest.shard_files(data_dir, split).paths
    ]


def game_signatures(records_):
    """{game id: frozenset of its positions' bytes without the game id}: a game's content identity."""
    fields = record_format.unpack_records(records_)
    positions = collections.defaultdict(set)
    for game_id, record in zip(fields["game_id"].tolist(), records_, strict=True):
        positions[game_id].add(record[: record_format.GAME_ID_OFFSET].tobytes())
    return {game_id: frozenset(p) for game_id, p in positions.items()}


def sorted_positions(records_):
    """The records without their game ids, as sorted opaque 97-byte items."""
    without_ids = np.ascontiguousarray(records_[:, : record_format.GAME_ID_OFFSET])
    return np.sort(without_ids.view(f"V{record_format.GAME_ID_OFFSET}").ravel())


def write_bad_inputs(directory):
    """One file of each kind of bad input; returns how many RecordErrors they give."""
    directory.mkdir()
    csa = (SHARED_DATA / "floodgate_games" / "csa" / "game_00003.csa").read_text().split("\n")
    move_lines = [i for i, line in enumerate(csa) if line.startswith("+") and len(line) > 1]
    csa[move_lines[5]] = "+5152FU"
    (directory / "illegal.csa").write_text("\n".join(csa))
    hcpe = (SHARED_DATA / "floodgate_games" / "hozon_test.hcpe").read_bytes()
    (directory / "truncated.hcpe").write_bytes(hcpe[: 38 * 10 + 7])
    (directory / "garbage.kif").write_text("this is not a game record\n")
    (directory / "empty.csa").write_text("")
    (directory / "bad_line.usi").write_text("startpos moves 7g7f 3c3d 2b3c\n")
    return 5, f"{directory / 'illegal.csa'}:{move_lines[5] + 1}: illegal move '+5152FU'"


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """games.usi + csa/ (the same games again) + bad files, converted by the app."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present")
    root = tmp_path_factory.mktemp("convert")
    bad_count, bad_example = write_bad_inputs(root / "bad")
    data = SHARED_DATA / "floodgate_games"
    inputs = f"--inputs={data / 'games.usi'},{data / 'csa'}"
    output = root / "out"
    args = (inputs, f"--inputs={root / 'bad'}", "--positions_per_shard=20000", "--seed=3")
    manifest = run_convert(*args, f"--output_dir={output}")
    return {
        "root": root,
        "args": args,
        "output": output,
        "manifest": manifest,
        "bad": (bad_count, bad_example),
    }


def test_manifest_counts_games_positions_and_bad_input(converted):
    manifest, output = converted["manifest"], converted["output"]
    usi = list(records.read_games(str(SHARED_DATA / "floodgate_games" / "games.usi")))
    csa_positions = sum(len(game.moves) for game in usi[:100])
    splits = manifest["splits"]
    assert manifest["format"] == "shogi_policy.records" and manifest["format_version"] == 1
    assert manifest["record_bytes"] == record_format.RECORD_BYTES == 100 and manifest["seed"] == 3
    # csa/ holds 100 of the games of games.usi again: each game once, the copies counted.
    assert splits["train"]["games"] + splits["test"]["games"] == 1291
    assert splits["train"]["positions"] + splits["test"]["positions"] == 127415
    assert manifest["skipped"]["duplicate"] == 100 and csa_positions > 5000
    assert 0.05 < splits["test"]["games"] / 1291 < 0.15
    bad_count, bad_example = converted["bad"]
    assert manifest["skipped"]["error"] == bad_count
    assert bad_example in manifest["skipped"]["error_examples"]
    assert all(":" in message for message in manifest["skipped"]["error_examples"])
    for split in shards.SPLITS:
        sizes = [len(r) for r in read_split(output, split)]
        assert sum(sizes) == splits[split]["positions"] and max(sizes) <= 20000
        assert splits[split]["files"] == [shards.shard_name(split, i, len(sizes)) for i in range(len(sizes))]
    assert sorted(os.listdir(output)) == sorted(
        [shard_manifest.MANIFEST, *splits["train"]["files"], *splits["test"]["files"]]
    )


def test_shards_hold_exactly_the_positions_of_the_games(converted):
    """The multiset of positions (game ids aside) equals games_to_records of every input game, once."""
    usi = list(records.read_games(str(SHARED_DATA / "floodgate_games" / "games.usi")))
    expected = records.games_to_records(usi, np.zeros(1291, dtype=np.int64))
    stored = np.concatenate([r for split in shards.SPLITS for r in read_split(converted["output"], split)])
    assert np.array_equal(sorted_positions(stored), sorted_positions(expected))


def test_split_never_shares_a_game_even_across_formats(converted):
    train = game_signatures(np.concatenate(read_split(converted["output"], "train")))
    test = game_signatures(np.concatenate(read_split(converted["output"], "test")))
    assert not set(train) & set(test)  # game ids
    assert not set(train.values()) & set(test.values())  # contents
    assert len(train) + len(test) == 1291  # the CSA copies of 100 games are dropped
    assert len(set(train.values())) + len(set(test.values())) == 1291


def test_shards_are_shuffled_across_the_split(converted):
    first = read_split(converted["output"], "train")[0]
    fields = record_format.unpack_records(first[:1000])
    assert len(set(fields["game_id"].tolist())) > 500  # 1000 contiguous records from many games
    plies = np.bincount(fields["turn"], minlength=2)
    assert min(plies) > 400


def test_same_seed_same_shards_other_seed_other_shards(converted, tmp_path):
    again = run_convert(*converted["args"], f"--output_dir={tmp_path / 'again'}")
    assert again["splits"] == converted["manifest"]["splits"]
    for split in shards.SPLITS:
        for a, b in zip(
            read_split(converted["output"], split), read_split(tmp_path / "again", split), strict=True
        ):
            assert np.array_equal(a, b)
    run_convert(*converted["args"][:-1], "--seed=4", f"--output_dir={tmp_path / 'other'}")
    other, same = read_split(tmp_path / "other", "train")[0], read_split(tmp_path / "again", "train")[0]
    assert other.shape != same.shape or not np.array_equal(other, same)


def rated_csa_files(directory):
    """CSA files of csa/game_0000{0..9} with ratings 3000 + 100 i (game 9 without); their Games."""
    directory.mkdir()
    games = []
    for i in range(10):
        text = (SHARED_DATA / "floodgate_games" / "csa" / f"game_{i:05d}.csa").read_text()
        if i < 9:
            rates = f"'black_rate:p{i}+aa:{3000 + 100 * i}.0\n'white_rate:q{i}+bb:{3050 + 100 * i}.0\n"
            text = text.replace("PI\n", rates + "PI\n", 1)
        if i == 8:
            text = text.replace("%TORYO", "%HIKIWAKE")  # a draw (%SENNICHITE needs a repetition on the board)
        (directory / f"g{i}.csa").write_text(text)
        games.extend(records.read_games(str(directory / f"g{i}.csa")))
    return games


def test_filters_rating_plies_endings_draws(tmp_path):
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present")
    games = rated_csa_files(tmp_path / "csa")
    plies = sorted(len(g.moves) for g in games)
    min_plies = plies[3]
    manifest = run_convert(
        f"--inputs={tmp_path / 'csa'}",
        f"--output_dir={tmp_path / 'out'}",
        "--min_rating=3300",
        f"--min_plies={min_plies}",
        "--endings=resign,repetition,impasse",
        "--drop_draws",
        "--test_fraction=0",
    )
    # Oracle: the filters applied by hand, in the order the manifest counts them.
    expected = collections.Counter()
    for game in games:
        if min(game.black_rating or 1e9, game.white_rating or 1e9) < 3300:
            expected["rating"] += 1
        elif len(game.moves) < min_plies:
            expected["min_plies"] += 1
        elif game.result == "draw":
            expected["draw"] += 1
        else:
            expected["kept"] += 1
    skipped = {k: v for k, v in manifest["skipped"].items() if k != "error_examples" and v}
    assert skipped == {k: v for k, v in expected.items() if k != "kept"}
    assert (
        manifest["splits"]["train"]["games"] == expected["kept"] and manifest["splits"]["test"]["files"] == []
    )
    assert games[9].black_rating is None  # unrated game 9 passes --min_rating ...
    required = run_convert(
        f"--inputs={tmp_path / 'csa'}", f"--output_dir={tmp_path / 'req'}", "--require_ratings"
    )
    assert required["skipped"]["no_rating"] == 1  # ... but not --require_ratings
    with pytest.raises(
        ValueError, match=r"no game of 10 kept: skipped \{'ending': 10\} \(hcpe and plain USI"
    ):
        run_convert(f"--inputs={tmp_path / 'csa'}", f"--output_dir={tmp_path / 'decl'}", "--endings=declare")
    assert not (tmp_path / "decl" / shard_manifest.MANIFEST).exists()
    with pytest.raises(ValueError, match=r"no game of 10 kept: skipped \{'min_plies': 10\}$"):
        run_convert(f"--inputs={tmp_path / 'csa'}", f"--output_dir={tmp_path / 'long'}", "--min_plies=1000")


def test_gfile_output_dir_existing_output_and_usage_errors(tmp_path):
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present")
    csa = str(SHARED_DATA / "floodgate_games" / "csa" / "game_0000*.csa")
    ram = "ram://shogi_policy_test/out"  # a non-local TF filesystem, as gs:// would be
    manifest = run_convert(f"--inputs={csa}", f"--output_dir={ram}", "--positions_per_shard=300")
    assert sum(len(r) for r in read_split(ram, "train")) == manifest["splits"]["train"]["positions"] > 0
    assert not [name for name in tf.io.gfile.listdir(ram) if name.endswith(".tmp")]
    with pytest.raises(ValueError, match="--overwrite"):
        run_convert(f"--inputs={csa}", f"--output_dir={ram}")
    again = run_convert(
        f"--inputs={csa}", f"--output_dir={ram}", "--overwrite", "--positions_per_shard=100000"
    )
    files = [name for split in shards.SPLITS for name in again["splits"][split]["files"]]
    assert sorted(tf.io.gfile.listdir(ram)) == sorted([shard_manifest.MANIFEST, *files])  # old shards gone
    with pytest.raises(ValueError, match="matches no record file"):
        run_convert(f"--inputs={tmp_path / 'nothing*.csa'}", f"--output_dir={tmp_path / 'x'}")
    with pytest.raises(ValueError, match="not a shard directory"):
        shard_manifest.read_manifest(str(tmp_path))


def test_shard_writer_is_a_uniform_shuffle_of_its_input(tmp_path):
    """Positions tagged 0..n-1 come back once each, in an order uncorrelated with the input."""
    n = 5000
    tagged = np.zeros((n, record_format.RECORD_BYTES), dtype=np.uint8)
    tagged[:, : record_format.GAME_ID_OFFSET] = 7
    tagged = record_format.pack_records(
        tagged[:, :81], tagged[:, 81:95], np.zeros(n), np.zeros(n), np.zeros(n), np.arange(n)
    )
    writer = shards.ShardWriter(str(tmp_path), "train", 1000, seed=0, num_buckets=8, flush_positions=700)
    for chunk in np.array_split(tagged, 13):
        writer.add(chunk)
    result = writer.close()
    assert (
        result["files"] == [shards.shard_name("train", i, 5) for i in range(5)] and result["positions"] == n
    )
    assert result["bytes"] == [1000 * record_format.RECORD_BYTES] * 5
    assert result["sha256"] == [shard_manifest.file_sha256(str(tmp_path / name)) for name in result["files"]]
    order = np.concatenate(
        [
            record_format.unpack_records(np.fromfile(tmp_path / name, np.uint8))["game_id"]
            for name in result["files"]
        ]
    )
    assert sorted(order.tolist()) == list(range(n))
    assert abs(np.corrcoef(order, np.arange(n))[0, 1]) < 0.1
    assert not any(name.endswith(".tmp") for name in os.listdir(tmp_path))


def convert_cli(*args):
    """Runs shogi-policy-convert in a child process; the CompletedProcess."""
    command = [sys.executable, "-m", "shogi_policy.cli.convert", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_a_run_whose_every_game_fails_exits_nonzero_blaming_the_first_error(tmp_path):
    """Issue 15 items 2 and 11: the illegal promotion 7f7e+ was converted; all-bad runs exited 0 with a
    warning about hcpe endings."""
    (tmp_path / "p.usi").write_text("startpos moves 7g7f 3c3d 7f7e+\n")
    (tmp_path / "q.usi").write_text("startpos moves 7g7f 7g7f\nstartpos moves 2g2f 8c8d 2f2e 8d8e 2e2d+\n")
    result = convert_cli(
        f"--inputs={tmp_path / 'p.usi'},{tmp_path / 'q.usi'}", f"--output_dir={tmp_path / 'o'}"
    )
    assert result.returncode == 1
    first = f"{tmp_path / 'p.usi'}:1: illegal move '7f7e+' at ply 3"
    assert f"shogi-policy-convert: all 3 games had errors; first: {first}" in result.stderr
    assert "hcpe" not in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "o" / shard_manifest.MANIFEST).exists()


def test_an_unwritable_output_is_refused_before_any_input_is_read(tmp_path, monkeypatch):
    """Issue 15 item 11 (tests run as root, whom chmod does not stop: the output lies under a file)."""
    (tmp_path / "games.usi").write_text("startpos moves 7g7f 3c3d\n")
    (tmp_path / "a_file").write_text("")

    def no_reading(path):
        raise AssertionError(f"{path} was read before the output was checked")

    monkeypatch.setattr(records, "read_games", no_reading)
    for output in (tmp_path / "a_file", tmp_path / "a_file" / "out"):
        with pytest.raises(ValueError, match=f"cannot write to {output}"):
            run_convert(f"--inputs={tmp_path / 'games.usi'}", f"--output_dir={output}")


def fake_dead_buckets(output_dir):
    """A bucket directory as a killed run leaves it (its process id is gone), in output_dir's bucket parent."""
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    prefix = shards._bucket_prefix(str(output_dir))
    leftover = Path(shards.bucket_parent(str(output_dir))) / f"{prefix}{finished.stdout.strip()}-train-abc123"
    leftover.mkdir(parents=True)
    (leftover / "bucket-00000.bin").write_bytes(bytes(1000))
    return leftover


def test_buckets_live_beside_the_output_and_a_killed_runs_are_removed_by_the_next(tmp_path):
    """Issue 15 item 11: kill -9 left 110-150 MB bucket directories in the system's temporary directory."""
    games = Path(__file__).resolve().parents[1] / "data" / "engine_games.usi.gz"
    output = tmp_path / "out"
    child = subprocess.Popen(
        [sys.executable, "-m", "shogi_policy.cli.convert", f"--inputs={games}", f"--output_dir={output}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not list(output.glob(".tmp-shogi_policy-buckets-*/bucket-*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        buckets = list(output.glob(".tmp-shogi_policy-buckets-*"))
        assert buckets, "the child never wrote buckets beside its output"
    finally:
        child.kill()  # SIGKILL: no clean-up runs
        child.wait()
    assert all(bucket.exists() for bucket in buckets)
    elsewhere = fake_dead_buckets("ram://shogi_policy_test/elsewhere")  # a gs://-like output: system temp dir
    run_convert(f"--inputs={games}", f"--output_dir={output}", "--overwrite")
    assert not any(bucket.exists() for bucket in buckets)
    assert not [name for name in os.listdir(output) if name.startswith(".")]
    assert elsewhere.exists(), "only the buckets of the same output are removed"
    run_convert(f"--inputs={games}", "--output_dir=ram://shogi_policy_test/elsewhere")
    assert not elsewhere.exists()


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--log_every=0", "--log_every must be an integer >= 1, got 0"),
        ("--seed=-1", "--seed must be an integer in [0, 2^63), got -1"),
        (f"--seed={2**63}", "--seed must be an integer in [0, 2^63)"),
        ("--positions_per_shard=0", "--positions_per_shard must be an integer >= 1, got 0"),
        ("--min_plies=-2", "--min_plies must be an integer >= 0, got -2"),
        ("--min_rating=nan", "--min_rating must be a finite number, got nan"),
    ],
)
def test_every_converter_flag_is_checked_naming_it(tmp_path, flag, message):
    """Issue 19: --log_every=0 was a ZeroDivisionError, --seed=-1 a numpy message naming no flag."""
    (tmp_path / "g.usi").write_text("startpos moves 7g7f 3c3d\n")
    with pytest.raises(ValueError, match=re.escape(message)):
        run_convert(f"--inputs={tmp_path / 'g.usi'}", f"--output_dir={tmp_path / 'out'}", flag)
    assert not (tmp_path / "out").exists()


def test_a_usage_error_on_the_command_line_has_no_traceback(tmp_path):
    (tmp_path / "g.usi").write_text("startpos moves 7g7f 3c3d\n")
    result = convert_cli(
        f"--inputs={tmp_path / 'g.usi'}", f"--output_dir={tmp_path / 'out'}", "--log_every=0"
    )
    assert result.returncode == 1 and "--log_every must be an integer >= 1, got 0" in result.stderr
    assert "Traceback" not in result.stderr


def no_space_left(path):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["buckets", "shards"])
def test_a_full_disk_is_a_sentence_naming_the_file(tmp_path, monkeypatch, where):
    """Issue 19: a conversion onto a full disk ended in an ENOSPC traceback naming no path."""
    (tmp_path / "g.usi").write_text("startpos moves 7g7f 3c3d\n")
    if where == "buckets":  # the temporary buckets are written with open()
        monkeypatch.setattr(shards, "open", lambda path, mode: no_space_left(path), raising=False)
    else:  # shards and the manifest go through file_io, which writes local files with open()
        monkeypatch.setattr(file_io, "open", lambda path, mode: no_space_left(path), raising=False)
    with pytest.raises(ValueError, match=r"cannot write .*out/.*: No space left on device") as error:
        run_convert(f"--inputs={tmp_path / 'g.usi'}", f"--output_dir={tmp_path / 'out'}")
    assert ("bucket-" in str(error.value)) == (where == "buckets")


def test_one_huge_token_is_quoted_capped_in_the_manifest_and_stderr(tmp_path):
    """Issue 19: one 150 MB token was quoted whole into stderr and manifest.json."""
    huge = "7g7f" * 500_000
    (tmp_path / "g.usi").write_text(f"startpos moves 7g7f 3c3d\nstartpos moves {huge}\nsfen {huge} b - 1\n")
    manifest = run_convert(f"--inputs={tmp_path / 'g.usi'}", f"--output_dir={tmp_path / 'out'}")
    examples = manifest["skipped"]["error_examples"]
    assert len(examples) == 2 and all(len(example) < 400 for example in examples), examples
    assert all(re.search(r"'(7g7f){20}'\.\.\. \(2,000,00\d characters\)", example) for example in examples)
    assert (tmp_path / "out" / shard_manifest.MANIFEST).stat().st_size < 10_000
