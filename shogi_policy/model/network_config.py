"""The network's shape as plain data: NetworkConfig (network.json of a run) and the named presets.

No Keras here: the trainer's config checks presets and activations before the Keras backend is chosen;
shogi_policy.model.network builds the Keras model of a NetworkConfig.
"""

import dataclasses

# Keras's "hard_swish" is x * hard_sigmoid(x) with hard_sigmoid(x) = relu6(x + 3) / 6.
ACTIVATIONS = ("relu", "swish", "hard_swish")


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Shape of the residual tower; saved as network.json beside checkpoints."""

    blocks: int = 10
    filters: int = 192
    activation: str = "swish"
    value_head: bool = False

    def __post_init__(self):
        if self.blocks < 0 or self.filters < 1:
            raise ValueError(f"blocks must be >= 0 and filters >= 1, got {self.blocks} x {self.filters}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        unknown = set(values) - {field.name for field in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown NetworkConfig keys: {sorted(unknown)}")
        return cls(**values)


# Presets are named by shape, b<blocks>c<filters> as KataGo names its nets; cpu and tpu are aliases of two of
# them, which flags, flagfiles and train_flags.json may name.
_SHAPES = {
    "b3c64": NetworkConfig(blocks=3, filters=64, activation="relu"),
    "b10c192": NetworkConfig(blocks=10, filters=192, activation="swish"),  # dlshogi default
}
PRESET_ALIASES = {"cpu": "b3c64", "tpu": "b10c192"}
PRESETS = {**_SHAPES, **{alias: _SHAPES[shape] for alias, shape in PRESET_ALIASES.items()}}


def preset_shape_name(name):
    """The shape name (b<blocks>c<filters>) of a preset or alias; other names unchanged."""
    return PRESET_ALIASES.get(name, name)
