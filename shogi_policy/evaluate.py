"""Move-match accuracy of an exported policy network: how often the played move is its top-1 / top-5.

  shogi-policy-evaluate --model=export/cpu --tsv=../shared/data/floodgate_positions/train_val_2000.tsv --split=val
  shogi-policy-evaluate --model=export/cpu --data_dir=shards/ --split=test --json_out=eval.json

Moves are ranked by their logits among the LEGAL moves only (cshogi's legal move list), so an
illegal move the network likes never counts. The TSV format is 'split<TAB>sfen ...<TAB>usi_move'
per line. As a yardstick the report also gives the expected score of a uniformly random legal move.
"""

import json
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

from shogi_policy import encoding, inference, shards

TOP_K = (1, 5)


def read_tsv(path, split=None):
    """Positions and played moves of a 'split<TAB>position<TAB>usi_move' file.

    Args:
      path: the TSV file; split: keep only lines whose first column equals it (None keeps all).
    Returns:
      (boards, moves): cshogi.Boards and their played cshogi moves (int).
    Raises:
      ValueError naming the file and line of a malformed line, bad position or illegal move.
    """
    boards, moves = [], []
    with tf.io.gfile.GFile(path) as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            columns = line.rstrip("\n").split("\t")
            if len(columns) != 3:
                raise ValueError(f"{path}:{line_number}: expected 'split<TAB>position<TAB>usi_move'")
            line_split, position, usi_move = columns
            if split is not None and line_split != split:
                continue
            try:
                board = encoding.parse_position(position)
            except ValueError as error:
                raise ValueError(f"{path}:{line_number}: {error}") from None
            try:
                move = encoding.legal_move(board, usi_move)
            except ValueError:
                raise ValueError(f"{path}:{line_number}: played move {usi_move!r} is not legal") from None
            boards.append(board)
            moves.append(move)
    return boards, moves


def move_match(logits, mask, labels, ks=TOP_K):
    """Fraction of positions whose played label ranks within the top k legal moves, for each k.

    Args:
      logits: float32 [N, 2187]; mask: bool [N, 2187] legal labels; labels: int [N] played labels.
    Returns:
      {k: accuracy}. A move's rank is the number of legal moves with a strictly higher logit.
    """
    legal_logits = np.where(mask, logits, -np.inf)
    played = legal_logits[np.arange(len(labels)), labels]
    rank = np.sum(legal_logits > played[:, None], axis=1)
    return {k: float(np.mean(rank < k)) for k in ks}


def random_move_match(mask, ks=TOP_K):
    """Expected move match of a uniformly random legal-move ranking: {k: mean(min(1, k / M))}."""
    legal_counts = mask.sum(axis=1)
    return {k: float(np.mean(np.minimum(1.0, k / legal_counts))) for k in ks}


def evaluate(model, records, mask, labels):
    """Move-match report of a PolicyModel on records uint8 [N, 100], legal mask bool [N, 2187], labels [N]."""
    if not len(records):
        raise ValueError("no positions to evaluate")
    if not mask[np.arange(len(labels)), labels].all():
        raise ValueError("a played move is not among the legal moves of its position")
    start = time.perf_counter()
    logits = model.record_logits(records)
    seconds = time.perf_counter() - start
    accuracy = move_match(logits, mask, labels)
    baseline = random_move_match(mask)
    return {
        "positions": len(records),
        **{f"top{k}": accuracy[k] for k in TOP_K},
        **{f"random_top{k}": baseline[k] for k in TOP_K},
        "mean_legal_moves": float(mask.sum(axis=1).mean()),
        "positions_per_second": len(records) / seconds,
    }


def tsv_inputs(path, split):
    """(records, mask, labels) of the positions of a TSV file."""
    boards, moves = read_tsv(path, split)
    if not boards:
        raise ValueError(f"{path}: no positions with split {split!r}")
    mask, _, _ = inference.legal_move_mask(boards)
    labels = encoding.move_labels(moves, [board.turn for board in boards])
    return encoding.encode_boards(boards), mask, labels


def shard_inputs(data_dir, split, limit=None):
    """(records, mask, labels) of a shard split, the legal mask rebuilt with cshogi per record.

    Raises ValueError naming the shard file and record index of an invalid record (encoding.records_to_boards:
    cshogi never sees one) or of a label that is not a legal move of its position.
    """
    parts = []
    for path, records in shards.read_records(data_dir, split, limit):
        boards = encoding.records_to_boards(records, path)
        try:
            mask, _, _ = inference.legal_move_mask(boards)
        except ValueError as error:  # a position without a legal move
            raise ValueError(f"{path}: {error}") from None
        labels = encoding.unpack_records(records)["label"]
        illegal = np.flatnonzero(~mask[np.arange(len(labels)), labels])
        if illegal.size:
            raise ValueError(f"{path}: record {illegal[0]}: its label is not a legal move of its position")
        parts.append((records, mask, labels))
    if not parts:
        raise ValueError(f"{data_dir}: split {split!r} holds no positions")
    return tuple(np.concatenate(arrays) for arrays in zip(*parts, strict=True))


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
    try:
        if args.tsv is not None:
            source, split = args.tsv, args.split
            records, mask, labels = tsv_inputs(source, split)
        else:
            source, split = args.data_dir, args.split or "test"
            records, mask, labels = shard_inputs(source, split, args.limit)
        model = inference.PolicyModel(args.model, batch_size=args.batch_size)
        report = {
            "model": args.model,
            "source": source,
            "split": split,
            **evaluate(model, records, mask, labels),
        }
    except ValueError as error:
        raise app.UsageError(str(error)) from error
    print(
        f"{report['positions']} positions of {source} (split {split}): "
        f"top-1 {report['top1']:.4f}, top-5 {report['top5']:.4f} "
        f"(random legal move: {report['random_top1']:.4f}, {report['random_top5']:.4f})"
    )
    if args.json_out:
        with tf.io.gfile.GFile(args.json_out, "w") as f:
            f.write(json.dumps(report, indent=1) + "\n")


def run():
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
