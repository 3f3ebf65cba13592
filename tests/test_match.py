"""The match runner: a 20-game match of our engine against fairy-stockfish, resume after kill -9, faulty engines,
the opening plan and the Elo interval."""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from absl import app
from conftest import referee_game_line

from shogi_policy import match, referee

FAIRY_STOCKFISH = Path("/usr/games/fairy-stockfish")

# A USI engine that plays uniformly random legal moves, except in the games its state file assigns a fault:
# argv: state_file mode... ; the n-th game it is told of (usinewgame, counted across restarts in the state
# file) uses mode[n // 2 % len(modes)], so each fault is played with both colours. The fault comes at the
# engine's second move of the game; mode 'slow' takes 50 ms a move.
FAKE_ENGINE = textwrap.dedent(
    """
    import random, sys, time
    from pathlib import Path
    import cshogi

    state, modes = (Path(sys.argv[1]), sys.argv[2:]) if len(sys.argv) > 1 else (None, ["play"])
    board, mode, moves = cshogi.Board(), "play", 0
    for line in sys.stdin:
        words = line.split()
        command = words[0] if words else ""
        if command == "usi":
            print("id name fake engine\\nusiok", flush=True)
        elif command == "isready":
            print("readyok", flush=True)
        elif command == "usinewgame":
            count = int(state.read_text()) if state and state.exists() else 0
            if state:
                state.write_text(str(count + 1))
            mode, moves = modes[count // 2 % len(modes)], 0
        elif command == "position":
            board.set_position(" ".join(words[1:]))
        elif command == "go":
            moves += 1
            fault = mode if moves == 2 else "play"
            if fault == "hang":
                time.sleep(3600)
            elif fault == "crash":
                sys.exit(3)
            elif fault == "illegal":
                print("bestmove 5e5e", flush=True)
            elif fault == "garbage":
                print("info string what is shogi\\nbestmove ++??", flush=True)
            elif fault == "win":
                print("bestmove win", flush=True)
            else:
                time.sleep(0.05 if mode == "slow" else 0)
                move = random.choice(list(board.legal_moves))
                print("info depth 1 score cp 0\\nbestmove " + cshogi.move_to_usi(move), flush=True)
        elif command == "quit":
            break
    """
)


@pytest.fixture
def fake_engine(tmp_path):
    """Command line (str) of the fake engine; append a state file and fault modes for faults."""
    script = tmp_path / "fake_engine.py"
    script.write_text(FAKE_ENGINE)
    return f"{sys.executable} {script}"


def match_command(output_dir, engine1, engine2, *extra):
    return [
        sys.executable, "-m", "shogi_policy.match", f"--engine1={engine1}", f"--engine2={engine2}",
        f"--output_dir={output_dir}", *extra,
    ]  # fmt: skip


def run_match(command, timeout=240):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def read_games(output_dir):
    return (output_dir / match.GAMES_FILE).read_text().splitlines()


def read_summary(output_dir):
    def refuse(constant):
        raise ValueError(f"summary.json holds {constant}: not JSON")

    return json.loads((output_dir / match.SUMMARY_FILE).read_text(), parse_constant=refuse)


def check_summary(summary, lines):
    """The summary's counts agree with the game lines (engine 1 Black in even games)."""
    points = [match.engine1_points(match.game_index(line), line.split("\t")[1]) for line in lines]
    assert summary["games"] == len(lines)
    assert (summary["engine1_wins"], summary["draws"], summary["engine1_losses"]) == (
        points.count(1.0),
        points.count(0.5),
        points.count(0.0),
    )
    assert summary["score"] == pytest.approx(sum(points) / len(points))
    elo = [
        summary[k] if not isinstance(summary[k], str) else float(summary[k])
        for k in ("elo_low", "elo", "elo_high")
    ]
    assert elo[0] <= elo[1] <= elo[2] and elo[0] < elo[2]


@pytest.mark.skipif(not os.access(FAIRY_STOCKFISH, os.X_OK), reason="fairy-stockfish not installed")
def test_twenty_games_against_fairy_stockfish(tiny_export, tmp_path):
    output_dir = tmp_path / "match"
    ours = f"{sys.executable} -m shogi_policy.usi --model={tiny_export[1]}"
    started = time.monotonic()
    result = run_match(
        match_command(
            output_dir, ours, FAIRY_STOCKFISH, "--games=20", "--engine1_go=",
            "--engine1_options=Softmax_Temperature=100,Temperature_Cutoff_Ply=10000", "--engine2_go=depth 1",
        ),
        timeout=400,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    lines = read_games(output_dir)
    assert sorted(map(match.game_index, lines)) == list(range(20))
    for line in lines:
        referee_game_line(line, max_plies=256)
    assert len({line.split("\t")[0] for line in lines}) > 10, "temperature 1 games should vary"
    summary = read_summary(output_dir)
    check_summary(summary, lines)
    assert summary["engine1"]["name"].startswith("shogi_policy") and not summary["faults"]
    assert summary["engine2"]["name"].startswith("Fairy-Stockfish")
    assert sum(" engine1 W/D/L " in line for line in result.stderr.splitlines()) == 20  # progress per game
    assert "Elo" in result.stdout and "95% interval" in result.stdout
    print(f"20 games in {elapsed:.0f} s: {result.stdout.strip()}")


def test_faulty_engines_lose_with_a_reason(fake_engine, tmp_path):
    state, output_dir = tmp_path / "state", tmp_path / "match"
    faulty = f"{fake_engine} {state} hang crash illegal garbage win"
    result = run_match(
        match_command(output_dir, fake_engine, faulty, "--games=10", "--openings=", "--move_timeout=2")
    )
    lines = read_games(output_dir)
    assert sorted(map(match.game_index, lines)) == list(range(10))
    endings = [line.split("\t")[3] for line in sorted(lines, key=match.game_index)]
    assert endings == ["timeout"] * 2 + ["crash"] * 2 + ["illegal"] * 6
    for line in lines:
        referee_game_line(line)
        assert "engine2" in line.split("\t")[4]
    summary = read_summary(output_dir)
    check_summary(summary, lines)
    assert summary["engine1_wins"] == 10 and summary["elo"] == "+inf"
    reasons = [fault["reason"] for fault in sorted(summary["faults"], key=lambda fault: fault["game"])]
    assert "no bestmove within 2 s" in reasons[0] and "exited with code 3" in reasons[2]
    assert "illegal move '5e5e'" in reasons[4] and "illegal move '++??'" in reasons[6]
    assert "unjustified 'win'" in reasons[8]
    assert all(reason in result.stderr for reason in reasons)  # logged as they happen
    assert int(state.read_text()) == 10  # every game was played, by a restarted engine after each fault


def test_killed_match_resumes_without_duplicates(fake_engine, tmp_path):
    output_dir = tmp_path / "match"
    command = match_command(
        output_dir, fake_engine, fake_engine, "--games=8", "--openings=", "--max_plies=60"
    )
    games = output_dir / match.GAMES_FILE
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not (games.exists() and games.read_text().count("\n") >= 3) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    first = read_games(output_dir)
    assert 3 <= len(first) < 8, "the match should have been killed part-way"
    with open(games, "a") as f:
        f.write("startpos moves 7g7f 3c")  # a write cut by the kill
    result = run_match(command)
    assert f"{len(first)} finished before, {8 - len(first)} to play" in result.stderr
    lines = read_games(output_dir)
    assert lines[: len(first)] == first
    assert sorted(map(match.game_index, lines)) == list(range(8))
    for line in lines:
        referee_game_line(line, max_plies=60)
    check_summary(read_summary(output_dir), lines)


def test_rerun_with_other_settings_is_refused(tmp_path):
    settings = {"engine1": {"command": "a"}, "seed": 0}
    match.check_settings(tmp_path / match.CONFIG_FILE, settings)
    match.check_settings(tmp_path / match.CONFIG_FILE, settings)
    with pytest.raises(app.UsageError, match="changed: seed"):
        match.check_settings(tmp_path / match.CONFIG_FILE, {**settings, "seed": 1})


def test_plan_pairs_openings_with_swapped_colours():
    lines, label = match.load_openings("")
    assert label == "builtin" and len(lines) == len(match.BUILTIN_OPENINGS) == 16
    for _, moves in lines:
        referee.Game(moves)  # legal
    plan = match.plan_games(40, 3, lines, label, 24)
    assert plan[:10] == match.plan_games(10, 3, lines, label, 24)  # a longer match extends a shorter one
    assert [spec.engine1_black for spec in plan[:4]] == [True, False, True, False]
    assert all(plan[i].opening == plan[i + 1].opening for i in range(0, 40, 2))
    assert len({spec.opening for spec in plan}) == 16  # all used, then reused in the same order
    assert plan[32].opening == plan[0].opening
    assert plan[0].opening_label.startswith("builtin:") and plan[0].opening_label.endswith(":12")
    assert match.plan_games(4, 3, lines, label, 24) != match.plan_games(4, 4, lines, label, 24)
    short = match.plan_games(4, 3, lines, label, 2)  # cut lines collapse to their distinct prefixes
    assert {spec.opening for spec in match.plan_games(40, 3, lines, label, 2)} == {("7g7f", "8c8d"),
        ("7g7f", "3c3d"), ("2g2f", "3c3d"), ("2g2f", "8c8d")} and len(short) == 4  # fmt: skip


@pytest.mark.parametrize(
    "wins, draws, losses, elo, low, high",
    [
        (10, 0, 10, 0.0, -147.8, 147.8),  # s = 1/2: Wilson 0.5 +- 0.199
        (0, 20, 0, 0.0, -147.8, 147.8),  # all draws: the binomial variance, not the sample's (none)
        (30, 0, 10, 190.8, 69.0, 312.7),  # s = 3/4: Wilson 0.598 .. 0.858
        (0, 0, 20, -math.inf, -math.inf, -286.6),  # upper bound z^2/n / (1 + z^2/n) = 0.161
        (20, 0, 0, math.inf, 286.6, math.inf),
        (1, 0, 99, -798.3, -1100.8, -495.8),
    ],
)
def test_elo_estimate(wins, draws, losses, elo, low, high):
    estimate = match.elo_estimate(wins, draws, losses)
    assert estimate["games"] == wins + draws + losses
    assert [estimate["elo"], estimate["elo_low"], estimate["elo_high"]] == pytest.approx(
        [elo, low, high], abs=0.1
    )
    assert match.elo_estimate(0, 0, 0)["elo"] is None


@pytest.mark.skipif(not os.access(FAIRY_STOCKFISH, os.X_OK), reason="fairy-stockfish not installed")
def test_strength_table_script(tiny_export, tmp_path):
    script = Path(__file__).resolve().parents[1] / "scripts" / "strength_table.py"
    command = [
        sys.executable,
        str(script),
        f"--model={tiny_export[1]}",
        f"--output_dir={tmp_path}",
        "--games=2",
    ]
    result = run_match([*command, "--opponents=fsf_d1", "--temperatures=T1"])
    rows = (tmp_path / "table.md").read_text().splitlines()
    assert len(rows) == 3 and rows[2].startswith("| fairy-stockfish depth 1 | T1 | 2 | ")
    assert rows[2] in result.stdout
    summary = read_summary(tmp_path / "fsf_d1_T1")
    assert summary["engine1"]["options"] == ["Softmax_Temperature=100", "Temperature_Cutoff_Ply=10000"]
    assert summary["engine2"]["go"] == "depth 1" and summary["wall_seconds"] > 0
