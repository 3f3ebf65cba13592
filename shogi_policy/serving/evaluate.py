"""Move-match accuracy of an exported policy network: how often the played move is its top-1 / top-5.

  shogi-policy-evaluate --model=export/cpu --tsv=../shared/data/floodgate_positions/train_val_2000.tsv --split=val
  shogi-policy-evaluate --model=export/cpu --data_dir=shards/ --split=test --json_out=eval.json

Moves are ranked by their logits among the LEGAL moves only (cshogi's legal move list), so an
illegal move the network likes never counts. The TSV format is 'split<TAB>sfen ...<TAB>usi_move'
per line. As a yardstick the report also gives the expected score of a uniformly random legal move.
"""

import dataclasses
import time

import numpy as np

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


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """One evaluation, as shogi-policy-evaluate's flags give it (each field is the flag of its name)."""

    model: str | None = dataclasses.field(
        default=None,
        metadata={"help": "Export directory (shogi-policy-export --export_dir).", "required": True},
    )
    tsv: str | None = dataclasses.field(
        default=None, metadata={"help": "A 'split<TAB>sfen<TAB>usi_move' file."}
    )
    data_dir: str | None = dataclasses.field(
        default=None, metadata={"help": "A shard directory (shogi-policy-convert output), instead."}
    )
    split: str | None = dataclasses.field(
        default=None, metadata={"help": "TSV split column value (default: all lines) or shard split (test)."}
    )
    limit: int | None = dataclasses.field(
        default=None, metadata={"help": "At most this many shard positions."}
    )
    batch_size: int = dataclasses.field(
        default=inference.DEFAULT_BATCH_SIZE, metadata={"help": "Inference batch size."}
    )
    json_out: str | None = dataclasses.field(
        default=None, metadata={"help": "Also write the report as JSON here."}
    )

    def __post_init__(self):
        """ValueError naming the flag of a combination or value the evaluation cannot take."""
        if (self.tsv is None) == (self.data_dir is None):
            raise ValueError("give exactly one of --tsv and --data_dir")
        for name in ("limit", "batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be an integer >= 1, got {value}")
        if self.limit is not None and self.tsv is not None:
            raise ValueError("--limit applies to --data_dir only")


def evaluate_export(config):
    """The move-match report of an EvaluateConfig (what shogi-policy-evaluate does), also written to json_out.

    The inputs and json_out are checked before the model runs. Raises ValueError naming the flag or file.
    """
    if config.json_out:
        file_io.check_writable(config.json_out)
    if config.tsv is not None:
        move_match.check_tsv(config.tsv, "--tsv")
        source, split = config.tsv, config.split
        batches = move_match.tsv_batches(source, split, config.batch_size)
    else:
        source, split = config.data_dir, config.split or "test"
        batches = move_match.shard_batches(source, split, config.limit, config.batch_size)
    model = inference.PolicyModel(config.model, batch_size=config.batch_size)
    report = {
        "model": config.model,
        "source": source,
        "split": split,
        **evaluate_batches(model, batches),
    }
    if config.json_out:
        file_io.write_json(config.json_out, report)
    return report


def summary(report):
    """The line shogi-policy-evaluate prints of a report."""
    return (
        f"{report['positions']} positions of {report['source']} (split {report['split']}): "
        f"top-1 {report['top1']:.4f}, top-5 {report['top5']:.4f} "
        f"(random legal move: {report['random_top1']:.4f}, {report['random_top5']:.4f})"
    )
