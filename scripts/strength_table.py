"""The README's strength table: an exported network against fairy-stockfish and gpsshogi, with shogi-policy-match.

  nice -n 10 python scripts/strength_table.py --model=runs/default/export --output_dir=runs/default/strength

Every row is one `shogi-policy-match` run (our policy-only engine as engine 1, greedy 'T0' or sampling at
temperature 1 throughout the game 'T1') into output_dir/<row>/, played one after another; rerunning the same
command resumes the rows (finished matches are not replayed). The markdown table goes to stdout and to
output_dir/table.md.
"""

import json
import shlex
import subprocess
import sys
from pathlib import Path

from absl import app, flags

FAIRY_STOCKFISH = "/usr/games/fairy-stockfish"
GPSSHOGI = "/usr/games/gpsusi"
# Opponents: (row name, description, command, USI options, go arguments).
OPPONENTS = {
    "fsf_d1_skill-5": (
        "fairy-stockfish depth 1, Skill Level -5",
        FAIRY_STOCKFISH,
        ["Skill Level=-5"],
        "depth 1",
    ),
    "fsf_d1": ("fairy-stockfish depth 1", FAIRY_STOCKFISH, [], "depth 1"),
    "fsf_d2": ("fairy-stockfish depth 2", FAIRY_STOCKFISH, [], "depth 2"),
    "fsf_d3": ("fairy-stockfish depth 3", FAIRY_STOCKFISH, [], "depth 3"),
    # LimitDepth's minimum is 4; no opening book, one thread; the depth ends the search before the byoyomi.
    "gps_d4": (
        "gpsshogi LimitDepth 4 (its lowest), no book",
        GPSSHOGI,
        ["LimitDepth=4", "BookDepth=0", "Thread=1"],
        "btime 0 wtime 0 byoyomi 10000",
    ),
}
OUR_SETTINGS = {
    "T0": ["Softmax_Temperature=0"],
    "T1": ["Softmax_Temperature=100", "Temperature_Cutoff_Ply=10000"],
}

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Our export directory (SavedModel).", required=True)
flags.DEFINE_string("output_dir", None, "One match directory per row, and table.md.", required=True)
flags.DEFINE_integer("games", 100, "Games per row.")
flags.DEFINE_list("opponents", list(OPPONENTS), f"Rows' opponents, of {', '.join(OPPONENTS)}.")
flags.DEFINE_list(
    "temperatures", list(OUR_SETTINGS), "Our settings per opponent: T0 (greedy), T1 (sampling)."
)


def match_command(model, opponent, ours, output_dir, games):
    """The shogi-policy-match command line (argv) of one row."""
    _, command, options, go = OPPONENTS[opponent]
    return [
        sys.executable, "-m", "shogi_policy.match",
        f"--engine1={shlex.join([sys.executable, '-m', 'shogi_policy.usi', f'--model={model}'])}",
        f"--engine1_options={','.join(OUR_SETTINGS[ours])}", "--engine1_go=",
        f"--engine2={shlex.quote(command)}", f"--engine2_options={','.join(options)}", f"--engine2_go={go}",
        f"--games={games}",
        f"--output_dir={output_dir}",
    ]  # fmt: skip


def table_row(opponent, ours, summary):
    """One markdown row from a match summary."""
    elo = [
        value if isinstance(value, str) else f"{value:+.0f}"
        for value in (summary["elo"], summary["elo_low"], summary["elo_high"])
    ]
    return (
        f"| {OPPONENTS[opponent][0]} | {ours} | {summary['games']} | {summary['engine1_wins']}/{summary['draws']}/"
        f"{summary['engine1_losses']} | {100 * summary['score']:.1f}% | {elo[0]} | {elo[1]} .. {elo[2]} | "
        f"{summary['mean_plies']:.0f} | {summary['wall_seconds'] / 60:.1f} min |"
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    rows = [
        "| opponent | ours | games | W/D/L | score | Elo | 95% interval | mean plies | wall |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for opponent in FLAGS.opponents:
        for ours in FLAGS.temperatures:
            row_dir = Path(FLAGS.output_dir) / f"{opponent}_{ours}"
            subprocess.run(match_command(FLAGS.model, opponent, ours, row_dir, FLAGS.games), check=True)
            rows.append(table_row(opponent, ours, json.loads((row_dir / "summary.json").read_text())))
    table = "\n".join(rows) + "\n"
    (Path(FLAGS.output_dir) / "table.md").write_text(table)
    print(table)


if __name__ == "__main__":
    app.run(main)
