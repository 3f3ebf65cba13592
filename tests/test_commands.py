"""Every console command is flags -> configuration -> library call (issue 25), and the commands keep work and
refuse bad input in one line (issue 26: work destroyed, tracebacks).

The library calls run in fresh interpreters without absl's app or parsed flags; the refusals are called as the
command's shell calls them (cli.command.parse_config, then the library), or through the real command where the
shell itself is under test.
"""

import ast
import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import keras
import pytest
from conftest import TINY_CONFIG

from shogi_policy.cli import command
from shogi_policy.core import file_io
from shogi_policy.data import convert, shard_manifest
from shogi_policy.model import model_dir, network
from shogi_policy.serving import export, onnx_export, policy_ops

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "shogi_policy"
GAMES = "\n".join(
    [
        "startpos moves 7g7f 3c3d 2g2f 8c8d 2f2e 8d8e 6i7h 4a3b 2e2d 2c2d 2h2d",
        "startpos moves 2g2f 8c8d 2f2e 8d8e 7g7f 4a3b 8h7g 3c3d 7i8h 2b7g+ 8h7g",
        "startpos moves 7g7f 8c8d 7i6h 3c3d 6h7g 7a6b 5g5f 5c5d 3i4h 3a4b 4i5h",
        "startpos moves 5g5f 3c3d 5f5e 8b5b 2h5h 5a4b 5i4h 4b3b 4h3h 7a7b 3h2h",
    ]
)
# TensorFlow imports absl.app itself: what must not happen is the command's part: flags defined, parsed, cli loaded.
NOT_PARSED = """
from absl import flags
assert not flags.FLAGS.is_parsed()
assert not {"inputs", "output_dir", "export_dir", "model_dir", "model", "tsv"} & set(flags.FLAGS), sorted(flags.FLAGS)
assert not [name for name in sys.modules if name.startswith("shogi_policy.cli")]
"""


def _shell_modules():
    """(module path, what it does with absl) of each module outside cli/ that imports absl's app or flags."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.parent.name == "cli":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "absl":
                names = {alias.name for alias in node.names} & {"app", "flags"}
            elif isinstance(node, ast.ImportFrom) and node.module in ("absl.app", "absl.flags"):
                names = {node.module}
            elif isinstance(node, ast.Import):
                names = {alias.name for alias in node.names} & {"absl.app", "absl.flags"}
            else:
                continue
            if names:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} imports {sorted(names)}")
    return found


def test_only_cli_defines_flags_or_runs_an_app():
    assert _shell_modules() == [], "flags and app.run belong to shogi_policy/cli/"


def test_the_launcher_runs_every_command_from_cli():
    from shogi_policy.cli import launch

    assert all(module.startswith("shogi_policy.cli.") for module in launch.APP_MODULES.values())


def _fresh(script, tmp_path):
    """Runs script in a fresh interpreter (the checkout first on the path); its stdout."""
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
    result = subprocess.run(
        [sys.executable, "-c", f"import sys\n{textwrap.dedent(script)}\n{NOT_PARSED}"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_convert_runs_from_python_without_absl(tmp_path):
    (tmp_path / "g.usi").write_text(GAMES + "\n")
    out = _fresh(
        """
        from shogi_policy.data import convert
        manifest = convert.convert_with_config(convert.ConvertConfig(inputs="g.usi", output_dir="shards"))
        print(manifest["splits"]["train"]["games"] + manifest["splits"]["test"]["games"])
        """,
        tmp_path,
    )
    assert out.split() == ["4"] and (tmp_path / "shards" / shard_manifest.MANIFEST).exists()


@pytest.mark.slow
def test_export_runs_from_python_without_absl(tiny_export, tmp_path):
    out = _fresh(
        f"""
        from shogi_policy.serving import export
        path, metadata = export.export(export.ExportConfig(model_dir={str(tiny_export[0])!r}, export_dir="e"))
        print(path, metadata["label_scheme"])
        """,
        tmp_path,
    )
    assert (
        out.split() == ["e", policy_ops.LABEL_SCHEME]
        and (tmp_path / "e" / policy_ops.METADATA_FILENAME).exists()
    )


@pytest.mark.slow
def test_sample_runs_from_python_without_absl(tiny_export, tmp_path):
    out = _fresh(
        f"""
        from shogi_policy.serving import sample
        position, move, top = sample.sample(sample.SampleConfig(model={str(tiny_export[1])!r}, top_k=2, seed=3))
        print(move, len(top))
        """,
        tmp_path,
    )
    move, count = out.split()
    assert len(move) in (4, 5) and count == "2"


@pytest.mark.slow
def test_evaluate_runs_from_python_without_absl(tiny_export, tmp_path):
    sfen = "lnsgkgsnl/1r5b1/ppppppppp/9/9/9/PPPPPPPPP/1B5R1/LNSGKGSNL b - 1"
    (tmp_path / "p.tsv").write_text(f"val\t{sfen}\t7g7f\nval\t{sfen}\t2g2f\n")
    out = _fresh(
        f"""
        from shogi_policy.serving import evaluate
        config = evaluate.EvaluateConfig(model={str(tiny_export[1])!r}, tsv="p.tsv", json_out="r.json")
        print(evaluate.evaluate_export(config)["positions"])
        """,
        tmp_path,
    )
    assert out.split() == ["2"] and json.loads((tmp_path / "r.json").read_text())["positions"] == 2


@pytest.mark.slow
def test_the_usi_engine_runs_from_python_without_absl(tiny_export, tmp_path):
    out = _fresh(
        f"""
        from shogi_policy.serving import usi
        lines = ["usi", "isready", "position startpos moves 7g7f", "go byoyomi 1000", "quit", "go"]
        usi.serve(usi.UsiConfig(model={str(tiny_export[1])!r}), lines, print)
        """,
        tmp_path,
    )
    replies = out.splitlines()
    assert "readyok" in replies and sum(line.startswith("bestmove ") for line in replies) == 1


# The shell: refusals as one line.


def test_the_shell_turns_refusals_into_one_line_and_keeps_bugs():
    assert command.refusal(FileNotFoundError(2, "No such file or directory", "x.tsv")) == (
        "x.tsv: No such file or directory"
    )
    assert command.refusal(ValueError("--seed must be ...")) == "--seed must be ..."
    assert command.refusal(RuntimeError("a bug")) is None
    with pytest.raises(RuntimeError, match="a bug"):
        command.exit_refused("shogi-policy-x", RuntimeError("a bug"))
    with pytest.raises(SystemExit, match="^shogi-policy-x: --seed must be ...$"):
        command.exit_refused("shogi-policy-x", ValueError("--seed must be ..."))


@pytest.mark.parametrize(
    "name",
    [
        "train",
        *(
            pytest.param(name, marks=pytest.mark.slow)
            for name in ("convert", "export", "sample", "evaluate", "usi")
        ),
    ],
)
def test_a_missing_flagfile_is_one_line(name, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "shogi_policy.cli", name, f"--flagfile={tmp_path / 'nope.flags'}"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert f"shogi-policy-{name}: " in result.stderr and "nope.flags" in result.stderr
    assert "Traceback" not in result.stderr


# Work destroyed: export.


@pytest.fixture
def run_dir(tmp_path, tiny_export):
    """A copy of the tiny run with what a trainer leaves (train_flags.json, history.jsonl) under tmp_path/runs/r1."""
    run = tmp_path / "runs" / "r1"
    shutil.copytree(tiny_export[0], run)
    (run / model_dir.FLAGS_JSON).write_text('{"flags": {}}\n')
    (run / model_dir.HISTORY_JSONL).write_text("{}\n")
    return run


def _listing(directory):
    return sorted(str(path.relative_to(directory)) for path in pathlib.Path(directory).rglob("*"))


def _export(*args):
    return export.export(command.parse_config(export.ExportConfig, ["shogi-policy-export", *args]))


@pytest.mark.parametrize("target", ["run", "parent", "grandparent"])
def test_export_never_replaces_the_run_it_exports(run_dir, target):
    export_dir = {"run": run_dir, "parent": run_dir.parent, "grandparent": run_dir.parent.parent}[target]
    before = _listing(export_dir)
    with pytest.raises(ValueError, match="is or holds .*the model exported"):
        _export(f"--model_dir={run_dir}", f"--export_dir={export_dir}", "--overwrite")
    with pytest.raises(ValueError, match="is or holds"):
        _export(
            f"--keras_model={run_dir / model_dir.MODEL_KERAS}", f"--export_dir={export_dir}", "--overwrite"
        )
    assert _listing(export_dir) == before


def test_export_never_replaces_another_run_shards_or_foreign_files(run_dir, tmp_path):
    other_run = tmp_path / "other_run"
    shutil.copytree(run_dir, other_run)
    shards_dir = tmp_path / "shards"
    (tmp_path / "g.usi").write_text(GAMES + "\n")
    convert.convert_with_config(
        convert.ConvertConfig(inputs=str(tmp_path / "g.usi"), output_dir=str(shards_dir))
    )
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine")
    for directory, problem in (
        (other_run, "holds a trainer's run"),
        (shards_dir, "holds shards"),
        (notes, "not an export: --overwrite replaces only an earlier export"),
    ):
        before = _listing(directory)
        with pytest.raises(ValueError, match=problem):
            _export(f"--model_dir={run_dir}", f"--export_dir={directory}", "--overwrite")
        assert _listing(directory) == before
    checkpoint_only = tmp_path / "checkpoint_only"
    (checkpoint_only / model_dir.CHECKPOINT_DIR).mkdir(parents=True)
    with pytest.raises(ValueError, match="holds a trainer's run"):
        export.check_export_dir(checkpoint_only, overwrite=True)


def test_export_overwrites_an_earlier_export_and_its_onnx_sibling(tmp_path):
    for marker in export.EXPORT_MARKERS:
        directory = tmp_path / marker
        directory.mkdir()
        (directory / marker).write_text("")
        export.check_export_dir(directory, overwrite=True)  # an earlier export: replaced
    assert onnx_export.ONNX_FILENAME in export.EXPORT_MARKERS


def test_export_onto_an_unwritable_path_is_one_line(run_dir):
    # /proc refuses new entries even to root (chmod does not stop root); a read-only mount: test_read_only_mount.
    with pytest.raises(ValueError, match="cannot write /proc/shogi_policy_test/e"):
        _export(f"--model_dir={run_dir}", "--export_dir=/proc/shogi_policy_test/e")


def _read_only_mount_or_skip(tmp_path):
    """A shell prefix that runs a command with tmp_path/ro a read-only tmpfs (unshare -m), or skips."""
    mount = tmp_path / "ro"
    mount.mkdir()
    probe = f"mount -t tmpfs -o ro,size=1m tmpfs {mount} && ! touch {mount}/x"
    try:
        permitted = subprocess.run(["unshare", "-m", "sh", "-c", probe], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        pytest.skip("unshare is not available")
    if permitted.returncode:
        pytest.skip("unshare -m / mount -t tmpfs not permitted here")
    return mount, f"mount -t tmpfs -o ro,size=1m tmpfs {mount} && exec"


@pytest.mark.slow
def test_read_only_mount(run_dir, tmp_path):
    """Export, convert, evaluate's report and the trainer onto a read-only file system: one line each, exit 1."""
    mount, prefix = _read_only_mount_or_skip(tmp_path)
    (tmp_path / "g.usi").write_text(GAMES + "\n")
    commands = {
        "export": [f"--model_dir={run_dir}", f"--export_dir={mount / 'e'}"],
        "convert": [f"--inputs={tmp_path / 'g.usi'}", f"--output_dir={mount / 'shards'}"],
        "evaluate": [f"--model={mount}", f"--tsv={tmp_path / 'g.usi'}", f"--json_out={mount / 'r.json'}"],
        "train": [
            f"--data_dir={tmp_path / 'shards'}",
            f"--model_dir={mount / 'run'}",
            "--preset=cpu",
            "--blocks=1",
            "--filters=8",
            "--batch_size=8",
            "--strategy=default",
        ],
    }
    _convert(f"--inputs={tmp_path / 'g.usi'}", f"--output_dir={tmp_path / 'shards'}")
    for name, args in commands.items():
        argv = " ".join([sys.executable, "-m", "shogi_policy.cli", name, *args])
        result = subprocess.run(
            ["unshare", "-m", "sh", "-c", f"{prefix} {argv}"], capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 1, result.stderr[-2000:]
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith(f"shogi-policy-{name}: ") and "Read-only file system" in last, last
        assert "Traceback" not in result.stderr


# Work destroyed: convert.


def _convert(*args):
    return convert.convert_with_config(
        command.parse_config(convert.ConvertConfig, ["shogi-policy-convert", *args])
    )


def test_a_failed_overwrite_keeps_the_old_shards(tmp_path):
    (tmp_path / "g.usi").write_text(GAMES + "\n")
    out = tmp_path / "od"
    _convert(f"--inputs={tmp_path / 'g.usi'}", f"--output_dir={out}")
    (out / "README").write_text("my notes")
    before = {name: (out / name).read_bytes() for name in os.listdir(out)}
    for failing in ("--min_plies=100000", "--endings=mate"):
        with pytest.raises(ValueError, match="no game of 4 kept"):
            _convert(f"--inputs={tmp_path / 'g.usi'}", f"--output_dir={out}", "--overwrite", failing)
        assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before
        assert sorted(os.listdir(tmp_path)) == ["g.usi", "od"], "no staging directory left"
    again = _convert(f"--inputs={tmp_path / 'g.usi'}", f"--output_dir={out}", "--overwrite", "--seed=5")
    files = [name for split in again["splits"].values() for name in split["files"]]
    assert sorted(os.listdir(out)) == sorted(["README", shard_manifest.MANIFEST, *files])
    assert shard_manifest.read_manifest(str(out))["seed"] == 5
    assert sorted(os.listdir(tmp_path)) == ["g.usi", "od"]


def test_convert_never_writes_into_a_run_or_an_export(run_dir, tiny_export, tmp_path):
    (tmp_path / "g.usi").write_text(GAMES + "\n")
    for directory, kind in ((run_dir, "a trainer's run"), (tiny_export[1], "an export")):
        before = _listing(directory)
        for flags in ([], ["--overwrite"]):
            with pytest.raises(ValueError, match=f"holds {kind}"):
                _convert(f"--inputs={tmp_path / 'g.usi'}", f"--output_dir={directory}", *flags)
        assert _listing(directory) == before


def test_converts_markers_are_the_names_their_owners_write():
    assert {model_dir.FLAGS_JSON, model_dir.CHECKPOINT_DIR, *export.EXPORT_MARKERS} == set(
        convert.FOREIGN_MARKERS
    )


def test_a_malformed_csa_rating_costs_its_game_named_with_file_and_line(tmp_path):
    good = "V2.2\nN+a\nN-b\n'black_rate:A:3501.0\nPI\n+\n+7776FU\n-3334FU\n%TORYO\n"
    bad = good.replace("3501.0", "1.2.3")
    (tmp_path / "bad.csa").write_text(bad)
    (tmp_path / "huge.csa").write_text(good.replace("3501.0", "1e999"))
    (tmp_path / "good.csa").write_text(good.replace("+7776FU\n-3334FU", "+2726FU\n-8384FU"))
    manifest = _convert(f"--inputs={tmp_path}", f"--output_dir={tmp_path / 'out'}", "--test_fraction=0")
    assert manifest["splits"]["train"]["games"] == 1 and manifest["skipped"]["error"] == 2
    errors = sorted(manifest["skipped"]["error_examples"])
    assert errors[0].startswith(f"{tmp_path / 'bad.csa'}:") and "malformed rating comment" in errors[0]
    assert "'black_rate:A:1.2.3" in errors[0] and "1e999" in errors[1]


# One-line refusals: evaluate.


def _evaluate(*args):
    from shogi_policy.serving import evaluate

    config = command.parse_config(evaluate.EvaluateConfig, ["shogi-policy-evaluate", *args])
    return evaluate.evaluate_export(config)


def test_evaluate_names_a_missing_or_directory_tsv_and_an_unwritable_report_before_the_work(tmp_path):
    (tmp_path / "p.tsv").write_text("val\tstartpos\t7g7f\n")
    with pytest.raises(ValueError, match=f"--tsv={tmp_path / 'nope.tsv'}: no such file"):
        _evaluate(f"--model={tmp_path}", f"--tsv={tmp_path / 'nope.tsv'}")
    with pytest.raises(ValueError, match=f"--tsv={tmp_path} is a directory"):
        _evaluate(f"--model={tmp_path}", f"--tsv={tmp_path}")
    # The model does not exist: the report's path is refused first, before any position or model is read.
    for json_out, reason in (
        (tmp_path, "it is a directory"),
        ("/proc/shogi_policy_test/r.json", "No such file"),
    ):
        with pytest.raises(ValueError, match=f"cannot write {json_out}: {reason}"):
            _evaluate(
                f"--model={tmp_path / 'no_model'}", f"--tsv={tmp_path / 'p.tsv'}", f"--json_out={json_out}"
            )
    assert sorted(os.listdir(tmp_path)) == ["p.tsv"]


# One-line refusals and whole files: the trainer.


def _train(tmp_path, **values):
    from conftest import parse_flags

    from shogi_policy.cli import train as train_command

    return train_command.train(parse_flags(**values))


@pytest.fixture
def shards_dir(tmp_path):
    (tmp_path / "g.usi").write_text(GAMES + "\n")
    _convert(f"--inputs={tmp_path / 'g.usi'}", f"--output_dir={tmp_path / 'shards'}", "--test_fraction=0")
    return tmp_path / "shards"


@pytest.mark.parametrize(
    "values, problem",
    [
        ({"batch_size": 64}, r"--batch_size=64 is more than the training split holds \(44 examples\)"),
        ({"eval_tsv": "nope.tsv"}, "--eval_tsv=nope.tsv: no such file"),
        ({"model_dir": "a_file/run"}, "--model_dir=.*a_file/run: .*not a directory"),
        ({"model_dir": "/proc/shogi_policy_test/run"}, "--model_dir=/proc/shogi_policy_test/run: "),
    ],
)
def test_the_trainer_refuses_before_writing_its_model_dir(shards_dir, tmp_path, monkeypatch, values, problem):
    from absl import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("")
    values = {
        "data_dir": shards_dir,
        "model_dir": tmp_path / "run",
        "steps": 2,
        "steps_per_epoch": 2,
        **values,
    }
    with pytest.raises(app.UsageError, match=problem):
        _train(tmp_path, **values)
    assert not (tmp_path / "run").exists()


def test_model_keras_is_written_whole_or_not_at_all(tmp_path):
    from shogi_policy.training import train

    model = network.build_policy_model(TINY_CONFIG)
    target = tmp_path / model_dir.MODEL_KERAS
    train._save_model(model, str(tmp_path))
    whole = target.read_bytes()
    # A full disk: the temporary file is /dev/full, where every write fails with ENOSPC.
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    os.symlink("/dev/full", f"{target}.tmp")
    keras.utils.set_random_seed(1)
    with pytest.raises(ValueError, match=f"cannot write {target}: No space left on device"):
        train._save_model(network.build_policy_model(TINY_CONFIG), str(tmp_path))
    assert target.read_bytes() == whole, "the model.keras before stays whole"
    assert sorted(os.listdir(tmp_path)) == [model_dir.MODEL_KERAS]


def test_check_writable_names_the_path(tmp_path):
    file_io.check_writable(str(tmp_path / "r.json"))
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match="cannot write .*: it is a directory"):
        file_io.check_writable(str(tmp_path))
