"""The trainer's config type: flags made from its fields, its ranges, saved configs old and new, recipes, presets."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest
from absl import app, flags
from conftest import parse_flags, random_game_records

from shogi_policy.cli import launch
from shogi_policy.cli import train as train_command
from shogi_policy.data import shards
from shogi_policy.model import model_dir, network_config
from shogi_policy.training import config, recipes, resume


def test_every_field_is_a_flag_with_its_default_help_and_choices():
    flag_values = flags.FlagValues()
    train_command.define_flags(flag_values)
    fields = config.flat_fields()
    assert set(flag_values) == {*fields, "model_dir", "recipe"}
    for name, field in fields.items():
        flag = flag_values[name]
        assert flag.default == field.default and flag.help.endswith(field.metadata["help"]), name
        if field.metadata["choices"] is not None:
            assert flag.parser.enum_values == list(field.metadata["choices"]), name
    groups = [{f.name for f in dataclasses.fields(kind)} for kind in config.GROUPS.values()]
    assert sum(map(len, groups)) == len(fields), "a field name in two groups"


@pytest.mark.parametrize(
    "kind, values, message",
    [
        (
            config.TrainerConfig,
            {"eval_steps": -3},
            r"--eval_steps must be an integer >= 0 \(0: no evaluation",
        ),
        (
            config.TrainerConfig,
            {"learning_rate": float("nan")},
            "--learning_rate must be a finite number > 0",
        ),
        (
            config.TrainerConfig,
            {"steps": 10, "warmup_steps": 10},
            r"--warmup_steps must lie in \[0, --steps\)",
        ),
        (config.TrainerConfig, {"seed": 2**32}, r"--seed must be an integer in \[0, 2\*\*32\)"),
        (config.TaskConfig, {"label_smoothing": 1.0}, r"--label_smoothing must be a number in \[0, 1\)"),
        (config.TaskConfig, {"activation": "gelu"}, "--activation must be one of relu, swish, hard_swish"),
        (config.TaskConfig, {"preset": "huge"}, "--preset must be one of"),
        (config.RuntimeConfig, {"strategy": "gpu"}, "--strategy must be one of"),
    ],
)
def test_a_config_checks_its_own_ranges(kind, values, message):
    with pytest.raises(config.ConfigError, match=message):
        kind(**values)
    assert issubclass(config.ConfigError, ValueError)


def test_rules_across_groups_and_the_flags_usage_error():
    with pytest.raises(config.ConfigError, match="--eval_tsv is single-host"):
        config.TrainConfig(
            task=config.TaskConfig(eval_tsv="val.tsv"), runtime=config.RuntimeConfig(jax_distributed=True)
        )
    with pytest.raises(app.UsageError, match="--clip_norm must be a finite number >= 0, got -1"):
        train_command.config_from_flags(parse_flags(clip_norm=-1))


def test_flat_round_trip_and_replace(tmp_path):
    run = config.TrainConfig(task=config.TaskConfig(data_dir=tmp_path / "shards", mirror=True))
    assert run.task.data_dir == str(tmp_path / "shards"), "a path from Python is kept as text (JSON)"
    assert config.TrainConfig.from_flat(run.flat()) == run
    changed = run.replace(steps=7, preset="b10c192", strategy="default")
    assert (changed.trainer.steps, changed.task.preset, changed.runtime.strategy) == (7, "b10c192", "default")
    assert changed.task.mirror and run.trainer.steps == 1000
    with pytest.raises(config.ConfigError, match="unknown trainer settings: \\['stepz'\\]"):
        run.replace(stepz=3)


def test_saved_config_of_old_and_current_model_dirs(tmp_path):
    """train_flags.json as older trainers wrote it (flat flags, preset cpu, fewer flags) and as it is now."""
    old = tmp_path / "old"
    old.mkdir()
    flat = {
        "data_dir": "shards",
        "model_dir": str(old),
        "preset": "cpu",
        "batch_size": 64,
        "optimizer": "adamw",
    }
    (old / model_dir.FLAGS_JSON).write_text(json.dumps(flat))
    loaded = resume.recorded_config(str(old))
    assert loaded == config.TrainConfig(
        task=config.TaskConfig(data_dir="shards", preset="b3c64"),
        trainer=config.TrainerConfig(batch_size=64, optimizer="adamw"),
    )
    current = config.TrainConfig(trainer=config.TrainerConfig(steps=12, seed=3))
    model_dir.write_run_record(str(tmp_path), resume.saved_flags(current, tmp_path), [])
    assert json.loads((tmp_path / model_dir.FLAGS_JSON).read_text())["flags"]["model_dir"] == str(tmp_path)
    assert resume.recorded_config(str(tmp_path)) == current
    assert resume.recorded_config(str(tmp_path / "none")) is None
    (old / model_dir.FLAGS_JSON).write_text(json.dumps({**flat, "blockz": 3}))
    with pytest.raises(config.ConfigError, match="train_flags.json: unknown trainer settings"):
        resume.recorded_config(str(old))


def test_presets_are_named_by_shape_and_the_aliases_read_as_shapes():
    for name in set(network_config.PRESETS) - set(network_config.PRESET_ALIASES):
        preset = network_config.PRESETS[name]
        assert name == f"b{preset.blocks}c{preset.filters}"
    for alias, shape in network_config.PRESET_ALIASES.items():
        assert network_config.PRESETS[alias] == network_config.PRESETS[shape]
        assert config.TaskConfig(preset=alias) == config.TaskConfig(preset=shape)
    assert config.TaskConfig(preset="cpu").preset == "b3c64"
    current = resume.saved_flags(config.TrainConfig(), "run")
    assert current["preset"] == "b3c64"
    recorded = {**current, "preset": "cpu"}  # train_flags.json may name an alias
    assert resume.flag_changes(recorded, current) == {}, "a run recorded with --preset=cpu resumes as b3c64"
    other = resume.saved_flags(config.TrainConfig(task=config.TaskConfig(preset="tpu")), "run")
    assert resume.flag_changes(recorded, other) == {"preset": ("cpu", "b10c192")}


def test_the_config_and_the_launcher_load_neither_tensorflow_nor_keras():
    """The launcher reads the trainer's defaults from the config before it chooses the backend (fresh interpreter)."""
    check = (
        "import sys, shogi_policy.training.config, shogi_policy.cli.launch; "
        "print(sorted({name.split('.')[0] for name in sys.modules} & {'tensorflow', 'keras', 'jax'}))"
    )
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_the_launcher_takes_the_trainer_defaults_from_the_config_fields(monkeypatch):
    runtime = config.RuntimeConfig()
    names = ("strategy", "tpu", "backend", "jax_distributed")
    assert launch.trainer_target([]) == tuple(getattr(runtime, name) for name in names)
    fields = config.flat_fields()
    monkeypatch.setattr(fields["strategy"], "default", "mirrored")
    monkeypatch.setattr(fields["jax_distributed"], "default", True)
    assert launch.trainer_target(["--tpu=grpc://t"]) == ("mirrored", "grpc://t", None, True)


@pytest.mark.parametrize("name", recipes.NAMES)
def test_recipes_read_as_flagfiles_equal_their_python_config(name):
    """Oracle: absl's --flagfile reading of a recipe; flags after --recipe override it."""
    flag_values = flags.FlagValues()
    train_command.define_flags(flag_values)
    flag_values(["shogi-policy-train", *recipes.expand([f"--recipe={name}"])])
    assert train_command.config_from_flags(flag_values)[0] == recipes.load(name)
    overridden = train_command.config_from_argv(["--recipe", name, "--steps=2000", "--model_dir=runs/x"])
    assert overridden == (recipes.load(name).replace(steps=2000), "runs/x")


# scripts/run_default_job.sh's train flags before its recipes were files.
MAIN_JOB_FLAGS = [
    *("--preset=cpu", "--batch_size=256", "--eval_steps=10", "--optimizer=adamw", "--learning_rate=0.002"),
    *("--warmup_steps=20", "--seed=1"),
]
RECIPE_FLAGS = {
    "main": ["--steps=1300", "--steps_per_epoch=100", "--checkpoint_every=200"],
    "long": ["--steps=6000", "--steps_per_epoch=250", "--checkpoint_every=500", "--mirror"],
}


@pytest.mark.parametrize("name", sorted(RECIPE_FLAGS))
def test_recipe_files_resume_the_main_jobs_runs(name):
    """A model directory trained with the script's former flags resumes under the recipe: nothing changed."""
    former, _ = train_command.config_from_argv([*MAIN_JOB_FLAGS, *RECIPE_FLAGS[name]])
    recorded, current = (resume.saved_flags(run, "runs/x") for run in (former, recipes.load(name)))
    assert resume.flag_changes(recorded, current) == {}


def test_recipes_keep_the_main_jobs_settings_and_refuse_unknown_names():
    assert set(recipes.NAMES) >= {"main", "long", "tpu"}
    main, long = recipes.load("main"), recipes.load("long")
    assert (main.trainer.steps, long.trainer.steps, long.task.mirror, main.task.mirror) == (
        1300,
        6000,
        True,
        False,
    )
    assert recipes.load("tpu").runtime.mixed_bfloat16 and recipes.load("tpu").task.preset == "b10c192"
    with pytest.raises(
        ValueError, match="--recipe must be one of long, main, main_bfloat16, tpu, got 'fast'"
    ):
        recipes.expand(["--recipe=fast"])


TRAIN_FROM_PYTHON = """
import json, sys
from shogi_policy.training import config, train
run = config.TrainConfig(
    task=config.TaskConfig(data_dir=sys.argv[1], blocks=1, filters=8),
    trainer=config.TrainerConfig(batch_size=16, steps=2, steps_per_epoch=2, eval_steps=0, seed=1),
    runtime=config.RuntimeConfig(strategy="default"),
)
metrics = train.train(run, sys.argv[2])
from absl import flags
print(json.dumps({
    "step": metrics["step"],
    "parsed": flags.FLAGS.is_parsed(),
    "trainer_flags": sorted(set(flags.FLAGS) & set(config.flat_fields())),
    "cli": sorted(name for name in sys.modules if name.startswith("shogi_policy.cli")),
}))
"""


def _child_run_setup(directory, seed):
    """A tiny shard directory under directory, and the environment of a child interpreter that imports as this one."""
    data = directory / "shards"
    shards.write_records(
        str(data),
        {"train": random_game_records(4, 20, seed=seed), "test": random_game_records(1, 20, seed=seed + 1)},
    )
    return data, {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


@pytest.mark.slow
def test_train_from_python_with_dataclasses_only(tmp_path):
    """A fresh interpreter trains a tiny run from the config alone: no flag is defined, parsed or read (about 20 s)."""
    data, env = _child_run_setup(tmp_path, seed=40)
    result = subprocess.run(
        [sys.executable, "-c", TRAIN_FROM_PYTHON, str(data), str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"step": 2, "parsed": False, "trainer_flags": [], "cli": []}
    saved = json.loads((tmp_path / "run" / model_dir.FLAGS_JSON).read_text())
    assert saved["flags"]["steps"] == 2 and saved["flags"]["model_dir"] == str(tmp_path / "run")


@pytest.mark.slow
def test_the_command_reads_a_recipe_in_place(tmp_path):
    """shogi-policy-train --recipe=main, overridden by the flags after it, through the launcher (about 20 s)."""
    data, env = _child_run_setup(tmp_path, seed=42)
    command = [sys.executable, "-m", "shogi_policy.cli", "train"]
    unknown = subprocess.run(
        [*command, "--recipe=fast"], capture_output=True, text=True, timeout=120, env=env
    )
    assert (
        unknown.returncode != 0 and "--recipe must be one of long, main, main_bfloat16, tpu" in unknown.stderr
    )
    flags_after = [
        "--steps=2",
        "--steps_per_epoch=2",
        "--warmup_steps=0",
        "--eval_steps=0",
        "--strategy=default",
    ]
    result = subprocess.run(
        [
            *command,
            "--recipe=main",
            *flags_after,
            *("--blocks=1", "--filters=8", "--batch_size=16"),
            f"--data_dir={data}",
            f"--model_dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    saved = json.loads((tmp_path / "run" / model_dir.FLAGS_JSON).read_text())["flags"]
    recipe = recipes.load("main").flat()
    assert {
        name: saved[name] for name in ("optimizer", "learning_rate", "seed", "preset", "checkpoint_every")
    } == {name: recipe[name] for name in ("optimizer", "learning_rate", "seed", "preset", "checkpoint_every")}
    assert (saved["steps"], saved["batch_size"], saved["warmup_steps"]) == (2, 16, 0)


def test_a_recipe_inside_a_flagfile_is_refused_not_ignored(tmp_path):
    flagfile = tmp_path / "run.flags"
    flagfile.write_text("--recipe=main\n--steps=7\n")
    flag_values = flags.FlagValues()
    train_command.define_flags(flag_values)
    flag_values(["shogi-policy-train", f"--flagfile={flagfile}"])
    with pytest.raises(app.UsageError, match="--recipe=main works on the command line only"):
        train_command.config_from_flags(flag_values)


@pytest.mark.parametrize(
    "text, expected",
    [("true", True), ("TRUE", True), ("1", True), ("false", False), ("False", False), ("0", False)],
)
def test_recipe_switches_written_with_a_value_read_as_absl_reads_them(text, expected):
    assert recipes._typed(bool, text, "main", "mirror") is expected
    assert recipes._typed(bool, True, "main", "mirror") is True
    assert recipes._typed(int, "20", "main", "warmup_steps") == 20


def test_recipe_switch_with_another_value_is_refused():
    with pytest.raises(ValueError, match="--mirror must be true or false, got 'maybe'"):
        recipes._typed(bool, "maybe", "main", "mirror")


@pytest.mark.slow
def test_preflight_checks_run_under_a_recipe_with_warm_up(tmp_path):
    """The preflight's 2 steps under the main recipe (20 warm-up steps): the check's own schedule (about 15 s)."""
    from shogi_policy.runtime import checks as runtime_check

    run = recipes.load("main").replace(batch_size=16, blocks=1, filters=8)
    from shogi_policy.training.train import train as trainer

    report = runtime_check.run_checks(trainer, run, check_steps=2, throughput_steps=0, mnist_steps=0)
    assert report["check"]["steps"] == 2


def test_a_recipe_may_leave_a_decided_switch_to_auto():
    assert recipes._typed(bool, "auto", "main", "mixed_bfloat16", auto=True) == "auto"
    assert recipes._typed(bool, "false", "main", "mixed_bfloat16", auto=True) is False
    with pytest.raises(ValueError, match="--mixed_bfloat16 must be true, false or auto, got 'maybe'"):
        recipes._typed(bool, "maybe", "main", "mixed_bfloat16", auto=True)
    with pytest.raises(ValueError, match="--mirror must be true or false, got 'auto'"):
        recipes._typed(bool, "auto", "main", "mirror")
