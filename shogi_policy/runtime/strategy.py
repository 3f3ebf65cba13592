"""Strategy selection (TPU, GPUs mirrored, or the default strategy) and what XLA may compile.

Under the TensorFlow Keras backend a strategy is a tf.distribute.Strategy. Under the JAX backend there is
no tf.distribute: the same names give a JaxDataParallel (keras.distribution.DataParallel over JAX's
devices), which offers what the trainer uses of a strategy (scope(), num_replicas_in_sync).

The TPU's environment (PJRT variables, TPU_LOAD_LIBRARY) is set before TensorFlow is imported, by
shogi_policy.cli through shogi_policy.runtime.environment; this module only looks for chips there.
"""

import contextlib
import functools

import keras
import tensorflow as tf
from absl import logging

from shogi_policy.runtime import environment, hosts
from shogi_policy.runtime.environment import JIT_COMPILE, STRATEGIES


class TpuUnavailableError(RuntimeError):
    """--strategy=tpu found no TPU chip, or its TPU did not initialise; the message says what to do."""


def _tpu_strategy(tpu):
    """TPUStrategy on `tpu` ("local" on a TPU VM, a name or grpc:// address for TPU Node / pods)."""
    problem = environment.missing_tpu("tpu", tpu)
    if problem:  # no chip: initialising would only fail, noisily, or crash with libtpu loaded
        raise TpuUnavailableError(problem)
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        if tpu != "local":
            # Remote TPU workers (TPU Node, pods) need the cluster connected first; a TPU VM does not.
            tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (tf.errors.OpError, ValueError) as error:
        # NotFoundError without libtpu, InternalError (RET_CHECK ... *platform) with libtpu but no TPU.
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise TpuUnavailableError(
            f"the TPU at --tpu={tpu} did not initialise ({type(error).__name__}: {first_line}).\n"
            f"{environment.TPU_INIT_HELP}"
        ) from error
    return tf.distribute.TPUStrategy(resolver)


def _auto_strategy(tpu):
    """(strategy, why): TPUStrategy when a TPU answers, else mirrored over the GPUs, else the default strategy.

    A local TPU is tried only when the PCI bus has a TPU chip, so CPU and GPU hosts never run the TPU
    initialisation (and never log its errors).
    """
    if tpu != "local" or environment.local_tpu_chips():
        try:
            return _tpu_strategy(tpu), f"a TPU answered at --tpu={tpu}"
        except TpuUnavailableError as error:
            logging.warning("strategy auto: %s", str(error).splitlines()[0])
            why = "the TPU did not initialise"
    else:
        why = "no TPU chip on the PCI bus"
    if tf.config.list_physical_devices("GPU"):
        return _mirrored_strategy(), f"{why}; GPUs"
    return tf.distribute.get_strategy(), f"{why}, no GPU"


def _mirrored_strategy():
    """MirroredStrategy over all GPUs, or over all logical CPUs where there is no GPU (tests)."""
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([device.name for device in devices])


class JaxDataParallel:
    """What the trainer uses of a strategy, under the JAX backend: keras.distribution.DataParallel.

    Variables are replicated and Keras's JAX trainer splits each batch along its first axis over the
    devices. With one device no distribution is set. scope() must cover building, restoring and fit:
    the JAX trainer distributes each batch under the distribution active at the time.
    Multi-host: devices are every host's; each host feeds its own part of the global batch from its
    own shard files (auto_shard_dataset=False: Keras's default would have every host read all data
    and keep 1/num_hosts of it).
    """

    def __init__(self, devices):
        self.devices = list(devices)
        self.num_replicas_in_sync = len(self.devices)
        self.distribution = (
            keras.distribution.DataParallel(devices=self.devices, auto_shard_dataset=False)
            if len(self.devices) > 1
            else None
        )

    def scope(self):
        return self.distribution.scope() if self.distribution else contextlib.nullcontext()


def _jax_strategy(name, tpu):
    """(JaxDataParallel, why) by name: tpu (the TPU chips, or TpuUnavailableError), auto/mirrored (all devices),
    default (one device)."""
    import jax  # the JAX backend only

    if tpu != "local":
        raise ValueError(
            f"--tpu={tpu} names a TPU for TensorFlow's TPUClusterResolver; under the JAX backend a TPU VM's "
            "chips are JAX's devices (leave --tpu unset) and pods start with --jax_distributed"
        )
    devices = jax.devices()  # global: every host's devices in a multi-host run
    platform = devices[0].platform
    chips = environment.local_tpu_chips()
    if platform != "tpu" and (name == "tpu" or chips):  # never train on the CPU beside an idle TPU
        raise TpuUnavailableError(
            f"--strategy={name} under JAX, but JAX sees {len(devices)} {platform} devices"
            + (
                f" while {len(chips)} TPU chips are on the PCI bus\n{environment.JAX_TPU_HELP}"
                if chips
                else ""
            )
        )
    if name == "default":
        if hosts.process()[1] > 1:
            raise ValueError(
                "--strategy=default uses one device: a multi-host run needs auto, mirrored or tpu"
            )
        devices = devices[:1]
    return JaxDataParallel(devices), f"{len(devices)} {platform} devices, {hosts.process()[1]} processes"


def make_strategy(name="auto", tpu="local"):
    """A strategy by name for the process's Keras backend; logs one line with the choice.

    Args:
      name: "tpu", "mirrored" (all GPUs, or all logical CPUs when there is no GPU), "default",
        or "auto": TPU when the host has a TPU chip (or `tpu` is remote) and it answers, else
        mirrored over GPUs when there are any, else the default strategy. Under JAX: "tpu" (JAX's
        devices must be TPUs), "auto" and "mirrored" (all of JAX's devices), "default" (one device).
      tpu: TPUClusterResolver address; "local" for the TPU of a TPU VM (Colab, Cloud TPU VM). TF only.
    Returns:
      a tf.distribute.Strategy (TF backend) or a JaxDataParallel (JAX backend).
    Raises:
      TpuUnavailableError: name "tpu" and no TPU answered.
      ValueError: a remote --tpu, or "default" in a multi-host run, under JAX.
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")
    if keras.backend.backend() == "jax":
        strategy, why = _jax_strategy(name, tpu)
        logging.info(
            "strategy %s: JAX %s (%s)", name, "DataParallel" if strategy.distribution else "one device", why
        )
        return strategy
    why = f"--strategy={name}"
    if name == "auto":
        strategy, why = _auto_strategy(tpu)
    else:
        strategy = {
            "tpu": lambda: _tpu_strategy(tpu),
            "mirrored": _mirrored_strategy,
            "default": tf.distribute.get_strategy,
        }[name]()
    logging.info(
        "strategy %s: %s with %d replicas (%s)",
        name,
        type(strategy).__name__,
        strategy.num_replicas_in_sync,
        why,
    )
    return strategy


def compute_devices(strategy):
    """{"platform", "gpu_capabilities"} of the devices a strategy made by make_strategy computes on:
    precision.native_bfloat16's arguments. TensorFlow: TPUStrategy is "tpu", otherwise "gpu" where TensorFlow
    sees GPUs (the default strategy places ops on the first) and "cpu"; JAX: its devices' platform."""
    if isinstance(strategy, JaxDataParallel):
        devices = strategy.devices
        capabilities = [getattr(device, "compute_capability", None) for device in devices]
        return {"platform": devices[0].platform, "gpu_capabilities": [c for c in capabilities if c]}
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return {"platform": "tpu", "gpu_capabilities": []}
    gpus = tf.config.list_physical_devices("GPU")
    capabilities = [tf.config.experimental.get_device_details(gpu).get("compute_capability") for gpu in gpus]
    return {"platform": "gpu" if gpus else "cpu", "gpu_capabilities": [c for c in capabilities if c]}


@functools.cache
def host_xla_available():
    """Whether XLA compiles and runs for the host CPU in this process (False with the tensorflow-tpu wheel).

    The TPU wheel has no XLA for the host: a jit_compile=True function fails with "could not find
    registered transfer manager for platform Host". Nothing short of compiling tells (the device list,
    tf.test.is_built_with_xla() and the XlaLaunch kernels look alike on both wheels), so this compiles
    x + 1: about 50 ms once per process; a failure leaves the process healthy.
    """
    with tf.init_scope():  # eager, even when first called while a tf.function is traced
        try:
            with tf.device("/CPU:0"):
                tf.function(lambda x: x + 1, jit_compile=True)(tf.constant(0))
            return True
        except (tf.errors.NotFoundError, tf.errors.InternalError, tf.errors.UnimplementedError, ValueError):
            return False


def compilation(jit_compile, *, on_tpu, host_xla, default_strategy, has_gpu):
    """What XLA compiles in a training run: (nested_xla, jit_compile, why).

    Args:
      jit_compile: the --jit_compile flag, "auto", "true" or "false".
      on_tpu: the strategy is a TPUStrategy (its step is compiled whole, whatever jit_compile says).
      host_xla: host_xla_available().
      default_strategy: no tf.distribute strategy is in use.
      has_gpu: TensorFlow sees a GPU.
    Returns:
      nested_xla for DlshogiFeatures (its own XLA computations: fastest on CPU and GPU; plain ops on TPU
      and without host XLA), jit_compile as a bool for Model.compile, and one line saying why.
      "auto" is Keras's own rule, decided here because Keras counts libtpu's TPU_SYSTEM device as an
      accelerator and turns XLA on for the host: on only with a GPU under the default strategy.
    Raises:
      ValueError: jit_compile "true" on a host without XLA.
    """
    if jit_compile not in JIT_COMPILE:
        raise ValueError(f"jit_compile must be one of {JIT_COMPILE}, got {jit_compile!r}")
    if on_tpu:
        return False, jit_compile == "true", "TPUStrategy compiles the whole step"
    if not host_xla:
        if jit_compile == "true":
            raise ValueError(
                "--jit_compile=true needs XLA for the host CPU, which this TensorFlow lacks (the tensorflow-tpu "
                "wheel has none): use --jit_compile=auto or false here, or the tensorflow wheel"
            )
        return False, False, "no XLA for the host CPU: the tensorflow-tpu wheel"
    if jit_compile == "auto":
        jit = has_gpu and default_strategy
        return (
            True,
            jit,
            f"host XLA available; --jit_compile=auto: {'on, a GPU' if jit else 'off on CPU and distributed'}",
        )
    return True, jit_compile == "true", f"host XLA available; --jit_compile={jit_compile}"


def compilation_for(strategy, jit_compile):
    """compilation() for a strategy made by make_strategy, on this host; logs the decision once.

    Under JAX: no nested XLA (nothing to nest: Keras jits the whole step), and jit_compile False only
    for --jit_compile=false (Keras then runs the step eagerly, op by op: for debugging).
    """
    if isinstance(strategy, JaxDataParallel):
        if jit_compile not in JIT_COMPILE:
            raise ValueError(f"jit_compile must be one of {JIT_COMPILE}, got {jit_compile!r}")
        jit = jit_compile != "false"
        logging.info(
            "XLA: JAX backend, the whole step jax.jit-compiled: %s (--jit_compile=%s)", jit, jit_compile
        )
        return False, jit
    on_tpu = isinstance(strategy, tf.distribute.TPUStrategy)
    nested_xla, jit, why = compilation(
        jit_compile,
        on_tpu=on_tpu,
        host_xla=on_tpu or host_xla_available(),  # a TPU host's CPU is not asked: nothing runs there
        default_strategy=strategy is tf.distribute.get_strategy(),
        has_gpu=bool(tf.config.list_physical_devices("GPU")),
    )
    logging.info(
        "XLA: feature layer %s, Keras jit_compile=%s (%s)",
        "nested XLA" if nested_xla else "plain ops",
        jit,
        why,
    )
    return nested_xla, jit
