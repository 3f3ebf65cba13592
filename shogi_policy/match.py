"""A match between two USI engines, refereed by cshogi: W/D/L from engine 1's side, Elo and its 95% interval.

  shogi-policy-match --engine1="shogi-policy-usi --model=runs/r1/export" \\
      --engine1_options=Softmax_Temperature=0 --engine1_go= \\
      --engine2=/usr/games/fairy-stockfish --engine2_go="depth 1" --games=100 --output_dir=matches/r1_fsf1

Games come in pairs: each opening (a seeded choice of floodgate opening lines, else a built-in set) is
played twice, engine 1 Black in the even game and White in the odd one. Rules (referee.Game): no legal
move loses ('mate'); fourfold repetition draws unless one side checked throughout, which loses
('perpetual_check'); 'bestmove win' wins when cshogi's is_nyugyoku upholds it, else loses ('illegal');
'bestmove resign' loses; --max_plies (opening included) draws. An engine that plays an illegal or
unreadable move loses ('illegal'); one that does not answer within --move_timeout loses ('timeout') and
one whose process ends loses ('crash'); the reason is logged and kept with the game. A faulty engine is
ended and started again for the next game.

Output in --output_dir: games.usi (one game a line, appended and flushed as each game ends:
'startpos moves ...<TAB>result<TAB>source<TAB>ending<TAB>reason', the project's USI game-line format plus
the fault's reason, so `shogi-policy-convert` reads it), summary.json (rewritten atomically after each
game), match.json (the match's settings) and engineN.stderr.log. Rerunning the same command resumes: the
finished games are kept and the others played; a larger --games extends the match.
"""

import collections
import json
import math
import os
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path

from absl import app, flags, logging

from shogi_policy import referee
from shogi_policy.usi_client import EngineError, EngineProcess, EngineTimeout

# Used without an openings file: the first 12 plies of lines 1, 678, 1355, ... (every 677th) of floodgate's
# records2016_10818.sfen, the distinct ones.
BUILTIN_OPENINGS = (
    "7g7f 8c8d 7i6h 3c3d 6g6f 7a6b 5g5f 5c5d 3i4h 3a4b 4i5h 4a3b",
    "7g7f 8c8d 2g2f 4a3b 6i7h 8d8e 8h7g 3c3d 7i8h 2b7g+ 8h7g 3a4b",
    "7g7f 3c3d 2g2f 4a3b 6i7h 4c4d 2f2e 8b4b 2e2d 2c2d 2h2d 4d4e",
    "2g2f 3c3d 7g7f 8c8d 6i7h 4a3b 2f2e 8d8e 2e2d 2c2d 2h2d 8e8f",
    "7g7f 3c3d 2g2f 4c4d 2f2e 2b3c 3i4h 8b2b 5i6h 3a3b 6h7h 5a6b",
    "7g7f 3c3d 6g6f 7a6b 7i7h 6c6d 2h6h 6b6c 7h6g 5a4b 5i4h 4b3b",
    "7g7f 3c3d 6g6f 7a6b 2h6h 5a4b 5i4h 4b3b 3i3h 5c5d 4h3i 8c8d",
    "7g7f 8c8d 7i6h 3c3d 6h7g 7a6b 5g5f 5c5d 3i4h 3a4b 6i7h 4a3b",
    "7g7f 3c3d 2g2f 4c4d 3i4h 8b4b 5i6h 5a6b 6h7h 6b7b 4i5h 3a3b",
    "7g7f 8c8d 7i6h 3c3d 6h7g 7a6b 2g2f 3a4b 3i4h 4a3b 5g5f 5c5d",
    "7g7f 8c8d 2h7h 8d8e 8h7g 3c3d 6g6f 7a6b 7i6h 5a4b 5i4h 4b3b",
    "2g2f 8c8d 2f2e 8d8e 6i7h 4a3b 2e2d 2c2d 2h2d 1c1d 2d2f 3c3d",
    "2g2f 8c8d 2f2e 8d8e 6i7h 4a3b 2e2d 2c2d 2h2d P*2c 2d2f 7a6b",
    "7g7f 3c3d 2g2f 4c4d 3i4h 8b3b 5i6h 3a4b 6h7h 5a6b 4g4f 6b7b",
    "7g7f 3c3d 9g9f 1c1d 9f9e 8c8d 2g2f 4c4d 2f2e 2b3c 3i4h 3a3b",
    "2g2f 8c8d 2f2e 8d8e 6i7h 4a3b 2e2d 2c2d 2h2d P*2c 2d2f 3c3d",
)
GAMES_FILE, SUMMARY_FILE, CONFIG_FILE = "games.usi", "summary.json", "match.json"
COLOR_NAMES = ("black", "white")  # indexed by cshogi.BLACK / cshogi.WHITE
Z_95 = 1.959963984540054  # two-sided 95% quantile of the standard normal
ELO_METHOD = (
    "score s = (W + D/2) / n, Elo = -400 log10(1/s - 1); 95% interval: the Wilson score interval of s "
    "(normal approximation, binomial variance p(1-p)/n: conservative when there are draws), mapped through "
    "the same formula; at a score of 0 or 1 the estimate and one bound are infinite, the other bound finite"
)
_GAME_INDEX = re.compile(r"(?:^|\s)game=(\d+)(?:\s|$)")


@dataclass(frozen=True)
class GameSpec:
    """One game of the match: its index, opening (USI moves from startpos) and colours."""

    index: int
    opening: tuple
    opening_label: str  # 'records2016_10818.sfen:1234:24' or 'builtin:3'
    engine1_black: bool


def plan_games(num_games, seed, opening_lines, label, plies):
    """GameSpecs 0..num_games-1: each opening twice, engine 1 Black in the even game, White in the odd.

    Openings are the distinct `plies`-ply prefixes of `opening_lines` ([(line number, moves)]) in a seeded
    order, reused in the same order when the match needs more. The plan for n games is the start of the
    plan for more games with the same seed, which is what lets a rerun extend a match.
    """
    prefixes = {}
    for number, moves in opening_lines:
        prefixes.setdefault(tuple(moves[:plies]), f"{label}:{number}:{min(plies, len(moves))}")
    order = sorted(prefixes)
    random.Random(seed).shuffle(order)
    return [
        GameSpec(i, order[i // 2 % len(order)], prefixes[order[i // 2 % len(order)]], i % 2 == 0)
        for i in range(num_games)
    ]


def load_openings(path):
    """(opening lines, label) of an openings file; the built-in set when path is '' or absent."""
    if path and Path(path).exists():
        return referee.read_opening_lines(path), Path(path).name
    logging.info("openings file %r absent: %d built-in opening lines", path, len(BUILTIN_OPENINGS))
    return [(number, tuple(line.split())) for number, line in enumerate(BUILTIN_OPENINGS, 1)], "builtin"


def _elo(score):
    """Elo difference of an expected score in [0, 1] (infinite at 0 and 1)."""
    if score <= 0.0:
        return -math.inf
    if score >= 1.0:
        return math.inf
    return -400.0 * math.log10(1.0 / score - 1.0)


def elo_estimate(wins, draws, losses):
    """Score, Elo difference and its 95% interval (see ELO_METHOD) from one player's W/D/L.

    Returns a dict: games, score, elo, elo_low, elo_high (floats, +-inf where unbounded; None without games).
    """
    n = wins + draws + losses
    if n == 0:
        return {"games": 0, "score": None, "elo": None, "elo_low": None, "elo_high": None}
    score = (wins + 0.5 * draws) / n
    # Wilson: the p with |s - p| <= z sqrt(p (1 - p) / n); never degenerate, even at s = 0, 1/2 (all draws), 1.
    k = Z_95**2 / n
    center = (score + k / 2) / (1 + k)
    margin = math.sqrt(k * score * (1 - score) + k**2 / 4) / (1 + k)
    return {
        "games": n,
        "score": score,
        "elo": _elo(score),
        "elo_low": _elo(center - margin) if score > 0 else -math.inf,  # exact where rounding might not be
        "elo_high": _elo(center + margin) if score < 1 else math.inf,
    }


def format_elo(value):
    """'+123', '-45', '+inf' or '-inf'."""
    return f"{round(value):+d}" if math.isfinite(value) else ("+inf" if value > 0 else "-inf")


class Player:
    """One side of the match: its engine command, options and 'go' arguments, and its process.

    The process is started on demand and ended after a fault (`stop`), so the next game gets a fresh one.
    """

    def __init__(self, label, command, options, go_args, startup_timeout, log_path):
        self.label = label  # 'engine1' / 'engine2'
        self.command, self.options, self.go_args = command, tuple(options), go_args
        self.startup_timeout, self.log_path = startup_timeout, log_path
        self.engine = None
        self.name = None  # the display name: --engineN_name, else the engine's 'id name'

    def start(self):
        """Starts the engine unless it runs; EngineError when it does not start."""
        if self.engine is None:
            with open(self.log_path, "a", encoding="utf-8") as log:  # the engine holds its own handle
                self.engine = EngineProcess(self.command, self.options, self.startup_timeout, stderr=log)
            self.name = self.name or re.sub(r"\s+", "_", self.engine.id_name or self.engine.name)

    def stop(self, grace=5.0):
        """Ends the engine (see EngineProcess.close); the next `start` starts a fresh one."""
        if self.engine is not None:
            self.engine.close(grace)
            self.engine = None


def _fault(player, color, error, ply):
    """Stops the faulty engine; (ending, reason) of the fault: 'timeout' or 'crash', naming the engine."""
    ending = "timeout" if isinstance(error, EngineTimeout) else "crash"
    player.stop(grace=0.0 if ending == "timeout" else 5.0)  # a hung engine will not quit by itself
    return ending, f"{player.label} ({COLOR_NAMES[color]}): ply {ply}: {error}"


def play_game(spec, engine1, engine2, max_plies, move_timeout):
    """Plays one game between two Players; cshogi referees.

    Returns:
      (moves list of USI str, result, ending, reason): reason is '' unless an engine broke a rule or the
      protocol, in which case it names the engine, its colour, the move and the position.
    """
    sides = (engine1, engine2) if spec.engine1_black else (engine2, engine1)  # by cshogi colour
    game = referee.Game(spec.opening)
    for color, player in enumerate(sides):
        try:
            player.start()
            player.engine.new_game(move_timeout)
        except EngineError as error:
            ending, reason = _fault(player, color, error, len(game.moves) + 1)
            return game.moves, referee.loser(color), ending, reason
    end, reason = game.adjudicate(max_plies), ""
    while end is None:
        end, reason = _take_turn(game, sides[game.board.turn], move_timeout)
        end = end or game.adjudicate(max_plies)
    _send_gameover(sides, end[0])
    return game.moves, *end, reason


def _take_turn(game, player, move_timeout):
    """Asks the side to move's engine for its move and referees it.

    Returns:
      (end, reason): end is (result, ending) when the move ended the game, else None (the move was played);
      reason names the engine, colour, move and position of a fault or illegal reply, else ''.
    """
    color = game.board.turn
    try:
        bestmove, _ = player.engine.search(game.moves, player.go_args, move_timeout)
    except EngineError as error:
        ending, reason = _fault(player, color, error, len(game.moves) + 1)
        return game.mover_loses(ending), reason
    where = f"{player.label} ({COLOR_NAMES[color]})"
    if bestmove == "resign":
        return game.mover_loses("resign"), ""
    if bestmove == "win":
        end = game.declare()
        unjustified = f"{where}: ply {len(game.moves) + 1}: unjustified 'win' in {game.board.sfen()}"
        return end, (unjustified if end[1] == "illegal" else "")
    try:
        return game.play(bestmove), ""
    except ValueError as error:
        return game.mover_loses("illegal"), f"{where}: {error}"


def _send_gameover(sides, result):
    """'gameover win|lose|draw' to each running engine; one that cannot take it is stopped."""
    for color, player in enumerate(sides):
        if player.engine is None:
            continue
        outcome = "draw" if result == "draw" else ("win" if result == referee.winner(color) else "lose")
        try:
            player.engine.send(f"gameover {outcome}")
        except EngineError:
            player.stop()


def game_line(spec, moves, result, ending, reason, names):
    """The games.usi line of a finished game (names: engine 1's and engine 2's display names)."""
    black, white = names if spec.engine1_black else names[::-1]
    source = f"match game={spec.index} black={black} white={white} opening={spec.opening_label}"
    position = "startpos moves " + " ".join(moves) if moves else "startpos"
    return "\t".join([position, result, source, ending, re.sub(r"\s+", " ", reason)])


def game_index(line):
    """The game index of a games.usi line (its source's 'game=N')."""
    match = _GAME_INDEX.search(line.split("\t")[2] if line.count("\t") >= 2 else "")
    if not match:
        raise ValueError(f"no 'game=N' in the source of line {line[:80]!r}")
    return int(match.group(1))


def read_finished(path):
    """{game index: line} of a games file; a partial last line (a killed write) is cut off the file."""
    if not path.exists():
        return {}
    text = path.read_text(encoding="utf-8")
    complete = text[: text.rfind("\n") + 1]
    if len(complete) != len(text):
        logging.warning("%s: dropping a partial last line %r", path, text[len(complete) :][:80])
        with open(path, "r+", encoding="utf-8") as f:
            f.truncate(len(complete.encode("utf-8")))
    finished = {}
    for line in complete.splitlines():
        if line.strip():
            finished.setdefault(game_index(line), line)
    return finished


def engine1_points(index, result):
    """Engine 1's points (1, 0.5, 0) in game `index` (engine 1 is Black in even games)."""
    if result == "draw":
        return 0.5
    return float((result == "black_win") == (index % 2 == 0))


def summarize(finished, settings, names, wall_seconds):
    """The summary dict of the finished games {index: line} (engine 1's point of view).

    wall_seconds: the match's wall time so far, over all its runs (engine start-ups included).
    """
    counts = collections.Counter()
    by_colour = {"engine1_black": collections.Counter(), "engine1_white": collections.Counter()}
    endings, faults, plies = collections.Counter(), [], 0
    for index in sorted(finished):
        position, result, _, ending, *reason = finished[index].split("\t")
        outcome = {1.0: "wins", 0.5: "draws", 0.0: "losses"}[engine1_points(index, result)]
        counts[outcome] += 1
        by_colour["engine1_black" if index % 2 == 0 else "engine1_white"][outcome] += 1
        endings[ending] += 1
        plies += len(position.split()) - 2
        if reason and reason[0]:
            faults.append({"game": index, "result": result, "ending": ending, "reason": reason[0]})
    estimate = elo_estimate(counts["wins"], counts["draws"], counts["losses"])
    return {
        "engine1": {**settings["engine1"], "name": names[0]},
        "engine2": {**settings["engine2"], "name": names[1]},
        "games": len(finished),
        "engine1_wins": counts["wins"],
        "draws": counts["draws"],
        "engine1_losses": counts["losses"],
        "by_colour": {
            key: {k: value[k] for k in ("wins", "draws", "losses")} for key, value in by_colour.items()
        },
        **{key: _json_number(value) for key, value in estimate.items() if key != "games"},
        "elo_method": ELO_METHOD,
        "endings": dict(sorted(endings.items())),
        "mean_plies": plies / len(finished) if finished else None,
        "faults": faults,
        "wall_seconds": round(wall_seconds, 1),
        "settings": {key: value for key, value in settings.items() if not key.startswith("engine")},
    }


def _json_number(value):
    """JSON has no infinity: infinite values become the strings '+inf' / '-inf'."""
    return format_elo(value) if isinstance(value, float) and math.isinf(value) else value


def write_json(path, data):
    """Writes data as JSON atomically (a temporary file renamed over path)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def check_settings(path, settings):
    """Records the match's settings in output_dir; a rerun must use the same ones (UsageError otherwise)."""
    if path.exists():
        previous = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(
            key for key in set(previous) | set(settings) if previous.get(key) != settings.get(key)
        )
        if changed:
            raise app.UsageError(
                f"{path} records a different match (changed: {', '.join(changed)}); use a new --output_dir"
            )
    else:
        write_json(path, settings)


def progress_line(spec, total, line, summary):
    """One log line for a finished game, with the running W/D/L of engine 1."""
    position, result, _, ending, reason = line.split("\t")
    colour = "black" if spec.engine1_black else "white"
    text = (
        f"game {spec.index + 1}/{total} ({spec.opening_label}, engine1 {colour}): {result} by {ending} "
        f"after {len(position.split()) - 2} plies; engine1 W/D/L {summary['engine1_wins']}/{summary['draws']}/"
        f"{summary['engine1_losses']}"
    )
    return text + (f"; {reason}" if reason else "")


def result_text(summary):
    """The final report: W/D/L, score and Elo with its 95% interval, engine 1's view."""
    if not summary["games"]:
        return "no games played"
    elo = [
        summary[key] if isinstance(summary[key], str) else format_elo(summary[key])
        for key in ("elo", "elo_low", "elo_high")
    ]
    return (
        f"{summary['engine1']['name']} vs {summary['engine2']['name']}: {summary['games']} games, "
        f"W/D/L {summary['engine1_wins']}/{summary['draws']}/{summary['engine1_losses']}, "
        f"score {100 * summary['score']:.1f}%, Elo {elo[0]} (95% interval {elo[1]} .. {elo[2]})"
    )


def define_flags(flag_values=flags.FLAGS):
    """Registers the app's flags on flag_values (run() uses the global FLAGS; tests their own)."""
    kw = {"flag_values": flag_values}
    for n in (1, 2):
        flags.DEFINE_string(
            f"engine{n}", None, f"Engine {n}'s command line (split like a shell).", required=True, **kw
        )
        flags.DEFINE_string(
            f"engine{n}_name", "", f"Engine {n}'s display name ('' = its USI 'id name').", **kw
        )
        flags.DEFINE_list(f"engine{n}_options", [], f"Engine {n}'s USI options NAME=VALUE,...", **kw)
        flags.DEFINE_string(
            f"engine{n}_go",
            "btime 0 wtime 0 byoyomi 1000",
            f"What follows 'go' for engine {n}: 'depth 1', 'nodes 10000', 'btime 0 wtime 0 byoyomi 500', ''.",
            **kw,
        )
    flags.DEFINE_integer(
        "games", 100, "Games in the match (an even number plays every opening with both colours).", **kw
    )
    flags.DEFINE_string(
        "output_dir", None, "Where games.usi, summary.json and match.json go.", required=True, **kw
    )
    flags.DEFINE_string(
        "openings",
        str(referee.DEFAULT_OPENINGS),
        "Opening lines ('startpos moves ...'); '' or absent: built-in.",
        **kw,
    )
    flags.DEFINE_integer(
        "opening_plies", 24, "Plies of each opening line played before the engines take over.", **kw
    )
    flags.DEFINE_integer("max_plies", 256, "Plies (opening included) after which a game is a draw.", **kw)
    flags.DEFINE_integer("seed", 0, "Seed of the opening order.", **kw)
    flags.DEFINE_float(
        "move_timeout", 60.0, "Seconds an engine may take for a move (or isready) before it loses.", **kw
    )
    flags.DEFINE_float(
        "startup_timeout", 120.0, "Seconds an engine may take to start (usiok, first readyok).", **kw
    )


def _settings(args, openings_label):
    """What defines the match: a rerun into the same output_dir must not change it."""
    engines = {
        f"engine{n}": {
            "command": getattr(args, f"engine{n}"),
            "options": list(getattr(args, f"engine{n}_options")),
            "go": getattr(args, f"engine{n}_go"),
            "name": getattr(args, f"engine{n}_name"),
        }
        for n in (1, 2)
    }
    return {
        **engines,
        "openings": openings_label,
        "opening_plies": args.opening_plies,
        "max_plies": args.max_plies,
        "seed": args.seed,
    }


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    args = flags.FLAGS
    if args.games < 1 or args.max_plies < 1:
        raise app.UsageError("--games and --max_plies must be positive")
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    opening_lines, openings_label = load_openings(args.openings)
    settings = _settings(args, openings_label)
    check_settings(output_dir / CONFIG_FILE, settings)
    specs = plan_games(args.games, args.seed, opening_lines, openings_label, args.opening_plies)
    games_path = output_dir / GAMES_FILE
    finished = {i: line for i, line in read_finished(games_path).items() if i < args.games}
    todo = [spec for spec in specs if spec.index not in finished]
    logging.info("%d games planned, %d finished before, %d to play", len(specs), len(finished), len(todo))
    players = [
        Player(f"engine{n}", getattr(args, f"engine{n}"), getattr(args, f"engine{n}_options"),
               getattr(args, f"engine{n}_go"), args.startup_timeout, output_dir / f"engine{n}.stderr.log")
        for n in (1, 2)
    ]  # fmt: skip
    for n, player in enumerate(players, 1):
        player.name = getattr(args, f"engine{n}_name") or None
    summary_path = output_dir / SUMMARY_FILE
    # A resumed match adds this run's time to the time its summary recorded before.
    earlier = json.loads(summary_path.read_text())["wall_seconds"] if summary_path.exists() else 0.0
    start = time.monotonic()
    try:
        for player in players:
            try:
                player.start()
            except (EngineError, ValueError) as error:
                raise app.UsageError(f"{player.label} does not start: {error}") from error
        names = [player.name for player in players]
        summary = summarize(finished, settings, names, earlier + time.monotonic() - start)
        write_json(summary_path, summary)
        with open(games_path, "a", encoding="utf-8") as out:
            for spec in todo:
                moves, result, ending, reason = play_game(spec, *players, args.max_plies, args.move_timeout)
                line = game_line(spec, moves, result, ending, reason, names)
                out.write(line + "\n")
                out.flush()
                os.fsync(out.fileno())  # a killed run keeps every finished game
                finished[spec.index] = line
                summary = summarize(finished, settings, names, earlier + time.monotonic() - start)
                write_json(summary_path, summary)
                logging.info("%s", progress_line(spec, args.games, line, summary))
        logging.info("%d games in %.0f s", len(todo), time.monotonic() - start)
    finally:
        for player in players:
            player.stop()
    print(result_text(summary))


def run():
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
