"""Each game once: inputs resolved to real files once, games identified by content, duplicates dropped and
counted before the split, so no game is ever on both sides of it (issue 19)."""

import collections
import datetime
import gzip
import os
from pathlib import Path

import cshogi
import cshogi.CSA
import cshogi.KIF
from conftest import random_game_moves, run_convert
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shogi_policy.core import record_format
from shogi_policy.data import convert, shard_manifest, shards

FLOODGATE = Path(__file__).resolve().parents[1] / "data" / "floodgate_games.usi.gz"


def games_by_split(data_dir):
    """{split: {game id: frozenset of its positions without the game id}} of a shard directory."""
    result = {}
    for split in shards.SPLITS:
        games = collections.defaultdict(set)
        for _, records_ in shards.read_records(data_dir, split):
            ids = record_format.unpack_records(records_)["game_id"].tolist()
            for game_id, record in zip(ids, records_, strict=True):
                games[game_id].add(record[: record_format.GAME_ID_OFFSET].tobytes())
        result[split] = {game_id: frozenset(positions) for game_id, positions in games.items()}
    return result


def assert_each_game_once(data_dir, distinct_games, positions):
    splits = games_by_split(data_dir)
    train, test = (set(splits[split].values()) for split in shards.SPLITS)
    assert not train & test, "a game on both sides of the split"
    assert len(splits["train"]) + len(splits["test"]) == len(train) + len(test) == distinct_games
    manifest = shard_manifest.read_manifest(data_dir)
    assert sum(manifest["splits"][split]["positions"] for split in shards.SPLITS) == positions


def floodgate_lines(count):
    with gzip.open(FLOODGATE, "rt", encoding="utf-8") as stream:
        return [next(stream).rstrip("\n") for _ in range(count)]


def test_the_issue_example_startpos_and_sfen_move_3_spellings_are_one_game(tmp_path):
    """The same games as 'startpos moves ...' and 'sfen <startpos> b - 3 moves ...', --test_fraction=0.5:
    658 of 1,266 test games were also in train."""
    lines = floodgate_lines(300)
    sfen = " ".join(cshogi.STARTING_SFEN.split()[:3])
    (tmp_path / "a.usi").write_text("\n".join(lines) + "\n")
    respelled = [line.replace("startpos moves", f"sfen {sfen} 3 moves", 1) for line in lines]
    (tmp_path / "b.usi").write_text("\n".join(respelled) + "\n")
    output = tmp_path / "out"
    manifest = run_convert(
        f"--inputs={tmp_path / 'a.usi'},{tmp_path / 'b.usi'}", f"--output_dir={output}", "--test_fraction=0.5"
    )
    assert manifest["skipped"]["duplicate"] == 300
    positions = sum(len(line.split("\t")[0].split()) - 2 for line in lines)
    assert_each_game_once(str(output), 300, positions)


def test_one_file_named_three_ways_is_read_once(tmp_path, monkeypatch):
    """'in/a.usi,./in/a.usi,in/../in/a.usi' gave 3x the games."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.usi").write_text("\n".join(floodgate_lines(5)) + "\n")
    (tmp_path / "link.usi").symlink_to(tmp_path / "in" / "a.usi")
    monkeypatch.chdir(tmp_path)
    paths, ignored = convert.expand_inputs(["in/a.usi,./in/a.usi,in/../in/a.usi", "link.usi", "in/*.usi"])
    assert paths == [str(tmp_path / "in" / "a.usi")] and ignored == []
    manifest = run_convert("--inputs=in/a.usi,./in/a.usi,in/../in/a.usi,link.usi", "--output_dir=out")
    assert manifest["input_files"] == 1 and manifest["skipped"]["duplicate"] == 0
    assert sum(manifest["splits"][split]["games"] for split in shards.SPLITS) == 5


def test_a_symlink_loop_is_walked_once_and_upper_case_gz_is_read(tmp_path):
    """A directory holding a link to itself gave 123 games for 3; a .USI.GZ file in a directory was skipped."""
    games = tmp_path / "games"
    (games / "sub").mkdir(parents=True)
    lines = floodgate_lines(6)
    (games / "a.usi").write_text("\n".join(lines[:3]) + "\n")
    with gzip.open(games / "sub" / "B.USI.GZ", "wt", encoding="utf-8") as stream:
        stream.write("\n".join(lines[3:]) + "\n")
    (games / "sub" / "loop").symlink_to(games)
    (games / "notes.md").write_text("not a record")
    paths, ignored = convert.expand_inputs([str(games)])
    assert paths == sorted([str(games / "a.usi"), str(games / "sub" / "B.USI.GZ")])
    assert ignored == [str(games / "notes.md")]
    manifest = run_convert(f"--inputs={games}", f"--output_dir={tmp_path / 'out'}")
    assert sum(manifest["splits"][split]["games"] for split in shards.SPLITS) == 6
    assert manifest["ignored_files"] == {"count": 1, "examples": [str(games / "notes.md")]}


# ---------------------------------------------------------------------------- the property


def usi_spelling(moves, number):
    """A USI game line: 'startpos moves ...' (number 0) or 'sfen <the initial position> <number> moves ...'."""
    usi = " ".join(cshogi.move_to_usi(move) for move in moves)
    if number == 0:
        return f"startpos moves {usi}"
    return f"{'position ' if number % 2 else ''}sfen {' '.join(cshogi.STARTING_SFEN.split()[:3])} {number} moves {usi}"


def csa_spelling(moves, per_line):
    """A CSA game, per_line moves a line (comma-separated), each with a time."""
    board, statements = cshogi.Board(), []
    for move in moves:
        statements.append(f"{'+-'[board.turn]}{cshogi.move_to_csa(move)},T1")
        board.push(move)
    lines = [",".join(statements[i : i + per_line]) for i in range(0, len(statements), per_line)]
    return "\n".join(["V2.2", "N+a", "N-b", "PI", "+", *lines, "%TORYO", ""])


def kif_spelling(path, moves):
    exporter = cshogi.KIF.Exporter(str(path))
    exporter.header(["a", "b"], datetime.datetime(2026, 1, 1))
    for move in moves:
        exporter.move(move)
    exporter.end("resign")
    exporter.close()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seeds=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=4, unique=True),
    copies=st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from(["usi", "usi.gz", "csa", "kifu"]), st.integers(0, 9)),
        min_size=1,
        max_size=10,
    ),
    names=st.lists(st.sampled_from(["plain", "dot", "parent", "link", "glob"]), min_size=1, max_size=4),
    test_fraction=st.sampled_from([0.3, 0.5, 0.9]),
)
def test_duplicates_under_any_spelling_format_and_path_are_each_one_game(
    tmp_path_factory, seeds, copies, names, test_fraction
):
    root = tmp_path_factory.mktemp("dupes")
    games = [random_game_moves(seed, 20 + seed % 30) for seed in seeds]
    games = [moves for moves in games if moves]
    inputs = root / "in"
    inputs.mkdir()
    used = set()
    for index, (game, extension, variant) in enumerate(copies):
        moves = games[game % len(games)]
        used.add(game % len(games))
        path = inputs / f"copy{index}.{extension}"
        if extension == "usi":
            path.write_text(usi_spelling(moves, variant) + "\n")
        elif extension == "usi.gz":
            path = path.with_name(path.name.upper())
            with gzip.open(path, "wt", encoding="utf-8") as stream:
                stream.write(usi_spelling(moves, variant) + "\n")
        elif extension == "csa":
            path.write_text(csa_spelling(moves, 1 + variant % 4))
        else:
            kif_spelling(path, moves)
    (root / "link").symlink_to(inputs)
    spelled = {
        "plain": str(inputs),
        "dot": f"{inputs}/.",
        "parent": f"{inputs}/../in",
        "link": str(root / "link"),
        "glob": f"{inputs}/*",
    }
    output = root / "out"
    entries = ",".join(spelled[name] for name in names)
    manifest = run_convert(
        f"--inputs={entries}", f"--output_dir={output}", f"--test_fraction={test_fraction}"
    )
    assert manifest["skipped"]["duplicate"] == len(copies) - len(used)
    assert_each_game_once(str(output), len(used), sum(len(games[game]) for game in used))
    assert not any(name.startswith(".") for name in os.listdir(output))
