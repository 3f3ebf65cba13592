"""The preflight: what this runtime has, the devices its backend starts, and the problems with it.

  runtime_report()            Python, the installed wheels (by metadata, nothing imported) and the TPU chips
  problems(strategy, backend) that report's lines and what stops a run with --strategy on --backend (or None)
  tensorflow_devices(strategy), jax_devices(strategy)
                              the devices the backend starts (JAX: before TensorFlow loads); PreflightError
                              when it cannot train as asked

The preflight's training steps are shogi_policy.runtime.checks. `python -m shogi_policy.cli preflight` runs
these in that order in one process, so the steps run where training will.
"""

import platform

from shogi_policy.runtime.environment import (
    JAX_PIP_LINE,
    NO_TPU_HELP,
    PCI_DEVICES,
    configure_trainer,
    local_tpu_chips,
    missing_tpu,
    start_jax,
    version,
)


class PreflightError(RuntimeError):
    """The runtime cannot train as asked; the message says why and what to do."""


def runtime_report(pci_devices=PCI_DEVICES):
    """{name: value} of what this runtime has: Python, installed wheels (by metadata, nothing imported), TPUs."""
    return {
        "python": platform.python_version(),
        **{
            name: version(name)
            for name in (
                "tensorflow-tpu",
                "tensorflow",
                "tensorflow-cpu",
                "keras",
                "jax",
                "orbax-checkpoint",
                "libtpu",
                "cshogi",
                "numpy",
            )
        },
        "tpu_chips": local_tpu_chips(pci_devices),
    }


def problems(strategy, pci_devices=PCI_DEVICES, backend="tensorflow"):
    """(report lines, problem or None) for a run with --strategy on this runtime and Keras backend; imports
    no TensorFlow."""
    report = runtime_report(pci_devices)
    lines = [f"{name:16s} {value if value is not None else '-'}" for name, value in report.items()]
    problems = []
    if report["tensorflow-tpu"] and report["tensorflow"]:
        problems.append(
            "both tensorflow and tensorflow-tpu are installed: `pip uninstall -y tensorflow tensorflow-tpu`, then "
            "reinstall tensorflow-tpu (the tensorflow or test extra pulls the CPU wheel in: use the tf-tpu extra)"
        )
    if backend == "jax":
        if not report["jax"] or not report["orbax-checkpoint"]:
            problems.append(
                "the JAX backend needs jax and orbax-checkpoint (preinstalled on Colab TPU runtimes)"
            )
        if report["tensorflow-tpu"]:
            problems.append(
                "tensorflow-tpu is installed: its libtpu 0.0.14 is not the one JAX needs. `pip uninstall -y "
                f"tensorflow-tpu`, reinstall the libtpu that came with JAX, then {JAX_PIP_LINE}"
            )
    elif report["libtpu"] and report["libtpu"] != "0.0.14" and report["tensorflow-tpu"] == "2.20.0":
        problems.append(f"libtpu {report['libtpu']}: tensorflow-tpu 2.20.0 needs libtpu==0.0.14")
    if missing_tpu(strategy, "local", pci_devices):
        problems.append(NO_TPU_HELP)
    return lines, "\n".join(problems) or None


def tensorflow_devices(strategy):
    """TensorFlow's devices; with TPU chips and --strategy=tpu|auto, the TPU cores it initialises (or exit 1)."""
    print(configure_trainer(strategy, "local"))  # the trainer's environment, before TensorFlow
    import tensorflow as tf

    if strategy in ("tpu", "auto") and local_tpu_chips():
        from shogi_policy.runtime.strategy import TpuUnavailableError, make_strategy

        try:
            make_strategy("tpu")
        except TpuUnavailableError as error:
            raise PreflightError(str(error)) from error
        devices = [device.name for device in tf.config.list_logical_devices("TPU")]
        print("TPU cores:", devices)
        return devices
    return [device.name for device in tf.config.list_logical_devices()]


def jax_devices(strategy):
    """JAX's devices, started before TensorFlow loads (it takes the TPU until this process ends); exits 1 when
    JAX starts no TPU beside TPU chips, or when --strategy=tpu finds none."""
    devices, problem = start_jax()
    if problem:
        raise PreflightError(problem)
    print("JAX devices:", devices)
    if strategy == "tpu" and devices[0].platform != "tpu":
        raise PreflightError(f"--strategy=tpu --backend=jax, but JAX started {devices[0].platform} devices")
    return [str(device) for device in devices]
