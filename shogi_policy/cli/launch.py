"""Console commands: each sets up the process's TPU environment and Keras backend, then imports its app.

setup.cfg's console_scripts point here, and `python -m shogi_policy.cli <command> [flags]` runs the same
functions (shogi-policy-train is `python -m shogi_policy.cli train`). The environment has to be set
before TensorFlow and Keras are imported, and every app imports them at import time, hence this launcher:

  train            KERAS_BACKEND from --backend (else as set, else Keras's default, tensorflow).
                   TensorFlow: the PJRT variables when it will train on this host's TPU, else
                   TPU_LOAD_LIBRARY=0 (shogi_policy.runtime.environment.configure_trainer). JAX: JAX starts its
                   devices here, before anything imports TensorFlow (environment.start_jax), then
                   TPU_LOAD_LIBRARY=0 keeps tf.data's TensorFlow off libtpu; with TPU chips and no TPU device
                   from JAX it stops with JAX's error (never trains on the CPU beside a TPU). With
                   --jax_distributed the trainer starts JAX after its distributed runtime. --strategy=tpu
                   without a TPU chip stops here, before TensorFlow loads
  convert, export, sample, evaluate, usi
                   TPU_LOAD_LIBRARY=0: they run on the host CPU and never take the TPU from a trainer;
                   KERAS_BACKEND=tensorflow whatever the environment says: serving is TensorFlow
                   (SavedModels), and a JAX-trained model.keras or checkpoint loads under it
  preflight        what the runtime has (versions, TPU chips, the devices the backend starts), then
                   --check_steps training steps on random records (shogi_policy.runtime.checks); with
                   --report=FILE also a 20-step throughput and MNIST, written as JSON; exit status 1 when it
                   cannot train as asked

`python -m shogi_policy.<app>` runs the app without this set-up.
"""

import importlib
import os
import sys

from absl import flags

from shogi_policy.runtime import environment
from shogi_policy.runtime import preflight as runtime_preflight
from shogi_policy.training import config as configs
from shogi_policy.training import recipes


def trainer_target(argv):
    """(--strategy, --tpu, --backend, --jax_distributed) of trainer arguments argv (flagfiles read), with the
    defaults of config.RuntimeConfig's fields; --backend is None when not given."""
    names, fields = ("strategy", "tpu", "backend", "jax_distributed"), configs.flat_fields()
    flag_values = flags.FlagValues()
    for name in names:
        define = flags.DEFINE_bool if configs.field_type(fields[name]) is bool else flags.DEFINE_string
        define(name, fields[name].default, "", flag_values=flag_values)
    flag_values(["shogi-policy-train", *argv], known_only=True)
    return tuple(flag_values[name].value for name in names)


APP_MODULES = {
    "convert": "shogi_policy.cli.convert",
    "train": "shogi_policy.cli.train",
    "export": "shogi_policy.cli.export",
    "sample": "shogi_policy.cli.sample",
    "evaluate": "shogi_policy.cli.evaluate",
    "usi": "shogi_policy.cli.usi",
}


def _run_app(name):
    importlib.import_module(APP_MODULES[name]).run()


def _serve(name):
    environment.keep_off_tpu()
    os.environ["KERAS_BACKEND"] = "tensorflow"  # overrides a KERAS_BACKEND=jax left for the trainer
    _run_app(name)


def convert():
    _serve("convert")


def export():
    _serve("export")


def sample():
    _serve("sample")


def evaluate():
    _serve("evaluate")


def usi():
    _serve("usi")


def train():
    """shogi-policy-train, with the Keras backend and TPU environment its --backend, --strategy and --tpu call for."""
    recipes.expand_sys_argv("shogi-policy-train")
    try:
        strategy, tpu, backend, jax_distributed = trainer_target(sys.argv[1:])
    except flags.Error as error:  # a --flagfile that does not open, a value of the wrong type
        sys.exit(f"shogi-policy-train: {error}")
    problem = environment.missing_tpu(strategy, tpu)
    if problem:
        sys.exit(f"shogi-policy-train --strategy=tpu: {problem}")
    if backend:
        os.environ["KERAS_BACKEND"] = backend
    if os.environ.get("KERAS_BACKEND") != "jax":
        print(environment.configure_trainer(strategy, tpu), file=sys.stderr)
    elif jax_distributed:  # jax.distributed.initialize() must come first: the trainer starts JAX after it
        print("Keras backend jax, --jax_distributed: the trainer starts JAX's devices", file=sys.stderr)
    else:
        print(f"Keras backend jax: {_start_jax('shogi-policy-train')}", file=sys.stderr)
    _run_app("train")


def _start_jax(command):
    """Starts JAX's devices before TensorFlow loads (environment.start_jax); exits with JAX's error if it must."""
    devices, problem = environment.start_jax()
    if problem:
        sys.exit(f"{command}: {problem}")
    return f"JAX started {len(devices)} {devices[0].platform} devices; TPU_LOAD_LIBRARY=0 for TensorFlow from here"


def preflight_options(argv):
    """(--report, --check_steps, --mnist_steps) of the preflight's own flags in argv; the rest is the trainer's."""
    flag_values = flags.FlagValues()
    flags.DEFINE_string("report", None, "", flag_values=flag_values)
    flags.DEFINE_integer("check_steps", 2, "", lower_bound=0, flag_values=flag_values)
    flags.DEFINE_integer("mnist_steps", 300, "", lower_bound=0, flag_values=flag_values)
    try:
        flag_values(["shogi-policy-preflight", *argv], known_only=True)
    except flags.Error as error:
        sys.exit(f"shogi-policy-preflight: {error}")
    return flag_values.report, flag_values.check_steps, flag_values.mnist_steps


def preflight():
    """The runtime report, the devices the backend starts and a few real training steps; exits 1 on a problem.

    Flags: the trainer's --strategy, --backend, --preset, --batch_size, --mixed_bfloat16 (what the run will
    use), --check_steps=N training steps on random records (default 2; 0: none), --report=FILE: also a
    20-step throughput and --mnist_steps of MNIST, all written to FILE as JSON (shogi_policy.runtime.checks).
    Run it in a subprocess (the notebook does): starting the TPU takes libtpu's lock until the process ends.
    """
    recipes.expand_sys_argv("shogi-policy-preflight")
    strategy, _, backend, _ = trainer_target(sys.argv[1:])
    report_path, check_steps, mnist_steps = preflight_options(sys.argv[1:])
    backend = backend or os.environ.get("KERAS_BACKEND", "tensorflow")
    os.environ["KERAS_BACKEND"] = backend
    lines, problem = runtime_preflight.problems(strategy, backend=backend)
    print("\n".join(lines))
    if problem:
        sys.exit(f"\nPREFLIGHT FAILED:\n{problem}")
    try:
        if backend == "jax":
            devices = runtime_preflight.jax_devices(strategy)
        else:
            devices = runtime_preflight.tensorflow_devices(strategy)
    except runtime_preflight.PreflightError as error:
        sys.exit(f"\nPREFLIGHT FAILED: {error}")
    from shogi_policy.cli.train import config_from_argv
    from shogi_policy.runtime import checks
    from shogi_policy.training.train import train as trainer

    try:
        report = checks.run_checks(
            trainer,
            config_from_argv(sys.argv[1:])[0],
            check_steps=check_steps,
            mnist_steps=mnist_steps if report_path else 0,
            throughput_steps=20 if report_path else 0,
        )
    except Exception as error:  # (any failure of fit is the preflight's answer)
        sys.exit(f"\nPREFLIGHT FAILED: training did not run ({type(error).__name__}: {str(error)[:2000]})")
    if report_path:
        checks.write_report(report_path, runtime_preflight.runtime_report(), devices, report)
        print(f"report written to {report_path}")
    print(f"\npreflight ok for --strategy={strategy} --backend={backend}")


COMMANDS = {
    command.__name__: command for command in (convert, train, export, sample, evaluate, usi, preflight)
}


def main():
    """python -m shogi_policy.cli <command> [flags]: the console command shogi-policy-<command>."""
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: python -m shogi_policy.cli {{{'|'.join(COMMANDS)}}} [flags]")
    command = sys.argv[1]
    sys.argv = [f"shogi-policy-{command}", *sys.argv[2:]]
    COMMANDS[command]()


if __name__ == "__main__":
    main()
