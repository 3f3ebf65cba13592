"""The compact position record: its 100-byte layout, packing, the one record validator and policy targets.

One position is a fixed-length record of RECORD_BYTES = 100 bytes (uint8):

  bytes  0..80  board: cshogi piece code of each square, sq = file * 9 + rank
                (0 = empty, 1..14 black P L N S B R G K +P +L +N +S +B +R, 17..30 white).
  bytes 81..94  hands: counts of black P L N S G B R, then white P L N S G B R.
  bytes 95..96  little-endian uint16: bits 0..11 move label (0..2186),
                bits 12..13 game result for the side to move (0 loss, 1 draw, 2 win),
                bit 14 side to move (0 black, 1 white).
  bytes 97..99  little-endian uint24: game id.

The board is stored as played (not rotated); the in-graph feature layer rotates it for White.
Move labels are dlshogi's (shogi_policy.core.policy_labels). The training target of a position packs
its label and result into one int (pack_policy_targets).

Records are checked by one rule set in two implementations, record_problems (numpy, the host) and
record_problems_tf (tf.data); records_to_boards checks them before cshogi sees them, then applies
shogi_rules.board_from_sfen (the one position check) to each position.
"""

import cshogi
import numpy as np
import tensorflow as tf

from shogi_policy.core import policy_labels, shogi_rules

RECORD_BYTES = 100
RECORD_FORMAT_VERSION = 1  # the layout above; shard manifests and exports record it
BOARD_BYTES = 81
HAND_BYTES = 14
BOARD_OFFSET = 0
HAND_OFFSET = 81
META_OFFSET = 95
GAME_ID_OFFSET = 97
MAX_GAME_ID = (1 << 24) - 1

RESULT_LOSS, RESULT_DRAW, RESULT_WIN = 0, 1, 2
_POLICY_TARGET_RESULT_FACTOR = 1 << 12  # labels < 2187 < 4096: target = label | result << 12


def board_arrays(board):
    """The board and hands of a cshogi.Board as uint8 arrays [81] and [14]."""
    black_hand, white_hand = board.pieces_in_hand
    return (
        np.asarray(board.pieces, dtype=np.uint8),
        np.asarray(black_hand + white_hand, dtype=np.uint8),
    )


def pack_records(boards, hands, turns, labels, results, game_ids):
    """Packs position fields into records.

    Args:
      boards: uint8 [N, 81]; hands: uint8 [N, 14]; turns, labels, results, game_ids: int [N].
    Returns:
      uint8 [N, 100] records.
    """
    boards = np.asarray(boards, dtype=np.uint8)
    n = boards.shape[0]
    game_ids = np.asarray(game_ids, dtype=np.int64)
    if n and (game_ids.min() < 0 or game_ids.max() > MAX_GAME_ID):
        raise ValueError(f"game ids must lie in [0, {MAX_GAME_ID}]")
    meta = (
        np.asarray(labels, dtype=np.uint32)
        | (np.asarray(results, dtype=np.uint32) << 12)
        | (np.asarray(turns, dtype=np.uint32) << 14)
    )
    records = np.empty((n, RECORD_BYTES), dtype=np.uint8)
    records[:, BOARD_OFFSET:HAND_OFFSET] = boards
    records[:, HAND_OFFSET:META_OFFSET] = hands
    records[:, META_OFFSET : META_OFFSET + 2] = meta.astype("<u2").view(np.uint8).reshape(n, 2)
    records[:, GAME_ID_OFFSET:] = game_ids.astype("<u4").view(np.uint8).reshape(n, 4)[:, :3]
    return records


def unpack_records(records):
    """Splits uint8 records [N, 100] into a dict of numpy fields.

    Returns:
      dict with board uint8 [N, 81], hands uint8 [N, 14], and int32 [N] turn, label, result, game_id.
    """
    records = np.asarray(records, dtype=np.uint8).reshape(-1, RECORD_BYTES)
    meta = records[:, META_OFFSET].astype(np.int32) | (records[:, META_OFFSET + 1].astype(np.int32) << 8)
    game_id = records[:, GAME_ID_OFFSET:].astype(np.int32)
    return {
        "board": records[:, BOARD_OFFSET:HAND_OFFSET],
        "hands": records[:, HAND_OFFSET:META_OFFSET],
        "label": meta & 0xFFF,
        "result": (meta >> 12) & 3,
        "turn": (meta >> 14) & 1,
        "game_id": game_id[:, 0] | (game_id[:, 1] << 8) | (game_id[:, 2] << 16),
    }


def unpack_records_tf(records):
    """TF twin of unpack_records for use inside tf.data and Keras layers (XLA friendly).

    Args:
      records: uint8 or int32 tensor [B, 100].
    Returns:
      dict of int32 tensors: board [B, 81], hands [B, 14], turn, label, result, game_id [B].
    """

    def int32_bytes(start, end):
        # Cast after slicing: tf.data pays per element, and callers often use a few fields of uint8 records.
        return tf.cast(records[:, start:end], tf.int32)

    shift_left, shift_right = tf.bitwise.left_shift, tf.bitwise.right_shift  # tensors have no << or >>
    meta_bytes = int32_bytes(META_OFFSET, GAME_ID_OFFSET)
    game_id_bytes = int32_bytes(GAME_ID_OFFSET, RECORD_BYTES)
    meta = meta_bytes[:, 0] | shift_left(meta_bytes[:, 1], 8)
    return {
        "board": int32_bytes(BOARD_OFFSET, HAND_OFFSET),
        "hands": int32_bytes(HAND_OFFSET, META_OFFSET),
        "label": meta & 0xFFF,
        "result": shift_right(meta, 12) & 3,
        "turn": shift_right(meta, 14) & 1,
        "game_id": game_id_bytes[:, 0]
        | shift_left(game_id_bytes[:, 1], 8)
        | shift_left(game_id_bytes[:, 2], 16),
    }


# Record validation: what a record must hold to be decoded at all, the rules shared by record_problems
# (numpy) and record_problems_tf (TF). Where pieces stand and how many of a kind there are is a question
# about the position, answered by shogi_rules.board_from_sfen (records_to_boards).
PIECE_CODES = (0, *range(1, 15), *range(17, 31))  # empty, black P L N S B R G K +P +L +N +S +B +R, white
KING_CODES = (
    shogi_rules.PIECE_LETTERS.index("K") + 1,
    shogi_rules.PIECE_LETTERS.index("K") + 1 + shogi_rules.WHITE_PIECE_OFFSET,
)
# Hand counts: black P L N S G B R, then white; a whole set of each kind.
HAND_LIMITS = np.array(shogi_rules.PIECE_SET * 2, dtype=np.uint8)
RECORD_PROBLEMS = (
    "",  # code 0: a valid record
    "a board byte is not a piece code (0, 1..14, 17..30)",
    "not exactly one king per side",
    "a hand count above a set's pieces of that kind (P 18, L N S G 4, B R 2)",
    f"move label >= {policy_labels.NUM_MOVE_LABELS}",
    "result bits 3 (0 loss, 1 draw, 2 win)",
    "bit 15 of the label word set (unused, must be 0)",
)
# Bytes that are no piece code: above the highest, or in a gap below it (compares, cheap in tf.data).
_MAX_CODE = max(PIECE_CODES)
_CODE_GAPS = tuple(sorted(set(range(_MAX_CODE)) - set(PIECE_CODES)))


def _first_problem(flags):
    """Problem codes int32 [N] of bool rule flags [N, 6] in RECORD_PROBLEMS order (numpy or TF): first + 1, else 0."""
    if isinstance(flags, np.ndarray):
        return np.where(flags.any(axis=1), flags.argmax(axis=1) + 1, 0).astype(np.int32)
    first = tf.argmax(tf.cast(flags, tf.int32), axis=1, output_type=tf.int32) + 1
    return tf.where(tf.reduce_any(flags, axis=1), first, 0)


def record_problems(records):
    """Problem code of each record (numpy, vectorised): 0 valid, else the RECORD_PROBLEMS index of the first rule broken.

    A valid record has a piece code in every board byte, one king per side, no hand count above a whole
    set's pieces of that kind, a label below 2187, result bits 0, 1 or 2 and bit 15 zero; the side to move
    and the game id are free.

    Args:
      records: uint8 [N, 100] (or one record [100]).
    Returns:
      int32 [N].
    """
    records = np.asarray(records, dtype=np.uint8).reshape(-1, RECORD_BYTES)
    fields = unpack_records(records)
    board = fields["board"]
    invalid = (board > _MAX_CODE) | np.isin(board, _CODE_GAPS)
    flags = [
        invalid.any(axis=1),
        ((board == KING_CODES[shogi_rules.BLACK]).sum(axis=1) != 1)
        | ((board == KING_CODES[shogi_rules.WHITE]).sum(axis=1) != 1),
        (fields["hands"] > HAND_LIMITS).any(axis=1),
        fields["label"] >= policy_labels.NUM_MOVE_LABELS,
        fields["result"] > RESULT_WIN,
        records[:, META_OFFSET + 1] >= 0x80,
    ]
    return _first_problem(np.stack(flags, axis=1))


def record_problems_tf(records):
    """TF twin of record_problems (pure TF ops, for tf.data): int32 [B] codes of uint8 records [B, 100].

    Compares of the bytes as they are (uint8) and few ops: tf.data pays per op and per element.
    """
    records = tf.convert_to_tensor(records, dtype=tf.uint8)
    fields = unpack_records_tf(records)
    board = records[:, BOARD_OFFSET:HAND_OFFSET]
    invalid = board > _MAX_CODE
    for gap in _CODE_GAPS:
        invalid |= board == gap
    kings = [tf.reduce_sum(tf.cast(board == code, tf.int32), axis=1) for code in KING_CODES]
    flags = [
        tf.reduce_any(invalid, axis=1),
        (kings[shogi_rules.BLACK] != 1) | (kings[shogi_rules.WHITE] != 1),
        tf.reduce_any(records[:, HAND_OFFSET:META_OFFSET] > HAND_LIMITS, axis=1),
        fields["label"] >= policy_labels.NUM_MOVE_LABELS,
        fields["result"] > RESULT_WIN,
        records[:, META_OFFSET + 1] >= 0x80,
    ]
    return _first_problem(tf.stack(flags, axis=1))


def pack_policy_targets(labels, results):
    """Training targets label | result << 12 of int labels [N] and results [N] (0 loss, 1 draw, 2 win).

    Plain arithmetic, so numpy arrays, TF tensors and Keras tensors all work: int [N] -> int [N].
    """
    return labels + results * _POLICY_TARGET_RESULT_FACTOR


def unpack_policy_targets(targets):
    """(labels, results) of int targets [N] made by pack_policy_targets (numpy, TF or Keras)."""
    return targets % _POLICY_TARGET_RESULT_FACTOR, targets // _POLICY_TARGET_RESULT_FACTOR


def encode_boards(boards):
    """Records (label, result and game id zero) of cshogi.Boards, for inference: uint8 [N, 100]."""
    arrays = [board_arrays(board) for board in boards]
    n = len(arrays)
    return pack_records(
        [a[0] for a in arrays] if n else np.zeros((0, BOARD_BYTES)),
        [a[1] for a in arrays] if n else np.zeros((0, HAND_BYTES)),
        [board.turn for board in boards],
        np.zeros(n),
        np.zeros(n),
        np.zeros(n),
    )


def check_records(records, source=None):
    """Raises ValueError "[source: ]record i: problem" naming the first invalid record of uint8 [N, 100]."""
    problems = record_problems(records)
    bad = np.flatnonzero(problems)
    if bad.size:
        prefix = f"{source}: " if source else ""
        counts = f"{bad.size} of {len(problems)} records invalid"
        raise ValueError(f"{prefix}record {bad[0]}: {RECORD_PROBLEMS[problems[bad[0]]]} ({counts})")


def records_to_boards(records, source=None, first=0):
    """cshogi.Boards (move number 1) of records uint8 [N, 100]; ValueError naming the first bad record.

    The records are validated before cshogi sees them (check_records: impossible piece codes crash
    cshogi), then each position goes through shogi_rules.board_from_sfen, the one position check.
    first: the index of records[0] in source, for that check's messages (a slice of a shard file).
    """
    records = np.asarray(records, dtype=np.uint8)
    if records.ndim != 2 or records.shape[1] != RECORD_BYTES:
        raise ValueError(f"records must have shape [N, {RECORD_BYTES}], got {records.shape}")
    check_records(records, source)
    fields = unpack_records(records)
    board = cshogi.Board()
    boards = []
    for index, (pieces, hands, turn) in enumerate(
        zip(fields["board"].tolist(), fields["hands"].tolist(), fields["turn"].tolist(), strict=True)
    ):
        board.set_pieces(pieces, (hands[:7], hands[7:]))
        board.turn = turn
        try:
            boards.append(shogi_rules.board_from_sfen(board.sfen()))
        except ValueError as error:
            raise ValueError(f"{source + ': ' if source else ''}record {first + index}: {error}") from None
    return boards


def record_to_board(record):
    """The cshogi.Board of one record uint8 [100] (move number 1); ValueError for a bad one (records_to_boards)."""
    return records_to_boards(np.reshape(record, (1, -1)))[0]
