"""The one shell of every console command: flags made from a configuration's dataclass fields, parsed, the
configuration built, the library called; a refused input ends the command with one line on stderr and exit 1.

A field's flag has the field's name and default; its metadata gives the help ("help"), the allowed values
("choices": an enum flag), "required" (absl's required flag) and, for a tuple field, "flag": "list" (a comma list)
or "multi_string" (repeatable, each a comma list). Other flags are typed by the field (bool, int, float, str).

Refusals: a flag that does not parse (absl's flags.Error, --flagfile naming no file included), app.UsageError,
ValueError (the library's word for bad input: a ConfigError, a file that is not what it should be), OSError and
TensorFlow's file errors (a path that cannot be read or written: named with its reason). Everything else is a bug
and keeps its traceback.
"""

import dataclasses
import sys

from absl import app, flags

from shogi_policy.training.config import AUTO, field_type, takes_auto

# TensorFlow's errors of a path (tf.io.gfile, checkpoints) that are the user's to fix, by class name: the shell
# imports no TensorFlow (the trainer under JAX may run without it).
_TF_PATH_ERRORS = ("NotFoundError", "PermissionDeniedError", "AlreadyExistsError", "ResourceExhaustedError")


class _SwitchOrAuto(flags.BooleanParser):
    """A switch that also takes auto: --name, --noname, --name=true|false (absl's spellings) or --name=auto."""

    def parse(self, argument):
        if isinstance(argument, str) and argument.lower() == AUTO:
            return AUTO
        try:
            return super().parse(argument)
        except (ValueError, TypeError):
            raise ValueError(f"expected true, false or auto, got {argument!r}") from None

    def flag_type(self):
        return "bool or auto"


def define_flag(name, field, flag_values=flags.FLAGS):
    """The flag of one dataclass field (see the module docstring)."""
    metadata = field.metadata
    kw = {"flag_values": flag_values}
    if metadata.get("required"):
        kw["required"] = True
    help_text, choices, default = metadata["help"], metadata.get("choices"), field.default
    kind = metadata.get("flag")
    if kind == "multi_string":
        flags.DEFINE_multi_string(name, None if default is None else list(default), help_text, **kw)
    elif kind == "list":
        flags.DEFINE_list(name, list(default), help_text, **kw)
    elif choices is not None:
        flags.DEFINE_enum(name, default, list(choices), help_text, **kw)
    elif takes_auto(field):
        flags.DEFINE_flag(flags.Flag(_SwitchOrAuto(), None, name, default, help_text, boolean=True), **kw)
    elif field_type(field) is bool:
        flags.DEFINE_bool(name, default, help_text, **kw)
    elif field_type(field) is int:
        flags.DEFINE_integer(name, default, help_text, **kw)
    elif field_type(field) is float:
        flags.DEFINE_float(name, default, help_text, **kw)
    else:
        flags.DEFINE_string(name, default, help_text, **kw)


def define_config_flags(config_type, flag_values=flags.FLAGS):
    """Registers one flag per field of the dataclass config_type on flag_values."""
    for field in dataclasses.fields(config_type):
        define_flag(field.name, field, flag_values)


def config_from_flags(config_type, flag_values=flags.FLAGS):
    """config_type built from its parsed flags (lists as tuples); its own checks raise ValueError."""
    values = {field.name: flag_values[field.name].value for field in dataclasses.fields(config_type)}
    return config_type(**{name: tuple(v) if isinstance(v, list) else v for name, v in values.items()})


def parse_config(config_type, argv):
    """config_type of the command line argv (argv[0] the command's name) on fresh flags: what `call` receives."""
    flag_values = flags.FlagValues()
    define_config_flags(config_type, flag_values)
    flag_values(argv)
    return config_from_flags(config_type, flag_values)


def refusal(error):
    """The one line of a refused input, or None when the error is a bug (module docstring)."""
    if isinstance(error, OSError):
        if error.filename is not None and error.strerror:
            return f"{error.filename}: {error.strerror}"
        return str(error)
    if isinstance(error, (ValueError, app.UsageError, flags.Error)):
        return str(error)
    if type(error).__name__ in _TF_PATH_ERRORS and type(error).__module__.startswith("tensorflow"):
        return getattr(error, "message", None) or str(error)
    return None


def exit_refused(command, error):
    """Ends the process with '<command>: <the refusal>' and exit status 1, or re-raises a bug."""
    line = refusal(error)
    if line is None:
        raise error
    sys.exit(f"{command}: {line}")


def run(command, body, flag_values=flags.FLAGS):
    """app.run of body(flag_values) on the parsed command line: no positional arguments, refusals as one line."""

    def parse(argv):
        try:
            return flag_values(argv)
        except flags.Error as error:  # absl's own message would take two lines and the usage text
            sys.exit(f"{command}: {error}")

    def main(argv):
        if len(argv) > 1:
            sys.exit(f"{command}: unexpected arguments: {argv[1:]}")
        try:
            body(flag_values)
        except Exception as error:  # (exit_refused re-raises whatever is no refusal)
            exit_refused(command, error)

    app.run(main, flags_parser=parse)


def run_config_command(command, config_type, call):
    """The shell of a command whose flags are config_type's fields: call(config) on the parsed flags."""
    define_config_flags(config_type)
    run(command, lambda flag_values: call(config_from_flags(config_type, flag_values)))
