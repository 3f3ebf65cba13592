"""Samples a move of one position from an exported policy network and prints the top-k moves.

shogi-policy-sample --model=export/cpu --position="startpos moves 7g7f 3c3d" --temperature=1.0 --seed=7
"""

from absl import app, flags

from shogi_policy.core import shogi_rules
from shogi_policy.serving import inference


def format_report(position, sampled, top_moves, temperature, seed):
    """The text printed by the app: the sampled move, then the top-k moves with probabilities."""
    lines = [f"position: {position}", f"sampled: {sampled} (temperature {temperature:g}, seed {seed})"]
    lines.append(f"top {len(top_moves)}:")
    lines += [
        f"  {rank}. {move:7s} {probability:.4f}" for rank, (move, probability) in enumerate(top_moves, 1)
    ]
    return "\n".join(lines)


def define_flags(flag_values=flags.FLAGS):
    """Registers the app's flags on flag_values (run() uses the global FLAGS; tests their own)."""
    kw = {"flag_values": flag_values}
    flags.DEFINE_string(
        "model", None, "Export directory (shogi-policy-export --export_dir).", required=True, **kw
    )
    flags.DEFINE_string(
        "position", "startpos", "SFEN or USI position ('startpos moves ...', 'sfen ... moves ...').", **kw
    )
    flags.DEFINE_float("temperature", 1.0, "Softmax temperature; 0 plays the most probable move.", **kw)
    flags.DEFINE_integer("seed", 0, "Seed of the stateless sampler (same seed, same move).", **kw)
    flags.DEFINE_integer("top_k", 5, "How many of the most probable moves to print.", **kw)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    args = flags.FLAGS
    try:
        board = shogi_rules.parse_position(args.position)
        model = inference.PolicyModel(args.model)
        (sampled,) = model.sample([board], args.temperature, args.seed)
        (top_moves,) = model.top_k([board], args.top_k, args.temperature)
    except ValueError as error:
        raise app.UsageError(str(error)) from error
    print(format_report(board.sfen(), sampled, top_moves, args.temperature, args.seed))


def run():
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
