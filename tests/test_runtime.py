"""TPU runtime set-up without a TPU: chip detection on a fake PCI tree, the environment each console command
gets before TensorFlow loads, strategy choice and the XLA decision of the trainer."""

import configparser
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import cshogi
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from shogi_policy.cli import launch as cli
from shogi_policy.core import record_format
from shogi_policy.data import random_games, shard_manifest, shards
from shogi_policy.runtime import checks as runtime_check
from shogi_policy.runtime import environment as tpu_environment
from shogi_policy.runtime import precision, strategy
from shogi_policy.runtime import preflight as runtime_preflight

REPO = Path(__file__).resolve().parents[1]


def fake_pci(root, devices):
    """A /sys/bus/pci/devices look-alike under root: {address: (vendor, device)}."""
    for address, (vendor, device) in devices.items():
        (root / address).mkdir(parents=True)
        (root / address / "vendor").write_text(f"{vendor}\n")
        (root / address / "device").write_text(f"{device}\n")
    return root


@pytest.fixture
def tpu_host(tmp_path):
    """A PCI tree with a v5e chip beside a gVNIC card (same Google vendor id, not a TPU) and another vendor."""
    return fake_pci(
        tmp_path / "pci",
        {
            "0000:00:04.0": ("0x1ae0", "0x0063"),
            "0000:00:05.0": ("0x1ae0", "0x0042"),
            "0000:00:06.0": ("0x8086", "0x0063"),
        },
    )


def test_pci_scan_counts_tpu_chips_only(tpu_host, tmp_path):
    assert tpu_environment.local_tpu_chips(tpu_host) == {"0000:00:04.0": "v5e"}
    assert tpu_environment.local_tpu_chips(tmp_path / "absent") == {}
    assert tpu_environment.local_tpu_chips() == {}, "this test machine has no TPU"


def test_trainer_environment(tpu_host, tmp_path, monkeypatch):
    monkeypatch.setattr(tpu_environment, "libtpu_library_path", lambda: "/site-packages/libtpu/libtpu.so")
    no_tpu = tmp_path / "no_pci"

    environ = {"TF_XLA_FLAGS": "--tf_xla_enable_xla_devices"}
    line = tpu_environment.configure_trainer("auto", "local", environ, tpu_host)
    assert "1 TPU chips (v5e)" in line
    assert environ["NEXT_PLUGGABLE_DEVICE_USE_C_API"] == "true"
    assert environ["TF_PLUGGABLE_DEVICE_LIBRARY_PATH"] == "/site-packages/libtpu/libtpu.so"
    assert environ["PJRT_DEVICE"] == "TPU" and "TPU_LOAD_LIBRARY" not in environ
    assert environ["TF_XLA_FLAGS"].startswith("--tf_xla_enable_xla_devices --tf_mlir_enable_mlir_bridge=true")

    for strategy_name, pci in (("auto", no_tpu), ("default", tpu_host), ("mirrored", tpu_host)):
        environ = {}
        line = tpu_environment.configure_trainer(strategy_name, "local", environ, pci)
        assert environ == {"TPU_LOAD_LIBRARY": "0"}, (strategy_name, line)

    environ = {"TPU_LOAD_LIBRARY": "0"}  # e.g. inherited from a notebook kernel
    assert "unset it" in tpu_environment.configure_trainer("tpu", "local", environ, tpu_host)
    assert environ == {"TPU_LOAD_LIBRARY": "0"}

    environ = {}
    assert "remote" in tpu_environment.configure_trainer("tpu", "grpc://10.0.0.2:8470", environ, no_tpu)
    assert environ == {}

    assert tpu_environment.missing_tpu("tpu", "local", no_tpu) == tpu_environment.NO_TPU_HELP
    assert tpu_environment.missing_tpu("tpu", "local", tpu_host) is None
    assert tpu_environment.missing_tpu("auto", "local", no_tpu) is None


def test_pjrt_variables_are_the_keras_io_recipe():
    assert list(tpu_environment.pjrt_environment("/x/libtpu.so")) == [
        "PJRT_DEVICE",
        "NEXT_PLUGGABLE_DEVICE_USE_C_API",
        "TF_PLUGGABLE_DEVICE_LIBRARY_PATH",
        "TF_XLA_FLAGS",
    ]


def test_console_scripts_are_the_launchers():
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    scripts = dict(
        line.split(" = ") for line in config["options.entry_points"]["console_scripts"].strip().splitlines()
    )
    assert scripts == {f"shogi-policy-{name}": f"shogi_policy.cli.launch:{name}" for name in cli.COMMANDS}


@pytest.mark.parametrize("command", ["convert", "export", "sample", "evaluate", "usi"])
def test_serving_commands_keep_off_the_tpu_on_tensorflow(command, monkeypatch):
    monkeypatch.setenv("TPU_LOAD_LIBRARY", "")  # restored after the test, whatever the launcher sets
    monkeypatch.delenv("TPU_LOAD_LIBRARY")
    monkeypatch.setenv("KERAS_BACKEND", "jax")  # left in the environment for a JAX trainer
    seen = []
    monkeypatch.setattr(
        cli,
        "_run_app",
        lambda name: seen.append((name, os.environ.get("TPU_LOAD_LIBRARY"), os.environ["KERAS_BACKEND"])),
    )
    cli.COMMANDS[command]()
    assert seen == [(command, "0", "tensorflow")]


def fake_jax_start():
    """tpu_environment.start_jax on one CPU device, without starting JAX."""
    tpu_environment.keep_off_tpu()
    return [mock.Mock(platform="cpu")], None


@pytest.mark.parametrize(
    "argv, environment, expected",
    [
        (["--backend=jax"], None, "jax"),
        (["--backend=tensorflow"], "jax", "tensorflow"),
        ([], "jax", "jax"),
        ([], None, None),
    ],
)
def test_train_command_sets_the_keras_backend(argv, environment, expected, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["shogi-policy-train", "--strategy=default", *argv])
    # JAX's start is faked: a real one would hold libtpu's lock in this process where libtpu is installed
    # (.ci/colab_lane), keeping the simulated-chip tests' processes from reaching libtpu. The real order is
    # tested in a child process below.
    monkeypatch.setattr(tpu_environment, "start_jax", fake_jax_start)
    seen = []
    monkeypatch.setattr(
        cli,
        "_run_app",
        lambda name: seen.append((os.environ.get("KERAS_BACKEND"), os.environ.get("TPU_LOAD_LIBRARY"))),
    )
    with mock.patch.dict(os.environ):  # the launcher sets variables directly: none may leak into later tests
        for name in ("TPU_LOAD_LIBRARY", "KERAS_BACKEND"):
            os.environ.pop(name, None)
        if environment:
            os.environ["KERAS_BACKEND"] = environment
        cli.train()
    assert seen == [(expected, "0")]


def test_trainer_target_reads_flags_and_flagfiles(tmp_path):
    assert cli.trainer_target(["--data_dir=d", "--steps", "5"]) == ("auto", "local", None, False)
    assert cli.trainer_target(["--strategy", "tpu", "--mixed_bfloat16"]) == ("tpu", "local", None, False)
    flagfile = tmp_path / "run.flags"
    flagfile.write_text("--strategy=default\n--tpu=grpc://10.0.0.2:8470\n--backend=jax\n--jax_distributed\n")
    assert cli.trainer_target([f"--flagfile={flagfile}", "--preset=tpu"]) == (
        "default",
        "grpc://10.0.0.2:8470",
        "jax",
        True,
    )


def test_launchers_import_no_tensorflow():
    check = "import sys, shogi_policy.cli; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr[-2000:]


@pytest.mark.slow
def test_trainer_with_tpu_strategy_and_no_tpu_stops_before_tensorflow(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "shogi_policy.cli", "train", "--strategy=tpu", f"--model_dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Change runtime type > TPU" in result.stderr and "libtpu==0.0.14" in result.stderr
    assert not list(tmp_path.iterdir())


@pytest.fixture
def launcher_environ():
    """os.environ as it was, after the test: the launchers set KERAS_BACKEND and TPU_LOAD_LIBRARY directly."""
    with mock.patch.dict(os.environ):
        for name in ("TPU_LOAD_LIBRARY", "KERAS_BACKEND"):
            os.environ.pop(name, None)
        yield os.environ


def test_preflight(monkeypatch, capsys, launcher_environ):
    monkeypatch.setattr(sys, "argv", ["shogi-policy-preflight", "--strategy=default", "--check_steps=0"])
    cli.preflight()
    out = capsys.readouterr().out
    for name in ("python", "tensorflow", "keras", "libtpu", "cshogi", "tpu_chips"):
        assert f"\n{name} " in f"\n{out}", name
    assert "preflight ok" in out
    monkeypatch.setattr(sys, "argv", ["shogi-policy-preflight", "--strategy=tpu"])
    with pytest.raises(SystemExit, match="(?s)PREFLIGHT FAILED.*No TPU chip"):
        cli.preflight()


TINY_NET = ["--preset=cpu", "--blocks=1", "--filters=16", "--batch_size=16"]
SMALL_NETWORK = ["--blocks=1", "--filters=16"]  # what a CPU stand-in may shrink: the network, never the batch


@pytest.mark.slow
def test_preflight_report_trains_and_writes_json(tmp_path, monkeypatch, capsys, launcher_environ):
    # The report a TPU user pastes back: versions, devices, real steps, a throughput and MNIST (tfds mock data:
    # no downloads here). The steps run through the trainer in the preflight's own process.
    report = tmp_path / "report.json"
    argv = ["--strategy=default", "--backend=tensorflow", *TINY_NET, f"--report={report}", "--mnist_steps=4"]
    monkeypatch.setattr(sys, "argv", ["shogi-policy-preflight", *argv])
    with tfds.testing.mock_data(num_examples=64):
        cli.preflight()
    assert "preflight ok for --strategy=default --backend=tensorflow" in capsys.readouterr().out
    written = json.loads(report.read_text())
    assert written["runtime"] == json.loads(json.dumps(runtime_preflight.runtime_report()))
    assert written["devices"] == [device.name for device in tf.config.list_logical_devices()]
    checks = written["checks"]
    assert checks["check"]["steps"] == 2
    assert checks["throughput"]["steps"] == 20 and checks["throughput"]["batch_size"] == 16
    assert checks["throughput"]["positions_per_second"] > 0
    # --mixed_bfloat16=auto (the default) as the trainer resolved it on this CPU, never the unresolved "auto".
    assert checks["throughput"]["mixed_bfloat16"] is precision.host_bfloat16()[0]
    assert checks["mnist"]["steps"] == 4 and 0.0 <= checks["mnist"]["accuracy"] <= 1.0


def _child(arguments, timeout, **variables):
    """This Python run on arguments in a child process, without this process's TPU_LOAD_LIBRARY, plus variables."""
    environment = {name: value for name, value in os.environ.items() if name != "TPU_LOAD_LIBRARY"}
    environment.update(variables)
    return subprocess.run(
        [sys.executable, *arguments], capture_output=True, text=True, timeout=timeout, env=environment
    )


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_preflight_passes_at_the_notebook_batch(backend):
    # The notebook's own preflight line (BATCH_SIZE 1024, PRESET "tpu", MIXED_BFLOAT16) with the network shrunk,
    # never the batch: the check's random records are sized from it (they were 512 positions whatever the batch).
    if backend == "jax":
        pytest.importorskip("jax")
    argv = ["--strategy=auto", "--preset=tpu", "--batch_size=1024", "--mixed_bfloat16=True", *SMALL_NETWORK]
    result = _child(["-m", "shogi_policy.cli", "preflight", f"--backend={backend}", *argv], timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "2 training steps on random records ran" in output
    assert f"preflight ok for --strategy=auto --backend={backend}" in output


TPU_PRESET_STEP = """
import json, os, sys, tempfile, time
import keras
from shogi_policy.cli.train import config_from_argv
from shogi_policy.runtime import checks
from shogi_policy.training.train import train

seen = {}


class Shapes(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        model = self.model
        seen.update(
            params=model.count_params(),
            output=[list(model.outputs[0].shape), model.outputs[0].dtype],
            compute=sorted({layer.dtype_policy.compute_dtype for layer in model.layers if layer.weights}),
            variables=sorted({variable.dtype for variable in model.weights}),
        )


config, _ = config_from_argv(["--preset=tpu", "--mixed_bfloat16=true", "--strategy=default", "--batch_size=16"])
with tempfile.TemporaryDirectory() as work:
    data = checks.check_data(os.path.join(work, "shards"), batch_size=16, batches=1)
    start = time.perf_counter()
    metrics = train(
        config.replace(data_dir=data, steps=1, steps_per_epoch=1, eval_steps=0, warmup_steps=0, seed=1),
        os.path.join(work, "run"),
        callbacks=[Shapes()],
    )
    seen.update(step=metrics["step"], seconds=round(time.perf_counter() - start, 1))
print("TPU PRESET STEP", json.dumps(seen))
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_the_tpu_preset_trains_one_step(backend):
    # The real `tpu` preset (dlshogi's b10c192) in bfloat16 for one step at a small batch: shapes and dtypes, not
    # speed (the CPU stand-ins shrink the network; this is the network they shrink).
    if backend == "jax":
        pytest.importorskip("jax")
    start = time.monotonic()
    result = _child(["-c", TPU_PRESET_STEP], timeout=1200, KERAS_BACKEND=backend, TPU_LOAD_LIBRARY="0")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    seen = json.loads(result.stdout.split("TPU PRESET STEP ", 1)[1].splitlines()[0])
    print(f"tpu preset, one step at batch 16 under {backend}: {time.monotonic() - start:.0f} s wall, {seen}")
    assert seen["step"] == 1
    # dlshogi's 10x192 is about 7.4M parameters with its value head (about 0.56M); the policy net alone 6.86M.
    assert seen["params"] == 6_864_651
    assert seen["output"] == [[None, 2187], "float32"], "logits stay float32 under bf16"
    assert "bfloat16" in seen["compute"] and seen["variables"] == ["float32"]


def test_report_creates_its_folder(tmp_path):
    # The notebook's report cell writes WORK_DIR/tpu_report.json on a fresh runtime, before anything made WORK_DIR.
    path = tmp_path / "shogi_policy_run" / "tpu_report.json"
    runtime_check.write_report(str(path), {"python": "3"}, ["CPU:0"], {})
    assert json.loads(path.read_text())["devices"] == ["CPU:0"]


def test_preflight_fails_when_fit_fails(monkeypatch, launcher_environ):
    # A runtime whose devices start but whose fit fails must fail the preflight (the notebook's "auto" then
    # takes the JAX road): simulated with the check's fault hook.
    monkeypatch.setenv(runtime_check.FAULT_VARIABLE, "tensorflow:fit")
    monkeypatch.setattr(sys, "argv", ["shogi-policy-preflight", "--strategy=default", *TINY_NET])
    with pytest.raises(SystemExit, match="PREFLIGHT FAILED: training did not run.*simulated failure of fit"):
        cli.preflight()


def test_random_records_are_legal_games():
    records = random_games.random_game_records(num_games=2, max_plies=12, seed=3)
    assert len(records) == 24 and not record_format.record_problems(records).any()
    exact = random_games.random_records(1000, max_plies=128, seed=3)
    assert (
        exact.shape == (1000, record_format.RECORD_BYTES) and not record_format.record_problems(exact).any()
    )
    # cshogi replays every game's moves as legal: the oracle is not ours.
    for seed in range(3):
        board = cshogi.Board()
        for move in random_games.random_game_moves(seed, max_plies=80):
            assert board.is_legal(move)
            board.push(move)


@pytest.mark.parametrize("num_hosts", [1, 2])
def test_check_data_fits_the_notebook_batch_on_every_host(num_hosts, tmp_path, monkeypatch):
    # The notebook's BATCH_SIZE 1024 (the old check wrote 512 positions whatever the batch): each host reads
    # its own shard files (input_pipeline.make_dataset, host_index::num_hosts) and needs its share of the batch.
    monkeypatch.setattr(runtime_check.hosts, "process", lambda: (0, num_hosts))
    data_dir = runtime_check.check_data(str(tmp_path / "shards"), batch_size=1024, batches=2)
    files = shard_manifest.shard_files(data_dir, "train")
    assert len(files.paths) == num_hosts
    for host in range(num_hosts):
        assert sum(files.lengths[host::num_hosts]) == 2 * 1024 // num_hosts
    records = np.concatenate([records for _, records in shards.read_records(data_dir, "train")])
    assert not record_format.record_problems(records).any()


JAX_ORDER_PROBE = """
import os, sys
import jax
from shogi_policy.cli import launch as cli
seen = []
real_devices = jax.devices
def devices(*args):
    seen.append(("tensorflow" in sys.modules, os.environ.get("TPU_LOAD_LIBRARY")))
    return real_devices(*args)
jax.devices = devices
cli._run_app = lambda name: print(seen, os.environ.get("TPU_LOAD_LIBRARY"), os.environ["KERAS_BACKEND"])
sys.argv = ["shogi-policy-train", "--backend=jax", "--strategy=auto"]
cli.train()
"""


@pytest.mark.slow
def test_jax_trainer_starts_jax_before_tensorflow_and_without_tpu_load_library():
    pytest.importorskip("jax")
    environment = {name: value for name, value in os.environ.items() if name != "TPU_LOAD_LIBRARY"}
    result = subprocess.run(
        [sys.executable, "-c", JAX_ORDER_PROBE], capture_output=True, text=True, timeout=120, env=environment
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # jax.devices() ran once, with no TensorFlow imported and no TPU_LOAD_LIBRARY; then "0" for tf.data.
    assert result.stdout.split("\n")[-2] == "[(False, None)] 0 jax", result.stdout


def _namespace_works():
    probe = "mount --bind /tmp /sys/bus/pci/devices && test -e /sys/bus/pci/devices/."
    try:
        return (
            subprocess.run(["unshare", "-m", "sh", "-c", probe], capture_output=True, timeout=30).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture
def simulated_tpu_host(tmp_path):
    """run(argv) in a mount namespace whose /sys/bus/pci/devices holds one TPU v5e chip (vendor 0x1ae0, device
    0x0063): this project and JAX's cloud_tpu_init read those files, libtpu then looks for the chip itself.

    TPU_SKIP_MDS_QUERY=1 keeps libtpu off the GCE metadata server (it retries for minutes off Google Cloud).
    Skips where mount namespaces are not allowed (not root, a container without CAP_SYS_ADMIN).
    """
    if not _namespace_works():
        pytest.skip("unshare -m / mount --bind not permitted here")
    pci = fake_pci(tmp_path / "pci", {"0000:00:04.0": ("0x1ae0", "0x0063")})
    environment = {name: value for name, value in os.environ.items() if name != "TPU_LOAD_LIBRARY"}
    environment.update(TPU_SKIP_MDS_QUERY="1", KERAS_BACKEND="jax")

    def run(argv, timeout=240):
        script = f'mount --bind {pci} /sys/bus/pci/devices && exec "$@"'
        return subprocess.run(
            ["unshare", "-m", "sh", "-c", script, "sh", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=environment,
        )

    return run


def test_simulated_chip_is_seen(simulated_tpu_host):
    result = simulated_tpu_host(
        [
            sys.executable,
            "-c",
            "from shogi_policy.runtime import environment; print(environment.local_tpu_chips())",
        ]
    )
    assert result.stdout.strip() == "{'0000:00:04.0': 'v5e'}", result.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("command", ["train", "preflight"])
def test_jax_road_with_a_tpu_chip_never_falls_back_to_the_cpu(command, simulated_tpu_host, tmp_path):
    # With libtpu (Colab's stack, .ci/colab_lane) JAX must reach libtpu's own answer ("TPU initialization
    # failed: No ... device found": the chip is fake), never "TPU_LOAD_LIBRARY=0"; without libtpu JAX falls back
    # to its CPU devices, which the launcher refuses beside a TPU chip. Either way: exit status 1, nothing trained.
    pytest.importorskip("jax")
    model = tmp_path / "model"
    argv = [sys.executable, "-m", "shogi_policy.cli", command, "--backend=jax", "--strategy=auto"]
    if command == "train":
        argv += [f"--data_dir={tmp_path / 'absent'}", f"--model_dir={model}", "--steps=2"]
    result = simulated_tpu_host(argv)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert "TPU_LOAD_LIBRARY=0, not loading libtpu" not in output
    assert "1 TPU chips (v5e) on the PCI bus, but JAX did not start a TPU. JAX/libtpu said:" in output
    assert "never set TPU_LOAD_LIBRARY=0 for the JAX trainer" in output
    if tpu_environment.libtpu_library_path():
        assert "TPU initialization failed" in output, output[-3000:]
    else:
        # JAX 0.10 keeps the plugin's error; where a JAX keeps none, the launcher says what JAX started instead.
        assert "Failed to open libtpu.so" in output or "cpu devices (libtpu installed: no)" in output
    assert not model.exists()
    assert "preflight ok" not in output


def test_auto_strategy_on_cpu_is_quiet(caplog):
    caplog.set_level(logging.INFO, logger="absl")  # other tests' app.run may have lowered absl's verbosity
    assert strategy.make_strategy("auto") is tf.distribute.get_strategy()
    messages = "\n".join(record.getMessage() for record in caplog.records)
    assert (
        "strategy auto: _DefaultDistributionStrategy with 1 replicas (no TPU chip on the PCI bus, no GPU)"
        in messages
    )
    assert "ConfigureDistributedTPU" not in messages and "TPUs not found" not in messages


def test_tpu_strategy_failures_say_what_to_do(monkeypatch, caplog):
    with pytest.raises(strategy.TpuUnavailableError, match="Change runtime type > TPU"):
        strategy.make_strategy("tpu")

    # A chip whose TPU does not initialise, as with libtpu loaded on a host without a TPU. Simulated: a real
    # initialize_tpu_system in this process would leave it unable to run MirroredStrategy's collectives.
    def initialize_tpu_system(resolver):
        raise tf.errors.InternalError(None, None, "RET_CHECK failure (tpu_node_interfaces.cc:432) *platform")

    monkeypatch.setattr(tpu_environment, "local_tpu_chips", lambda *args: {"0000:00:04.0": "v5e"})
    monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver", lambda tpu: tpu)
    monkeypatch.setattr(tf.tpu.experimental, "initialize_tpu_system", initialize_tpu_system)
    with pytest.raises(
        strategy.TpuUnavailableError, match="(?s)did not initialise.*InternalError.*libtpu==0.0.14"
    ):
        strategy.make_strategy("tpu")
    caplog.set_level(logging.INFO, logger="absl")
    assert strategy.make_strategy("auto") is tf.distribute.get_strategy()
    assert (
        "strategy auto: _DefaultDistributionStrategy with 1 replicas (the TPU did not initialise, no GPU)"
        in caplog.text
    )


CPU_HOST = {"on_tpu": False, "host_xla": True, "default_strategy": True, "has_gpu": False}


@pytest.mark.parametrize(
    "jit_compile, host, expected",
    [
        ("auto", CPU_HOST, (True, False)),
        ("true", CPU_HOST, (True, True)),
        ("false", CPU_HOST, (True, False)),
        ("auto", {**CPU_HOST, "has_gpu": True}, (True, True)),
        ("auto", {**CPU_HOST, "has_gpu": True, "default_strategy": False}, (True, False)),
        # The tensorflow-tpu wheel on the TPU VM's host: Keras's own "auto" would say True there (it counts
        # libtpu's TPU_SYSTEM device as an accelerator); no XLA at all is the only thing that runs.
        ("auto", {**CPU_HOST, "host_xla": False}, (False, False)),
        ("false", {**CPU_HOST, "host_xla": False}, (False, False)),
        ("auto", {**CPU_HOST, "on_tpu": True}, (False, False)),
        ("true", {**CPU_HOST, "on_tpu": True}, (False, True)),
    ],
)
def test_compilation_decision(jit_compile, host, expected):
    nested_xla, jit, why = strategy.compilation(jit_compile, **host)
    assert (nested_xla, jit) == expected and why


def test_jit_compile_true_without_host_xla_is_refused():
    with pytest.raises(ValueError, match="--jit_compile=true needs XLA for the host CPU"):
        strategy.compilation("true", **{**CPU_HOST, "host_xla": False})


def test_host_xla_probe_matches_the_wheel():
    tpu_wheel = runtime_preflight.runtime_report()["tensorflow-tpu"] is not None
    assert strategy.host_xla_available() is not tpu_wheel
