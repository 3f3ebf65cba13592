"""Move-match measurement: positions with their played moves and legal-move masks, and the played move's rank.

The evaluation data of both the trainer (--eval_tsv, after every epoch) and shogi-policy-evaluate (an exported
model): floodgate-style 'split<TAB>position<TAB>usi_move' files and the shards' held-out splits, checked with
cshogi's legal move generator. Moves are ranked by their logits among the LEGAL moves only.
"""

import itertools

import numpy as np
import tensorflow as tf

from shogi_policy.core import policy_labels, record_format, shogi_rules
from shogi_policy.data import game_io, shards

TOP_K = (1, 5)


def read_tsv(path, split=None):
    """Yields the positions and played moves of a 'split<TAB>position<TAB>usi_move' file, lazily (a generator:
    memory stays flat in the rows).

    Args:
      path: the TSV file (UTF-8, a byte-order mark allowed); split: keep only lines whose first column equals it
        (None keeps all).
    Yields:
      (board, move): a cshogi.Board and its played cshogi move (int).
    Raises:
      ValueError naming the file and line of a line that is not UTF-8, malformed, a bad position or an illegal
      move: an evaluation set is used whole or not at all.
    """
    for line_number, line in game_io.read_lines(path):
        if line is None:
            raise ValueError(f"{path}:{line_number}: not UTF-8 text")
        if not line.strip():
            continue
        columns = line.rstrip("\r\n").split("\t")
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
        yield board, move


def move_match(logits, mask, labels, ks=TOP_K):
    """Fraction of positions whose played label ranks within the top k legal moves, for each k.

    Args:
      logits: float32 [N, 2187]; mask: bool [N, 2187] legal labels; labels: int [N] played labels.
    Returns:
      {k: accuracy}. A move's rank is the number of legal moves with a strictly higher logit.
    """
    rank = move_ranks(logits, mask, labels)
    return {k: float(np.mean(rank < k)) for k in ks}


def move_ranks(logits, mask, labels):
    """int [N]: the number of legal moves (mask) with a strictly higher logit than the played label's."""
    legal_logits = np.where(mask, logits, -np.inf)
    played = legal_logits[np.arange(len(labels)), labels]
    return np.sum(legal_logits > played[:, None], axis=1)


def random_move_match(mask, ks=TOP_K):
    """Expected move match of a uniformly random legal-move ranking: {k: mean(min(1, k / M))}."""
    legal_counts = mask.sum(axis=1)
    return {k: float(np.mean(np.minimum(1.0, k / legal_counts))) for k in ks}


def _board_inputs(boards, moves):
    """(records uint8 [N, 100], legal mask bool [N, 2187], played labels [N]) of cshogi.Boards and played moves."""
    mask, _, _ = policy_labels.legal_move_mask(boards)
    labels = policy_labels.move_labels(moves, [board.turn for board in boards])
    return record_format.encode_boards(boards), mask, labels


def tsv_batches(path, split, batch_size):
    """Yields (records, mask, labels) of at most batch_size positions of a TSV file (read_tsv), read as they go.

    Raises ValueError as read_tsv does, and when no line has the split (after the file is read).
    """
    rows, positions = read_tsv(path, split), 0
    while batch := list(itertools.islice(rows, batch_size)):
        boards, moves = zip(*batch, strict=True)
        positions += len(boards)
        yield _board_inputs(boards, moves)
    if not positions:
        raise ValueError(f"{path}: no positions with split {split!r}")


def tsv_inputs(path, split):
    """(records, mask, labels) of all the positions of a TSV file (tsv_batches), in memory."""
    return tuple(np.concatenate(arrays) for arrays in zip(*tsv_batches(path, split, 1024), strict=True))


def shard_batches(data_dir, split, limit=None, batch_size=1024):
    """Yields (records, mask, labels) of at most batch_size positions of a shard split, the legal mask rebuilt
    with cshogi per record (memory flat in the split's size, but for one shard file's bytes).

    Raises ValueError naming the shard file and record index of an invalid record (record_format.records_to_boards:
    cshogi never sees one) or of a label that is not a legal move of its position, and for an empty split.
    """
    positions = 0
    for path, records in shards.read_records(data_dir, split, limit):
        record_format.check_records(records, path)
        for first in range(0, len(records), batch_size):
            batch = records[first : first + batch_size]
            boards = record_format.records_to_boards(batch, path, first)
            try:
                mask, _, _ = policy_labels.legal_move_mask(boards)
            except ValueError as error:  # a position without a legal move
                raise ValueError(f"{path}: {error}") from None
            labels = record_format.unpack_records(batch)["label"]
            illegal = np.flatnonzero(~mask[np.arange(len(labels)), labels])
            if illegal.size:
                raise ValueError(
                    f"{path}: record {first + illegal[0]}: its label is not a legal move of its position"
                )
            positions += len(batch)
            yield batch, mask, labels
    if not positions:
        raise ValueError(f"{data_dir}: split {split!r} holds no positions")


def check_tsv(path, flag):
    """ValueError naming flag and path unless path is a file to read_tsv (a missing path or a directory is not)."""
    if not tf.io.gfile.exists(path):
        raise ValueError(f"{flag}={path}: no such file")
    if tf.io.gfile.isdir(path):
        raise ValueError(f"{flag}={path} is a directory, not a 'split<TAB>sfen<TAB>usi_move' file")
