"""dlshogi input planes computed in-graph from compact records (the model's first layer).

Reproduces cshogi.dlshogi.make_input_features (default, without nyugyoku features) with pure
TF ops, no Python loop over the batch, XLA-compilable. Channel order (119):

  for c in (side to move, opponent):                          features1, 2 x 31 = 62
    14 piece planes, 14 attack planes (piece type order P L N S B R G K +P +L +N +S +B +R),
    3 planes 'number of c's pieces attacking the square >= 1, 2, 3'
  for c in (side to move, opponent): 28 hand planes            features2, 2 x 28 + 1 = 57
    (P 8, L 4, N 4, S 4, G 4, B 2, R 2; plane k is all ones when count > k)
  1 plane 'side to move is in check'

When White is to move the board is rotated (sq -> 80 - sq) and the colours swapped, as in cshogi.
cshogi computes attacks on the unrotated board and rotates them; rotation plus colour swap is a
symmetry of the rules, so computing on the rotated board (side to move = Black) is the same.

How attacks are computed without per-piece loops: for every square s and each of 8 directions
the nearest piece on the ray leading to s (one gather of uint8 keys 32 * (distance - 1) + code and
one reduce_min) is the only piece that can attack s from that direction, steps and slides alike;
a lookup table over (direction, key) says whether it does and gives its class bit. Knight jumps
are 4 more 'directions' of length 1. Per direction at most one piece attacks, so the 12 class
bits OR-ed give the 28 attack planes and their count per colour the attacker counts. All 119
planes are packed into 4 int32 words per square and unpacked elementwise at the end.
"""

import keras
import numpy as np
import tensorflow as tf

from shogi_policy import encoding

NUM_PIECE_TYPES = 14
MAX_ATTACK_NUM = 3
FEATURES1_NUM = 2 * (2 * NUM_PIECE_TYPES + MAX_ATTACK_NUM)  # 62
HAND_MAX = (8, 4, 4, 4, 4, 2, 2)  # P L N S G B R, the record's hand order
HAND_PLANES = sum(HAND_MAX)  # 28
FEATURES2_NUM = 2 * HAND_PLANES + 1  # 57
NUM_FEATURES = FEATURES1_NUM + FEATURES2_NUM  # 119

_WHITE_FLAG = 16  # cshogi piece code of a White piece = Black code + 16
_KING = 8
_MAX_RAY = 8
_EMPTY_KEY = 255  # ray key of 'no piece', above every 32 * (distance - 1) + code

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
_DIRECTIONS = _ORTHOGONAL + _DIAGONAL + _KNIGHT  # rays first, then the 4 one-step knight jumps
_NUM_DIRECTIONS = len(_DIRECTIONS)  # 12
_OWN_BITS = (1 << NUM_PIECE_TYPES) - 1  # attack/piece class bits 0..13: side to move, 14..27: opponent


def _sources():
    """Squares behind each target square from which a piece moving in a direction reaches it.

    Returns:
      rays int32 [8, 8 * 81]: square at distance k + 1 behind (ray direction, target), and
      knights int32 [4 * 81]: knight jump sources; 81 = off board.
    """
    sources = np.full((_MAX_RAY, _NUM_DIRECTIONS, encoding.NUM_SQUARES), encoding.NUM_SQUARES, np.int32)
    for d, (d_file, d_rank) in enumerate(_DIRECTIONS):
        for sq in range(encoding.NUM_SQUARES):
            for k in range(_MAX_RAY):
                file, rank = sq // 9 - (k + 1) * d_file, sq % 9 - (k + 1) * d_rank
                if 0 <= file < 9 and 0 <= rank < 9:
                    sources[k, d, sq] = file * 9 + rank
    num_rays = len(_DIRECTIONS) - len(_KNIGHT)
    return sources[:, :num_rays].reshape(_MAX_RAY, -1), sources[0, num_rays:].reshape(-1)


def _piece_class(code):
    """Class bit index of a (oriented) piece code: 0..13 side to move, 14..27 opponent."""
    return (code & 15) - 1 + NUM_PIECE_TYPES * (code >> 4)


def _attack_table():
    """int32 [12 * 256]: class bit of the attack on a square by the nearest piece on a ray towards it.

    Index: direction * 256 + ray key of that piece (32 * (distance - 1) + code; _EMPTY_KEY: no piece).
    """
    table = np.zeros((_NUM_DIRECTIONS, 256), np.int64)
    for key in range(_EMPTY_KEY):
        distance, code = key // 32 + 1, key % 32
        piece_type, white = code & 15, code >> 4
        if not 1 <= piece_type <= NUM_PIECE_TYPES:
            continue
        for d, direction in enumerate(_DIRECTIONS):
            # White moves are Black's mirrored in rank.
            move = (direction[0], -direction[1]) if white else direction
            if move in _SLIDES.get(piece_type, ()) or (distance == 1 and move in _STEPS.get(piece_type, ())):
                table[d, key] = 1 << _piece_class(code)
    return table.reshape(-1).astype(np.int32)


def _piece_table():
    """int32 [32]: class bit of each piece code (0 for empty and unused codes)."""
    table = np.zeros(32, np.int64)
    for code in range(1, 31):
        if 1 <= code & 15 <= NUM_PIECE_TYPES:
            table[code] = 1 << _piece_class(code)
    return table.astype(np.int32)


_RAY_SOURCES, _KNIGHT_SOURCES = _sources()
_NUM_GATHER_SQUARES = encoding.NUM_SQUARES + 1  # with the off-board square
# Ray keys sort by distance first, so the minimum over a ray is its nearest piece.
_DISTANCE_KEYS = (32 * np.arange(_MAX_RAY, dtype=np.int32))[:, None, None]
_RAY_KEY_INDEX = _RAY_SOURCES + _NUM_GATHER_SQUARES * np.arange(_MAX_RAY, dtype=np.int32)[:, None]
_TABLE_OFFSETS = np.repeat(256 * np.arange(_NUM_DIRECTIONS, dtype=np.int32), encoding.NUM_SQUARES)[:, None]
_ATTACK_TABLE = _attack_table()
_PIECE_TABLE = _piece_table()
_HAND_MAX = np.array(HAND_MAX, np.int32)
_HAND_OFFSETS = np.cumsum((0,) + HAND_MAX[:-1]).astype(np.int32)


def _oriented_position(records):
    """Board and hands as seen by the side to move.

    Args:
      records: uint8 or int32 [B, 100].
    Returns:
      codes int32 [B, 81] (rotated and colour-swapped for White: side to move's pieces are 1..14),
      own hand, opponent hand int32 [B, 7].
    """
    fields = encoding.unpack_records_tf(records)
    white = fields["turn"][:, None] == encoding.WHITE
    board = tf.where(white, tf.reverse(fields["board"], axis=[1]), fields["board"])
    codes = tf.where(white & (board > 0), board ^ _WHITE_FLAG, board)
    hands = fields["hands"]
    own = tf.where(white, hands[:, 7:], hands[:, :7])
    opponent = tf.where(white, hands[:, :7], hands[:, 7:])
    return codes, own, opponent


def _attack_words(codes):
    """Attack class bits and attacker counts of every square.

    Computed batch-minor so that the ray gathers copy whole rows of B values (much faster on CPU),
    on uint8 ray keys (32 * (distance - 1) + code < 255) to keep the largest tensors small.

    Args:
      codes: int32 [B, 81] oriented piece codes.
    Returns:
      int32 [B, 81, 3]: attack bits (bit = class of an attacking piece), own and opponent counts.
    """
    padded = tf.transpose(tf.pad(codes, [[0, 0], [0, 1]]))[None]  # [1, 82, B]; square 81: off board
    keys = tf.where(padded > 0, padded + _DISTANCE_KEYS, _EMPTY_KEY)  # [8, 82, B]: key at distance 1..8
    keys = tf.reshape(tf.cast(keys, tf.uint8), [_MAX_RAY * _NUM_GATHER_SQUARES, -1])
    nearest = tf.reduce_min(tf.gather(keys, _RAY_KEY_INDEX, axis=0), axis=0)  # [8 * 81, B]
    knights = tf.gather(keys, _KNIGHT_SOURCES, axis=0)  # [4 * 81, B]: distance 1 only
    index = tf.cast(tf.concat([nearest, knights], axis=0), tf.int32) + _TABLE_OFFSETS
    bits = tf.reshape(tf.gather(_ATTACK_TABLE, index), [_NUM_DIRECTIONS, encoding.NUM_SQUARES, -1])
    attack_bits = bits[0]
    for d in range(1, _NUM_DIRECTIONS):
        attack_bits |= bits[d]
    own = tf.reduce_sum(tf.cast((bits & _OWN_BITS) != 0, tf.int32), axis=0)
    opponent = tf.reduce_sum(tf.cast(bits > _OWN_BITS, tf.int32), axis=0)
    return tf.transpose(tf.stack([attack_bits, own, opponent]), [2, 1, 0])


def _hand_bits(hand):
    """int32 [B]: hand planes as bits (plane offset + k set when count > k). hand: int32 [B, 7]."""
    counts = tf.minimum(hand, _HAND_MAX)
    return tf.reduce_sum(tf.bitwise.left_shift(tf.bitwise.left_shift(1, counts) - 1, _HAND_OFFSETS), axis=1)


def _colour_word(piece_bits, attack_bits, count):
    """int32: one colour's 31 features1 planes as bits 0..30 (14 pieces, 14 attacks, count >= 1..3)."""
    thermometer = tf.bitwise.left_shift(1, tf.minimum(count, MAX_ATTACK_NUM)) - 1
    return (
        piece_bits
        | tf.bitwise.left_shift(attack_bits, NUM_PIECE_TYPES)
        | tf.bitwise.left_shift(thermometer, 2 * NUM_PIECE_TYPES)
    )


def dlshogi_feature_words(records):
    """dlshogi planes packed as bits: int32 [B, 81, 4], square-major (sq = file * 9 + rank).

    Words: side to move's features1 (31 bits), opponent's features1 (31), side to move's hand (28),
    opponent's hand plus the in-check plane (29); plane order within a word is cshogi's channel order.

    Args:
      records: uint8 or int32 [B, 100] compact records (shogi_policy.encoding).
    """
    codes, own_hand, opponent_hand = _oriented_position(records)
    attacks = _attack_words(codes)
    attack_bits, own_count, opponent_count = attacks[:, :, 0], attacks[:, :, 1], attacks[:, :, 2]
    piece_bits = tf.gather(_PIECE_TABLE, codes)
    king = codes == _KING  # side to move's king
    in_check = tf.cast(tf.reduce_any(king & (opponent_count > 0), axis=1), tf.int32)
    own_word = _colour_word(piece_bits & _OWN_BITS, attack_bits & _OWN_BITS, own_count)
    opponent_word = _colour_word(
        tf.bitwise.right_shift(piece_bits, NUM_PIECE_TYPES),
        tf.bitwise.right_shift(attack_bits, NUM_PIECE_TYPES),
        opponent_count,
    )
    hand_words = tf.stack(
        [_hand_bits(own_hand), _hand_bits(opponent_hand) | in_check * (1 << HAND_PLANES)], 1
    )
    hand_words = tf.broadcast_to(hand_words[:, None, :], [tf.shape(codes)[0], encoding.NUM_SQUARES, 2])
    return tf.concat([tf.stack([own_word, opponent_word], axis=2), hand_words], axis=2)


def unpack_planes(words, dtype):
    """Planes [B, 81, 119] of the given dtype from dlshogi_feature_words [B, 81, 4] (elementwise, fusable).

    Bits are unpacked from uint8 bytes: 4x less memory traffic than int32 where ops are not fused.
    """
    shifts = np.arange(0, 32, 8, dtype=np.int32)
    octets = tf.cast(tf.bitwise.right_shift(words[..., None], shifts) & 0xFF, tf.uint8)  # [B, 81, 4, 4]
    bits = tf.bitwise.right_shift(octets[..., None], np.arange(8, dtype=np.uint8)) & 1
    bits = tf.reshape(bits, [-1, encoding.NUM_SQUARES, 4, 32])
    sizes = (FEATURES1_NUM // 2, FEATURES1_NUM // 2, HAND_PLANES, HAND_PLANES + 1)
    return tf.cast(tf.concat([bits[:, :, i, :n] for i, n in enumerate(sizes)], axis=2), dtype)


@keras.saving.register_keras_serializable(package="shogi_policy")
class DlshogiFeatures(keras.layers.Layer):
    """Compact records uint8/int32 [B, 100] -> dlshogi planes [B, 9, 9, 119] in the compute dtype.

    NHWC with H = file, W = rank: out[b, f, r, c] == cshogi planes[b, c, f, r].
    """

    def call(self, records):
        planes = unpack_planes(dlshogi_feature_words(records), self.compute_dtype)
        return tf.reshape(planes, [-1, 9, 9, NUM_FEATURES])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 9, 9, NUM_FEATURES)


def dlshogi_planes(sfens, batch_size=1024):
    """dlshogi planes of SFEN positions through DlshogiFeatures, channels-first like cshogi.

    Args:
      sfens: iterable of SFEN strings.
      batch_size: positions per call of the layer.
    Returns:
      np.float32 [N, 119, 9, 9].
    Raises:
      ValueError: a malformed or impossible SFEN (encoding.board_from_sfen).
    """
    records = encoding.encode_boards([encoding.board_from_sfen(sfen) for sfen in sfens])
    compute = tf.function(DlshogiFeatures(dtype="float32"))
    planes = np.zeros((len(records), 9, 9, NUM_FEATURES), np.float32)
    for start in range(0, len(records), batch_size):
        batch = records[start : start + batch_size]
        padded = np.zeros((batch_size, encoding.RECORD_BYTES), np.uint8)  # one batch shape: one trace
        padded[: len(batch)] = batch
        planes[start : start + len(batch)] = compute(padded).numpy()[: len(batch)]
    return np.ascontiguousarray(planes.transpose(0, 3, 1, 2))
