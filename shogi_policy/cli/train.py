"""shogi-policy-train: the trainer's flags, mapped onto training.config.TrainConfig, then training.train.train.

    shogi-policy-train --data_dir=shards/ --model_dir=gs://bucket/run1 --preset=b10c192 \
        --batch_size=1024 --steps=100000 --steps_per_epoch=1000 --mixed_bfloat16
    shogi-policy-train --recipe=main --data_dir=shards/ --model_dir=runs/main

Every flag but --model_dir and --recipe is a field of the config, made from it: its name, default, help and
choices (define_flags, through the commands' one shell, shogi_policy.cli.command), and its range is checked by the
config (config.ConfigError: one line on stderr, exit status 1). Flags can come from a file (--flagfile=run.flags, one --flag=value per line) or a named recipe
(--recipe=NAME: a flag file shipped in shogi_policy/training/recipes, read in place, so flags after it override
it). A run whose loss or weights stop being finite exits with status 1 and what to do (TrainingDiverged).

The shogi-policy-train command (shogi_policy.cli.launch) sets the Keras backend and TPU environment before this
module loads Keras; `python -m shogi_policy.cli.train` runs it without that set-up.
"""

import json

from absl import app, flags

from shogi_policy.cli import command
from shogi_policy.training import config as configs
from shogi_policy.training import recipes
from shogi_policy.training import train as trainer


def define_flags(flag_values=flags.FLAGS):
    """Registers the trainer's flags on flag_values (run() uses the global FLAGS; tests their own)."""
    flags.DEFINE_string(
        "model_dir", None, "Output and checkpoint directory; local or gs://.", flag_values=flag_values
    )
    flags.DEFINE_enum(
        "recipe",
        None,
        list(recipes.NAMES),
        "A named recipe (shogi_policy/training/recipes/NAME.flags), read in place as --flagfile: later flags "
        "override it.",
        flag_values=flag_values,
    )
    for name, field in configs.flat_fields().items():
        command.define_flag(name, field, flag_values)


def config_from_flags(flag_values):
    """(TrainConfig, --model_dir) of parsed trainer flags; app.UsageError for a value out of range."""
    if (
        flag_values["recipe"].value is not None
    ):  # expand() reads it on the command line; a flagfile's stays unread
        raise app.UsageError(
            f"--recipe={flag_values['recipe'].value} works on the command line only, not inside a --flagfile"
        )
    try:
        config = configs.TrainConfig.from_flat(
            {name: flag_values[name].value for name in configs.flat_fields()}
        )
    except configs.ConfigError as error:
        raise app.UsageError(str(error)) from None
    return config, flag_values.model_dir


def config_from_argv(argv):
    """(TrainConfig, --model_dir) of the trainer's flags in argv (recipes and flagfiles read, others ignored)."""
    flag_values = flags.FlagValues()
    define_flags(flag_values)
    flag_values(["shogi-policy-train", *recipes.expand(argv)], known_only=True)
    return config_from_flags(flag_values)


def train(flag_values, callbacks=()):
    """Trains per parsed trainer flags (training.train.train); app.UsageError where the config says no."""
    config, model_dir = config_from_flags(flag_values)
    try:
        return trainer.train(config, model_dir, callbacks=callbacks)
    except configs.ConfigError as error:
        raise app.UsageError(str(error)) from None


def _train_and_print(flag_values):
    try:
        metrics = train(flag_values)
    except trainer.TrainingDiverged as error:  # a RuntimeError, yet the user's to act on: one line too
        raise ValueError(str(error)) from None
    print(json.dumps(metrics, indent=1, sort_keys=True))


def run():
    define_flags()
    recipes.expand_sys_argv("shogi-policy-train")
    command.run("shogi-policy-train", _train_and_print)


if __name__ == "__main__":
    run()
