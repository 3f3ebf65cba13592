"""The package's layers point one way: serving never loads the trainer, its tasks or tensorflow-datasets, and the
trainer never loads serving code.

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


SERVING_MODULES = (
    "shogi_policy.export",
    "shogi_policy.inference",
    "shogi_policy.evaluate",
    "shogi_policy.sample",
    "shogi_policy.usi",
    "shogi_policy.policy_ops",
)


def _loaded(module, candidates):
    """The names among candidates that importing module loads, in a fresh interpreter."""
    check = f"import sys, {module}; print(sorted(name for name in {candidates!r} if name in sys.modules))"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.split("\n")[-2]


@pytest.mark.parametrize(
    "module", ["shogi_policy.usi", "shogi_policy.inference", "shogi_policy.sample", "shogi_policy.arena"]
)
def test_serving_imports_no_training_code(module):
    loaded = _loaded(module, TRAINING_MODULES)
    assert loaded == "[]", f"{module} imports {loaded}"


def test_the_trainer_imports_no_serving_code():
    loaded = _loaded("shogi_policy.train", SERVING_MODULES)
    assert loaded == "[]", f"shogi_policy.train imports {loaded}"
