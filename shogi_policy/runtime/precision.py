"""Whether the hardware computes bfloat16 natively: what --mixed_bfloat16=auto turns into. Imports no framework.

  cpu_bfloat16_flags(cpuinfo)     the native-bfloat16 flags of /proc/cpuinfo text every processor has
  native_bfloat16(platform, ...)  (on, why) for a run's devices: a TPU, GPUs by compute capability, the CPU
  host_bfloat16()                 (on, why) for this host without a framework: TPU chips on the PCI bus, else
                                  the CPU (what scripts/run_default_job.sh chooses its recipe by)

Mixed bfloat16 keeps float32 weights and casts every layer's inputs; it pays only where the matrix units take
bfloat16. TPUs do; NVIDIA GPUs from compute capability 8.0 (Ampere); x86 CPUs with AMX (amx_bf16, Intel
Sapphire Rapids and later) or AVX512_BF16 (Intel Cooper Lake, AMD Zen 4 and later), through oneDNN. Elsewhere
TensorFlow emulates it and a training step is slower than in float32 (docs/benchmarks.md). Other CPUs (ARM's
bf16 included) are left off: not measured here.

    python -m shogi_policy.runtime.precision     # prints bfloat16 or float32 for this host, why on stderr
"""

import sys
from pathlib import Path

from shogi_policy.runtime import environment

CPUINFO = Path("/proc/cpuinfo")
# The x86 flags (Linux's /proc/cpuinfo names) whose instructions multiply bfloat16 in hardware.
CPU_BFLOAT16_FLAGS = ("amx_bf16", "avx512_bf16")
GPU_MIN_CAPABILITY = (8, 0)


def cpu_bfloat16_flags(cpuinfo):
    """The CPU_BFLOAT16_FLAGS that every processor of /proc/cpuinfo text lists on its `flags` line (a tuple)."""
    processors = [
        set(value.split())
        for key, _, value in (line.partition(":") for line in cpuinfo.splitlines())
        if key.strip() == "flags"
    ]
    common = set.intersection(*processors) if processors else set()
    return tuple(flag for flag in CPU_BFLOAT16_FLAGS if flag in common)


def _capability(value):
    """A compute capability as a (major, minor) tuple, from TensorFlow's tuple or JAX's "8.0" text."""
    if isinstance(value, str):
        return tuple(int(part) for part in value.split(".")[:2])
    return tuple(value)


def native_bfloat16(platform, gpu_capabilities=(), cpuinfo=None):
    """(on, why): whether devices of a platform compute bfloat16 natively, and one line saying why.

    Args:
      platform: "tpu", "gpu" or "cpu" (JAX's platform names; anything else is off).
      gpu_capabilities: the GPUs' compute capabilities, (major, minor) tuples or "8.6" text; on only when
        every GPU has GPU_MIN_CAPABILITY or more.
      cpuinfo: /proc/cpuinfo text for "cpu" (default: read from CPUINFO; empty where there is none).
    """
    if platform == "tpu":
        return True, "a TPU computes bfloat16 natively"
    if platform == "gpu":
        capabilities = [_capability(value) for value in gpu_capabilities]
        oldest = min(capabilities, default=None)
        if oldest is None:
            return False, "the GPUs' compute capability is unknown"
        named = ".".join(map(str, oldest))
        if oldest >= GPU_MIN_CAPABILITY:
            return True, f"GPU compute capability {named} >= 8.0"
        return False, f"GPU compute capability {named} < 8.0: bfloat16 would be emulated"
    if platform == "cpu":
        if cpuinfo is None:
            cpuinfo = CPUINFO.read_text(errors="replace") if CPUINFO.exists() else ""
        found = cpu_bfloat16_flags(cpuinfo)
        if found:
            return True, f"the CPU has {' and '.join(found)} (/proc/cpuinfo)"
        return False, (
            "the CPU has neither amx_bf16 nor avx512_bf16 (/proc/cpuinfo): bfloat16 would be emulated, slower "
            "than float32"
        )
    return False, f"no bfloat16 rule for {platform} devices"


def host_bfloat16(cpuinfo=None, pci_devices=environment.PCI_DEVICES):
    """(on, why) for this host before any framework loads: a TPU chip on the PCI bus, else the CPU's flags.

    GPUs are not looked at (that needs a framework); the trainer's --mixed_bfloat16=auto sees them.
    """
    if environment.local_tpu_chips(pci_devices):
        return native_bfloat16("tpu")
    return native_bfloat16("cpu", cpuinfo=cpuinfo)


def main():
    on, why = host_bfloat16()
    print(f"{'bfloat16' if on else 'float32'}: {why}", file=sys.stderr)
    print("bfloat16" if on else "float32")


if __name__ == "__main__":
    main()
