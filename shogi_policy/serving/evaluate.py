"""Move-match accuracy of an exported policy network: how often the played move is its top-1 / top-5.

  shogi-policy-evaluate --model=export/cpu --tsv=../shared/data/floodgate_positions/train_val_2000.tsv --split=val
  shogi-policy-evaluate --model=export/cpu --data_dir=shards/ --split=test --json_out=eval.json

Moves are ranked by their logits among the LEGAL moves only (cshogi's legal move list), so an
illegal move the network likes never counts. The TSV format is 'split<TAB>sfen ...<TAB>usi_move'
per line. As a yardstick the report also gives the expected score of a uniformly random legal move.
"""

import time

import numpy as np
from absl import app, flags

from shogi_policy.core import file_io
from shogi_policy.data import move_match
from shogi_policy.serving import inference


def evaluate(model, records, mask, labels):
    """Move-match report of a PolicyModel on records uint8 [N, 100], legal mask bool [N, 2187], labels [N]."""
    return evaluate_batches(model, [(records, mask, labels)])


def evaluate_batches(model, batches):
    """Move-match report of a PolicyModel on batches of (records, mask, labels) as evaluate takes them.

    The batches are consumed one at a time (move_match.tsv_batches, shard_batches), so memory stays flat in the
    number of positions: the report sums counts, never keeps a batch.
    """
    positions, legal_moves, seconds = 0, 0, 0.0
    hits, random_hits = dict.fromkeys(move_match.TOP_K, 0), dict.fromkeys(move_match.TOP_K, 0.0)
    for records, mask, labels in batches:
        if not mask[np.arange(len(labels)), labels].all():
            raise ValueError("a played move is not among the legal moves of its position")
        start = time.perf_counter()
        logits = model.record_logits(records)
        seconds += time.perf_counter() - start
        ranks = move_match.move_ranks(logits, mask, labels)
        random = move_match.random_move_match(mask)
        for k in move_match.TOP_K:
            hits[k] += int(np.sum(ranks < k))
            random_hits[k] += random[k] * len(labels)
        positions += len(labels)
        legal_moves += int(mask.sum())
    if not positions:
        raise ValueError("no positions to evaluate")
    return {
        "positions": positions,
        **{f"top{k}": hits[k] / positions for k in move_match.TOP_K},
        **{f"random_top{k}": random_hits[k] / positions for k in move_match.TOP_K},
        "mean_legal_moves": legal_moves / positions,
        "positions_per_second": positions / seconds,
    }


def define_flags(flag_values=flags.FLAGS):
    """Registers the app's flags on flag_values (run() uses the global FLAGS; tests their own)."""
    kw = {"flag_values": flag_values}
    flags.DEFINE_string(
        "model", None, "Export directory (shogi-policy-export --export_dir).", required=True, **kw
    )
    flags.DEFINE_string("tsv", None, "A 'split<TAB>sfen<TAB>usi_move' file.", **kw)
    flags.DEFINE_string("data_dir", None, "A shard directory (shogi-policy-convert output), instead.", **kw)
    flags.DEFINE_string(
        "split", None, "TSV split column value (default: all lines) or shard split (test).", **kw
    )
    flags.DEFINE_integer("limit", None, "At most this many shard positions.", **kw)
    flags.DEFINE_integer("batch_size", inference.DEFAULT_BATCH_SIZE, "Inference batch size.", **kw)
    flags.DEFINE_string("json_out", None, "Also write the report as JSON here.", **kw)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    args = flags.FLAGS
    if (args.tsv is None) == (args.data_dir is None):
        raise app.UsageError("give exactly one of --tsv and --data_dir")
    for name in ("limit", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise app.UsageError(f"--{name} must be an integer >= 1, got {value}")
    if args.limit is not None and args.tsv is not None:
        raise app.UsageError("--limit applies to --data_dir only")
    try:
        if args.tsv is not None:
            source, split = args.tsv, args.split
            batches = move_match.tsv_batches(source, split, args.batch_size)
        else:
            source, split = args.data_dir, args.split or "test"
            batches = move_match.shard_batches(source, split, args.limit, args.batch_size)
        model = inference.PolicyModel(args.model, batch_size=args.batch_size)
        report = {"model": args.model, "source": source, "split": split, **evaluate_batches(model, batches)}
    except ValueError as error:
        raise app.UsageError(str(error)) from error
    print(
        f"{report['positions']} positions of {source} (split {split}): "
        f"top-1 {report['top1']:.4f}, top-5 {report['top5']:.4f} "
        f"(random legal move: {report['random_top1']:.4f}, {report['random_top5']:.4f})"
    )
    if args.json_out:
        file_io.write_json(args.json_out, report)


def run():
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
