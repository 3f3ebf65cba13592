"""The package's folders keep the import rules their __init__ docstrings state.

Each folder's docstring has a line `May import: a, b` naming the other folders of shogi_policy its modules, in
subfolders too, may import (`nothing` for none). The test reads every module's imports (module level and inside functions) from its
syntax tree, and checks in a fresh interpreter the rules that a static read cannot see: serving loads neither
the trainer nor tensorflow-datasets, and the trainer loads no serving code.
"""

import ast
import pathlib
import re
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "shogi_policy"
FOLDERS = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())


def allowed_imports(folder):
    """The folders named on the `May import:` line of folder's __init__ docstring."""
    doc = ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text())) or ""
    match = re.search(r"^May import: (.+)$", doc, re.M)
    assert match, f"shogi_policy/{folder}/__init__.py: its docstring has no 'May import:' line"
    names = [name.strip().rstrip(".") for name in match[1].split(",")]
    return set() if names == ["nothing"] else set(names)


def imported_folders(path):
    """The shogi_policy folders that the module at path imports, with the line of each import."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "shogi_policy" and len(parts) > 1 and parts[1] in FOLDERS:
                found.append((parts[1], node.lineno))
                break
    return found


def modules(folder):
    """Every module under a folder of shogi_policy, in its subfolders too (training/recipes/)."""
    return sorted((PACKAGE / folder).rglob("*.py"))


def test_the_walk_reaches_subfolders():
    assert PACKAGE / "training" / "recipes" / "__init__.py" in modules("training")


def test_every_module_lives_in_a_folder():
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert loose == [], f"modules outside the role folders: {loose}"


@pytest.mark.parametrize("folder", FOLDERS)
def test_folder_imports_only_what_its_docstring_allows(folder):
    allowed = allowed_imports(folder) | {folder}
    unknown = allowed - set(FOLDERS)
    assert not unknown, f"shogi_policy/{folder}/__init__.py names folders that do not exist: {unknown}"
    broken = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports shogi_policy.{target}"
        for path in modules(folder)
        for target, line in imported_folders(path)
        if target not in allowed
    ]
    assert not broken, f"{folder} may import only {sorted(allowed)}:\n" + "\n".join(broken)


def test_the_rule_catches_a_forbidden_import(tmp_path):
    """The checker itself: a data module importing the model folder is reported."""
    module = tmp_path / "bad.py"
    module.write_text("def f():\n    from shogi_policy.model import network\n")
    assert imported_folders(module) == [("model", 2)]


TRAINING_MODULES = (
    "shogi_policy.training.train",
    "shogi_policy.training.tasks",
    "shogi_policy.data.input_pipeline",
    "tensorflow_datasets",
)
SERVING_MODULES = tuple(
    f"shogi_policy.serving.{path.stem}"
    for path in sorted((PACKAGE / "serving").glob("*.py"))
    if path.stem != "__init__"
)


def _loaded(module, candidates):
    """The names among candidates that importing module loads, in a fresh interpreter."""
    check = f"import sys, {module}; print(sorted(name for name in {candidates!r} if name in sys.modules))"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.split("\n")[-2]


@pytest.mark.slow
@pytest.mark.parametrize(
    "module", ["shogi_policy.serving.usi", "shogi_policy.serving.inference", "shogi_policy.serving.sample"]
)
def test_serving_imports_no_training_code(module):
    loaded = _loaded(module, TRAINING_MODULES)
    assert loaded == "[]", f"{module} imports {loaded}"


@pytest.mark.slow
def test_the_trainer_imports_no_serving_code():
    loaded = _loaded("shogi_policy.training.train", SERVING_MODULES)
    assert loaded == "[]", f"shogi_policy.training.train imports {loaded}"
