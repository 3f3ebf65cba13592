"""Generate shogi games between USI engines, refereed move by move with cshogi.

Each game starts from an opening (a seeded random prefix of a line of --openings, by default
floodgate openings beside the checkout; without that file, a seeded random legal opening filtered by
a shallow engine evaluation), then the engine plays both sides under a fixed search limit.
cshogi referees every move: an illegal engine move drops the game (logged); the game ends on mate,
fourfold repetition (perpetual check loses), entering-king declaration, engine 'resign', resignation
adjudicated from the engine's own score (fairy-stockfish never resigns; by default the side to move
resigns when its engine announces a forced mate against it), or --max_plies (draw).

Output: the project's USI game-line format, gzip, one game per line, sorted by game index:
  'startpos moves ...<TAB>black_win|white_win|draw<TAB>source<TAB>ending'
with source like 'fairy-stockfish depth=7 opening=records2016_10818.sfen:1234:16 game=45'.
A fixed depth or node limit with one search thread is deterministic, so a game index always
replays the same game; finished games are appended to '<output>.part' as they come, and a rerun
skips the indices already in the output or the part file (resume) before writing the gzip.

  nice -n 10 python scripts/generate_games.py --games=1000 --depth=6 --workers=2 --seed=0 \
      --output=data/engine_games.usi.gz
"""

import collections
import gzip
import multiprocessing
import os
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path

import cshogi
from absl import app, flags, logging

from shogi_policy import referee
from shogi_policy.usi_client import EngineError, EngineProcess

FLAGS = flags.FLAGS
flags.DEFINE_string("output", "data/engine_games.usi.gz", "Output games file (gzip, USI game lines).")
flags.DEFINE_integer("games", 1000, "Number of games (game indices 0 .. games-1).")
flags.DEFINE_string("engine", "/usr/games/fairy-stockfish", "USI engine command (plays both sides).")
flags.DEFINE_list("engine_options", [], "USI options NAME=VALUE, e.g. Thread=1,LimitDepth=4 for gpsusi.")
flags.DEFINE_integer("depth", 6, "Search depth per move ('go depth N'); 0 = no depth limit.")
flags.DEFINE_integer("nodes", 0, "Search node limit per move ('go nodes N'); 0 = no node limit.")
flags.DEFINE_integer("byoyomi", 0, "Milliseconds per move ('go byoyomi N', not deterministic); 0 = none.")
flags.DEFINE_integer("max_plies", 256, "Plies (opening included) after which the game is a draw.")
flags.DEFINE_string(
    "openings", str(referee.DEFAULT_OPENINGS), "Opening lines file (USI positions); '' = random."
)
flags.DEFINE_integer("min_opening_plies", 8, "Shortest opening prefix.")
flags.DEFINE_integer("max_opening_plies", 24, "Longest opening prefix.")
flags.DEFINE_integer("random_opening_depth", 2, "Search depth that vets random opening moves.")
flags.DEFINE_integer("random_opening_margin", 150, "Random opening move kept if it loses <= this many cp.")
flags.DEFINE_integer(
    "resign_score", 100_000, "Side to move resigns when its score is <= -this (cp; mate = 100000) ..."
)
flags.DEFINE_integer("resign_moves", 1, "... on this many of its consecutive moves; 0 = never adjudicate.")
flags.DEFINE_integer("seed", 0, "Seed of the opening choice and cut.")
flags.DEFINE_integer("workers", 1, "Engine processes playing games in parallel.")
flags.DEFINE_float("move_timeout", 60.0, "Seconds to wait for a bestmove before the game is dropped.")

_GAME_INDEX = re.compile(r"(?:^|\s)game=(\d+)(?:\s|$)")


@dataclass(frozen=True)
class GameSpec:
    """One game to play: its index, opening moves (USI) and where they came from."""

    index: int
    opening: tuple  # USI moves from startpos; empty when a random opening is to be built
    opening_label: str  # e.g. 'records2016_10818.sfen:1234:16' or 'random'
    random_plies: int = 0  # plies of the random opening to build (when opening is empty)


def plan_games(num_games, seed, opening_lines, label, min_plies, max_plies):
    """Distinct openings for game indices 0..num_games-1, reproducible from the seed.

    Each game takes the next line of a seeded shuffle of `opening_lines`, cut to a random length
    in [min_plies, max_plies]; a cut already used is lengthened (the engine is deterministic, so a
    repeated opening would repeat the game), and a line whose every cut is used is skipped.
    Without opening lines every game gets a random opening of a random length (built by a worker).
    """
    rng = random.Random(seed)
    if not opening_lines:
        return [
            GameSpec(i, (), "random", random_plies=rng.randint(min_plies, max_plies))
            for i in range(num_games)
        ]
    order = list(range(len(opening_lines)))
    rng.shuffle(order)
    specs, used = [], set()
    for position in order:
        if len(specs) == num_games:
            break
        number, moves = opening_lines[position]
        cut = rng.randint(min(min_plies, len(moves)), min(max_plies, len(moves)))
        while cut <= min(max_plies, len(moves)) and moves[:cut] in used:
            cut += 1
        if cut > min(max_plies, len(moves)):
            continue
        used.add(moves[:cut])
        specs.append(GameSpec(len(specs), moves[:cut], f"{label}:{number}:{cut}"))
    if len(specs) < num_games:
        raise app.UsageError(f"only {len(specs)} distinct openings for --games={num_games}")
    return specs


def random_opening(engine, plies, rng, go_args, margin, timeout):
    """A random legal opening of `plies` moves whose moves a shallow search does not refute.

    A random legal move is kept when the engine's score for the opponent afterwards is at most
    `margin` cp above its score before (the mover lost at most `margin`); after 20 refuted
    tries the engine's own best move is played.
    """
    board, moves = cshogi.Board(), []
    engine.new_game()
    for _ in range(plies):
        best, before = engine.search(moves, go_args, timeout)
        legal = [cshogi.move_to_usi(m) for m in board.legal_moves]
        chosen = best
        for candidate in rng.sample(legal, min(20, len(legal))):
            _, after = engine.search([*moves, candidate], go_args, timeout)
            if before is not None and after is not None and after + before <= margin:
                chosen = candidate
                break
        board.push_usi(chosen)
        moves.append(chosen)
        if board.is_game_over():
            break
    return tuple(moves)


def play_game(engine, opening, go_args, max_plies, resign_score, resign_moves, timeout):
    """Plays one game from the opening moves; cshogi referees (referee.Game).

    Returns (moves list of USI str, result, ending) or raises ValueError for an illegal move
    (the engine's or the opening's), naming it.
    """
    game = referee.Game(opening)
    bad_streak = [0, 0]  # consecutive own moves with score <= -resign_score, by colour
    engine.new_game()
    while (end := game.adjudicate(max_plies, auto_declare=True)) is None:
        turn = game.board.turn
        bestmove, score = engine.search(game.moves, go_args, timeout)
        if bestmove == "resign":
            end = game.mover_loses("resign")
            break
        if bestmove == "win":  # a declaration cshogi does not uphold (a valid one was adjudicated above)
            raise ValueError(f"ply {len(game.moves) + 1}: unjustified 'win' declaration")
        bad_streak[turn] = bad_streak[turn] + 1 if score is not None and score <= -resign_score else 0
        if resign_moves and bad_streak[turn] >= resign_moves:
            end = game.mover_loses("resign")
            break
        if (end := game.play(bestmove)) is not None:
            break
    return game.moves, *end


def _go_args(depth, nodes, byoyomi):
    args = [f"depth {depth}"] * bool(depth) + [f"nodes {nodes}"] * bool(nodes)
    args += [f"byoyomi {byoyomi}"] * bool(byoyomi)
    if not args:
        raise app.UsageError("set at least one of --depth, --nodes, --byoyomi")
    return " ".join(args)


_worker = {}


def _init_worker(settings):
    _worker.update(settings)
    _worker["engine"] = EngineProcess(settings["engine_command"], settings["engine_options"])


def _run_spec(spec):
    """Plays the game of one GameSpec in a worker: (index, line or None, error or None)."""
    s = _worker
    try:
        opening = spec.opening
        if not opening:
            rng = random.Random(f"{s['seed']}:{spec.index}")
            vet = _go_args(s["random_opening_depth"], 0, 0)
            opening = random_opening(
                s["engine"], spec.random_plies, rng, vet, s["random_opening_margin"], s["timeout"]
            )
        moves, result, ending = play_game(
            s["engine"],
            opening,
            s["go_args"],
            s["max_plies"],
            s["resign_score"],
            s["resign_moves"],
            s["timeout"],
        )
    except (ValueError, EngineError) as e:
        if isinstance(e, EngineError):  # a fresh process for the next game
            s["engine"].close()
            s["engine"] = EngineProcess(s["engine_command"], s["engine_options"])
        return spec.index, None, f"game {spec.index} ({spec.opening_label}) dropped: {e}"
    label = spec.opening_label if spec.opening else f"random:{len(opening)}"
    source = f"{s['engine_name']} {s['limit']} opening={label} game={spec.index}"
    line = "\t".join(["startpos moves " + " ".join(moves), result, source, ending])
    return spec.index, line, None


def game_index(line):
    """The game index of an output line (its source's 'game=N')."""
    match = _GAME_INDEX.search(line)
    if not match:
        raise ValueError(f"no 'game=N' in the source of line {line[:80]!r}")
    return int(match.group(1))


def read_done(output):
    """Lines already generated: the output gzip and the complete lines of '<output>.part'."""
    lines = {}
    if output.exists():
        with gzip.open(output, "rt", encoding="utf-8") as f:
            lines.update((game_index(line), line.rstrip("\n")) for line in f if line.strip())
    part = Path(str(output) + ".part")
    if part.exists():
        text = part.read_text(encoding="utf-8")
        complete = text[: text.rfind("\n") + 1]  # an interrupted write leaves a partial last line
        lines.update((game_index(line), line) for line in complete.splitlines() if line.strip())
    return lines


def _plies(line):
    """Moves (= positions) of a game line."""
    return len(line.split("\t")[0].split()) - 2


def write_output(output, lines):
    """Writes the lines sorted by game index to a reproducible gzip (mtime 0), atomically."""
    tmp = Path(str(output) + ".tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write("".join(lines[i] + "\n" for i in sorted(lines)).encode("utf-8"))
    os.replace(tmp, output)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    if FLAGS.min_opening_plies > FLAGS.max_opening_plies:
        raise app.UsageError("--min_opening_plies exceeds --max_opening_plies")
    output = Path(FLAGS.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    go_args = _go_args(FLAGS.depth, FLAGS.nodes, FLAGS.byoyomi)
    if FLAGS.openings and Path(FLAGS.openings).exists():
        opening_lines, label = referee.read_opening_lines(FLAGS.openings), Path(FLAGS.openings).name
    else:
        logging.warning("openings file %r absent: random openings vetted by the engine", FLAGS.openings)
        opening_lines, label = [], "random"
    specs = plan_games(
        FLAGS.games, FLAGS.seed, opening_lines, label, FLAGS.min_opening_plies, FLAGS.max_opening_plies
    )
    done = read_done(output)
    todo = [spec for spec in specs if spec.index not in done]
    logging.info("%d games planned, %d already done, %d to play", len(specs), len(done), len(todo))
    settings = {
        "engine_command": FLAGS.engine,
        "engine_options": tuple(FLAGS.engine_options),
        "engine_name": Path(FLAGS.engine).name,
        "limit": go_args.replace(" ", "="),
        "go_args": go_args,
        "max_plies": FLAGS.max_plies,
        "resign_score": FLAGS.resign_score,
        "resign_moves": FLAGS.resign_moves,
        "timeout": FLAGS.move_timeout,
        "seed": FLAGS.seed,
        "random_opening_depth": FLAGS.random_opening_depth,
        "random_opening_margin": FLAGS.random_opening_margin,
    }
    _play_all(todo, settings, output, done)
    write_output(output, done)
    Path(str(output) + ".part").unlink(missing_ok=True)
    positions = sum(map(_plies, done.values()))
    logging.info("wrote %s: %d games, %d positions", output, len(done), positions)


def _play_all(todo, settings, output, done):
    """Plays the games in worker processes, appending each finished line to '<output>.part'."""
    start, played, positions, dropped = time.monotonic(), 0, 0, 0
    endings, last_log = collections.Counter(), 0.0
    with (
        open(str(output) + ".part", "a", encoding="utf-8") as part,
        multiprocessing.Pool(FLAGS.workers, _init_worker, (settings,)) as pool,
    ):
        for index, line, error in pool.imap_unordered(_run_spec, todo):
            if error:
                dropped += 1
                logging.warning("%s", error)
                continue
            part.write(line + "\n")
            part.flush()
            done[index] = line
            played += 1
            positions += _plies(line)
            endings[line.split("\t")[3]] += 1
            elapsed = time.monotonic() - start
            if elapsed - last_log >= 30 or played + dropped == len(todo):
                last_log = elapsed
                logging.info(
                    "%d/%d games (%d dropped), %d positions, %.1f games/min, %.0f positions/min, endings %s",
                    played,
                    len(todo),
                    dropped,
                    positions,
                    60 * played / elapsed,
                    60 * positions / elapsed,
                    dict(endings),
                )


def run():
    app.run(main)


if __name__ == "__main__":
    run()
