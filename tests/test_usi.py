"""The USI engine: a protocol session through a subprocess, and games against Debian's fairy-stockfish."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from unittest import mock

import cshogi
import cshogi.dlshogi
import keras
import pytest
from cshogi.usi import Engine

from shogi_policy.core import record_format
from shogi_policy.serving import inference, usi

FAIRY_STOCKFISH = Path("/usr/games/fairy-stockfish")
MATED_SFEN = "4k4/4G4/4P4/9/9/9/9/9/4K4 w - 1"
# Black king in the enemy camp with 20 pieces there and 40 points: declarable (CSA 27-point rule).
NYUGYOKU_SFEN = "GGGGK4/SSSS1LLL1/PPPPPPPPP/9/9/9/9/9/k8 b RRBB 1"
# Impossible: a black pawn on rank 1 (it could never move); two black pawns on file 5 (nifu).
IMPOSSIBLE_SFENS = [
    "lnsgkgsnP/1r5b1/ppppppppp/9/9/9/PPPPPPPP1/1B5R1/LNSGKGSNL b - 1",
    "lnsgkgsnl/1r5b1/ppppppppp/9/4P4/9/PPPPPPPP1/1B5R1/LNSGKGSNL b - 1",
]


def engine_command(export_dir=None):
    command = [sys.executable, "-m", "shogi_policy.cli.usi"]
    return command + ([f"--model={export_dir}"] if export_dir else [])


def greedy_move(keras_model, position):
    """Oracle: the legal move (cshogi's list and labels) with the largest logit of the Keras model."""
    board = cshogi.Board()
    board.set_position(position)
    logits = keras.ops.convert_to_numpy(keras_model(record_format.encode_boards([board])))[0]
    moves = list(board.legal_moves)
    best = max(moves, key=lambda move: logits[cshogi.dlshogi.make_move_label(move, board.turn)])
    return cshogi.move_to_usi(best)


@pytest.mark.slow
def test_protocol_session(tiny_export):
    model_dir, export_dir = tiny_export
    assert cshogi.Board(NYUGYOKU_SFEN).is_nyugyoku() and not cshogi.Board(MATED_SFEN).legal_moves
    sampled_game = ["usinewgame", "position startpos", "go", "position startpos moves 2g2f", "go"]
    script = [
        "usi",
        "no_such_command 1 2",
        f"setoption name ModelPath value {export_dir}",
        "setoption name Softmax_Temperature value 0",
        "setoption name No_Such_Option value 3",
        "isready",
        "usinewgame",
        "position startpos moves 7g7f",
        "go btime 1000 wtime 1000 byoyomi 100",
        f"position sfen {MATED_SFEN}",
        "go",
        f"position sfen {NYUGYOKU_SFEN}",
        "go",
        "position startpos moves 7g7f 3c3e",
        "go",
        "go mate 1000",
        "position startpos moves 2g2f",
        "go ponder",
        "stop",
        "setoption name Softmax_Temperature value 300",
        "setoption name Seed value 5",
        *sampled_game,
        *sampled_game,
        "gameover lose",
        "quit",
    ]
    result = subprocess.run(
        engine_command(), input="\n".join(script) + "\n", capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("id name ") and "usiok" in lines and "readyok" in lines
    for option in ("Softmax_Temperature", "Seed", "Temperature_Cutoff_Ply", "ModelPath", "Draw_Ply"):
        assert any(line.startswith(f"option name {option} type ") for line in lines), option
    assert "checkmate notimplemented" in lines
    assert any("error" in line and "3c3e" in line for line in lines if line.startswith("info string"))
    moves = [line.split()[1] for line in lines if line.startswith("bestmove")]
    keras_model = keras.models.load_model(model_dir / "model.keras")
    expected = [greedy_move(keras_model, "startpos moves 7g7f"), "resign", "win", "resign"]
    expected.append(greedy_move(keras_model, "startpos moves 2g2f"))
    assert moves[:5] == expected
    first, second = moves[5:7], moves[7:9]
    assert first == second, "the same Seed must replay the same game"
    assert first[0] in {cshogi.move_to_usi(m) for m in cshogi.Board().legal_moves}


# What a tournament manager configured for dlshogi sets (ShogiArena: Draw_Ply, kept equal to its ply limit;
# GUIs: the standard USI_Ponder and USI_Hash; dlshogi's DNN_Model for the network).
DLSHOGI_MANAGER_OPTIONS = {
    "Draw_Ply": "320",
    "USI_Ponder": "false",
    "USI_Hash": "256",
    "Softmax_Temperature": "0",
}


def test_options_a_dlshogi_manager_sets_are_declared_and_accepted(tiny_export):
    lines = []
    engine = usi.UsiEngine(lines.append)
    engine.handle("usi")
    declared = {line.split()[2]: line.split()[4] for line in lines if line.startswith("option name ")}
    assert {"Draw_Ply": "spin", "USI_Ponder": "check", "USI_Hash": "spin", "DNN_Model": "string"}.items() <= (
        declared.items()
    )
    lines.clear()
    for name, value in {**DLSHOGI_MANAGER_OPTIONS, "DNN_Model": str(tiny_export[1])}.items():
        engine.handle(f"setoption name {name} value {value}")
    assert lines == [], "every option is known and in range"
    assert engine.options["ModelPath"] == str(tiny_export[1]) and engine.options["Draw_Ply"] == 320
    engine.handle("setoption name USI_Ponder value maybe")
    assert lines[-1].startswith("info string error: ") and "USI_Ponder" in lines[-1]


# Black to move can mate in one (G*5b); the tiny network's greedy move here is something else.
MATE_IN_ONE_SFEN = "4k4/9/4P4/9/9/9/9/9/4K4 b G {}"


@pytest.mark.parametrize("move_number, draw_ply", [(40, 40), (41, 40), (39, 40), (40, 0)])
def test_draw_ply_last_move_takes_a_mate_in_one_else_reports_the_draw(tiny_export, move_number, draw_ply):
    lines = []
    engine = usi.UsiEngine(lines.append, str(tiny_export[1]))
    engine.handle("setoption name Softmax_Temperature value 0")
    engine.handle(f"setoption name Draw_Ply value {draw_ply}")
    sfen = MATE_IN_ONE_SFEN.format(move_number)
    engine.handle(f"position sfen {sfen}")
    engine.handle("go byoyomi 1000")
    move = lines[-1].split()[1]
    board = cshogi.Board(sfen)
    board.push_usi(move)
    last = draw_ply > 0 and move_number >= draw_ply  # the move reaching Draw_Ply: only a mate wins
    assert board.is_game_over() == last, (move, lines)
    # Oracle for the other cases: the network's own greedy move, which does not mate here.
    keras_model = keras.models.load_model(tiny_export[0] / "model.keras")
    if not last:
        assert move == greedy_move(keras_model, f"sfen {sfen}")
    # Without a mate in one, the last move reports the drawn score and plays the policy's move.
    lines.clear()
    quiet = f"4k4/9/9/9/9/9/9/9/4K4 b G {move_number}"
    engine.handle(f"position sfen {quiet}")
    engine.handle("go byoyomi 1000")
    assert ("info score cp 0 pv " + lines[-1].split()[1] in lines) == last
    assert lines[-1] == "bestmove " + greedy_move(keras_model, f"sfen {quiet}")


@pytest.mark.parametrize("sfen", IMPOSSIBLE_SFENS)
def test_impossible_position_is_answered_with_an_error_and_resign(sfen):
    lines = []
    engine = usi.UsiEngine(lines.append)
    engine.handle("position startpos")
    engine.handle(f"position sfen {sfen}")  # refused, never played
    (error,) = lines
    assert error.startswith("info string error: ") and sfen in error
    engine.handle("go byoyomi 1000")
    assert lines[1:] == ["info string error: no valid position; resigning", "bestmove resign"]


def test_isready_warms_the_model_up_so_the_first_go_is_fast(tiny_export):
    lines = []
    engine = usi.UsiEngine(lines.append, str(tiny_export[1]))
    original = inference.PolicyModel.sample_and_rank
    with mock.patch.object(
        inference.PolicyModel, "sample_and_rank", autospec=True, side_effect=original
    ) as sample_and_rank:
        engine.handle("isready")
    assert lines == ["readyok"]
    # What 'go' runs, once on the start position at batch size 1: the graphs are prepared before the clock runs.
    assert sample_and_rank.call_count == 1
    assert [board.sfen() for board in sample_and_rank.call_args.args[1]] == [cshogi.Board().sfen()]
    engine.handle("position startpos moves 7g7f")
    start = time.perf_counter()
    engine.handle("go btime 0 wtime 0 byoyomi 1000")
    first_go = time.perf_counter() - start
    assert lines[-1].startswith("bestmove ") and lines[-1] != "bestmove resign"
    # Measured 0.02-0.11 s at load 7 on 2 cores.
    assert first_go < 1.0
    engine.handle("go ponder")
    engine.handle("go")  # without 'stop': the pending ponder move is answered first
    assert sum(line.startswith("bestmove ") for line in lines) == 3


class _CountedSignatures:
    """A loaded SavedModel whose signature calls are recorded by name."""

    def __init__(self, saved_model):
        self._saved_model, self.calls = saved_model, []

    def __getattr__(self, name):
        def call(*args):
            self.calls.append(name)
            return getattr(self._saved_model, name)(*args)

        return call


def test_go_encodes_the_position_once_and_runs_the_network_once(tiny_export):
    """Issue 25: 'go' ran the network twice (the sample signature, then probabilities for the info line)."""
    lines = []
    engine = usi.UsiEngine(lines.append, str(tiny_export[1]))
    engine.handle("isready")
    engine.handle("position startpos moves 7g7f 3c3d")
    engine._model._saved_model = signatures = _CountedSignatures(engine._model._saved_model)
    with mock.patch.object(inference, "encode_positions", side_effect=inference.encode_positions) as encode:
        engine.handle("go btime 0 wtime 0 byoyomi 1000")
    assert encode.call_count == 1 and signatures.calls == ["logits"]
    assert lines[-2].startswith("info string policy at T 1: ") and lines[-1].startswith("bestmove ")


class _EngineTimeout:
    """Replaces a stuck engine's stdout: cshogi's Engine then raises instead of looping on EOF."""

    def flush(self):
        pass

    def readline(self):
        raise EOFError("engine timed out")


def _kill_engines(engines):
    for engine in engines:
        if engine.proc is not None:
            engine.proc.kill()
            engine.proc.stdout = _EngineTimeout()


def play_game(ours, theirs, opening, ours_black, max_plies):
    """One game from `opening` (USI moves); checks each reply of ours against cshogi's rules.

    Returns:
      (ending, our_moves): how it ended and how many moves our engine played.
    """
    board = cshogi.Board()
    moves = list(opening)
    for move in moves:
        board.push_usi(move)
    our_moves = 0
    for engine in (ours, theirs):
        engine.usinewgame()
    while len(moves) < max_plies:
        our_turn = (board.turn == cshogi.BLACK) == ours_black
        if not our_turn and not board.legal_moves:
            return "we mated", our_moves
        engine = ours if our_turn else theirs
        engine.position(moves)
        bestmove, _ = engine.go(byoyomi=100) if our_turn else engine.go(nodes=200)
        legal = {cshogi.move_to_usi(move) for move in board.legal_moves}
        if our_turn:
            if bestmove == "resign":
                assert not legal, f"resigned with legal moves at {board.sfen()}"
                return "we resigned when mated", our_moves
            if bestmove == "win":
                assert board.is_nyugyoku(), f"bad declaration at {board.sfen()}"
                return "we declared", our_moves
            assert bestmove in legal, f"illegal move {bestmove} at {board.sfen()}"
            our_moves += 1
        elif bestmove in ("resign", "win") or bestmove not in legal:
            return f"opponent {bestmove}", our_moves
        board.push_usi(bestmove)
        moves.append(bestmove)
        if board.is_draw() in (cshogi.REPETITION_DRAW, cshogi.REPETITION_WIN, cshogi.REPETITION_LOSE):
            return "repetition", our_moves
    return "max plies", our_moves


@pytest.mark.slow
@pytest.mark.skipif(not os.access(FAIRY_STOCKFISH, os.X_OK), reason="fairy-stockfish not installed")
def test_games_against_fairy_stockfish(tiny_export, shared_data, tmp_path):
    launcher = tmp_path / "shogi-policy-usi"
    launcher.write_text(
        "#!/bin/sh\nexec " + " ".join(f"'{part}'" for part in engine_command(tiny_export[1])) + "\n"
    )
    launcher.chmod(0o755)
    openings = (shared_data / "floodgate_openings" / "records2016_10818.sfen").read_text().splitlines()
    ours, theirs = Engine(str(launcher), connect=False), Engine(str(FAIRY_STOCKFISH), connect=False)
    watchdog = threading.Timer(150, _kill_engines, [(ours, theirs)])
    watchdog.start()
    try:
        ours.connect()
        theirs.connect()
        ours.setoption("Seed", 1)
        for engine in (ours, theirs):
            engine.isready()
        endings, our_moves = [], 0
        for game in range(4):
            opening = openings[game].split()[2:10]  # 'startpos moves' then 8 plies
            ending, count = play_game(ours, theirs, opening, ours_black=game % 2 == 0, max_plies=160)
            endings.append(ending)
            our_moves += count
        for engine in (ours, theirs):
            engine.quit()
    finally:
        watchdog.cancel()
        _kill_engines([engine for engine in (ours, theirs) if engine.proc is not None])
    assert ours.name.startswith("shogi_policy")
    assert our_moves >= 40, endings
