"""What the strength scripts share: the --openings flag and the checks made before ShogiArena starts."""

import shutil
from pathlib import Path

from absl import app, flags

FLOODGATE_OPENINGS = (
    Path(__file__).resolve().parents[3] / "shared/data/floodgate_openings/records2016_10818.sfen"
)


def define_openings_flag():
    flags.DEFINE_string(
        "openings",
        str(FLOODGATE_OPENINGS),
        "Opening lines ('startpos moves ...'), each played with both colours; '' plays from the start position.",
    )


def shogiarena_command(openings):
    """The shogiarena executable; app.UsageError when it is missing or --openings names no file."""
    shogiarena = shutil.which("shogiarena")
    if shogiarena is None:
        raise app.UsageError("shogiarena is not installed: pip install -e '.[arena]'")
    if openings and not Path(openings).is_file():
        raise app.UsageError(
            f"--openings={openings[:200]!r}: no such file ('' plays from the start position)"
        )
    return shogiarena


def check_export_dir(flag, value):
    """app.UsageError unless value (the flag's) is a directory: an export of shogi-policy-export."""
    if not Path(value).is_dir():
        raise app.UsageError(
            f"--{flag}={value[:200]!r} is not a directory (an export of shogi-policy-export)"
        )
