"""The package's layers point one way: serving never loads the trainer, its tasks or tensorflow-datasets.

(Keras itself is no marker: importing TensorFlow 2.21 loads it.)
"""

import subprocess
import sys

import pytest

TRAINING_MODULES = (
    "shogi_policy.train",
    "shogi_policy.tasks",
    "shogi_policy.input_pipeline",
    "tensorflow_datasets",
)


@pytest.mark.parametrize(
    "module", ["shogi_policy.usi", "shogi_policy.inference", "shogi_policy.sample", "shogi_policy.match"]
)
def test_serving_imports_no_training_code(module):
    check = (
        f"import sys, {module}; print(sorted(name for name in {TRAINING_MODULES!r} if name in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[-2] == "[]", f"{module} imports {result.stdout.strip()}"
