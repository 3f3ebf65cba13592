"""Samples a move of one position from an exported policy network and ranks the top-k moves.

  shogi-policy-sample --model=export/cpu --position="startpos moves 7g7f" --temperature=1.0 --seed=7

From Python: sample(SampleConfig(model="export/cpu", position="startpos")) -> (SFEN, sampled move, top-k).
"""

import dataclasses

from shogi_policy.core import shogi_rules
from shogi_policy.serving import inference


@dataclasses.dataclass(frozen=True)
class SampleConfig:
    """One sampled move, as shogi-policy-sample's flags give it (each field is the flag of its name)."""

    model: str | None = dataclasses.field(
        default=None,
        metadata={"help": "Export directory (shogi-policy-export --export_dir).", "required": True},
    )
    position: str = dataclasses.field(
        default="startpos",
        metadata={"help": "SFEN or USI position ('startpos moves ...', 'sfen ... moves ...')."},
    )
    temperature: float = dataclasses.field(
        default=1.0, metadata={"help": "Softmax temperature; 0 plays the most probable move."}
    )
    seed: int = dataclasses.field(
        default=0, metadata={"help": "Seed of the stateless sampler (same seed, same move)."}
    )
    top_k: int = dataclasses.field(
        default=5, metadata={"help": "How many of the most probable moves to print."}
    )


def sample(config, model=None):
    """(the position's SFEN, the sampled move, [(usi_move, probability)] of the top_k moves at the temperature).

    model: a loaded inference.PolicyModel of config.model (default: loaded here). Raises ValueError naming a bad
    position, temperature, seed, top_k or export directory.
    """
    board = shogi_rules.parse_position(config.position)
    model = model or inference.PolicyModel(config.model)
    (sampled,), (top_moves,) = model.sample_and_rank([board], config.temperature, config.seed, config.top_k)
    return board.sfen(), sampled, top_moves


def format_report(position, sampled, top_moves, temperature, seed):
    """The text printed by the app: the sampled move, then the top-k moves with probabilities."""
    lines = [f"position: {position}", f"sampled: {sampled} (temperature {temperature:g}, seed {seed})"]
    lines.append(f"top {len(top_moves)}:")
    lines += [
        f"  {rank}. {move:7s} {probability:.4f}" for rank, (move, probability) in enumerate(top_moves, 1)
    ]
    return "\n".join(lines)
