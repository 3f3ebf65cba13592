"""Glue to ShogiArena (pip install -e '.[arena]'), which plays our engine's games: the strength table's gauntlet
as ShogiArena configuration files, and the finished games of a run read back from its game.db.

ShogiArena starts every engine in an empty environment (no PATH, no PYTHONPATH) and resolves symlinks in its path, so
our engine is a small /bin/sh script that names this interpreter as it is (a virtualenv's bin/python is a symlink to
the base interpreter) with `-m shogi_policy.cli usi`, and passes PYTHONPATH on when set (a checkout that is not
installed). The files are JSON, which YAML reads. docs/strength.md shows the commands that use this
(scripts/strength/strength_table.py, scripts/data_import/arena_games.py).
"""

import os
import shlex
import sqlite3
import sys
from pathlib import Path

import cshogi

from shogi_policy.core import file_io, shogi_rules

FAIRY_STOCKFISH = "/usr/games/fairy-stockfish"
GPSSHOGI = "/usr/games/gpsusi"
# Fairy-stockfish and gpsshogi have no draw-ply option: under ShogiArena's default rules (max_plies synced to
# the engines' Draw_Ply or MaxMovesToDraw) strict option checking refuses them; 'warn' sends it and goes on.
OPPONENT_RUNTIME = {"option_validation": "warn"}


def _fairy_stockfish(depth, skill=None):
    """(description, engine file, tournament entry) of fairy-stockfish searching to depth, at Skill Level skill."""
    options = {"options": {"Skill Level": skill}} if skill is not None else {}
    return (
        f"fairy-stockfish depth {depth}" + (f", Skill Level {skill}" if skill is not None else ""),
        {"engine_path": FAIRY_STOCKFISH, **OPPONENT_RUNTIME},
        {**options, "time_control": {"depth_limit": depth}},
    )


# The strength table's opponents: name -> (description, engine file, tournament entry: options, time_control).
OPPONENTS = {
    "fsf_d1_skill-5": _fairy_stockfish(1, skill=-5),
    "fsf_d1": _fairy_stockfish(1),
    "fsf_d2": _fairy_stockfish(2),
    "fsf_d3": _fairy_stockfish(3),
    # LimitDepth's minimum is 4; no opening book, one thread; the depth ends the search before the byoyomi.
    "gps_d4": (
        "gpsshogi LimitDepth 4 (its lowest), no book",
        {"engine_path": GPSSHOGI, **OPPONENT_RUNTIME},
        {
            "options": {"LimitDepth": 4, "BookDepth": 0, "Thread": 1},
            "time_control": {"time_ms": 0, "byoyomi_ms": 10000},
        },
    ),
}
# Our players: greedy, and sampling at temperature 1 throughout the game.
PLAYERS = {
    "T0": {"Softmax_Temperature": 0},
    "T1": {"Softmax_Temperature": 100, "Temperature_Cutoff_Ply": 10000},
}
# Our engine answers at once; the byoyomi only bounds the wait on a stuck process.
OUR_TIME_CONTROL = {"time_ms": 0, "byoyomi_ms": 10000}
RESULTS = {"BLACK_WIN": "black_win", "WHITE_WIN": "white_win", "DRAW": "draw"}
# ShogiArena's GameResult name after the result -> the ending column of our USI game lines (game_io.ENDINGS).
ENDINGS = {
    "BY_DECLARATION": "declare",
    "BY_TIMEOUT": "timeout",
    "BY_ILLEGAL_MOVE": "illegal",
    "BY_FORFEIT": "abort",
    "BY_MAX_PLIES": "max_plies",
    "BY_REPETITION": "repetition",
    "BY_IMPASSE": "impasse",
}


def our_engine_script(model):
    """A /bin/sh script that starts shogi-policy-usi on the export directory `model` under this interpreter.

    The interpreter is named as sys.executable names it, inside the script: ShogiArena resolves symlinks in an
    engine's path, and a virtualenv's bin/python is a symlink to the base interpreter, which would start without
    the virtualenv's packages. The launcher keeps the engine off the TPU and on TensorFlow; PYTHONPATH is passed
    on when set (ShogiArena starts engines in an empty environment).
    """
    command = [sys.executable, "-m", "shogi_policy.cli", "usi", f"--model={Path(model).resolve()}"]
    pythonpath = os.environ.get("PYTHONPATH")
    environment = f"PYTHONPATH={shlex.quote(pythonpath)} " if pythonpath else ""
    return f'#!/bin/sh\n{environment}exec {shlex.join(command)} "$@"\n'


def write_our_engine(engines_dir, name, model):
    """Writes our engine on the export directory `model` into engines_dir: NAME.sh (our_engine_script) and its
    ShogiArena engine file NAME.yaml. Returns the path of NAME.yaml."""
    script = Path(engines_dir) / f"{name}.sh"
    file_io.write_file_atomic(str(script), our_engine_script(model).encode("utf-8"))
    script.chmod(0o755)
    path = Path(engines_dir) / f"{name}.yaml"
    file_io.write_json(path, {"engine_path": str(script.resolve())})
    return path


def write_gauntlet(directory, model, opponents, players, games_per_pair, num_parallel=1, openings=None):
    """Writes the strength table's gauntlet into directory: gauntlet.yaml and engines/NAME.yaml. Returns the
    path of gauntlet.yaml.

    Each of our `players` (PLAYERS keys) plays each of the `opponents` (OPPONENTS keys) games_per_pair games;
    ours come first, as the gauntlet's baselines, so they never play each other. With `openings` (a file of
    'startpos moves ...' lines) each game starts from one of its lines, drawn without replacement and played
    with both colours; without, from the start position (a greedy player against a fixed-depth engine then
    replays one game per colour). The other rules are ShogiArena's defaults (320-ply limit synced to the engines).
    """
    for name in opponents:
        if name not in OPPONENTS:
            raise ValueError(f"unknown opponent {name!r}; expected one of {', '.join(OPPONENTS)}")
    for name in players:
        if name not in PLAYERS:
            raise ValueError(f"unknown player {name!r}; expected one of {', '.join(PLAYERS)}")
    engines_dir = Path(directory) / "engines"
    engines_dir.mkdir(parents=True, exist_ok=True)
    ours = write_our_engine(engines_dir, "ours", model)
    entries = [
        {"name": f"ours_{name}", "engine_path": str(ours), "options": PLAYERS[name],
         "time_control": OUR_TIME_CONTROL}
        for name in players
    ]  # fmt: skip
    for name in opponents:
        _, engine_file, entry = OPPONENTS[name]
        file_io.write_json(engines_dir / f"{name}.yaml", engine_file)
        entries.append({"name": name, "engine_path": str(engines_dir / f"{name}.yaml"), **entry})
    config = {
        "experiment_name": "strength",
        "engines": entries,
        "tournament": {
            "scheduler": "gauntlet",
            "baseline_count": len(players),
            "games_per_pair": games_per_pair,
            "num_parallel": num_parallel,
        },
        "rules": {},  # ShogiArena requires the section; empty, all its defaults apply
        "dashboard": {"enabled": False},
    }
    if openings is not None:
        config["rules"]["initial_positions"] = opening_rules(openings)
    path = Path(directory) / "gauntlet.yaml"
    file_io.write_json(path, config)
    return path


def opening_rules(openings):
    """ShogiArena's rules.initial_positions for a file of 'startpos moves ...' lines: each game starts from a
    line drawn without replacement, each line played with both colours."""
    return {
        "type": "file",
        "source": str(Path(openings).resolve()),
        "source_format": "usi_line",
        "flip_policy": "pair_both",
        "selection_policy": "without_replacement",
    }


def write_sprt(directory, baseline, tested, elo0, elo1, openings=None):
    """Writes an SPRT of two exports' greedy players into directory: sprt.yaml, engines/baseline.yaml and
    engines/tested.yaml. Returns the path of sprt.yaml (`shogiarena run sprt sprt.yaml --games N`).

    H0: tested is at most elo0 Elo stronger than baseline; H1: at least elo1. Pentanomial GSPRT, because
    games come in pairs (each opening with both colours); alpha = beta = 0.05, ShogiArena's other defaults.
    """
    engines_dir = Path(directory) / "engines"
    engines_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, model in (("baseline", baseline), ("tested", tested)):
        engine = write_our_engine(engines_dir, name, model)
        entries.append({"name": name, "engine_path": str(engine), "options": PLAYERS["T0"],
                        "time_control": OUR_TIME_CONTROL})  # fmt: skip
    config = {
        "experiment_name": "sprt",
        "engines": entries,
        "tournament": {"scheduler": "round_robin", "num_parallel": 1},
        "rules": {"initial_positions": opening_rules(openings)} if openings is not None else {},
        "sprt": {"tested_engine": "tested", "model": "gsprt-pentanomial-v1", "elo0": elo0, "elo1": elo1},
        "dashboard": {"enabled": False},
    }
    path = Path(directory) / "sprt.yaml"
    file_io.write_json(path, config)
    return path


def run_games(game_db):
    """The finished games of a ShogiArena run, from its game.db (sqlite), in the order they were stored.

    Returns:
      list of dicts: black, white (engine names), sfen (start), moves (USI strings, each checked legal with
      cshogi), plies (the game's length: the start position's ply plus the moves, as ShogiArena's max_plies
      counts), result (black_win / white_win / draw) and ending (game_io.ENDINGS). Games without a result
      (ShogiArena's ERROR, INVALID, PAUSED) are left out.
    """
    from rsshogi.core import Move  # ShogiArena's move codec (its dependency): only needed here

    if not Path(game_db).is_file():
        raise FileNotFoundError(f"{game_db}: no such ShogiArena game.db")
    end = int(Move.MOVE_END)
    with sqlite3.connect(f"file:{game_db}?mode=ro", uri=True) as db:
        players = dict(db.execute("SELECT id, player_name FROM player"))
        rows = db.execute(
            "SELECT id, game_result, initial_position_sfen, black_player_id, white_player_id FROM game ORDER BY id"
        ).fetchall()
        games = []
        for game_id, result, sfen, black, white in rows:
            codes = db.execute("SELECT next_move FROM game_move WHERE game_id = ? ORDER BY id", (game_id,))
            moves = [Move(code).to_usi() for (code,) in codes if code != end]
            board = _replay(sfen, moves, game_id)
            outcome = _outcome(result, board)
            if outcome is not None:
                games.append({"black": players[black], "white": players[white], "sfen": sfen, "moves": moves,
                              "plies": board.move_number - 1, "result": outcome[0], "ending": outcome[1]})  # fmt: skip
    return games


def _replay(sfen, moves, game_id):
    """The cshogi.Board after the USI moves from sfen, each checked legal (ValueError naming the game if not)."""
    board = cshogi.Board(sfen)
    try:
        shogi_rules.replay(board, moves)
    except ValueError as error:
        raise ValueError(f"game {game_id}: {error} ({board.sfen()})") from None
    return board


def _outcome(result, board):
    """(result, ending) of a ShogiArena GameResult name and the game's final board; None without a result.

    A plain BLACK_WIN / WHITE_WIN is a mate when the side to move has no legal move, a perpetual check when
    the final position repeats with one side checking throughout (cshogi's is_draw), else a resignation.
    """
    for prefix, ours in RESULTS.items():
        if result == prefix:
            if not board.legal_moves:
                return ours, "mate"
            perpetual = board.is_draw() in (cshogi.REPETITION_WIN, cshogi.REPETITION_LOSE)
            return ours, "perpetual_check" if perpetual else "resign"
        if result.startswith(f"{prefix}_"):
            return ours, ENDINGS.get(result[len(prefix) + 1 :], "unknown")
    return None


def usi_game_line(game, source):
    """One game as the project's USI game line ('position<TAB>result<TAB>source<TAB>ending'), which
    shogi-policy-convert reads."""
    start = "startpos" if game["sfen"] == cshogi.STARTING_SFEN else f"sfen {game['sfen']}"
    return f"{start} moves {' '.join(game['moves'])}\t{game['result']}\t{source}\t{game['ending']}"


def score_table(games, opponents, players):
    """The strength table (markdown): a row per (opponent, our player) with W/D/L, score and mean plies.

    opponents and players map ShogiArena engine names to the labels of the rows; rows without games are left out.
    """
    rows = ["| opponent | ours | games | W/D/L | score | mean plies |", "|---|---|---|---|---|---|"]
    for opponent, opponent_label in opponents.items():
        for player, player_label in players.items():
            played = [game for game in games if {game["black"], game["white"]} == {player, opponent}]
            if not played:
                continue
            wins = sum(
                game["result"] == ("black_win" if game["black"] == player else "white_win") for game in played
            )
            draws = sum(game["result"] == "draw" for game in played)
            losses = len(played) - wins - draws
            score = 100 * (wins + draws / 2) / len(played)
            plies = sum(game["plies"] for game in played) / len(played)
            rows.append(
                f"| {opponent_label} | {player_label} | {len(played)} | {wins}/{draws}/{losses} | {score:.1f}% | "
                f"{plies:.0f} |"
            )
    return "\n".join(rows) + "\n"
