"""shogi-policy-convert and the shard writer: manifest, filters, split by game, shuffle, determinism."""

import collections
import os

import numpy as np
import pytest
import tensorflow as tf
from absl import app, flags
from conftest import SHARED_DATA

from shogi_policy import convert, encoding, records, shards


def run_app(*args):
    """Runs shogi-policy-convert with command-line args on fresh flag values; returns the manifest."""
    options = flags.FlagValues()
    convert.define_flags(options)
    options(["shogi-policy-convert", *args])
    convert.convert_with_options(options)
    return shards.read_manifest(options.output_dir)


def read_split(data_dir, split):
    """All records of a split, shard by shard: list of uint8 [n, 100]."""
    return [
        np.frombuffer(tf.io.gfile.GFile(path, "rb").read(), np.uint8).reshape(-1, encoding.RECORD_BYTES)
        for path in shards.shard_paths(data_dir, split)
    ]


def game_signatures(records_):
    """{game id: frozenset of its positions' bytes without the game id}: a game's content identity."""
    fields = encoding.unpack_records(records_)
    positions = collections.defaultdict(set)
    for game_id, record in zip(fields["game_id"].tolist(), records_, strict=True):
        positions[game_id].add(record[: encoding.GAME_ID_OFFSET].tobytes())
    return {game_id: frozenset(p) for game_id, p in positions.items()}


def sorted_positions(records_):
    """The records without their game ids, as sorted opaque 97-byte items."""
    without_ids = np.ascontiguousarray(records_[:, : encoding.GAME_ID_OFFSET])
    return np.sort(without_ids.view(f"V{encoding.GAME_ID_OFFSET}").ravel())


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
    manifest = run_app(*args, f"--output_dir={output}")
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
    assert manifest["record_bytes"] == encoding.RECORD_BYTES == 100 and manifest["seed"] == 3
    assert splits["train"]["games"] + splits["test"]["games"] == 1291 + 100
    assert splits["train"]["positions"] + splits["test"]["positions"] == 127415 + csa_positions
    assert 0.05 < splits["test"]["games"] / 1391 < 0.15
    bad_count, bad_example = converted["bad"]
    assert manifest["skipped"]["error"] == bad_count
    assert bad_example in manifest["skipped"]["error_examples"]
    assert all(":" in message for message in manifest["skipped"]["error_examples"])
    for split in shards.SPLITS:
        sizes = [len(r) for r in read_split(output, split)]
        assert sum(sizes) == splits[split]["positions"] and max(sizes) <= 20000
        assert splits[split]["files"] == [shards.shard_name(split, i, len(sizes)) for i in range(len(sizes))]
    assert sorted(os.listdir(output)) == sorted(
        [shards.MANIFEST, *splits["train"]["files"], *splits["test"]["files"]]
    )


def test_shards_hold_exactly_the_positions_of_the_games(converted):
    """The multiset of positions (game ids aside) equals games_to_records of every input game."""
    usi = list(records.read_games(str(SHARED_DATA / "floodgate_games" / "games.usi")))
    expected = records.games_to_records(usi + usi[:100], np.zeros(1391, dtype=np.int64))
    stored = np.concatenate([r for split in shards.SPLITS for r in read_split(converted["output"], split)])
    assert np.array_equal(sorted_positions(stored), sorted_positions(expected))


def test_split_never_shares_a_game_even_across_formats(converted):
    train = game_signatures(np.concatenate(read_split(converted["output"], "train")))
    test = game_signatures(np.concatenate(read_split(converted["output"], "test")))
    assert not set(train) & set(test)  # game ids
    assert not set(train.values()) & set(test.values())  # contents: the CSA copy joins its USI twin
    assert len(train) + len(test) == 1391
    assert len(set(train.values())) + len(set(test.values())) == 1291


def test_shards_are_shuffled_across_the_split(converted):
    first = read_split(converted["output"], "train")[0]
    fields = encoding.unpack_records(first[:1000])
    assert len(set(fields["game_id"].tolist())) > 500  # 1000 contiguous records from many games
    plies = np.bincount(fields["turn"], minlength=2)
    assert min(plies) > 400


def test_same_seed_same_shards_other_seed_other_shards(converted, tmp_path):
    again = run_app(*converted["args"], f"--output_dir={tmp_path / 'again'}")
    assert again["splits"] == converted["manifest"]["splits"]
    for split in shards.SPLITS:
        for a, b in zip(
            read_split(converted["output"], split), read_split(tmp_path / "again", split), strict=True
        ):
            assert np.array_equal(a, b)
    run_app(*converted["args"][:-1], "--seed=4", f"--output_dir={tmp_path / 'other'}")
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
            text = text.replace("%TORYO", "%SENNICHITE")
        (directory / f"g{i}.csa").write_text(text)
        games.extend(records.read_games(str(directory / f"g{i}.csa")))
    return games


def test_filters_rating_plies_endings_draws(tmp_path):
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present")
    games = rated_csa_files(tmp_path / "csa")
    plies = sorted(len(g.moves) for g in games)
    min_plies = plies[3]
    manifest = run_app(
        f"--inputs={tmp_path / 'csa'}",
        f"--output_dir={tmp_path / 'out'}",
        "--min_rating=3300",
        f"--min_plies={min_plies}",
        "--endings=resign,repetition",
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
    required = run_app(
        f"--inputs={tmp_path / 'csa'}", f"--output_dir={tmp_path / 'req'}", "--require_ratings"
    )
    assert required["skipped"]["no_rating"] == 1  # ... but not --require_ratings
    declared = run_app(
        f"--inputs={tmp_path / 'csa'}", f"--output_dir={tmp_path / 'decl'}", "--endings=declare"
    )
    assert declared["skipped"]["ending"] == 10 and declared["splits"]["train"]["files"] == []


def test_gfile_output_dir_existing_output_and_usage_errors(tmp_path):
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present")
    csa = str(SHARED_DATA / "floodgate_games" / "csa" / "game_0000*.csa")
    ram = "ram://shogi_policy_test/out"  # a non-local TF filesystem, as gs:// would be
    manifest = run_app(f"--inputs={csa}", f"--output_dir={ram}", "--positions_per_shard=300")
    assert sum(len(r) for r in read_split(ram, "train")) == manifest["splits"]["train"]["positions"] > 0
    assert not [name for name in tf.io.gfile.listdir(ram) if name.endswith(".tmp")]
    with pytest.raises(app.UsageError, match="--overwrite"):
        run_app(f"--inputs={csa}", f"--output_dir={ram}")
    again = run_app(f"--inputs={csa}", f"--output_dir={ram}", "--overwrite", "--positions_per_shard=100000")
    files = [name for split in shards.SPLITS for name in again["splits"][split]["files"]]
    assert sorted(tf.io.gfile.listdir(ram)) == sorted([shards.MANIFEST, *files])  # old shards gone
    with pytest.raises(app.UsageError, match="matches no record file"):
        run_app(f"--inputs={tmp_path / 'nothing*.csa'}", f"--output_dir={tmp_path / 'x'}")
    with pytest.raises(ValueError, match="not a shard directory"):
        shards.read_manifest(str(tmp_path))


def test_shard_writer_is_a_uniform_shuffle_of_its_input(tmp_path):
    """Positions tagged 0..n-1 come back once each, in an order uncorrelated with the input."""
    n = 5000
    tagged = np.zeros((n, encoding.RECORD_BYTES), dtype=np.uint8)
    tagged[:, : encoding.GAME_ID_OFFSET] = 7
    tagged = encoding.pack_records(
        tagged[:, :81], tagged[:, 81:95], np.zeros(n), np.zeros(n), np.zeros(n), np.arange(n)
    )
    writer = shards.ShardWriter(str(tmp_path), "train", 1000, seed=0, num_buckets=8, flush_positions=700)
    for chunk in np.array_split(tagged, 13):
        writer.add(chunk)
    result = writer.close()
    assert result == {"files": [shards.shard_name("train", i, 5) for i in range(5)], "positions": n}
    order = np.concatenate(
        [
            encoding.unpack_records(np.fromfile(tmp_path / name, np.uint8))["game_id"]
            for name in result["files"]
        ]
    )
    assert sorted(order.tolist()) == list(range(n))
    assert abs(np.corrcoef(order, np.arange(n))[0, 1]) < 0.1
    assert not any(name.endswith(".tmp") for name in os.listdir(tmp_path))
