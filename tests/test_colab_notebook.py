"""The Colab TPU notebook runs as written on CPU, with its TPU pieces switched to the default strategy.

Cells run in a real IPython shell, so '!' commands and {var} expansion behave as in Colab. Cells tagged
'colab' (TPU wheels, the TensorBoard widget) and 'downloads' (MNIST from the internet; tests/test_mnist.py
covers it with tfds mock data) are skipped; a failing shell command fails the test.
"""

import subprocess
from pathlib import Path

import nbformat
import pytest

IPython = pytest.importorskip("IPython")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "scripts" / "colab_tpu.ipynb"
SKIPPED_TAGS = {"colab", "downloads"}


def cpu_parameters(work_dir):
    """Overrides of the notebook's parameters cell: default strategy, tiny net, a few steps."""
    return {
        "REPO_DIR": str(REPO),
        "WORK_DIR": str(work_dir),
        "RECORDS": str(REPO / "data" / "engine_games.usi.gz"),
        "STRATEGY": "default",
        "PRESET": "cpu",
        "BATCH_SIZE": 64,
        "STEPS": 6,
        "STEPS_PER_EPOCH": 3,
        "STEPS_PER_EXECUTION": 3,
        "EVAL_STEPS": 2,
        "EVAL_LIMIT": 256,
    }


def checked_system(shell):
    """A replacement for shell.system that expands {vars} like IPython and raises on a failing command."""

    def system(command):
        command = shell.var_expand(command, depth=1)
        subprocess.run(command, shell=True, check=True, cwd=REPO)

    return system


def test_notebook_cells_run_on_cpu(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    shell = IPython.core.interactiveshell.InteractiveShell.instance()
    shell.system = checked_system(shell)
    parameters = cpu_parameters(tmp_path)
    ran = 0
    for cell in notebook.cells:
        tags = set(cell.metadata.get("tags", []))
        if cell.cell_type != "code" or tags & SKIPPED_TAGS:
            continue
        shell.run_cell(cell.source).raise_error()
        ran += 1
        if "parameters" in tags:
            assert set(parameters) <= set(shell.user_ns), "the parameters cell lost a name the test sets"
            shell.user_ns.update(parameters)
    assert ran >= 5
    assert (tmp_path / "export" / "saved_model.pb").is_file()
    assert (tmp_path / "model" / "metrics.json").is_file()
