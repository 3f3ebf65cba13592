"""Move-match measurement: positions with their played moves and legal-move masks, and the played move's rank.

The evaluation data of both the trainer (--eval_tsv, after every epoch) and shogi-policy-evaluate (an exported
model): floodgate-style 'split<TAB>position<TAB>usi_move' files and the shards' held-out splits, checked with
cshogi's legal move generator. Moves are ranked by their logits among the LEGAL moves only.
"""

import numpy as np
import tensorflow as tf

from shogi_policy.core import policy_labels, record_format, shogi_rules
from shogi_policy.data import shards

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
                board = shogi_rules.parse_position(position)
            except ValueError as error:
                raise ValueError(f"{path}:{line_number}: {error}") from None
            try:
                move = shogi_rules.legal_move(board, usi_move)
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


def tsv_inputs(path, split):
    """(records, mask, labels) of the positions of a TSV file."""
    boards, moves = read_tsv(path, split)
    if not boards:
        raise ValueError(f"{path}: no positions with split {split!r}")
    mask, _, _ = policy_labels.legal_move_mask(boards)
    labels = policy_labels.move_labels(moves, [board.turn for board in boards])
    return record_format.encode_boards(boards), mask, labels


def shard_inputs(data_dir, split, limit=None):
    """(records, mask, labels) of a shard split, the legal mask rebuilt with cshogi per record.

    Raises ValueError naming the shard file and record index of an invalid record (record_format.records_to_boards:
    cshogi never sees one) or of a label that is not a legal move of its position.
    """
    parts = []
    for path, records in shards.read_records(data_dir, split, limit):
        boards = record_format.records_to_boards(records, path)
        try:
            mask, _, _ = policy_labels.legal_move_mask(boards)
        except ValueError as error:  # a position without a legal move
            raise ValueError(f"{path}: {error}") from None
        labels = record_format.unpack_records(records)["label"]
        illegal = np.flatnonzero(~mask[np.arange(len(labels)), labels])
        if illegal.size:
            raise ValueError(f"{path}: record {illegal[0]}: its label is not a legal move of its position")
        parts.append((records, mask, labels))
    if not parts:
        raise ValueError(f"{data_dir}: split {split!r} holds no positions")
    return tuple(np.concatenate(arrays) for arrays in zip(*parts, strict=True))


def check_tsv(path, flag):
    """ValueError naming flag and path unless path is a file to read_tsv (a missing path or a directory is not)."""
    if not tf.io.gfile.exists(path):
        raise ValueError(f"{flag}={path}: no such file")
    if tf.io.gfile.isdir(path):
        raise ValueError(f"{flag}={path} is a directory, not a 'split<TAB>sfen<TAB>usi_move' file")
