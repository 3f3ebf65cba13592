"""ShogiArena as our arena: the gauntlet's files against ShogiArena's own validation, a 2-game tournament of our
engine against fairy-stockfish under ShogiArena's default rules (games replayed with cshogi), and its games
through scripts/data_import/arena_games.py into the converter's reader.

Skipped without the arena extra (pip install -e '.[arena]') or, for the games, without Debian's fairy-stockfish.
"""

import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import cshogi
import pytest

from shogi_policy.arena import shogiarena as arena
from shogi_policy.data import game_io, records

SHOGIARENA = shutil.which("shogiarena")
ROOT = Path(__file__).resolve().parents[1]
needs_shogiarena = pytest.mark.skipif(SHOGIARENA is None, reason="shogiarena not installed (the arena extra)")
needs_fairy_stockfish = pytest.mark.skipif(
    not os.access(arena.FAIRY_STOCKFISH, os.X_OK), reason="fairy-stockfish not installed"
)


def _shogiarena(*args, timeout):
    result = subprocess.run([SHOGIARENA, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result


@needs_shogiarena
def test_gauntlet_and_sprt_files_pass_shogiarenas_validation(tmp_path):
    openings = tmp_path / "openings.sfen"
    openings.write_text("startpos moves 7g7f 3c3d\nstartpos moves 2g2f 8c8d\n")
    sprt = arena.write_sprt(tmp_path / "sprt", tmp_path / "a", tmp_path / "b", 0, 30, openings)
    _shogiarena("run", "sprt", sprt, "--validate-only", timeout=120)
    opened = arena.write_gauntlet(tmp_path / "opened", tmp_path, ["gps_d4"], ["T1"], 4, openings=openings)
    _shogiarena("run", "tournament", opened, "--validate-only", timeout=120)
    config = arena.write_gauntlet(
        tmp_path, tmp_path / "export", list(arena.OPPONENTS), list(arena.PLAYERS), 10
    )
    _shogiarena("run", "tournament", config, "--validate-only", timeout=120)
    written = json.loads(config.read_text())
    names = [engine["name"] for engine in written["engines"]]
    assert names == ["ours_T0", "ours_T1", *arena.OPPONENTS]
    assert written["tournament"]["baseline_count"] == 2 and written["rules"] == {}  # ShogiArena's defaults
    with pytest.raises(ValueError, match="unknown opponent 'fsf_d9'"):
        arena.write_gauntlet(tmp_path, tmp_path, ["fsf_d9"], ["T0"], 1)


@needs_shogiarena
def test_every_shogiarena_result_maps_to_ours():
    from rsshogi.record import GameResult

    board = cshogi.Board()
    for name in (name for name in dir(GameResult) if name.isupper()):
        value = getattr(GameResult, name)
        outcome = arena._outcome(name, board)
        if value.is_black_win() or value.is_white_win() or value.is_draw():
            expected = (
                "black_win" if value.is_black_win() else "white_win" if value.is_white_win() else "draw"
            )
            assert outcome[0] == expected and outcome[1] in game_io.ENDINGS, name
        else:
            assert outcome is None, name


def _check_on_the_board(game):
    """Replays a game with cshogi and checks that its result follows from the final position (the game ended on
    the board: no timeout, illegal move, crash or adjudication by score)."""
    board = cshogi.Board(game["sfen"])
    for usi in game["moves"]:
        move = board.move_from_usi(usi)
        assert move in board.legal_moves, (usi, board.sfen())
        board.push(move)
    mover_lost = "white_win" if board.turn == cshogi.BLACK else "black_win"
    if game["ending"] == "mate":
        assert not board.legal_moves and game["result"] == mover_lost
    elif game["ending"] == "declare":
        assert board.is_nyugyoku() and game["result"] != mover_lost
    elif game["ending"] == "repetition":  # ShogiArena's default: the 2nd occurrence of a position draws
        assert board.is_draw() == cshogi.REPETITION_DRAW and game["result"] == "draw"
    elif game["ending"] == "perpetual_check":
        mover_won = "black_win" if mover_lost == "white_win" else "white_win"
        expected = {cshogi.REPETITION_WIN: mover_won, cshogi.REPETITION_LOSE: mover_lost}  # the checker loses
        assert game["result"] == expected.get(board.is_draw()), game
    else:
        # ShogiArena's default max_plies: 320, synced to the engines' Draw_Ply.
        assert game["ending"] == "max_plies" and game["plies"] == 320 and game["result"] == "draw", game


def _two_games(config, run_dir):
    """Plays a 2-game gauntlet config with ShogiArena into run_dir; its games (arena.run_games), all completed."""
    _shogiarena("run", "tournament", config, "--run-dir", run_dir, timeout=300)
    status = json.loads((run_dir / "completion_status.json").read_text())
    assert (status["completed"], status["error_games"], status["not_played"]) == (2, 0, 0), status
    return arena.run_games(run_dir / "game.db")


@pytest.mark.slow
@needs_shogiarena
@needs_fairy_stockfish
def test_two_games_against_fairy_stockfish_under_default_rules(tiny_export, tmp_path):
    """Slow-ish end to end (about 15-30 s): engine start-up, two games, the records back out."""
    config = arena.write_gauntlet(tmp_path, tiny_export[1], ["fsf_d1"], ["T0"], games_per_pair=2)
    games = _two_games(config, tmp_path / "run")
    assert len(games) == 2
    assert sorted(game["black"] for game in games) == ["fsf_d1", "ours_T0"]  # one game with each colour
    for game in games:
        _check_on_the_board(game)
        assert game["plies"] == len(game["moves"])  # from the start position
    table = arena.score_table(games, {"fsf_d1": "fairy-stockfish depth 1"}, {"ours_T0": "T0"})
    wins, draws, losses = map(int, table.splitlines()[2].split("|")[4].split("/"))
    assert wins + draws + losses == 2

    output = tmp_path / "games.usi.gz"
    script = [
        sys.executable,
        str(ROOT / "scripts" / "data_import" / "arena_games.py"),
        f"--run_dirs={tmp_path / 'run'}",
    ]
    done = subprocess.run([*script, f"--output={output}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    read = list(records.read_games(str(output)))
    assert [type(game) for game in read] == [game_io.Game, game_io.Game]
    assert [(len(game.moves), game.result, game.ending) for game in read] == [
        (len(game["moves"]), game["result"], game["ending"]) for game in games
    ]


@pytest.mark.slow
@needs_shogiarena
@needs_fairy_stockfish
def test_two_games_from_inside_a_virtualenv(tiny_export, tmp_path):
    """The gauntlet written by a virtualenv's Python plays our engine under that Python, not the base interpreter
    its bin/python links to (ShogiArena resolves symlinks: every game failed). The virtualenv sees this
    interpreter's packages (--system-site-packages, and this one's site directories when it is a virtualenv too);
    a .pth file of its own marks the engine processes that start in it."""
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120
    )
    python = venv / "bin" / "python"
    assert python.is_symlink()
    marker = tmp_path / "engine_argv"
    (site_packages,) = (venv / "lib").glob("python3*/site-packages")
    (site_packages / "zz_engine_marker.pth").write_text(
        f'import sys, pathlib; "usi" in sys.argv and pathlib.Path({str(marker)!r}).write_text(" ".join(sys.argv))\n'
    )
    # Run from inside a virtualenv (CI in an activated one), the new one's system site is the base's, not ours.
    outer = [path for path in site.getsitepackages() if Path(path).is_dir()]
    (site_packages / "outer_site.pth").write_text(f"import site; [site.addsitedir(p) for p in {outer!r}]\n")
    write = "import sys; from shogi_policy.arena import shogiarena as a; "
    write += 'print(a.write_gauntlet(sys.argv[1], sys.argv[2], ["fsf_d1"], ["T0"], games_per_pair=2))'
    written = subprocess.run(
        [str(python), "-c", write, str(tmp_path / "gauntlet"), str(tiny_export[1])],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert written.returncode == 0, written.stderr[-3000:]
    games = _two_games(Path(written.stdout.strip().splitlines()[-1]), tmp_path / "run")
    assert len(games) == 2
    assert marker.read_text().split()[:2] == ["-m", "usi"], "the engine ran under the virtualenv's Python"
