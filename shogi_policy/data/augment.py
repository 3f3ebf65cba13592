"""Exact left-right mirror of position records: files 1 <-> 9, 2 <-> 8, ... (shogi's rules are symmetric).

A mirrored record holds the mirrored board (square sq = file * 9 + rank goes to (8 - file) * 9 + rank),
the same hands, side to move, result and game id, and the label of the mirrored move:

  label = direction * 81 + to_square, to_square rotated (sq -> 80 - sq) when White moves.
  Mirroring negates the file difference of a move and keeps its rank difference, so the board
  directions swap their left and right versions (UP_LEFT <-> UP_RIGHT, LEFT <-> RIGHT,
  DOWN_LEFT <-> DOWN_RIGHT, UP2_LEFT <-> UP2_RIGHT, the same for the promoting +10 ones);
  UP, DOWN and the 7 drop directions stay. The to-square is mirrored: rotation and mirror
  commute (both give file * 9 + 8 - rank from file * 9 + rank), so the rotated square of a White
  move mirrors the same way as a Black one.

Both are constant permutations (BOARD_PERMUTATION of the 100 record bytes' board part, LABEL_PERMUTATION
of the 2187 labels), computed once in numpy and used by the numpy and the TF version alike. The TF
version is pure TF (gathers and bit operations, no py_function): it runs inside tf.data, the model or
a TPU step. Mirroring twice is the identity.
"""

import numpy as np
import tensorflow as tf

from shogi_policy.core import policy_labels, record_format, shogi_rules

# dlshogi directions: UP, UP_LEFT, UP_RIGHT, LEFT, RIGHT, DOWN, DOWN_LEFT, DOWN_RIGHT, UP2_LEFT, UP2_RIGHT.
_MIRRORED_BOARD_DIRECTION = (0, 2, 1, 4, 3, 5, 7, 6, 9, 8)
_NUM_DROP_DIRECTIONS = 7
_LABEL_MASK = 0xFFF


def mirror_squares(squares):
    """The mirrored square index (file f -> 8 - f, same rank) of int squares in [0, 81)."""
    squares = np.asarray(squares)
    return (8 - squares // 9) * 9 + squares % 9


def _direction_permutation():
    board = np.array(_MIRRORED_BOARD_DIRECTION)
    drops = 20 + np.arange(_NUM_DROP_DIRECTIONS)
    return np.concatenate([board, board + 10, drops])


def _label_permutation():
    directions = _direction_permutation()
    label = np.arange(policy_labels.NUM_MOVE_LABELS)
    direction, to_square = label // shogi_rules.NUM_SQUARES, label % shogi_rules.NUM_SQUARES
    return (directions[direction] * shogi_rules.NUM_SQUARES + mirror_squares(to_square)).astype(np.int32)


def _record_permutation():
    columns = np.arange(record_format.RECORD_BYTES)
    board = slice(record_format.BOARD_OFFSET, record_format.BOARD_OFFSET + record_format.BOARD_BYTES)
    columns[board] = record_format.BOARD_OFFSET + mirror_squares(np.arange(shogi_rules.NUM_SQUARES))
    return columns.astype(np.int32)


# LABEL_PERMUTATION[label] is the mirrored label; RECORD_PERMUTATION[byte] the byte a mirrored record
# takes there (the board's squares mirrored, every other byte in place; the label is remapped apart).
LABEL_PERMUTATION = _label_permutation()
RECORD_PERMUTATION = _record_permutation()
for _permutation in (LABEL_PERMUTATION, RECORD_PERMUTATION):
    assert np.array_equal(_permutation[_permutation], np.arange(len(_permutation))), "not an involution"


def mirror_labels(labels):
    """Mirrored move labels (numpy): int [N] in [0, 2187)."""
    return LABEL_PERMUTATION[np.asarray(labels)]


def mirror_records_np(records):
    """Numpy twin of mirror_records: uint8 (or int) [N, 100] records -> mirrored records, same dtype."""
    records = np.asarray(records)
    mirrored = records[:, RECORD_PERMUTATION].copy()
    meta = mirrored[:, record_format.META_OFFSET].astype(np.int64) | (
        mirrored[:, record_format.META_OFFSET + 1].astype(np.int64) << 8
    )
    meta = (meta & ~_LABEL_MASK) | LABEL_PERMUTATION[meta & _LABEL_MASK]
    mirrored[:, record_format.META_OFFSET] = (meta & 0xFF).astype(records.dtype)
    mirrored[:, record_format.META_OFFSET + 1] = (meta >> 8).astype(records.dtype)
    return mirrored


def mirror_records(records):
    """Mirrored records (TF, pure ops): uint8 or int32 tensor [B, 100] -> same dtype and shape."""
    records = tf.convert_to_tensor(records)
    values = tf.gather(tf.cast(records, tf.int32), tf.constant(RECORD_PERMUTATION), axis=1)
    meta = values[:, record_format.META_OFFSET] | tf.bitwise.left_shift(
        values[:, record_format.META_OFFSET + 1], 8
    )
    label = tf.gather(tf.constant(LABEL_PERMUTATION), meta & _LABEL_MASK)
    meta = (meta & ~_LABEL_MASK) | label
    mirrored = tf.concat(
        [
            values[:, : record_format.META_OFFSET],
            tf.stack([meta & 0xFF, tf.bitwise.right_shift(meta, 8)], axis=1),
            values[:, record_format.META_OFFSET + 2 :],
        ],
        axis=1,
    )
    return tf.cast(mirrored, records.dtype)


def random_mirror(records, seed, probability=0.5):
    """Mirrors each row of records [B, 100] with the given probability (stateless: seed int [2] decides)."""
    flip = tf.random.stateless_uniform([tf.shape(records)[0]], seed) < probability
    return tf.where(flip[:, tf.newaxis], mirror_records(records), records)
