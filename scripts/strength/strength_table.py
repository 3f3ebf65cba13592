"""The strength table: an exported network's greedy (T0) and T=1 (T1) players in a ShogiArena gauntlet against
fairy-stockfish rungs and gpsshogi (docs/strength.md).

  nice -n 10 python -m scripts.strength.strength_table --model=runs/default/export --output_dir=runs/default/strength

Each game starts from a floodgate opening line (--openings; 24 plies), each line played with both colours.
Writes output_dir/gauntlet.yaml and output_dir/engines/*.yaml (shogi_policy.arena.shogiarena.write_gauntlet), runs
`shogiarena run tournament` into output_dir/run (rerunning the command resumes it: finished games are kept),
then prints the table from the run's game.db and writes it to output_dir/table.md. Needs the arena extra
(pip install -e '.[arena]').
"""

import subprocess
from pathlib import Path

from absl import app, flags

from scripts.strength import common
from shogi_policy.arena import shogiarena as arena

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Our export directory (SavedModel).", required=True)
flags.DEFINE_string(
    "output_dir", None, "The gauntlet's files, ShogiArena's run (run/) and table.md.", required=True
)
flags.DEFINE_integer("games", 100, "Games per row (per pair of our player and an opponent).", lower_bound=1)
flags.DEFINE_list("opponents", list(arena.OPPONENTS), f"Opponents, of {', '.join(arena.OPPONENTS)}.")
flags.DEFINE_list("players", list(arena.PLAYERS), "Our players: T0 (greedy), T1 (sampling at T 1).")
common.define_openings_flag()
flags.DEFINE_integer(
    "parallel", 1, "Games played at once (ShogiArena's tournament.num_parallel).", lower_bound=1
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    shogiarena = common.shogiarena_command(FLAGS.openings)
    common.check_export_dir("model", FLAGS.model)
    output_dir = Path(FLAGS.output_dir)
    try:
        config = arena.write_gauntlet(
            output_dir,
            FLAGS.model,
            FLAGS.opponents,
            FLAGS.players,
            FLAGS.games,
            FLAGS.parallel,
            FLAGS.openings or None,
        )
    except ValueError as error:
        raise app.UsageError(f"--opponents/--players: {error}") from None
    subprocess.run(
        [shogiarena, "run", "tournament", str(config), "--run-dir", str(output_dir / "run")], check=True
    )
    games = arena.run_games(output_dir / "run" / "game.db")
    opponents = {name: arena.OPPONENTS[name][0] for name in FLAGS.opponents}
    table = arena.score_table(games, opponents, {f"ours_{name}": name for name in FLAGS.players})
    (output_dir / "table.md").write_text(table)
    print(table)


if __name__ == "__main__":
    app.run(main)
