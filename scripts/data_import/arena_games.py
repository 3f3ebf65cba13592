"""ShogiArena runs' games as the project's USI game lines, which shogi-policy-convert reads (docs/strength.md).

  python scripts/data_import/arena_games.py --run_dirs=runs/generate --output=data/engine_games.usi.gz

One line per finished game, in the order ShogiArena stored them: 'startpos moves ...<TAB>result<TAB>source
<TAB>ending' with source 'shogiarena RUN_DIR black=NAME white=NAME game=N'. Every move is replayed with cshogi
(shogi_policy.arena.shogiarena.run_games). A .gz output is gzip with mtime 0, so the same runs give the same bytes.
"""

import gzip
from pathlib import Path

from absl import app, flags

from shogi_policy.arena import shogiarena as arena
from shogi_policy.core import file_io

FLAGS = flags.FLAGS
flags.DEFINE_list("run_dirs", None, "ShogiArena run directories (each holds game.db).", required=True)
flags.DEFINE_string("output", None, "Output file (.usi, .usi.gz).", required=True)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    lines = []
    for run_dir in FLAGS.run_dirs:
        try:
            games = arena.run_games(Path(run_dir) / "game.db")
        except (FileNotFoundError, ValueError) as error:
            raise app.UsageError(f"--run_dirs: {error}") from None
        for number, game in enumerate(games, start=1):
            source = f"shogiarena {run_dir} black={game['black']} white={game['white']} game={number}"
            lines.append(arena.usi_game_line(game, source) + "\n")
    text = "".join(lines).encode()
    output = Path(FLAGS.output)
    file_io.write_file_atomic(str(output), gzip.compress(text, mtime=0) if output.suffix == ".gz" else text)
    print(f"{len(lines)} games -> {output}")


if __name__ == "__main__":
    app.run(main)
