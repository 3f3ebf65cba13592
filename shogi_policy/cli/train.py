"""shogi-policy-train: the trainer's flags, mapped onto training.config.TrainConfig, then training.train.train.

    shogi-policy-train --data_dir=shards/ --model_dir=gs://bucket/run1 --preset=b10c192 \
        --batch_size=1024 --steps=100000 --steps_per_epoch=1000 --mixed_bfloat16
    shogi-policy-train --recipe=main --data_dir=shards/ --model_dir=runs/main

Every flag but --model_dir and --recipe is a field of the config, made from it: its name, default, help and
choices (define_flags), and its range is checked by the config (config.ConfigError -> app.UsageError, exit
status 1). Flags can come from a file (--flagfile=run.flags, one --flag=value per line) or a named recipe
(--recipe=NAME: a flag file shipped in shogi_policy/training/recipes, read in place, so flags after it override
it). A run whose loss or weights stop being finite exits with status 1 and what to do (TrainingDiverged).

The shogi-policy-train command (shogi_policy.cli.launch) sets the Keras backend and TPU environment before this
module loads Keras; `python -m shogi_policy.cli.train` runs it without that set-up.
"""

import json
import sys

from absl import app, flags

from shogi_policy.training import config as configs
from shogi_policy.training import recipes
from shogi_policy.training import train as trainer


class _SwitchOrAuto(flags.BooleanParser):
    """A switch that also takes auto: --name, --noname, --name=true|false (absl's spellings) or --name=auto."""

    def parse(self, argument):
        if isinstance(argument, str) and argument.lower() == configs.AUTO:
            return configs.AUTO
        try:
            return super().parse(argument)
        except (ValueError, TypeError):
            raise ValueError(f"expected true, false or auto, got {argument!r}") from None

    def flag_type(self):
        return "bool or auto"


def _define(name, field, flag_values):
    """The flag of one config field: its default and help; an enum of its choices, else by its type."""
    kind, help_text, choices = configs.field_type(field), field.metadata["help"], field.metadata["choices"]
    kw = {"flag_values": flag_values}
    if choices is not None:
        flags.DEFINE_enum(name, field.default, list(choices), help_text, **kw)
    elif configs.takes_auto(field):
        flags.DEFINE_flag(
            flags.Flag(_SwitchOrAuto(), None, name, field.default, help_text, boolean=True), **kw
        )
    elif kind is bool:
        flags.DEFINE_bool(name, field.default, help_text, **kw)
    elif kind is int:
        flags.DEFINE_integer(name, field.default, help_text, **kw)
    elif kind is float:
        flags.DEFINE_float(name, field.default, help_text, **kw)
    else:
        flags.DEFINE_string(name, field.default, help_text, **kw)


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
        _define(name, field, flag_values)


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


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        metrics = train(flags.FLAGS)
    except trainer.TrainingDiverged as error:
        sys.exit(f"shogi-policy-train: {error}")
    print(json.dumps(metrics, indent=1, sort_keys=True))


def run():
    define_flags()
    recipes.expand_sys_argv("shogi-policy-train")
    app.run(main)


if __name__ == "__main__":
    run()
