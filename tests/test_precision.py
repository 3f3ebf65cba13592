"""--mixed_bfloat16=auto: the rule on real /proc/cpuinfo texts and device facts, the flag's spellings, what a run
records and resumes with, and the main job's recipe on each branch."""

import json
import pathlib
import subprocess
import sys
import types

import pytest
import tensorflow as tf
from absl import flags
from conftest import parse_flags

from shogi_policy.cli import train as train_command
from shogi_policy.model import model_dir
from shogi_policy.runtime import precision, strategy
from shogi_policy.training import config, recipes

CPUINFO = pathlib.Path(__file__).resolve().parent / "cpuinfo"


@pytest.mark.parametrize(
    "name, found",
    [
        ("amd_epyc_zen3.txt", ()),
        ("amd_epyc_genoa_zen4.txt", ("avx512_bf16",)),
        ("intel_xeon_sapphire_rapids.txt", ("amx_bf16", "avx512_bf16")),
    ],
)
def test_cpu_rule_on_real_cpuinfo_texts(name, found):
    text = (CPUINFO / name).read_text()
    assert precision.cpu_bfloat16_flags(text) == found
    on, why = precision.native_bfloat16("cpu", cpuinfo=text)
    assert on == bool(found)
    assert all(flag in why for flag in found) and ("emulated" in why) == (not found)


def test_cpu_rule_needs_the_flag_on_every_processor_and_ignores_other_architectures():
    amx = (CPUINFO / "intel_xeon_sapphire_rapids.txt").read_text()
    zen3 = (CPUINFO / "amd_epyc_zen3.txt").read_text()
    assert precision.cpu_bfloat16_flags(amx + zen3) == ()
    arm = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics bf16 i8mm\n"
    assert precision.native_bfloat16("cpu", cpuinfo=arm)[0] is False
    assert precision.native_bfloat16("cpu", cpuinfo="")[0] is False


@pytest.mark.parametrize(
    "platform, capabilities, on",
    [
        ("tpu", [], True),
        ("gpu", [(8, 0)], True),
        ("gpu", ["9.0", "8.6"], True),  # JAX's text
        ("gpu", [(7, 5)], False),
        ("gpu", [(8, 6), (7, 0)], False),  # the oldest decides
        ("gpu", [], False),
        ("METAL", [], False),
    ],
)
def test_device_rule(platform, capabilities, on):
    assert precision.native_bfloat16(platform, capabilities, cpuinfo="")[0] is on


def test_host_rule_sees_tpu_chips_on_the_pci_bus(tmp_path):
    zen3 = (CPUINFO / "amd_epyc_zen3.txt").read_text()
    assert precision.host_bfloat16(zen3, pci_devices=tmp_path)[0] is False
    chip = tmp_path / "0000:00:04.0"
    chip.mkdir()
    (chip / "vendor").write_text("0x1ae0\n")
    (chip / "device").write_text("0x0063\n")
    assert precision.host_bfloat16(zen3, pci_devices=tmp_path) == (True, "a TPU computes bfloat16 natively")


def test_the_command_line_answer_imports_no_framework():
    code = (
        "import runpy, sys; runpy.run_module('shogi_policy.runtime.precision', run_name='__main__'); "
        "print([m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'jax')])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    answer, loaded = result.stdout.split()[0], result.stdout.split(maxsplit=1)[1].strip()
    assert answer == ("bfloat16" if precision.host_bfloat16()[0] else "float32") and loaded == "[]"


@pytest.mark.parametrize(
    "argv, value",
    [
        ([], "auto"),
        (["--mixed_bfloat16=auto"], "auto"),
        (["--mixed_bfloat16"], True),
        (["--nomixed_bfloat16"], False),
        (["--mixed_bfloat16=True"], True),  # the notebook's spelling
        (["--mixed_bfloat16=false"], False),
        (["--mixed_bfloat16=1"], True),
        (["--mixed_bfloat16", "--steps=3"], True),  # a switch takes no value from the next argument
    ],
)
def test_flag_spellings(argv, value):
    flag_values = flags.FlagValues()
    train_command.define_flags(flag_values)
    flag_values(["shogi-policy-train", *argv])
    assert train_command.config_from_flags(flag_values)[0].runtime.mixed_bfloat16 == value


def test_flag_refuses_other_values_and_old_records_load():
    flag_values = flags.FlagValues()
    train_command.define_flags(flag_values)
    with pytest.raises(flags.IllegalFlagValueError, match="expected true, false or auto, got 'fast'"):
        flag_values(["shogi-policy-train", "--mixed_bfloat16=fast"])
    with pytest.raises(config.ConfigError, match="--mixed_bfloat16 must be true, false or auto, got 1"):
        config.RuntimeConfig(mixed_bfloat16=1)
    assert config.TrainConfig.from_flat({"mixed_bfloat16": False}).runtime.mixed_bfloat16 is False


def test_main_job_recipes_per_precision():
    """Without native bfloat16 the main job is today's (main: 1,300 steps, seed 1, float32 where auto resolves
    off); main_bfloat16 differs from it only in the bfloat16 switch and the steps its speed buys."""
    main, bf16 = recipes.load("main").flat(), recipes.load("main_bfloat16").flat()
    assert (main["steps"], main["steps_per_epoch"], main["checkpoint_every"], main["seed"]) == (
        1300,
        100,
        200,
        1,
    )
    assert main["mixed_bfloat16"] == "auto"
    changed = {name: (main[name], bf16[name]) for name in main if main[name] != bf16[name]}
    assert changed == {
        "steps": (1300, 1800),
        "steps_per_epoch": (100, 150),
        "checkpoint_every": (200, 300),
        "mixed_bfloat16": ("auto", True),
    }


@pytest.mark.parametrize(
    "cpuinfo, recipe", [("amd_epyc_zen3.txt", "main"), ("intel_xeon_sapphire_rapids.txt", "main_bfloat16")]
)
def test_the_default_job_chooses_its_recipe_by_the_host(cpuinfo, recipe, tmp_path):
    """scripts/run_default_job.sh's choice, with the host's answer replaced by each CPU's."""
    script = (pathlib.Path(__file__).resolve().parents[1] / "scripts" / "run_default_job.sh").read_text()
    (choice,) = [line for line in script.splitlines() if "runtime.precision" in line]
    on = precision.host_bfloat16((CPUINFO / cpuinfo).read_text(), pci_devices=tmp_path)[0]
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\necho {'bfloat16' if on else 'float32'}\n")
    fake.chmod(0o755)
    result = subprocess.run(
        ["bash", "-c", f"RECIPE=; {choice}\necho $RECIPE"],
        capture_output=True,
        text=True,
        env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
        timeout=30,
    )
    assert result.stdout.split()[-1] == recipe, result.stderr


def _train(data, directory, **values):
    """Trains the tiny network a few steps; returns train_flags.json's (flags, runs)."""
    values = {"steps": 2, "steps_per_epoch": 2, "eval_steps": 0, "seed": 1, "batch_size": 16, **values}
    train_command.train(parse_flags(data_dir=data, model_dir=directory, filters=8, **values))
    return model_dir.read_run_record(str(directory))


@pytest.mark.slow
def test_a_run_records_the_precision_auto_resolved_to(small_shards, tmp_path):
    flags_auto, _ = _train(small_shards, tmp_path / "auto")
    assert (
        flags_auto["mixed_bfloat16"] is precision.native_bfloat16("cpu")[0]
    )  # the default strategy: the CPU
    assert json.loads((tmp_path / "auto" / model_dir.FLAGS_JSON).read_text())["flags"]["mixed_bfloat16"] in (
        True,
        False,
    )
    assert _train(small_shards, tmp_path / "float32", mixed_bfloat16="false")[0]["mixed_bfloat16"] is False


@pytest.mark.slow
def test_a_resume_under_auto_keeps_the_recorded_precision(small_shards, tmp_path):
    """Checkpoints made in bfloat16 (forced, as on another host) go on in bfloat16 under auto, whatever this
    host's rule says; forcing the other value is a logged change (RESUME_FREE)."""
    run = tmp_path / "run"
    assert _train(small_shards, run, mixed_bfloat16="true")[0]["mixed_bfloat16"] is True
    flags_resumed, runs = _train(small_shards, run, steps=4)
    assert flags_resumed["mixed_bfloat16"] is True and "mixed_bfloat16" not in runs[-1]["changed"]
    flags_forced, runs = _train(small_shards, run, steps=6, mixed_bfloat16="false")
    assert flags_forced["mixed_bfloat16"] is False and runs[-1]["changed"]["mixed_bfloat16"] == [True, False]


def test_compute_devices_of_the_strategies():
    gpu = types.SimpleNamespace(platform="gpu", compute_capability="8.6")
    assert strategy.compute_devices(strategy.JaxDataParallel([gpu])) == {
        "platform": "gpu",
        "gpu_capabilities": ["8.6"],
    }
    tpu = types.SimpleNamespace(platform="tpu")
    assert strategy.compute_devices(strategy.JaxDataParallel([tpu]))["platform"] == "tpu"
    expected = "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    assert strategy.compute_devices(tf.distribute.get_strategy())["platform"] == expected
