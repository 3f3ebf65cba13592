"""scripts/generate_games.py against a real USI engine, and the shipped games file, refereed by cshogi."""

import collections
import gzip
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import cshogi
import pytest
from conftest import referee_game_line

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "generate_games.py"
SHIPPED = ROOT / "data" / "engine_games.usi.gz"
ENGINE = shutil.which("fairy-stockfish") or "/usr/games/fairy-stockfish"


@pytest.fixture
def engine():
    if not Path(ENGINE).exists():
        pytest.skip("fairy-stockfish not installed")
    return ENGINE


def _generate(output, openings, games, max_plies=30):
    """Runs the script for `games` depth-1 games; returns its log (stderr)."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT), f"--output={output}", f"--games={games}", "--depth=1",
         f"--max_plies={max_plies}", f"--openings={openings}", "--min_opening_plies=4",
         "--max_opening_plies=12", f"--engine={ENGINE}", "--workers=1", "--seed=3"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stderr


def _read_lines(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


@pytest.mark.parametrize("use_shared", [True, False], ids=["floodgate_openings", "random_openings"])
def test_generated_games_are_legal_and_refereed(engine, tmp_path, use_shared):
    shared = ROOT.parent / "shared" / "data" / "floodgate_openings" / "records2016_10818.sfen"
    if use_shared and not shared.exists():
        pytest.skip(f"{shared} not present")
    openings = shared if use_shared else tmp_path / "absent.sfen"
    output = tmp_path / "games.usi.gz"
    _generate(output, openings, games=3)
    lines = _read_lines(output)
    assert len(lines) == 3 and len(set(lines)) == 3
    for line in lines:
        referee_game_line(line, max_plies=30)
    label = "records2016_10818.sfen:" if use_shared else "random:"
    assert all(f"opening={label}" in line.split("\t")[2] for line in lines)
    if use_shared:  # the opening is a prefix of a floodgate line
        floodgate = shared.read_text().splitlines()
        for line in lines:
            number, plies = line.split("opening=")[1].split()[0].split(":")[1:]
            moves = line.split("\t")[0].split()[2:]
            assert floodgate[int(number) - 1].split()[2 : 2 + int(plies)] == moves[: int(plies)]


def test_resume_skips_done_games_and_replays_identically(engine, tmp_path):
    fresh, resumed = tmp_path / "fresh.usi.gz", tmp_path / "resumed.usi.gz"
    absent = tmp_path / "absent.sfen"
    _generate(fresh, absent, games=3)
    _generate(resumed, absent, games=2)
    first_two = _read_lines(resumed)
    # An interrupted run leaves a partial line in the part file: it must be ignored and replayed.
    Path(str(resumed) + ".part").write_text(_read_lines(fresh)[2][:25])
    log = _generate(resumed, absent, games=3)
    assert "2 already done, 1 to play" in log
    assert _read_lines(resumed)[:2] == first_two
    assert _read_lines(resumed) == _read_lines(fresh)
    assert not Path(str(resumed) + ".part").exists()


def test_plan_games_gives_distinct_reproducible_openings():
    spec = importlib.util.spec_from_file_location("generate_games", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # 36 lines sharing their first two plies: cuts of 2 or 3 plies repeat, so most games must lengthen.
    moves = [("7g7f", "3c3d", f"{a}g{a}f", f"{b}c{b}d") for a in range(1, 10) for b in range(1, 5)]
    lines = list(enumerate(moves, start=1))
    plan = module.plan_games(30, 1, lines, "x", 2, 4)
    assert plan == module.plan_games(30, 1, lines, "x", 2, 4)
    assert [spec.index for spec in plan] == list(range(30))
    assert len({spec.opening for spec in plan}) == 30
    for spec in plan:
        number, plies = map(int, spec.opening_label.split(":")[1:])
        assert spec.opening == moves[number - 1][:plies] and 2 <= plies <= 4
    with pytest.raises(module.app.UsageError):
        module.plan_games(37, 1, lines, "x", 2, 4)


def test_shipped_games_are_legal_and_refereed():
    if not SHIPPED.exists():
        pytest.skip(f"{SHIPPED} not generated")
    lines = _read_lines(SHIPPED)
    assert len(set(lines)) == len(lines)
    assert len({line.split("\t")[0] for line in lines}) == len(lines), "duplicate games"
    positions = sum(
        referee_game_line(line, max_plies=256) for line in lines
    )  # data/README.md: --max_plies=256
    assert positions >= 100_000
    results = collections.Counter(line.split("\t")[1] for line in lines)
    assert min(results["black_win"], results["white_win"]) >= 0.25 * len(lines)
    # The engine resigns when it sees a forced mate against it. cshogi's mate search (checking moves
    # only, 7 plies) proves about 3/4 of them (the rest need quiet moves or more plies) and none
    # when the other side is made to resign.
    resigned = [_final_board(line) for line in lines if line.endswith("\tresign")]
    proved = sum(all(_mated_after(board, move, 7) for move in board.legal_moves) for board in resigned)
    assert proved >= 0.6 * len(resigned)


def _final_board(line):
    board = cshogi.Board()
    for usi in line.split("\t")[0].split()[2:]:
        board.push_usi(usi)
    return board


def _mated_after(board, move, plies):
    """Whether, after `move`, the opponent mates within `plies` (cshogi's checking-move search)."""
    board.push(move)
    mates = bool(board.mate_move(plies))
    board.pop()
    return mates
