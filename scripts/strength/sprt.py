"""Is network B stronger than A? A ShogiArena SPRT of two exports' greedy players (docs/strength.md).

  nice -n 10 python -m scripts.strength.sprt --baseline=runs/a/export --tested=runs/b/export --output_dir=runs/sprt_a_b

Writes output_dir/sprt.yaml and output_dir/engines/*.yaml (shogi_policy.arena.shogiarena.write_sprt), runs
`shogiarena run sprt` into output_dir/run until the test decides or --games are played (rerunning resumes),
then prints ShogiArena's SPRT state (wins, draws, losses, LLR and its decision) from the run's state.json.
Needs the arena extra (pip install -e '.[arena]').
"""

import json
import subprocess
from pathlib import Path

from absl import app, flags

from scripts.strength import common
from shogi_policy.arena import shogiarena as arena

FLAGS = flags.FLAGS
flags.DEFINE_string("baseline", None, "Export directory of network A.", required=True)
flags.DEFINE_string("tested", None, "Export directory of network B.", required=True)
flags.DEFINE_string("output_dir", None, "The test's files and ShogiArena's run (run/).", required=True)
flags.DEFINE_float("elo0", 0.0, "H0: B is at most this many Elo stronger than A.")
flags.DEFINE_float("elo1", 30.0, "H1: B is at least this many Elo stronger than A.")
flags.DEFINE_integer("games", 400, "Games at most, when the test has not decided before.", lower_bound=2)
common.define_openings_flag()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    shogiarena = common.shogiarena_command(FLAGS.openings)
    for flag in ("baseline", "tested"):
        common.check_export_dir(flag, FLAGS[flag].value)
    if FLAGS.elo1 <= FLAGS.elo0:
        raise app.UsageError(f"--elo1={FLAGS.elo1} must be above --elo0={FLAGS.elo0}")
    output_dir = Path(FLAGS.output_dir)
    config = arena.write_sprt(
        output_dir, FLAGS.baseline, FLAGS.tested, FLAGS.elo0, FLAGS.elo1, FLAGS.openings or None
    )
    run_dir = output_dir / "run"
    command = [shogiarena, "run", "sprt", str(config), "--games", str(FLAGS.games), "--run-dir", str(run_dir)]
    subprocess.run(command, check=True)
    print(json.dumps(json.loads((run_dir / "state.json").read_text())["sprt_state"], indent=1))


if __name__ == "__main__":
    app.run(main)
