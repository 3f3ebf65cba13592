"""A policy-only USI engine: plays a move sampled from the exported policy network, no search.

  shogi-policy-usi --model=export/cpu      # then speak USI on stdin/stdout (or set ModelPath)

Options (dlshogi's names where dlshogi has the option; docs/strength.md compares the lists):
  Softmax_Temperature   spin, in 1/100 (100 = T 1.0); 0 always plays the most probable move.
  Temperature_Cutoff_Ply spin; moves after this ply (move number > cutoff) are greedy.
  Seed                  spin; 0 draws a fresh seed per game, > 0 makes the games reproducible.
  ModelPath             string; the export directory, loaded on isready. DNN_Model (dlshogi's name) sets it too.
  Draw_Ply              spin; dlshogi's draw limit: a game that reaches this many plies is drawn (0: none).
                        Tournament managers (ShogiArena, by default) set it to their own ply limit.
  USI_Ponder, USI_Hash  the standard USI options GUIs send; accepted, no effect (no search, no hash table).
'go' answers 'bestmove win' on a declarable entering-king position (cshogi is_nyugyoku) and
'bestmove resign' when there is no legal move. With Draw_Ply set, the move that reaches the limit (and any
move past it) ends the game in a draw unless it mates: there the engine plays a mate in one if cshogi finds
one, else its policy move with 'info score cp 0' (the drawn value dlshogi's search reports there).
Unknown commands are ignored (logged on stderr).
'isready' loads the model and plays one move with it, so that the first 'go' does not pay for TensorFlow
preparing the graphs (1-3 s for the cpu preset's network).

Bad input never stops the engine: a command that fails answers 'info string error: ...', and still
'readyok' for 'isready' and 'bestmove resign' for 'go'. A position that fails shogi_rules.parse_position
(bad SFEN, impossible placement, illegal move) is dropped, so 'go' on it resigns. Every 'go' gets exactly
one 'bestmove' ('go ponder' and 'go infinite' on 'stop' or 'ponderhit', or at the next 'go').
"""

import dataclasses
import sys

import cshogi
import numpy as np
from absl import logging

from shogi_policy import __version__
from shogi_policy.core import shogi_rules
from shogi_policy.serving import inference

ENGINE_NAME = f"shogi_policy {__version__}"
ENGINE_AUTHOR = "shogi_policy developers"
INT_MAX = 2**31 - 1  # the largest spin value: Seed's, and dlshogi's bound of Draw_Ply
# name -> (USI type, default, max); spins have min 0. The USI option list, in the order 'usi' prints it.
OPTIONS = {
    "Softmax_Temperature": ("spin", 100, 10000),
    "Temperature_Cutoff_Ply": ("spin", 16, 10000),
    "Seed": ("spin", 0, INT_MAX),
    "ModelPath": ("string", "", None),
    "DNN_Model": ("string", "", None),
    "Draw_Ply": ("spin", 0, INT_MAX),
    "USI_Ponder": ("check", False, None),
    "USI_Hash": ("spin", 256, 1 << 20),
}
ALIASES = {"DNN_Model": "ModelPath"}  # dlshogi's name -> ours


class UsiEngine:
    """USI protocol state machine; `handle` takes one command line, replies through `write`."""

    def __init__(self, write, model_path=""):
        self._write = write
        self.options = {name: default for name, (_, default, _) in OPTIONS.items() if name not in ALIASES}
        self.options["ModelPath"] = model_path
        self._model = None
        self._model_path = None
        self._board = None
        self._pending_bestmove = None
        self._rng = np.random.default_rng()

    def _info(self, text):
        self._write(f"info string {text}")

    def _usi(self, _):
        self._write(f"id name {ENGINE_NAME}")
        self._write(f"id author {ENGINE_AUTHOR}")
        for name, (kind, default, maximum) in OPTIONS.items():
            if kind == "spin":
                self._write(f"option name {name} type spin default {default} min 0 max {maximum}")
            elif kind == "check":
                self._write(f"option name {name} type check default {str(default).lower()}")
            else:
                value = self.options[ALIASES.get(name, name)] or "<empty>"
                self._write(f"option name {name} type string default {value}")
        self._write("usiok")

    def _setoption(self, args):
        # setoption name <id> [value <x>]; a string value may contain spaces.
        if not args or args[0] != "name":
            raise ValueError(f"expected 'setoption name <id> value <x>', got {' '.join(args)!r}")
        value_at = args.index("value") if "value" in args else len(args)
        name, value = " ".join(args[1:value_at]), " ".join(args[value_at + 1 :])
        if name not in OPTIONS:
            self._info(f"unknown option {name!r} ignored")
            return
        kind, _, maximum = OPTIONS[name]
        name = ALIASES.get(name, name)
        if kind == "string":
            self.options[name] = "" if value == "<empty>" else value
            return
        if kind == "check":
            if value not in ("true", "false"):
                raise ValueError(f"option {name} expects true or false, got {value[:40]!r}")
            self.options[name] = value == "true"
            return
        number = int(value)
        if not 0 <= number <= maximum:
            raise ValueError(f"option {name} out of range: {number}")
        self.options[name] = number
        if name == "Seed":
            self._new_game(None)

    def _load_model(self):
        path = self.options["ModelPath"]
        if not path:
            raise ValueError("ModelPath is not set (setoption name ModelPath value <export dir>)")
        if self._model is None or self._model_path != path:
            self._model = inference.PolicyModel(path, batch_size=1)
            self._model_path = path
            self._warm_up()

    def _warm_up(self):
        """Runs what 'go' runs (sample_and_rank at batch size 1) once on the start position.

        TensorFlow prepares a loaded signature's graph on its first call: 1-3 s for the cpu preset, longer
        than a 1-second byoyomi. Loading happens on isready, where the GUI waits without a clock.
        """
        self._model.sample_and_rank([cshogi.Board()], 1.0, 0, k=3)

    def _isready(self, _):
        self._load_model()
        self._write("readyok")

    def _new_game(self, _):
        seed = self.options["Seed"]
        self._rng = np.random.default_rng(seed if seed > 0 else None)

    def _position(self, args):
        self._board = None  # a bad position must not leave the previous one in play
        self._board = shogi_rules.parse_position(" ".join(args))

    def _last_move_before_draw(self, board):
        """Whether the move to play reaches Draw_Ply (or the game is past it): then only a mate wins.

        cshogi's move_number is the ply about to be played (1 at the start position), as dlshogi's gamePly,
        whose search counts a position after Draw_Ply plies as drawn.
        """
        draw_ply = self.options["Draw_Ply"]
        return draw_ply > 0 and board.move_number >= draw_ply

    def choose_move(self, board):
        """The USI reply to 'go' on a cshogi.Board: a legal move, 'win' or 'resign'."""
        if board.is_nyugyoku():
            return "win"
        if not len(board.legal_moves):
            return "resign"
        at_draw_ply = self._last_move_before_draw(board)
        if at_draw_ply:
            mate = board.mate_move_in_1ply()
            if mate:
                self._info(f"Draw_Ply {self.options['Draw_Ply']} reached: mate in one")
                return cshogi.move_to_usi(mate)
        greedy = board.move_number > self.options["Temperature_Cutoff_Ply"]
        temperature = 0.0 if greedy else self.options["Softmax_Temperature"] / 100
        seed = int(self._rng.integers(0, 2**63 - 1))
        (move,), (top,) = self._model.sample_and_rank([board], temperature, seed, k=3, rank_temperature=1.0)
        self._info("policy at T 1: " + " ".join(f"{usi} {probability:.3f}" for usi, probability in top))
        if at_draw_ply:
            self._write(f"info score cp 0 pv {move}")
            self._info(f"Draw_Ply {self.options['Draw_Ply']} reached: the game ends drawn")
        return move

    def _go(self, args):
        # A GUI that sends 'go' while a ponder search is pending skipped 'stop': answer the pending one first.
        self._stop(None)
        if args[:1] == ["mate"]:
            self._write("checkmate notimplemented")
            return
        if self._board is None:
            self._info("error: no valid position; resigning")
            move = "resign"
        else:
            self._load_model()
            move = self.choose_move(self._board)
        if "ponder" in args or "infinite" in args:
            # The GUI expects the reply only after 'stop' (or 'ponderhit').
            self._pending_bestmove = move
        else:
            self._write(f"bestmove {move}")

    def _stop(self, _):
        if self._pending_bestmove is not None:
            self._write(f"bestmove {self._pending_bestmove}")
            self._pending_bestmove = None

    def handle(self, line):
        """Handles one command line. Returns False on 'quit'."""
        tokens = line.split()
        if not tokens:
            return True
        command, args = tokens[0], tokens[1:]
        if command == "quit":
            return False
        handlers = {
            "usi": self._usi,
            "isready": self._isready,
            "setoption": self._setoption,
            "usinewgame": self._new_game,
            "position": self._position,
            "go": self._go,
            "stop": self._stop,
            "ponderhit": self._stop,
            "gameover": lambda _: None,
        }
        handler = handlers.get(command)
        if handler is None:
            logging.warning("ignoring unknown USI command %r", line)
            return True
        try:
            handler(args)
        except Exception as error:  # the engine must keep answering its GUI, whatever failed
            logging.exception("USI command %r failed", line)
            self._info(f"error: {error}")
            # Complete the exchange the GUI waits for: it shows the error, and 'go' resigns.
            if command == "isready":
                self._write("readyok")
            elif command == "go":
                self._write("bestmove resign")
        return True


@dataclasses.dataclass(frozen=True)
class UsiConfig:
    """The engine's start, as shogi-policy-usi's flags give it (each field is the flag of its name)."""

    model: str = dataclasses.field(
        default="", metadata={"help": "Export directory; the initial value of the ModelPath option."}
    )


def _write_line(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def serve(config, lines=None, write=_write_line):
    """Speaks USI: handles each line of `lines` (default: stdin, read as it comes) until 'quit' or their end."""
    engine = UsiEngine(write, config.model)
    for line in iter(sys.stdin.readline, "") if lines is None else lines:
        if not engine.handle(line.strip()):
            break
