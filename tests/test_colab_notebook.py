"""The Colab TPU notebook runs as written on CPU, with its TPU pieces switched to the default strategy.

It runs once per Keras backend (BACKEND "tensorflow" and "jax"; the JAX run skips where jax is not installed,
as in the tensorflow-tpu wheel's CI lane), and BACKEND "auto" must switch to JAX when TensorFlow's preflight
fails.
Cells run in a real IPython shell, so magics and {var} expansion behave as in Colab. Cells tagged 'colab'
(TPU wheels, the TensorBoard widget) and 'downloads' (MNIST from the internet; tests/test_mnist.py covers
it with tfds mock data) are skipped. Commands go through the notebook's own run() helper, which must stop
the notebook on a failure (Colab's '!' does not); the preflight must let the default strategy through and
stop a TPU run on this TPU-less machine; a REPO_URL left empty must be refused with what to set.
"""

import importlib.util
import os
import re
import sys
from pathlib import Path
from unittest import mock

import nbformat
import pytest

IPython = pytest.importorskip("IPython")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "scripts" / "colab_tpu.ipynb"
SKIPPED_TAGS = {"colab", "downloads"}


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
        "EVAL_STEPS": 2,
        "EVAL_LIMIT": 256,
    }


def code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def test_shell_steps_go_through_the_failing_helper():
    # '!cmd' and %%bash without 'set -e' carry on after a failure in Colab: every command uses run().
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in code_cells(notebook):
        assert not re.search(r"^\s*!|%%bash|%system|subprocess\.(call|run)\(", cell.source, re.M), cell.source


@pytest.fixture
def shell():
    """A fresh IPython shell whose changes to os.environ (the kernel's TPU_LOAD_LIBRARY) end with the test."""
    with mock.patch.dict(os.environ):
        IPython.core.interactiveshell.InteractiveShell.clear_instance()
        yield IPython.core.interactiveshell.InteractiveShell.instance()
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


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_notebook_cells_run_on_cpu(shell, tmp_path, capsys, backend):
    if backend == "jax":
        pytest.importorskip("jax")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    ran = run_cells(shell, code_cells(notebook), cpu_parameters(tmp_path, backend))
    assert len(ran) >= 7
    assert (tmp_path / "export" / "saved_model.pb").is_file()
    assert (tmp_path / "model" / "metrics.json").is_file()
    out = capsys.readouterr().out
    assert f"preflight ok for --strategy=default --backend={backend}" in out
    assert "cshogi" in out and "tpu_chips" in out
    assert f"Keras backend for training: {backend}" in out
    assert "sampled: " in out and "top-1 " in out, "sample and evaluate printed their reports"
    assert os.environ["TPU_LOAD_LIBRARY"] == "0", "the kernel itself stays off the TPU"

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
    # BACKEND "auto": TensorFlow's preflight fails, the notebook says so and switches to JAX, whose own
    # preflight must then pass (here it cannot either: no TPU).
    shell.user_ns["BACKEND"] = "auto"
    shell.run_cell(choose.source).raise_error()
    assert shell.user_ns["BACKEND"] == "jax"
    assert "switching to the JAX backend" in capsys.readouterr().out
    if importlib.util.find_spec("jax"):
        with pytest.raises(RuntimeError, match="JAX preflight failed"):
            shell.run_cell(jax_preflight.source).raise_error()


def test_repo_url_must_be_set_unless_the_project_is_there(shell, tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    parameters, helpers = code_cells(notebook)[:2]
    shell.run_cell(parameters.source).raise_error()
    shell.run_cell(helpers.source).raise_error()
    assert shell.user_ns["REPO_URL"] == "", "the notebook ships without a repository URL"
    get_code = shell.user_ns["get_code"]
    for url in ("", "https://github.com/<you>/shogi_policy.git"):
        with pytest.raises(ValueError, match="Set REPO_URL in the parameters cell.*or upload the project"):
            get_code(url, str(tmp_path / "absent"))
    get_code("", str(REPO))  # uploaded (here: this checkout): nothing to clone
