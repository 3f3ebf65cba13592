"""dlshogi input planes computed in-graph from compact records (the model's first layer).

Reproduces cshogi.dlshogi.make_input_features (default, without nyugyoku features) with keras.ops
only, so one implementation runs under the TensorFlow and the JAX Keras backends; no Python loop over
the batch, XLA-compilable. Channel order (119):

  for c in (side to move, opponent):                          features1, 2 x 31 = 62
    14 piece planes, 14 attack planes (piece type order P L N S B R G K +P +L +N +S +B +R),
    3 planes 'number of c's pieces attacking the square >= 1, 2, 3'
  for c in (side to move, opponent): 28 hand planes            features2, 2 x 28 + 1 = 57
    (P 8, L 4, N 4, S 4, G 4, B 2, R 2; plane k is all ones when count > k)
  1 plane 'side to move is in check'

When White is to move the board is rotated (sq -> 80 - sq) and the colours swapped, as in cshogi.
cshogi computes attacks on the unrotated board and rotates them; rotation plus colour swap is a
symmetry of the rules, so computing on the rotated board (side to move = Black) is the same.

How: bitboards, batch-minor. A file of one piece class is a 9-bit rank mask; three classes share an
int32 word as 9-bit lanes, so a tensor [10 words, 9 files, B] holds the 28 piece classes (side to
move's 14, then the opponent's) of a batch. Moving a bitboard along (d_file, d_rank) is a masked bit
shift plus a pad along the file axis; sliders fill through empty squares by Kogge-Stone doubling
(3 rounds reach 7 squares, the final move the 8th). For each of the 12 moves (8 king directions, 4
knight jumps) at most one piece attacks a square from that direction, so the per-move unions of
each colour feed 3-bit saturating counters: the 'attacked by >= 1, 2, 3' planes. Every plane ends
as a rank mask per (position, file) and one elementwise op spreads the masks into float planes.

With nested_xla (TensorFlow backend only) the layer runs as two XLA computations of its own, even in
a model that is not compiled: one computes the masks [B, 9, 119] (small), one writes the float planes
(large). A boundary between them matters: fused, XLA recomputes mask arithmetic for each of the 9
ranks of the output (3.5-4x slower on CPU). The trainer asks for it on CPU and GPU; under TPUStrategy
the whole step is one XLA program anyway, and exported SavedModels use plain ops, because a host
without XLA (the tensorflow-tpu wheel's) cannot run an XLA-must-compile function. Under JAX Keras
jits the whole train step and the flag is ignored (an optimization barrier between the halves does
not help there).

keras.ops pitfalls this code steers around: symbolic tensors' & | ^ are logical ops, so every bit
operation is ops.bitwise_*; a numpy int64 table promotes the result to int64 under TF but is
truncated to int32 under JAX, so every table is int32; no shift reaches 32 bits (its result differs
between backends; the lanes use 27 bits).

The word layout tables, the shifts and fills, the attack counters and the plane spreading are one algorithm over
one bitboard layout, each step reading the tables the steps before built: they live in one module.
"""

import keras
import numpy as np
from keras import ops

from shogi_policy.core import record_format, shogi_rules

NUM_PIECE_TYPES = 14
MAX_ATTACK_NUM = 3
FEATURES1_NUM = 2 * (2 * NUM_PIECE_TYPES + MAX_ATTACK_NUM)  # 62
HAND_MAX = (8, 4, 4, 4, 4, 2, 2)  # P L N S G B R, the record's hand order
HAND_PLANES = sum(HAND_MAX)  # 28
FEATURES2_NUM = 2 * HAND_PLANES + 1  # 57
NUM_FEATURES = FEATURES1_NUM + FEATURES2_NUM  # 119
FEATURE_SCHEME = f"dlshogi-{NUM_FEATURES}"  # what exports record: cshogi.dlshogi.make_input_features' planes

_WHITE_FLAG = 16  # cshogi piece code of a White piece = Black code + 16
_KING = 8
_NUM_CLASSES = 2 * NUM_PIECE_TYPES  # class k: side to move's type k + 1 (k < 14), else opponent's
_RANKS = 9
_FULL = (1 << _RANKS) - 1  # one file, all ranks
_CHECK_CHANNEL = NUM_FEATURES - 1
_KING_CHANNEL = _KING - 1  # side to move's king piece plane
_OPPONENT_ATTACKED_CHANNEL = FEATURES1_NUM - MAX_ATTACK_NUM  # opponent's 'attackers >= 1' plane

# Piece types (cshogi codes 1..14) and their moves for Black, as (d_file, d_rank); Black moves
# towards rank 0. White moves are the same with d_rank negated.
_UP, _DOWN, _LEFT, _RIGHT = (0, -1), (0, 1), (-1, 0), (1, 0)
_UP_LEFT, _UP_RIGHT, _DOWN_LEFT, _DOWN_RIGHT = (-1, -1), (1, -1), (-1, 1), (1, 1)
_ORTHOGONAL = (_UP, _DOWN, _LEFT, _RIGHT)
_DIAGONAL = (_UP_LEFT, _UP_RIGHT, _DOWN_LEFT, _DOWN_RIGHT)
_KNIGHT = ((-1, -2), (1, -2), (-1, 2), (1, 2))
_GOLD = (_UP, _DOWN, _LEFT, _RIGHT, _UP_LEFT, _UP_RIGHT)
_STEPS = {
    1: (_UP,),  # pawn
    3: _KNIGHT[:2],  # knight
    4: (_UP, _UP_LEFT, _UP_RIGHT, _DOWN_LEFT, _DOWN_RIGHT),  # silver
    7: _GOLD,
    8: _ORTHOGONAL + _DIAGONAL,  # king
    9: _GOLD,  # +P
    10: _GOLD,  # +L
    11: _GOLD,  # +N
    12: _GOLD,  # +S
    13: _ORTHOGONAL,  # horse: steps besides its diagonal slides
    14: _DIAGONAL,  # dragon: steps besides its orthogonal slides
}
_SLIDES = {2: (_UP,), 5: _DIAGONAL, 6: _ORTHOGONAL, 13: _DIAGONAL, 14: _ORTHOGONAL}
_MOVES = _ORTHOGONAL + _DIAGONAL + _KNIGHT

# Lanes: per colour, the sliding types in 2 words, the others in 3 (a word holds 3 classes; -1 = unused).
_LANES = 3
_SLIDING_TYPES = (2, 5, 6, 13, 14)
_STEPPING_TYPES = (1, 3, 4, 7, 8, 9, 10, 11, 12)


def _word_layout():
    """int [10, 3]: class in each lane of each word (-1: unused); side to move's words first."""
    lanes = []
    for colour in range(2):
        for types in (_SLIDING_TYPES, _STEPPING_TYPES):
            classes = [colour * NUM_PIECE_TYPES + piece_type - 1 for piece_type in types]
            lanes += classes + [-1] * (-len(classes) % _LANES)
    return np.array(lanes).reshape(-1, _LANES)


_WORD_LAYOUT = _word_layout()
_NUM_WORDS = len(_WORD_LAYOUT)  # 10
_OWN_WORDS = _NUM_WORDS // 2


def _class_code(k):
    """Oriented cshogi code of class k."""
    return k % NUM_PIECE_TYPES + 1 + _WHITE_FLAG * (k // NUM_PIECE_TYPES)


def _move_classes():
    """bool [12, 28] twice: class k steps (resp. slides) along move m."""
    steps = np.zeros((len(_MOVES), _NUM_CLASSES), bool)
    slides = np.zeros((len(_MOVES), _NUM_CLASSES), bool)
    for k in range(_NUM_CLASSES):
        piece_type, opponent = k % NUM_PIECE_TYPES + 1, k >= NUM_PIECE_TYPES
        for m, (d_file, d_rank) in enumerate(_MOVES):
            black_move = (d_file, -d_rank) if opponent else (d_file, d_rank)  # the opponent is White
            steps[m, k] = black_move in _STEPS.get(piece_type, ())
            slides[m, k] = black_move in _SLIDES.get(piece_type, ())
    return steps, slides


def _class_lanes():
    """{class: (word, bit offset of its lane)} for the 28 classes."""
    return {
        k: (word, _RANKS * lane)
        for word, lane_classes in enumerate(_WORD_LAYOUT)
        for lane, k in enumerate(lane_classes)
        if k >= 0
    }


_CLASS_LANES = _class_lanes()


def _lane_masks(classes):
    """int32 [10]: the lanes of the classes where classes (bool [28]) is True."""
    masks = np.zeros(_NUM_WORDS, np.int64)
    for k, (word, offset) in _CLASS_LANES.items():
        if classes[k]:
            masks[word] |= _FULL << offset
    return masks.astype(np.int32)


def _code_lookup():
    """int32 [32] twice: word and bit offset of the lane of each oriented code (empty: no word)."""
    words = np.full(32, _NUM_WORDS, np.int32)
    offsets = np.zeros(32, np.int32)
    for k, (word, offset) in _CLASS_LANES.items():
        words[_class_code(k)], offsets[_class_code(k)] = word, offset
    return words, offsets


def _channel_lanes():
    """int32 [62] twice: row (of the 26: pieces, attacks, counters) and bit offset of each features1 channel."""
    rows, offsets = [], []
    for colour in range(2):
        lanes = [_CLASS_LANES[k] for k in range(colour * NUM_PIECE_TYPES, (colour + 1) * NUM_PIECE_TYPES)]
        rows += [word for word, _ in lanes] + [_NUM_WORDS + word for word, _ in lanes]
        rows += [2 * _NUM_WORDS + MAX_ATTACK_NUM * colour + i for i in range(MAX_ATTACK_NUM)]
        offsets += [offset for _, offset in lanes] * 2 + [0] * MAX_ATTACK_NUM
    return np.array(rows, np.int32), np.array(offsets, np.int32)


_STEP_CLASSES, _SLIDE_CLASSES = _move_classes()
_CODE_WORD, _CODE_OFFSET = _code_lookup()
_CHANNEL_WORD, _CHANNEL_OFFSET = _channel_lanes()
_RANK_BITS = (1 << np.arange(_RANKS, dtype=np.int32))[:, None]  # [9, 1]: broadcasts over the batch
_HAND_COLUMN = np.concatenate(
    [np.repeat(np.arange(7), HAND_MAX), 7 + np.repeat(np.arange(7), HAND_MAX)]
).astype(np.int32)
_HAND_THRESHOLD = np.concatenate([np.arange(n) for n in HAND_MAX] * 2).astype(np.int32)
_RANK_INDEX = np.arange(_RANKS, dtype=np.int32)[:, None]  # [9, 1]
_WORD_INDEX = np.arange(_NUM_WORDS, dtype=np.int32)[:, None, None, None]
_FILES_ZEROS = np.zeros((1, 9, 1), np.int32)
_CHECK_PLANE = (np.arange(NUM_FEATURES) == _CHECK_CHANNEL)[None, None, :]  # [1, 1, 119]

# Never & | ^: on symbolic tensors they are logical ops.
_and, _or, _xor = ops.bitwise_and, ops.bitwise_or, ops.bitwise_xor
_shl, _shr = ops.left_shift, ops.right_shift


def _unpacked_position(records):
    """Board, hands and side to move of records, in keras.ops (record_format.unpack_records_tf is tf.data's twin).

    Args:
      records: uint8 or int32 [B, 100].
    Returns:
      board int32 [B, 81], hands int32 [B, 14], turn int32 [B].
    """
    records = ops.cast(records, "int32")  # the bit arithmetic below is on int32 words
    # The side to move is bit 14 of the little-endian uint16 at META_OFFSET: bit 6 of its high byte.
    high_meta = records[:, record_format.META_OFFSET + 1]
    return (
        records[:, record_format.BOARD_OFFSET : record_format.HAND_OFFSET],
        records[:, record_format.HAND_OFFSET : record_format.META_OFFSET],
        _and(_shr(high_meta, 14 - 8), 1),
    )


def _oriented_position(records):
    """Board and hands as seen by the side to move.

    Args:
      records: uint8 or int32 [B, 100].
    Returns:
      codes int32 [B, 81] (rotated and colour-swapped for White: side to move's pieces are 1..14),
      own hand, opponent hand int32 [B, 7].
    """
    board, hands, turn = _unpacked_position(records)
    white = ops.expand_dims(ops.equal(turn, shogi_rules.WHITE), 1)
    board = ops.where(white, ops.flip(board, axis=1), board)
    codes = ops.where(ops.logical_and(white, board > 0), _xor(board, _WHITE_FLAG), board)
    own = ops.where(white, hands[:, 7:], hands[:, :7])
    opponent = ops.where(white, hands[:, :7], hands[:, 7:])
    return codes, own, opponent


def _shift(words, move):
    """Bitboards int32 [W, 9, B] (lanes of 9-bit rank masks per file) moved by (d_file, d_rank).

    Ranks that would leave the board are masked off before the bit shift, so no lane spills into the next.
    """
    d_file, d_rank = move
    kept = _FULL >> d_rank if d_rank > 0 else (_FULL >> -d_rank) << -d_rank
    kept = sum(kept << (_RANKS * lane) for lane in range(_LANES))
    if d_rank > 0:
        words = _shl(_and(words, kept), d_rank)
    elif d_rank < 0:
        words = _shr(_and(words, kept), -d_rank)
    if d_file > 0:
        words = ops.pad(words[:, : _RANKS - d_file], [[0, 0], [d_file, 0], [0, 0]])
    elif d_file < 0:
        words = ops.pad(words[:, -d_file:], [[0, 0], [0, -d_file], [0, 0]])
    return words


def _fill(words, empty, move):
    """Kogge-Stone occluded fill: squares reachable from the pieces along move through empty squares (<= 7)."""
    for distance in (1, 2, 4):
        step = (distance * move[0], distance * move[1])
        words = _or(words, _and(empty, _shift(words, step)))
        if distance < 4:
            empty = _and(empty, _shift(empty, step))
    return words


def _fold_lanes(words):
    """int32 [..., 9, B]: OR of the 3 lanes of each word."""
    return _and(_or(_or(words, _shr(words, _RANKS)), _shr(words, 2 * _RANKS)), _FULL)


def _piece_words(board):
    """Piece bitboards int32 [10, 9, B] of oriented codes board int32 [9 files, 9 ranks, B]."""
    word = ops.take(_CODE_WORD, board, axis=0)
    bit = _shl(np.int32(1), ops.take(_CODE_OFFSET, board, axis=0) + _RANK_INDEX)
    in_word = ops.equal(ops.expand_dims(word, 0), _WORD_INDEX)
    return ops.sum(
        ops.where(in_word, ops.expand_dims(bit, 0), 0), axis=2
    )  # one piece per square: a sum is an OR


def _attack_words(pieces, empty):
    """Attack bitboards and attacker-count thermometers.

    Args:
      pieces: int32 [10, 9, B] piece words; empty: int32 [1, 9, B] empty squares in every lane.
    Returns:
      int32 [10, 9, B] attack words (lane of class k: squares class k attacks) and
      int32 [6, 9, B]: squares attacked by >= 1, 2, 3 pieces of the side to move, then of the opponent.
    """
    attacks = [None] * _NUM_WORDS
    counters = [[], []]
    for m, move in enumerate(_MOVES):
        movers, sliders = _lane_masks(_STEP_CLASSES[m] | _SLIDE_CLASSES[m]), _lane_masks(_SLIDE_CLASSES[m])
        # Only words with sliders along the move pay for the fill. int32 indices: see the module docstring.
        filled = np.flatnonzero(sliders).astype(np.int32)
        stepped = np.flatnonzero((movers != 0) & (sliders == 0)).astype(np.int32)
        parts = []
        if len(filled):
            start = _and(ops.take(pieces, filled, axis=0), movers[filled][:, None, None])
            parts.append(_fill(start, _and(empty, sliders[filled][:, None, None]), move))
        if len(stepped):
            parts.append(_and(ops.take(pieces, stepped, axis=0), movers[stepped][:, None, None]))
        moved = _shift(ops.concatenate(parts, axis=0), move)
        unions = [None, None]  # per colour: squares attacked along this move; at most one attacker each
        for row, word in enumerate(np.concatenate([filled, stepped])):
            attacks[word] = moved[row] if attacks[word] is None else _or(attacks[word], moved[row])
            colour = int(word >= _OWN_WORDS)
            unions[colour] = moved[row] if unions[colour] is None else _or(unions[colour], moved[row])
        for colour, union in enumerate(unions):
            if union is None:
                continue
            union = _fold_lanes(union)
            if not counters[colour]:
                counters[colour] = [union, ops.zeros_like(union), ops.zeros_like(union)]
            else:
                at_least_1, at_least_2, at_least_3 = counters[colour]
                counters[colour] = [
                    _or(at_least_1, union),
                    _or(at_least_2, _and(at_least_1, union)),
                    _or(at_least_3, _and(at_least_2, union)),
                ]
    return ops.stack(attacks), ops.stack(counters[0] + counters[1])


def plane_masks(records):
    """Rank masks of every plane: int32 [B, 9, 119], bit r of [b, f, c] = plane c at (file f, rank r).

    The in-check plane is left empty: spread_planes derives it from two other planes.

    Args:
      records: uint8 or int32 [B, 100] compact records (shogi_policy.core.record_format).
    """
    codes, own_hand, opponent_hand = _oriented_position(records)
    board = ops.transpose(ops.reshape(codes, (-1, 9, _RANKS)), (1, 2, 0))  # [9 files, 9 ranks, B]
    pieces = _piece_words(board)
    empty = _xor(_FULL, ops.sum(ops.where(board > 0, _RANK_BITS, 0), axis=1))  # [9, B]
    empty = ops.expand_dims(_or(_or(empty, _shl(empty, _RANKS)), _shl(empty, 2 * _RANKS)), 0)
    attacks, counters = _attack_words(pieces, empty)
    rows = ops.concatenate([pieces, attacks, counters], axis=0)  # [26, 9, B]
    square = _and(_shr(ops.take(rows, _CHANNEL_WORD, axis=0), _CHANNEL_OFFSET[:, None, None]), _FULL)
    hands = ops.transpose(ops.concatenate([own_hand, opponent_hand], axis=1))  # [14, B]
    hand = ops.where(ops.take(hands, _HAND_COLUMN, axis=0) > _HAND_THRESHOLD[:, None], _FULL, 0)  # [56, B]
    position = ops.concatenate([hand, ops.zeros_like(hand[:1])], axis=0)  # [57, B]
    position = ops.expand_dims(position, 1) + _FILES_ZEROS  # [57, 9, B]: broadcast, no dynamic shape
    return ops.transpose(ops.concatenate([square, position], axis=0), (2, 1, 0))


def spread_planes(masks, dtype):
    """Planes [B, 9, 9, 119] of dtype (a Keras dtype name) from plane_masks [B, 9, 119], with the in-check plane."""
    in_check = ops.any(
        ops.not_equal(_and(masks[:, :, _KING_CHANNEL], masks[:, :, _OPPONENT_ATTACKED_CHANNEL]), 0), axis=1
    )
    check_plane = ops.logical_and(_CHECK_PLANE, in_check[:, None, None])
    masks = _or(masks, ops.where(check_plane, _FULL, 0))
    bits = _and(ops.expand_dims(masks, 2), _RANK_BITS)  # [B, 9 files, 9 ranks, 119]
    return ops.cast(ops.not_equal(bits, 0), dtype)


_NESTED_XLA = {}  # the two halves as tf.function(jit_compile=True), made at first use (TF backend only)


def _nested_xla(records, dtype):
    """TF backend: plane_masks and spread_planes as two XLA computations of their own (module docstring)."""
    if not _NESTED_XLA:
        import tensorflow as tf  # (the TF backend has it; the JAX backend never gets here)

        _NESTED_XLA["masks"] = tf.function(plane_masks, jit_compile=True)
        _NESTED_XLA["spread"] = tf.function(spread_planes, jit_compile=True)
    return _NESTED_XLA["spread"](_NESTED_XLA["masks"](records), dtype)


def dlshogi_feature_planes(records, dtype="float32", nested_xla=False):
    """dlshogi planes [B, 9, 9, 119] (NHWC, H = file, W = rank) of records uint8/int32 [B, 100].

    dtype: a Keras dtype name. nested_xla: under the TF backend, run as two XLA computations of their own
    (fastest on CPU and GPU); ignored under JAX, whose jit (the train step's) compiles everything.
    """
    dtype = keras.backend.standardize_dtype(dtype)
    if nested_xla and keras.backend.backend() == "tensorflow":
        return _nested_xla(records, dtype)
    return spread_planes(plane_masks(records), dtype)


@keras.saving.register_keras_serializable(package="shogi_policy")
class DlshogiFeatures(keras.layers.Layer):
    """Compact records uint8/int32 [B, 100] -> dlshogi planes [B, 9, 9, 119] in the compute dtype.

    NHWC with H = file, W = rank: out[b, f, r, c] == cshogi planes[b, c, f, r].

    Args:
      nested_xla: compute as two XLA computations of their own (dlshogi_feature_planes; TF backend).
        A property of the process that runs the layer, not of the model: it is not saved in the
        config, so a loaded model computes with plain ops unless its loader asks otherwise.
    """

    def __init__(self, nested_xla=False, **kwargs):
        super().__init__(**kwargs)
        self.nested_xla = nested_xla

    def call(self, records):
        return dlshogi_feature_planes(records, self.compute_dtype, self.nested_xla)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 9, 9, NUM_FEATURES)

    def get_config(self):
        config = super().get_config()
        config.pop("nested_xla", None)  # decided by whoever loads the model
        return config


def compiled(function):
    """function compiled as the backend compiles a model's call: jax.jit, or a TF graph (tf.function)."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(function)
    import tensorflow as tf

    return tf.function(function)


def dlshogi_planes(sfens, batch_size=1024, nested_xla=False):
    """dlshogi planes of SFEN positions through DlshogiFeatures, channels-first like cshogi.

    Args:
      sfens: iterable of SFEN strings.
      batch_size: positions per call of the layer.
      nested_xla: as DlshogiFeatures.
    Returns:
      np.float32 [N, 119, 9, 9].
    Raises:
      ValueError: a malformed or impossible SFEN (shogi_rules.board_from_sfen).
    """
    records = record_format.encode_boards([shogi_rules.board_from_sfen(sfen) for sfen in sfens])
    compute = compiled(DlshogiFeatures(nested_xla=nested_xla, dtype="float32"))
    planes = np.zeros((len(records), 9, 9, NUM_FEATURES), np.float32)
    for start in range(0, len(records), batch_size):
        batch = records[start : start + batch_size]
        padded = np.zeros((batch_size, record_format.RECORD_BYTES), np.uint8)  # one batch shape: one trace
        padded[: len(batch)] = batch
        planes[start : start + len(batch)] = ops.convert_to_numpy(compute(padded))[: len(batch)]
    return np.ascontiguousarray(planes.transpose(0, 3, 1, 2))
