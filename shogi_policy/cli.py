"""Console commands: each sets up the process's TPU environment and Keras backend, then imports its app.

setup.cfg's console_scripts point here, and `python -m shogi_policy.cli <command> [flags]` runs the same
functions (shogi-policy-train is `python -m shogi_policy.cli train`). The environment has to be set
before TensorFlow and Keras are imported, and every app imports them at import time, hence this launcher:

  train            KERAS_BACKEND from --backend (else as set, else Keras's default, tensorflow).
                   TensorFlow: the PJRT variables when it will train on this host's TPU, else
                   TPU_LOAD_LIBRARY=0 (shogi_policy.tpu_runtime.configure_trainer). JAX: TPU_LOAD_LIBRARY=0
                   (the TensorFlow that runs tf.data must leave libtpu to JAX). --strategy=tpu without a
                   TPU chip stops here, before TensorFlow loads
  convert, export, sample, evaluate, usi
                   TPU_LOAD_LIBRARY=0: they run on the host CPU and never take the TPU from a trainer;
                   KERAS_BACKEND=tensorflow whatever the environment says: serving is TensorFlow
                   (SavedModels), and a JAX-trained model.keras or checkpoint loads under it
  preflight        what the runtime has (versions, TPU chips, and the TPU cores TensorFlow initialises
                   when --strategy=tpu|auto finds chips); exit status 1 when it cannot train as asked

`python -m shogi_policy.<app>` runs the app without this set-up.
"""

import importlib
import os
import sys

from absl import flags

from shogi_policy import tpu_runtime


def trainer_target(argv):
    """(--strategy, --tpu, --backend) of trainer arguments argv (flagfiles read), with the trainer's defaults.

    --backend is None when not given.
    """
    flag_values = flags.FlagValues()
    flags.DEFINE_string("strategy", "auto", "", flag_values=flag_values)
    flags.DEFINE_string("tpu", "local", "", flag_values=flag_values)
    flags.DEFINE_string("backend", None, "", flag_values=flag_values)
    flag_values(["shogi-policy-train", *argv], known_only=True)
    return flag_values.strategy, flag_values.tpu, flag_values.backend


def _run_app(name):
    importlib.import_module(f"shogi_policy.{name}").run()


def _serve(name):
    tpu_runtime.keep_off_tpu()
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
    strategy, tpu, backend = trainer_target(sys.argv[1:])
    problem = tpu_runtime.missing_tpu(strategy, tpu)
    if problem:
        sys.exit(f"shogi-policy-train --strategy=tpu: {problem}")
    if backend:
        os.environ["KERAS_BACKEND"] = backend
    if os.environ.get("KERAS_BACKEND") == "jax":
        # JAX loads libtpu itself; TensorFlow (tf.data) must not take it.
        tpu_runtime.keep_off_tpu()
        print("Keras backend jax: TPU_LOAD_LIBRARY=0 for TensorFlow, JAX picks its devices", file=sys.stderr)
    else:
        print(tpu_runtime.configure_trainer(strategy, tpu), file=sys.stderr)
    _run_app("train")


def preflight():
    """Prints the runtime report; with TPU chips and --strategy=tpu|auto also initialises the TPU system.

    Run it in a subprocess (the notebook does): initialising the TPU takes libtpu's lock until the process ends.
    """
    strategy, _, backend = trainer_target(sys.argv[1:])
    backend = backend or os.environ.get("KERAS_BACKEND", "tensorflow")
    lines, problem = tpu_runtime.preflight(strategy, backend=backend)
    print("\n".join(lines))
    if problem:
        sys.exit(f"\nPREFLIGHT FAILED:\n{problem}")
    if backend == "jax":
        _preflight_jax(strategy)
    elif strategy in ("tpu", "auto") and tpu_runtime.local_tpu_chips():
        print(tpu_runtime.configure_trainer(strategy, "local"))
        import tensorflow as tf

        from shogi_policy.strategy import TpuUnavailableError, make_strategy

        try:
            make_strategy("tpu")
        except TpuUnavailableError as error:
            sys.exit(f"\nPREFLIGHT FAILED: {error}")
        print("TPU cores:", [device.name for device in tf.config.list_logical_devices("TPU")])
    print(f"\npreflight ok for --strategy={strategy} --backend={backend}")


def _preflight_jax(strategy):
    """The devices JAX starts (it takes the TPU until this process ends); exits when --strategy=tpu finds none."""
    tpu_runtime.keep_off_tpu()  # the TensorFlow that JAX's trainer imports for tf.data
    import jax

    devices = jax.devices()
    print("JAX devices:", devices)
    if strategy == "tpu" and devices[0].platform != "tpu":
        sys.exit(
            f"\nPREFLIGHT FAILED: --strategy=tpu --backend=jax, but JAX started {devices[0].platform} devices"
        )


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
