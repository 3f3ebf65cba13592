"""The Colab TPU notebook runs as written on CPU, with its TPU pieces switched to the default strategy.

It runs once per BACKEND: "tensorflow", "jax" (skipped where jax is not installed, as in the tensorflow-tpu
wheel's CI lane) and "auto" with a TensorFlow preflight whose fit fails (the fault hook of
shogi_policy.runtime.checks): "auto" must end on the JAX road with a TensorFlow that still exports and serves.
Under Colab's stack (.ci/colab_lane: jax with libtpu installed) "auto" takes the JAX road at once.
Cells run in a real IPython shell, so magics and {var} expansion behave as in Colab. Cells tagged 'colab'
(pip installs, the TensorBoard widget) and 'downloads' (MNIST from the internet; tests/test_runtime.py
covers the report with tfds mock data) are skipped; the install plan they run is tested on its own. Commands go
through the notebook's own run() helper, which must stop the notebook on a failure (Colab's '!' does not) and
on a timeout; the preflight must let the default strategy through and stop a TPU run on this TPU-less machine;
a REPO_URL left empty must be refused with what to set.
"""

import functools
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import nbformat
import pytest

from shogi_policy.runtime import checks as runtime_check
from shogi_policy.training import config, recipes

IPython = pytest.importorskip("IPython")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "scripts" / "notebooks" / "colab_tpu.ipynb"
SKIPPED_TAGS = {"colab", "downloads", "install"}


def cpu_parameters(work_dir, backend):
    """Overrides of the notebook's parameters cell: default strategy, tiny net, a few steps."""
    return {
        "REPO_DIR": str(REPO),
        "WORK_DIR": str(work_dir),
        "RECORDS": str(REPO / "data" / "engine_games.usi.gz"),
        "BACKEND": backend,
        "STRATEGY": "default",
        "PRESET": "cpu",
        "BATCH_SIZE": 64,
        "STEPS": 6,
        "STEPS_PER_EPOCH": 3,
        "STEPS_PER_EXECUTION": 3,
        "EVAL_STEPS": 3,
        "EVAL_LIMIT": 256,
        "LIBTPU_FILE": str(work_dir / "runtime_libtpu.txt"),
        "PREFLIGHT_TIMEOUT": 300,
    }


def code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def test_shell_steps_go_through_the_failing_helper():
    # '!cmd' and %%bash without 'set -e' carry on after a failure in Colab: every command uses run().
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in code_cells(notebook):
        assert not re.search(r"^\s*!|%%bash|%system|subprocess\.(call|run)\(", cell.source, re.M), cell.source


def new_shell():
    """A fresh IPython shell. IPython's init_virtualenv puts $VIRTUAL_ENV's site-packages first on sys.path: the
    caller clears VIRTUAL_ENV, so that an activated virtualenv around the test run changes no import."""
    IPython.core.interactiveshell.InteractiveShell.clear_instance()
    return IPython.core.interactiveshell.InteractiveShell.instance()


@pytest.fixture
def shell():
    """A fresh IPython shell, sealed from an outer virtualenv; its changes to os.environ (the kernel's
    TPU_LOAD_LIBRARY) and sys.path end with the test."""
    with mock.patch.dict(os.environ), mock.patch.object(sys, "path", list(sys.path)):
        os.environ.pop("VIRTUAL_ENV", None)
        os.environ.pop(runtime_check.FAULT_VARIABLE, None)
        yield new_shell()
        IPython.core.interactiveshell.InteractiveShell.clear_instance()


def test_shell_is_sealed_from_an_activated_virtualenv(tmp_path):
    # An outer venv (`. v/bin/activate && bash .ci/run`) with a module of its own: the test shell must not see it.
    site = (
        tmp_path / "v" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    )
    site.mkdir(parents=True)
    with (
        mock.patch.dict(os.environ, VIRTUAL_ENV=str(tmp_path / "v")),
        mock.patch.object(sys, "path", list(sys.path)),
    ):
        new_shell()
        assert str(site) in sys.path, "IPython no longer adds $VIRTUAL_ENV: this test checks nothing"
    with (
        mock.patch.dict(os.environ, VIRTUAL_ENV=str(tmp_path / "v")),
        mock.patch.object(sys, "path", list(sys.path)),
    ):
        os.environ.pop("VIRTUAL_ENV")  # what the shell fixture does
        new_shell()
        assert str(site) not in sys.path
    IPython.core.interactiveshell.InteractiveShell.clear_instance()


def run_cells(shell, cells, parameters):
    """Runs the cells not skipped by tag in order, applying the parameters after the parameters cell."""
    ran = []
    for cell in cells:
        tags = set(cell.metadata.get("tags", []))
        if tags & SKIPPED_TAGS:
            continue
        shell.run_cell(cell.source).raise_error()
        ran.append(cell)
        if "parameters" in tags:
            assert set(parameters) <= set(shell.user_ns), "the parameters cell lost a name the test sets"
            shell.user_ns.update(parameters)
    return ran


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax", "auto"])
def test_notebook_cells_run_on_cpu(shell, tmp_path, capsys, backend):
    if backend != "tensorflow":
        pytest.importorskip("jax")
    if backend == "auto":  # TensorFlow's preflight passes its devices but fails in fit
        os.environ[runtime_check.FAULT_VARIABLE] = "tensorflow:fit"
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    ran = run_cells(shell, code_cells(notebook), cpu_parameters(tmp_path, backend))
    assert len(ran) >= 7
    assert (tmp_path / "export" / "saved_model.pb").is_file()
    assert (tmp_path / "model" / "metrics.json").is_file()
    out = capsys.readouterr().out
    trained = "jax" if backend == "auto" else backend
    assert f"preflight ok for --strategy=default --backend={trained}" in out
    assert "2 training steps on random records ran" in out, "the preflight trains for real"
    assert "cshogi" in out and "tpu_chips" in out
    assert f"Keras backend for training: {trained}" in out
    assert "sampled: " in out and "top-1 " in out, "sample and evaluate printed their reports"
    assert os.environ["TPU_LOAD_LIBRARY"] == "0", "the kernel itself stays off the TPU"
    if backend == "auto":
        if (
            shell.user_ns["ROAD"] == "tensorflow"
        ):  # no libtpu here: TensorFlow was tried first, and failed in fit
            assert "simulated failure of fit" in out and "switching to the JAX backend" in out
        else:  # Colab's stack: JAX's road at once
            assert "PREFLIGHT FAILED" not in out and "--backend=tensorflow" not in out
        return

    run = shell.user_ns["run"]
    with pytest.raises(RuntimeError, match="exit status 3"):
        run(f"{sys.executable} -c 'import sys; sys.exit(3)'")
    # The kernel's TPU_LOAD_LIBRARY=0 is not passed on: each console command decides for itself.
    run(f"{sys.executable} -c 'import os, sys; sys.exit(\"TPU_LOAD_LIBRARY\" in os.environ)'")

    if backend == "jax":
        return
    # The preflight stops a TPU run on a runtime without a TPU, saying what to do.
    (choose,) = [cell for cell in ran if cell.source.startswith("BACKEND = choose_backend(")]
    (jax_preflight,) = [cell for cell in ran if 'preflight("jax"' in cell.source]
    shell.user_ns["STRATEGY"] = "tpu"
    capsys.readouterr()
    with pytest.raises(RuntimeError, match="TensorFlow preflight failed"):
        shell.run_cell(choose.source).raise_error()
    out = capsys.readouterr().out
    assert "PREFLIGHT FAILED" in out and "Change runtime type > TPU" in out and "--strategy=default" in out
    # BACKEND "auto" on the TensorFlow road: TensorFlow's preflight fails, the notebook says so and switches to
    # JAX, whose own preflight must then pass (here it cannot either: no TPU).
    shell.user_ns["BACKEND"] = "auto"
    shell.run_cell(choose.source).raise_error()
    assert shell.user_ns["BACKEND"] == "jax"
    assert "switching to the JAX backend" in capsys.readouterr().out
    if importlib.util.find_spec("jax"):
        with pytest.raises(RuntimeError, match="JAX preflight failed"):
            shell.run_cell(jax_preflight.source).raise_error()


def run_until(shell, cells, parameters, last):
    """Runs the cells (skipping tags) up to and including the one whose source starts with last."""
    for index, cell in enumerate(cells):
        if cell.source.startswith(last):
            return run_cells(shell, cells[: index + 1], parameters)
    raise AssertionError(f"no cell starts with {last!r}")


@pytest.mark.slow
def test_a_hung_tensorflow_preflight_falls_through_to_jax(shell, tmp_path, capsys):
    os.environ[runtime_check.FAULT_VARIABLE] = "tensorflow:hang"
    cells = code_cells(nbformat.read(NOTEBOOK, as_version=4))
    parameters = {**cpu_parameters(tmp_path, "auto"), "PREFLIGHT_TIMEOUT": 30}
    run_until(shell, cells, parameters, "PROJECT = get_project(")
    shell.user_ns["ROAD"] = "tensorflow"  # a runtime without JAX's libtpu: TensorFlow is tried first
    start = time.monotonic()
    run_until(shell, cells, parameters, "BACKEND = choose_backend(")
    assert time.monotonic() - start < 120
    assert shell.user_ns["BACKEND"] == "jax"
    out = capsys.readouterr().out
    assert "timed out after 30 s and was stopped" in out and "switching to the JAX backend" in out


def test_install_plan_never_leaves_a_broken_tensorflow(shell, tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    run_until(shell, code_cells(notebook), cpu_parameters(tmp_path, "auto"), "import importlib")
    plan = shell.user_ns["install_commands"]
    plan = functools.partial(plan, project="file:///content/shogi_policy-0.1.0-py3-none-any.whl")
    pip = shell.user_ns["PIP"]
    # tensorflow-cpu installed over tensorflow-tpu: both own tensorflow/, so both go, then the one needed.
    jax_road = plan("jax", "0.0.21.1", ["tensorflow-cpu", "tensorflow-tpu"])
    assert jax_road[0] == f"{pip} uninstall -q -y tensorflow-cpu tensorflow-tpu"
    assert "'tensorflow-cpu==2.21.0'" in jax_road[1] and "'libtpu==0.0.21.1'" in jax_road[1]
    # The project with its road's extra, dependencies checked by pip's resolver (no --no-deps).
    assert jax_road[1].endswith("'shogi_policy[cpu] @ file:///content/shogi_policy-0.1.0-py3-none-any.whl'")
    assert "--no-deps" not in " ".join(jax_road) and len(jax_road) == 2
    assert plan("jax", "0.0.21.1", ["tensorflow-tpu"])[0] == f"{pip} uninstall -q -y tensorflow-tpu"
    assert "uninstall" not in plan("jax", "0.0.21.1", ["tensorflow-cpu"])[0]
    assert "libtpu" not in plan("jax", "", [])[0], "a runtime without libtpu gets none"
    tf_road = plan("tensorflow", "0.0.21.1", ["tensorflow-cpu"])
    assert tf_road[0] == f"{pip} uninstall -q -y tensorflow-cpu"
    assert "'tensorflow-tpu==2.20.0' 'libtpu==0.0.14'" in tf_road[1] and "0.0.21.1" not in tf_road[1]
    assert "'shogi_policy[tf-tpu] @ file:///content/" in tf_road[1]
    # The runtime's libtpu is recorded once; later runs read the file, not what the TensorFlow road installed.
    versions = {"libtpu": "0.0.21.1"}
    shell.user_ns["installed"] = versions.get
    record = tmp_path / "runtime_libtpu.txt"
    assert shell.user_ns["runtime_libtpu"](str(record)) == "0.0.21.1"
    versions["libtpu"] = "0.0.14"
    assert shell.user_ns["runtime_libtpu"](str(record)) == "0.0.21.1"
    versions["jax"] = "0.7.2"
    assert shell.user_ns["first_road"]("auto", "0.0.21.1") == "jax"
    assert shell.user_ns["first_road"]("auto", "") == "tensorflow"
    assert shell.user_ns["first_road"]("tensorflow", "0.0.21.1") == "tensorflow"


def test_repo_url_must_be_set_unless_the_project_is_there(shell, tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    parameters, helpers = code_cells(notebook)[:2]
    shell.run_cell(parameters.source).raise_error()
    shell.run_cell(helpers.source).raise_error()
    assert shell.user_ns["REPO_URL"] == "", "the notebook ships without a repository URL"
    get_code = shell.user_ns["get_code"]
    for url in ("", "https://github.com/<you>/shogi_policy.git"):
        with pytest.raises(
            ValueError, match="Set WHEEL or REPO_URL in the parameters cell.*or upload the project"
        ):
            get_code(url, str(tmp_path / "absent"))
    get_code("", str(REPO))  # uploaded (here: this checkout): nothing to clone
    get_project = shell.user_ns["get_project"]
    assert get_project("", "", str(REPO)) == REPO.as_uri()
    assert get_project("https://example.org/w.whl", "", "/absent") == "https://example.org/w.whl"
    with pytest.raises(ValueError, match="no such file"):
        get_project(str(tmp_path / "absent.whl"), "", str(REPO))


def shipped_parameters():
    """{name: value} of the parameters cell as shipped."""
    (cell,) = [
        cell
        for cell in code_cells(nbformat.read(NOTEBOOK, as_version=4))
        if "parameters" in cell.metadata.get("tags", [])
    ]
    values = {}
    exec(cell.source, values)  # noqa: S102  (the notebook's own parameters cell)
    return {name: value for name, value in values.items() if name.isupper()}


def test_shipped_parameters_are_a_run_the_trainer_accepts():
    # The notebook's own sizes and relations, as the trainer's config checks them (EVAL_STEPS 50 with
    # STEPS_PER_EXECUTION 100 evaluated 100 batches: tests/test_keras_executions.py).
    p = shipped_parameters()
    trainer = config.TrainerConfig(
        batch_size=p["BATCH_SIZE"],
        steps=p["STEPS"],
        steps_per_epoch=p["STEPS_PER_EPOCH"],
        steps_per_execution=p["STEPS_PER_EXECUTION"],
        eval_steps=p["EVAL_STEPS"],
    )
    for name in ("STEPS", "STEPS_PER_EPOCH", "EVAL_STEPS"):
        assert p[name] % trainer.steps_per_execution == 0, name
    recipe = recipes.load("tpu").trainer  # the recipe of the notebook's settings passes the same checks
    assert (recipe.batch_size, recipe.steps_per_execution, recipe.eval_steps) == (
        trainer.batch_size,
        trainer.steps_per_execution,
        trainer.eval_steps,
    )


# What sets a size or a relation of the run: the rehearsal keeps these as shipped.
SHIPPED_SIZES = ("BATCH_SIZE", "BACKEND", "PRESET", "MIXED_BFLOAT16", "STEPS_PER_EXECUTION", "EVAL_STEPS")


# The dress rehearsal's only changes to the shipped parameters cell, each with why it cannot hide a failure.
# Everything else is as shipped: BATCH_SIZE 1024, BACKEND "auto", PRESET "tpu", MIXED_BFLOAT16, STEPS_PER_EXECUTION
# and EVAL_STEPS (test_rehearsal_keeps_the_shipped_sizes checks it).
def rehearsal_overrides(work, wheel):
    return {
        # The built wheel, as a user uploads it: code, recipes and default data all come from it, so any file the
        # wheel lacks fails the rehearsal.
        "WHEEL": str(wheel),
        # A folder that does not exist yet, as on a fresh runtime: the cells that write there must create it.
        "WORK_DIR": str(work / "run"),
        # Where the runtime's libtpu version is recorded (a path only; its content is this runtime's libtpu).
        "LIBTPU_FILE": str(work / "colab_libtpu_version.txt"),
        # No TPU here: "auto" is TPUStrategy or JAX's TPU on a TPU and the default strategy on a CPU; the refusal
        # of "tpu" without a chip is tested on its own (tests/test_runtime.py, simulated chip).
        "STRATEGY": "auto",
        # The network only (CPU time); the batch, bf16, the preset's activation and heads stay.
        "NETWORK": "--blocks=1 --filters=16",
        # Step counts scaled down, each still a multiple of STEPS_PER_EXECUTION (100): two epochs, each with its
        # evaluation of EVAL_STEPS (as shipped), so every relation the trainer and Keras check is the shipped one.
        "STEPS": 200,
        "STEPS_PER_EPOCH": 100,
        # A step count, not a relation: MNIST still trains and is evaluated at BATCH_SIZE.
        "MNIST_STEPS": 10,
    }


# tensorflow-datasets' own mock data stands in for MNIST's download in every process of the rehearsal: entered
# when shogi_policy.data.mnist is imported (a sitecustomize on PYTHONPATH; the processes import nothing else of it).
MOCK_MNIST = """
import importlib.abc
import importlib.util
import sys


class MockMnist(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "shogi_policy.data.mnist":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            import tensorflow_datasets as tfds

            MOCKS.append(tfds.testing.mock_data(num_examples=2 * 1024))  # kept: collected, it would unpatch
            MOCKS[-1].__enter__()

        spec.loader.exec_module = exec_module
        return spec


MOCKS = []
sys.meta_path.insert(0, MockMnist())
"""

# The notebook top to bottom in a real IPython shell, in a fresh process outside the checkout (so it imports the
# installed wheel): every cell but the TensorBoard widget ('colab'), the install cells and the report included.
REHEARSAL_DRIVER = """
import json, sys, time
import nbformat
from IPython.core.interactiveshell import InteractiveShell

notebook, overrides = sys.argv[1], json.loads(sys.argv[2])
shell = InteractiveShell.instance()
for cell in nbformat.read(notebook, as_version=4).cells:
    tags = set(cell.metadata.get("tags", []))
    if cell.cell_type != "code" or "colab" in tags:
        continue
    start = time.monotonic()
    shell.run_cell(cell.source).raise_error()
    print(f"REHEARSAL {time.monotonic() - start:7.1f} s  {cell.source.splitlines()[0][:70]}", flush=True)
    if "parameters" in tags:
        assert set(overrides) <= set(shell.user_ns), "the parameters cell lost a name the rehearsal sets"
        shell.user_ns.update(overrides)
        # The values the run starts from (BACKEND is reassigned by choose_backend later).
        values = {name: value for name, value in shell.user_ns.items() if name.isupper()}
import shogi_policy
print("REHEARSAL values", json.dumps({name: value for name, value in values.items() if name in json.loads(sys.argv[3])}))
print("REHEARSAL road", shell.user_ns["ROAD"], shell.user_ns["BACKEND"])
print("REHEARSAL package", shogi_policy.__file__)
"""


@pytest.mark.slow
def test_dress_rehearsal_from_the_wheel(tmp_path):
    # .ci/colab_lane: Colab's stack on Python 3.13, the wheel it built in SHOGI_POLICY_WHEEL.
    wheel = os.environ.get("SHOGI_POLICY_WHEEL")
    if not wheel:
        pytest.skip("SHOGI_POLICY_WHEEL (a built wheel) is not set: .ci/colab_lane runs the rehearsal")
    pytest.importorskip("jax")
    (tmp_path / "mock").mkdir()
    (tmp_path / "mock" / "sitecustomize.py").write_text(MOCK_MNIST)
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in ("TPU_LOAD_LIBRARY", "VIRTUAL_ENV", "KERAS_BACKEND", runtime_check.FAULT_VARIABLE)
    }
    environment["PYTHONPATH"] = str(tmp_path / "mock")
    overrides = rehearsal_overrides(tmp_path, Path(wheel).resolve())
    start = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            REHEARSAL_DRIVER,
            str(NOTEBOOK),
            json.dumps(overrides),
            json.dumps(SHIPPED_SIZES),
        ],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    seconds = time.monotonic() - start
    out = result.stdout + result.stderr
    print("\n".join(line for line in out.splitlines() if line.startswith("REHEARSAL")))
    print(f"dress rehearsal: {seconds:.0f} s")
    assert result.returncode == 0, out[-6000:]
    values = json.loads(out.split("REHEARSAL values ", 1)[1].splitlines()[0])
    shipped = shipped_parameters()
    assert values == {name: shipped[name] for name in SHIPPED_SIZES}
    assert "REHEARSAL road jax jax" in out and "Keras backend for training: jax" in out
    package = out.split("REHEARSAL package ", 1)[1].splitlines()[0]
    assert "site-packages" in package and not package.startswith(str(REPO)), package
    assert out.count("preflight ok for --strategy=auto --backend=jax") == 2
    report = json.loads((tmp_path / "run" / "tpu_report.json").read_text())
    throughput = report["checks"]["throughput"]
    assert throughput["batch_size"] == 1024 and throughput["mixed_bfloat16"] is True
    assert report["checks"]["mnist"]["accuracy"] is not None
    metrics = json.loads((tmp_path / "run" / "model" / "metrics.json").read_text())
    assert metrics["step"] == overrides["STEPS"] and "eval_accuracy" in metrics
    assert (tmp_path / "run" / "export" / "saved_model.pb").is_file()
    assert "sampled: " in out and "top-1 " in out, "sample and evaluate printed their reports"
    assert "most probable moves" in out and "10 draws at temperature 0.3" in out
