"""TPU runtime set-up that has to happen before TensorFlow is imported; this module imports no TensorFlow.

  local_tpu_chips()        TPU chips on this host's PCI bus: no TensorFlow, no libtpu, no network, < 1 ms
  pjrt_environment(path)   the variables Google's TF-on-TPU-VM recipe sets before TensorFlow is imported
  configure_trainer(...)   the trainer's launcher: the PJRT variables when it will use a local TPU,
                           else TPU_LOAD_LIBRARY=0
  keep_off_tpu()           every other console command: TPU_LOAD_LIBRARY=0, so it never takes the TPU
  start_jax()              the JAX trainer and preflight: JAX's backend first, then TensorFlow kept off libtpu

Why before TensorFlow: with the tensorflow-tpu wheel, `import tensorflow` loads libtpu (unless
TPU_LOAD_LIBRARY=0), and libtpu takes /tmp/libtpu_lockfile for the life of the process, so a
TensorBoard, notebook kernel or sampling process that imported TensorFlow first keeps the trainer
off the TPU. TensorFlow also reads the PJRT variables only when it starts.
"""

import importlib.metadata
import importlib.util
import os
from pathlib import Path

# Google's PCI vendor id and the TPU chips' device ids, as jax-ml/jax jax/_src/hardware_utils.py
# (num_available_tpu_chips_and_device_id) lists them; a new TPU generation needs its id added here. The
# vendor alone is not enough: Google's gVNIC network card on GCE VMs has the same vendor id.
_GOOGLE_PCI_VENDOR = "0x1ae0"
TPU_PCI_DEVICES = {
    "0x0027": "v2/v3",
    "0x0056": "plc",  # jax: "no public name"
    "0x005e": "v4",
    "0x0062": "v5p",
    "0x0063": "v5e",
    "0x006f": "v6e",
    "0x0076": "tpu7x",
}
PCI_DEVICES = Path("/sys/bus/pci/devices")

# The choices of --strategy and --jit_compile (shogi_policy.runtime.strategy); here, with no TensorFlow, so that
# the trainer's config and the launcher read them before the backend is chosen.
STRATEGIES = ("auto", "tpu", "mirrored", "default")
JIT_COMPILE = ("auto", "true", "false")

# TensorFlow's tpu_api_dlsym_initializer.cc: "TPU_LOAD_LIBRARY=0, not loading libtpu". The process then
# has no TPU_SYSTEM device, takes no lock file and runs on the CPU.
KEEP_OFF_TPU = {"TPU_LOAD_LIBRARY": "0"}

# The JAX road (Colab's default): the runtime's jax, jaxlib, libtpu, keras and orbax-checkpoint, plus the CPU
# TensorFlow wheel for tf.data, TensorBoard and export (it never loads libtpu).
JAX_PIP_LINE = "pip install \"tensorflow-cpu==2.21.0\" -e '.[cpu]'"
PIP_LINE = 'pip install "tensorflow-tpu==2.20.0" "libtpu==0.0.14" -e \'.[tf-tpu]\''
NO_TPU_HELP = (
    "No TPU chip on this host's PCI bus. On Colab: Runtime > Change runtime type > TPU. There the JAX road\n"
    f"(--backend=jax) is the default:\n  {JAX_PIP_LINE}\n"
    f"The TensorFlow road (opt-in):\n  {PIP_LINE}\n"
    "(libtpu==0.0.14 matters: newer libtpu aborts tensorflow-tpu 2.20 at import). Without a TPU, train with\n"
    "--strategy=default (CPU) or --strategy=auto (docs/tpu.md)."
)
JAX_TPU_HELP = (
    "What to do: restart the runtime if another process may hold the TPU (a notebook kernel or a leftover\n"
    "training or preflight process: libtpu serves one process per host); keep the jax, jaxlib and libtpu the\n"
    "runtime shipped (on Colab never `pip install jax[tpu]` or tensorflow-tpu beside them: each brings another\n"
    "libtpu; the notebook puts Colab's back); never set TPU_LOAD_LIBRARY=0 for the JAX trainer. This trainer\n"
    "does not fall back to the CPU while TPU chips are present (docs/tpu.md, troubleshooting)."
)

TPU_INIT_HELP = (
    "TPU chips are present but TensorFlow could not initialise them. Check that tensorflow-tpu==2.20.0 runs\n"
    "with libtpu==0.0.14; that no other process holds the TPU (a notebook kernel, TensorBoard or leftover\n"
    "process that imported TensorFlow without TPU_LOAD_LIBRARY=0: restart the runtime); that TPU_LOAD_LIBRARY\n"
    "is not 0 for the trainer. If the PJRT runtime is the problem, set NEXT_PLUGGABLE_DEVICE_USE_C_API=false\n"
    "before training to keep TensorFlow's older TPU runtime."
)


def local_tpu_chips(pci_devices=PCI_DEVICES):
    """{PCI address: TPU generation} of the TPU chips on this host (empty off a TPU VM).

    Reads <pci_devices>/*/vendor and device; unreadable entries are skipped.
    """
    chips = {}
    for device in sorted(Path(pci_devices).glob("*")):
        try:
            if (device / "vendor").read_text().strip() != _GOOGLE_PCI_VENDOR:
                continue
            device_id = (device / "device").read_text().strip()
        except OSError:
            continue
        if device_id in TPU_PCI_DEVICES:
            chips[device.name] = TPU_PCI_DEVICES[device_id]
    return chips


def libtpu_library_path():
    """Path of the installed libtpu.so, or None; found without importing libtpu.

    Importing libtpu sets TPU_LIBRARY_PATH as a side effect (libtpu/__init__.py,
    configure_library_path); its get_library_path() is this same join.
    """
    spec = importlib.util.find_spec("libtpu")
    if spec is None or spec.origin is None:
        return None
    return str(Path(spec.origin).parent / "libtpu.so")


def pjrt_environment(library_path):
    """{variable: value} that puts TensorFlow on the TPU's PJRT runtime; set before TF is imported.

    Source of all four: keras-io examples/keras_rs/distributed_embedding_tf.py (Keras-RS on TF TPU,
    https://keras.io/keras_rs/examples/distributed_embedding_tf/, tensorflow-tpu 2.19, TPU v5p/v6e), which
    sets them in this order before `import tensorflow`. The Cloud TPU docs name PJRT ("-pjrt" TF runtime
    versions, https://cloud.google.com/tpu/docs/supported-tpu-versions) as the device API of TF on v5e.
    Only for hosts with a TPU: on a host without one, initialize_tpu_system then segfaults (measured with
    libtpu 0.0.14: "PJRT plugin has PJRT API version 0.68. The framework PJRT API version is 0.72").
    """
    return {
        # The PJRT device type, as PyTorch/XLA and JAX name it; set by the keras-io recipe.
        "PJRT_DEVICE": "TPU",
        # TensorFlow's NextPluggableDevice: the device comes from a PJRT C API plugin (libtpu) ...
        "NEXT_PLUGGABLE_DEVICE_USE_C_API": "true",
        # ... loaded from this library.
        "TF_PLUGGABLE_DEVICE_LIBRARY_PATH": library_path,
        # The MLIR bridge (TF graph -> XLA) with the two passes the keras-io recipe turns on.
        "TF_XLA_FLAGS": (
            "--tf_mlir_enable_mlir_bridge=true "
            "--tf_mlir_enable_convert_control_to_data_outputs_pass=true "
            "--tf_mlir_enable_merge_control_flow_pass=true"
        ),
    }


def _set_defaults(values, environ):
    """Sets each unset variable (a user's own setting wins); TF_XLA_FLAGS is appended to, not replaced."""
    changed = {}
    for name, value in values.items():
        if name == "TF_XLA_FLAGS" and environ.get(name):
            if value not in environ[name]:
                environ[name] = changed[name] = f"{environ[name]} {value}"
        elif name not in environ:
            environ[name] = changed[name] = value
    return changed


def keep_off_tpu(environ=os.environ):
    """TPU_LOAD_LIBRARY=0 unless set: this process serves on the CPU and leaves the TPU to the trainer."""
    return _set_defaults(KEEP_OFF_TPU, environ)


def start_jax(environ=os.environ, pci_devices=PCI_DEVICES):
    """Starts JAX's backend (jax.devices()) in this process; call it before anything imports TensorFlow.

    Returns (devices, problem). devices: JAX's devices, None when JAX raised. problem: None, or, when JAX
    started no TPU device while this host has TPU chips (or JAX raised), JAX's/libtpu's own error and what
    to do. Once JAX has started, TPU_LOAD_LIBRARY=0 is set for the TensorFlow that runs tf.data: a
    tensorflow-tpu wheel would otherwise load libtpu too. libtpu reads the variable when a framework takes
    its lock (TryAcquireTpuLock), so set before JAX it would stop JAX from starting the TPU.
    """
    import jax  # the JAX backend only

    chips = local_tpu_chips(pci_devices)
    # A TPU plugin that fails loudly raises (libtpu's "TPU initialization failed"); one that fails quietly
    # leaves JAX on its CPU devices and its error in JAX's records.
    try:
        devices = jax.devices()
        error = _quiet_backend_error("tpu")
    except RuntimeError as raised:
        devices, error = None, str(raised)
    keep_off_tpu(environ)
    if devices is None and not chips:
        return None, f"JAX did not start: {error}"
    platform = devices[0].platform if devices else None
    if platform == "tpu" or not chips:
        return devices, None
    said = error or f"nothing; it started {platform} devices (libtpu installed: {version('libtpu') or 'no'})"
    return devices, (
        f"{len(chips)} TPU chips ({_generations(chips)}) on the PCI bus, but JAX did not start a TPU. "
        f"JAX/libtpu said: {said}\n{JAX_TPU_HELP}"
    )


def _quiet_backend_error(platform):
    """The error JAX kept for a backend that failed quietly (jax._src.xla_bridge._backend_errors), or None."""
    from jax._src import xla_bridge

    return getattr(xla_bridge, "_backend_errors", {}).get(platform)


def missing_tpu(strategy, tpu, pci_devices=PCI_DEVICES):
    """NO_TPU_HELP when --strategy=tpu asks for the local TPU and the host has no TPU chip, else None."""
    if strategy == "tpu" and tpu == "local" and not local_tpu_chips(pci_devices):
        return NO_TPU_HELP
    return None


def configure_trainer(strategy, tpu, environ=os.environ, pci_devices=PCI_DEVICES):
    """Environment of a training process, before TensorFlow is imported; returns one line saying what and why.

    --strategy=tpu|auto, --tpu=local, a TPU chip present and libtpu installed: the PJRT variables.
    --strategy=tpu|auto with a remote --tpu (TPU Node, pods): nothing; that TPU is reached over gRPC.
    Otherwise TPU_LOAD_LIBRARY=0: the run will not use a local TPU, and libtpu on a host without one
    either aborts TensorFlow (libtpu > 0.0.14) or hangs it on metadata-server queries (0.0.14).
    """
    if strategy in ("tpu", "auto") and tpu != "local":
        return f"TPU runtime: remote TPU {tpu!r}, environment unchanged"
    chips = local_tpu_chips(pci_devices) if strategy in ("tpu", "auto") else {}
    library = libtpu_library_path() if chips else None
    if not chips:
        why = f"--strategy={strategy}" + (
            ", no TPU chip on the PCI bus" if strategy in ("tpu", "auto") else ""
        )
    elif library is None:
        why = f"{len(chips)} TPU chips, but libtpu is not installed"
    elif environ.get("TPU_LOAD_LIBRARY") == "0":
        why = f"{len(chips)} TPU chips, but TPU_LOAD_LIBRARY=0 was already set: unset it to train on the TPU"
    else:
        changed = _set_defaults(pjrt_environment(library), environ)
        return f"TPU runtime: {len(chips)} TPU chips ({_generations(chips)}), PJRT variables set: {sorted(changed)}"
    keep_off_tpu(environ)
    return f"TPU runtime: TPU_LOAD_LIBRARY=0 ({why})"


def _generations(chips):
    return ", ".join(sorted(set(chips.values())))


def version(distribution):
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
