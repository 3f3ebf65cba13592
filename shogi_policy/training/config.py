"""The trainer's configuration: frozen dataclasses that check their own ranges, as NetworkConfig does.

  TaskConfig     what is trained: the data, its augmentation, the network and the loss
  TrainerConfig  how long and how: batch, steps, the optimizer and its schedule, checkpoints, evaluation, seed
  RuntimeConfig  where it runs: Keras backend, strategy, TPU, multi-host JAX, XLA, bfloat16
  TrainConfig    the three together: what `train.train(config, model_dir)` takes

Each field is one hyperparameter: its default and help live here, and the trainer's command-line flag of the
same name is made from it (shogi_policy.cli.train). Field names are unique across the groups, so a config reads
and writes as one flat {name: value} dict: the "flags" of a model directory's train_flags.json
(TrainConfig.flat, TrainConfig.from_flat). A value out of range raises ConfigError naming its flag, e.g.
"--eval_steps must be an integer >= 0 ..."; the command turns it into a usage error.
"""

import dataclasses
import math
import os
import types
import typing

from shogi_policy.core.bad_records import BAD_RECORDS
from shogi_policy.model import network_config
from shogi_policy.runtime.environment import JIT_COMPILE, STRATEGIES

BACKENDS = ("tensorflow", "jax")
DATASETS = ("shogi", "mnist")
OPTIMIZERS = ("sgd", "adamw")
# A switch the trainer decides for its devices (--mixed_bfloat16); such a field's type is bool | Literal["auto"].
AUTO = "auto"


class ConfigError(ValueError):
    """A configuration or model directory the run cannot use; the message names the flag (--name) and why."""


def _field(default, help, *, choices=None, check=None):
    """A config field: default, help (the flag's), allowed choices, check = (accepts(value), range in words)."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices, "check": check})


_AT_LEAST_ONE = (lambda value: value >= 1, "an integer >= 1")
_FINITE_NON_NEGATIVE = (lambda value: math.isfinite(value) and value >= 0, "a finite number >= 0")


def field_type(field):
    """The value type of a field (bool, int, float or str), without the None of an optional one or the "auto"
    of a switch the trainer may decide (takes_auto)."""
    kind = field.type
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        (kind,) = [arg for arg in typing.get_args(kind) if arg is not type(None) and not _is_auto(arg)]
    return kind


def _is_auto(kind):
    return typing.get_origin(kind) is typing.Literal and typing.get_args(kind) == (AUTO,)


def takes_auto(field):
    """Whether a field also takes "auto" beside its type's values (bool | Literal["auto"])."""
    return typing.get_origin(field.type) is typing.Union and any(map(_is_auto, typing.get_args(field.type)))


class _Checked:
    """Checks every field's choices and range after construction (NaN fails every range; None is unset)."""

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None:
                continue
            if field_type(field) is str and isinstance(value, os.PathLike):  # a pathlib.Path from Python
                object.__setattr__(self, field.name, value := os.fspath(value))
            choices, check = field.metadata["choices"], field.metadata["check"]
            if choices is not None and value not in choices:
                raise ConfigError(f"--{field.name} must be one of {', '.join(choices)}, got {value!r}")
            if check is not None and not check[0](value):
                raise ConfigError(f"--{field.name} must be {check[1]}, got {value}")


@dataclasses.dataclass(frozen=True)
class TaskConfig(_Checked):
    """What is trained: the dataset, the network (a preset refined by the fields below it) and the loss.

    A preset alias reads as its shape name: TaskConfig(preset="cpu").preset == "b3c64".
    """

    dataset: str = _field("shogi", "shogi shards, or MNIST via tensorflow-datasets.", choices=DATASETS)
    data_dir: str | None = _field(None, "Shard directory (shogi-policy-convert output); local or gs://.")
    bad_records: str = _field(
        "fail",
        "An invalid shard record stops training, naming its file and index (fail), or is skipped and logged.",
        choices=BAD_RECORDS,
    )
    mirror: bool = _field(False, "Mirror training positions left-right (files 1<->9) with probability 1/2.")
    eval_tsv: str | None = _field(
        None, "Also measure move match on this 'split<TAB>sfen<TAB>usi_move' file each epoch."
    )
    eval_tsv_split: str = _field("val", "Rows of --eval_tsv to use (its first column).")
    preset: str = _field(
        "b3c64",
        "Network preset, named by shape (b<blocks>c<filters>; aliases: "
        + ", ".join(f"{alias}={shape}" for alias, shape in network_config.PRESET_ALIASES.items())
        + "), refined by the flags below.",
        choices=tuple(network_config.PRESETS),
    )
    blocks: int | None = _field(
        None, "Residual blocks (default: the preset's).", check=(lambda value: value >= 0, "an integer >= 0")
    )
    filters: int | None = _field(
        None, "Filters per convolution (default: the preset's).", check=_AT_LEAST_ONE
    )
    activation: str | None = _field(
        None, "Activation (default: the preset's).", choices=network_config.ACTIVATIONS
    )
    value_head: bool | None = _field(
        None, "Add a value head trained on game results (default: the preset's)."
    )
    value_loss_weight: float = _field(
        1.0, "Weight of the value loss beside the policy loss.", check=_FINITE_NON_NEGATIVE
    )
    label_smoothing: float = _field(
        0.0, "Policy label smoothing.", check=(lambda value: 0 <= value < 1, "a number in [0, 1)")
    )
    loser_weight: float = _field(
        1.0, "Policy loss weight of the losing side's moves (0: winners only).", check=_FINITE_NON_NEGATIVE
    )
    draw_weight: float = _field(
        1.0, "Policy loss weight of moves from drawn games.", check=_FINITE_NON_NEGATIVE
    )

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "preset", network_config.preset_shape_name(self.preset))

    def network(self):
        """network_config.NetworkConfig of the preset with the blocks/filters/activation/value_head overrides."""
        values = network_config.PRESETS[self.preset].to_dict()
        for name in ("blocks", "filters", "activation", "value_head"):
            if getattr(self, name) is not None:
                values[name] = getattr(self, name)
        return network_config.NetworkConfig.from_dict(values)


@dataclasses.dataclass(frozen=True)
class TrainerConfig(_Checked):
    """How long and how: batch, steps, the optimizer and its learning-rate schedule, checkpoints, evaluation."""

    batch_size: int = _field(256, "Global batch size (split across replicas).", check=_AT_LEAST_ONE)
    steps: int = _field(1000, "Total training steps.", check=_AT_LEAST_ONE)
    steps_per_epoch: int = _field(
        100, "Steps per Keras epoch (the logging and evaluation period).", check=_AT_LEAST_ONE
    )
    steps_per_execution: int = _field(
        1, "Steps per compiled call (large on TPU; 1 under mirrored).", check=_AT_LEAST_ONE
    )
    optimizer: str = _field("sgd", "SGD with Nesterov momentum 0.9, or AdamW.", choices=OPTIMIZERS)
    learning_rate: float = _field(
        0.01,
        "Peak learning rate.",
        check=(lambda value: math.isfinite(value) and value > 0, "a finite number > 0"),
    )
    warmup_steps: int = _field(0, "Linear warm-up steps before the cosine decay.")
    weight_decay: float = _field(1e-4, "Decoupled weight decay.", check=_FINITE_NON_NEGATIVE)
    clip_norm: float = _field(10.0, "Global gradient norm clip; 0 disables.", check=_FINITE_NON_NEGATIVE)
    checkpoint_every: int = _field(500, "Checkpoint period in steps.", check=_AT_LEAST_ONE)
    eval_steps: int | None = _field(
        None,
        "Evaluation batches per epoch (default: the whole test split; 0: none).",
        check=(lambda value: value >= 0, "an integer >= 0 (0: no evaluation; unset: the whole test split)"),
    )
    seed: int | None = _field(
        None,
        "Seed for weights and data order; makes runs and resumes reproducible.",
        check=(lambda value: 0 <= value < 2**32, "an integer in [0, 2**32)"),  # numpy's seed range
    )
    allow_changed_flags: bool = _field(
        False,
        "Resume a --model_dir even though flags that change the optimizer or data stream (RESUME_STREAM) differ "
        "from its train_flags.json; the changes are logged and recorded there.",
    )

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.warmup_steps < self.steps:
            raise ConfigError(f"--warmup_steps must lie in [0, --steps), got {self.warmup_steps}")
        if self.eval_steps and self.eval_steps % self.steps_per_execution:
            # keras trainers/epoch_iterator.py and both backends' trainers: an execution pulls
            # steps_per_execution batches, evaluation included (JAX: a Python loop; TensorFlow: a tf.while_loop).
            raise ConfigError(
                f"--eval_steps={self.eval_steps} must be a multiple of --steps_per_execution="
                f"{self.steps_per_execution}: Keras evaluates whole executions, so it would evaluate "
                f"{-(-self.eval_steps // self.steps_per_execution) * self.steps_per_execution} batches"
            )


@dataclasses.dataclass(frozen=True)
class RuntimeConfig(_Checked):
    """Where the run computes; none of these changes what is learned (RESUME_FREE, but jax_distributed)."""

    backend: str | None = _field(
        None,
        "Keras backend (default: KERAS_BACKEND, else tensorflow). Set by the shogi-policy-train command "
        "before Keras loads; python -m shogi_policy.cli.train only checks it.",
        choices=BACKENDS,
    )
    strategy: str = _field(
        "auto", "tf.distribute strategy; under JAX, DataParallel devices.", choices=STRATEGIES
    )
    tpu: str = _field(
        "local", "TPU address for TPUClusterResolver; 'local' on a TPU VM (the only value under JAX)."
    )
    jax_distributed: bool = _field(
        False,
        "Multi-host JAX (TPU pods): start JAX's distributed runtime (keras.distribution.initialize; on Cloud "
        "TPU every argument is detected) and read this host's shard files. Run the same command on every host.",
    )
    jit_compile: str = _field(
        "auto",
        "XLA for the whole step; auto: on with a GPU under the default strategy only (strategy.compilation). "
        "JAX compiles the whole step unless false.",
        choices=JIT_COMPILE,
    )
    mixed_bfloat16: bool | typing.Literal["auto"] = _field(
        AUTO,
        "Compute in bfloat16 with float32 weights and logits. auto: where the hardware computes bfloat16 natively "
        "(a TPU, a GPU of compute capability >= 8.0, an x86 CPU with AMX or AVX512_BF16; a resumed run keeps its "
        "own); train_flags.json records what it resolved to.",
        check=(lambda value: isinstance(value, bool) or value == AUTO, "true, false or auto"),
    )


GROUPS = {"task": TaskConfig, "trainer": TrainerConfig, "runtime": RuntimeConfig}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A training run's configuration: TrainConfig(task=TaskConfig(data_dir=...), trainer=TrainerConfig(...))."""

    task: TaskConfig = dataclasses.field(default_factory=TaskConfig)
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)

    def __post_init__(self):
        # The rules that join two groups.
        if self.runtime.jax_distributed and self.task.eval_tsv:
            raise ConfigError("--eval_tsv is single-host: evaluate the exported model afterwards instead")
        if self.runtime.jax_distributed and self.task.dataset == "mnist":
            raise ConfigError("--dataset=mnist is single-host: drop --jax_distributed")

    def flat(self):
        """{field name: value} of every group, in field order: train_flags.json's "flags" (without model_dir)."""
        return {
            name: value
            for group in GROUPS
            for name, value in dataclasses.asdict(getattr(self, group)).items()
        }

    @classmethod
    def from_flat(cls, values):
        """The config of flat {field name: value} (missing fields: defaults); ConfigError on an unknown name."""
        unknown = set(values) - set(flat_fields())
        if unknown:
            raise ConfigError(f"unknown trainer settings: {sorted(unknown)}")
        return cls(
            **{
                group: kind(**{f.name: values[f.name] for f in dataclasses.fields(kind) if f.name in values})
                for group, kind in GROUPS.items()
            }
        )

    def replace(self, **values):
        """A copy with some fields replaced by flat name, e.g. config.replace(steps=2, data_dir="shards")."""
        return self.from_flat({**self.flat(), **values})


def flat_fields():
    """{field name: dataclasses.Field} of every group, in order (the trainer's flags but --model_dir)."""
    return {field.name: field for kind in GROUPS.values() for field in dataclasses.fields(kind)}
