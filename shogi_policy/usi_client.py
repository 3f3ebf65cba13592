"""A USI engine driver: one engine process whose replies are read by a thread, so every wait can time out.

Used by the match runner (`shogi_policy.match`) and the data generator (`scripts/generate_games.py`).
cshogi.usi.Engine cannot send 'go depth N' and loops forever on an engine that closed its output, so
neither uses it. The engine runs in a session (process group) of its own: `close` ends the whole group,
wrapper scripts and their children included.
"""

import os
import queue
import shlex
import signal
import subprocess
import threading
import time
from pathlib import Path

MATE_SCORE = 100_000  # the score reported for a forced mate (centipawns)


class EngineError(RuntimeError):
    """The engine broke the protocol: it died or did not answer in time."""


class EngineTimeout(EngineError):
    """The engine did not answer in time (it hangs, or the limit is too short for it)."""


class EngineExited(EngineError):
    """The engine process is gone (it crashed or quit), or its input pipe broke."""


def command_argv(command):
    """argv list of an engine command: a command line (split like a POSIX shell) or a sequence."""
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if not argv:
        raise ValueError("empty engine command")
    return argv


def parse_option(option):
    """(name, value) of a 'NAME=VALUE' option string; ValueError without '='."""
    name, sep, value = option.partition("=")
    if not sep or not name:
        raise ValueError(f"engine option {option!r} is not NAME=VALUE")
    return name, value


class EngineProcess:
    """Minimal USI driver: starts the engine, sets its options and waits for readyok.

    Args:
      command: the engine's command line (str, split with shlex) or argv sequence.
      options: 'NAME=VALUE' strings sent as 'setoption name NAME value VALUE' before isready.
      startup_timeout: seconds for 'usiok' and for the first 'readyok' (a network engine loads its
        model on isready).
      stderr: a file the engine's stderr goes to; None discards it.
    Raises:
      EngineError when the engine does not start or does not finish the handshake in time (the
      process is ended first); ValueError for a malformed option.
    """

    def __init__(self, command, options=(), startup_timeout=30.0, stderr=None):
        argv = command_argv(command)
        settings = [parse_option(option) for option in options]
        self.name = Path(argv[0]).name
        try:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr if stderr is not None else subprocess.DEVNULL,
                text=True,
                bufsize=1,
                start_new_session=True,
            )
        except OSError as e:
            raise EngineExited(f"{self.name}: cannot start {argv}: {e}") from e
        self._lines = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        try:
            self.id_name = self._send_and_wait("usi", "usiok", startup_timeout, id_prefix="id name ")
            self.name = self.id_name or self.name
            for name, value in settings:
                self.send(f"setoption name {name} value {value}")
            self._send_and_wait("isready", "readyok", startup_timeout)
        except EngineError:
            self.close()
            raise

    def _pump(self):
        for line in self._proc.stdout:
            self._lines.put(line.strip())
        self._lines.put(None)

    def send(self, command):
        """Writes one command line to the engine."""
        try:
            self._proc.stdin.write(command + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as e:  # ValueError: the pipe was closed here
            raise EngineExited(f"{self.name}: cannot send {command!r}: {e}") from e

    def _readline(self, deadline, waiting_for):
        try:
            line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty as e:
            raise EngineTimeout(f"{self.name}: no {waiting_for}") from e
        if line is None:
            self._lines.put(None)  # later reads see the end too
            try:  # an engine may close its output and live on: do not wait long for its exit code
                status = f"exited with code {self._proc.wait(timeout=1)}"
            except subprocess.TimeoutExpired:
                status = "closed its output"
            raise EngineExited(f"{self.name}: engine {status} before {waiting_for}")
        return line

    def _send_and_wait(self, command, answer, timeout, id_prefix=None):
        self.send(command)
        deadline = time.monotonic() + timeout
        found = None
        while (line := self._readline(deadline, f"'{answer}' within {timeout:g} s of '{command}'")) != answer:
            if id_prefix and line.startswith(id_prefix):
                found = line[len(id_prefix) :]
        return found

    def new_game(self, timeout=30.0):
        """'usinewgame' and 'isready': clears the engine's hash and history before each game."""
        self.send("usinewgame")
        self._send_and_wait("isready", "readyok", timeout)

    def search(self, moves, go_args, timeout):
        """The engine's reply to 'go' on the position after `moves` (USI strings) from startpos.

        Returns:
          (bestmove, score): bestmove is the word after 'bestmove' (a USI move, 'resign', 'win',
          or '' when there is none); score is the last 'info ... score' seen in centipawns from the
          side to move, +-MATE_SCORE for a mate score, None when the engine printed no score.
        Raises:
          EngineTimeout when 'bestmove' does not come within `timeout` seconds; EngineExited.
        """
        self.send("position startpos" + (" moves " + " ".join(moves) if moves else ""))
        self.send(f"go {go_args}".rstrip())
        deadline = time.monotonic() + timeout
        score = None
        while not (line := self._readline(deadline, f"bestmove within {timeout:g} s")).startswith("bestmove"):
            score = parse_score(line, score)
        words = line.split()
        return (words[1] if len(words) > 1 else ""), score

    def close(self, grace=5.0):
        """Asks the engine to quit; ends its process group if it has not within `grace` seconds."""
        try:
            self.send("quit")
            self._proc.wait(timeout=grace)
        except (EngineError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)  # also children that outlive a quitting wrapper
        except ProcessLookupError:
            pass
        self._proc.wait()


def parse_score(info_line, previous):
    """The score of a USI 'info ... score cp N | score mate N' line, else `previous`."""
    tokens = info_line.split()
    if not tokens or tokens[0] != "info" or "score" not in tokens:
        return previous
    kind, value = (tokens[tokens.index("score") + 1 : tokens.index("score") + 3] + ["", ""])[:2]
    if kind == "cp":
        try:
            return int(value)
        except ValueError:
            return previous
    if kind == "mate":  # 'mate 3', 'mate -2', 'mate +', 'mate -'
        return -MATE_SCORE if value.startswith("-") else MATE_SCORE
    return previous
