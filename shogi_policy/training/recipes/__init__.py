"""Named training recipes: flag files shipped with the package (main, main_bfloat16, long, tpu: NAME.flags).

  main           the main job on the embedded default data (scripts/run_default_job.sh), 1,300 steps on a CPU
  main_bfloat16  the main job on a CPU that computes bfloat16 natively: 1,800 steps in bfloat16, in main's time
  long           the long CPU recipe: 6,000 steps with --mirror
  tpu            dlshogi's 10x192 network at batch 1024, bfloat16, 100 steps per TPU call

`shogi-policy-train --recipe=main --data_dir=... --model_dir=...` reads one as --flagfile does, in place: flags
after it override it (expand). From Python, load(name) is its config.TrainConfig. A recipe file holds one
`--name=value` (or `--name` / `--noname` for a switch) per line and `#` comments.

Loads neither TensorFlow nor Keras, as the config it reads: the launcher expands recipes before it chooses the
backend.
"""

import pathlib
import sys

from shogi_policy.training import config

DIRECTORY = pathlib.Path(__file__).resolve().parent
NAMES = tuple(sorted(path.stem for path in DIRECTORY.glob("*.flags")))


def path(name):
    """The file of a recipe by name; ValueError naming the recipes for another name."""
    if name not in NAMES:
        raise ValueError(f"--recipe must be one of {', '.join(NAMES)}, got {name[:100]!r}")
    return DIRECTORY / f"{name}.flags"


def expand(argv):
    """argv with each --recipe=NAME (or --recipe NAME) replaced by --flagfile=<its file>, in place."""
    expanded, args = [], iter(argv)
    for arg in args:
        if arg in ("--recipe", "-recipe"):
            arg = f"--recipe={next(args, '')}"
        if arg.startswith(("--recipe=", "-recipe=")):
            arg = f"--flagfile={path(arg.partition('=')[2])}"
        expanded.append(arg)
    return expanded


def expand_sys_argv(command):
    """sys.argv with each --recipe=NAME read in place (expand); exits naming command on an unknown recipe."""
    try:
        sys.argv = [sys.argv[0], *expand(sys.argv[1:])]
    except ValueError as error:
        sys.exit(f"{command}: {error}")


def settings(name):
    """{flag name: value text, or True/False for a switch} of a recipe's lines."""
    values = {}
    for line in path(name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("--"):
            raise ValueError(f"{path(name)}: expected --name=value, got {line[:100]!r}")
        key, equals, value = line[2:].partition("=")
        if equals:
            values[key] = value
        elif key.startswith("no"):
            values[key[2:]] = False
        else:
            values[key] = True
    return values


def load(name):
    """config.TrainConfig of a recipe (the other fields at their defaults)."""
    fields, values = config.flat_fields(), settings(name)
    unknown = set(values) - set(fields)
    if unknown:
        raise ValueError(f"{path(name)}: unknown settings {sorted(unknown)}")
    return config.TrainConfig.from_flat(
        {
            key: _typed(config.field_type(fields[key]), value, name, key, auto=config.takes_auto(fields[key]))
            for key, value in values.items()
        }
    )


def _typed(kind, value, name, key, auto=False):
    """A recipe's value text (or switch) as the field's type; bool text as absl reads it (true/false, 1/0), and
    auto where the field takes it."""
    if auto and isinstance(value, str) and value.lower() == "auto":
        return "auto"
    if isinstance(value, bool) or kind is not bool:
        return value if isinstance(value, bool) else kind(value)
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise ValueError(
        f"{path(name)}: --{key} must be true{', false or auto' if auto else ' or false'}, got {value[:100]!r}"
    )
