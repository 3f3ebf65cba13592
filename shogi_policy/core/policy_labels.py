"""dlshogi's move labels: the 2187 policy classes, and the legal labels of positions.

A move's label follows cshogi.dlshogi.make_move_label: direction * 81 + to_square, squares rotated
(sq -> 80 - sq) when White moves; 27 directions (10 board directions, the same 10 promoting, 7 drops).
"""

import numpy as np

from shogi_policy.core import shogi_rules

NUM_MOVE_DIRECTIONS = 27  # 10 board directions, +10 promoting, 7 drops
NUM_MOVE_LABELS = NUM_MOVE_DIRECTIONS * shogi_rules.NUM_SQUARES  # 2187

# dlshogi direction order: UP, UP_LEFT, UP_RIGHT, LEFT, RIGHT, DOWN, DOWN_LEFT, DOWN_RIGHT,
# UP2_LEFT, UP2_RIGHT. Indexed here by (sign(dx) + 1, sign(dy) + 1) with dx = from_file - to_file
# and dy = to_rank - from_rank; knight jumps are handled separately.
_DIRECTION_BY_SIGNS = np.array(
    [
        # dy: <0   =0  >0
        [1, 3, 6],  # dx < 0: UP_LEFT, LEFT, DOWN_LEFT
        [0, -1, 5],  # dx = 0: UP, (none), DOWN
        [2, 4, 7],  # dx > 0: UP_RIGHT, RIGHT, DOWN_RIGHT
    ],
    dtype=np.int32,
)
_UP2_LEFT, _UP2_RIGHT = 8, 9
_PROMOTION_OFFSET = 10
_DROP_OFFSET = 20
_MOVE_DROP_FROM = 81  # cshogi encodes a drop's from-square as 81 + piece type - 1


def move_labels(moves, turns):
    """dlshogi move labels of many moves.

    Args:
      moves: int array [N], cshogi moves or move16 values (only the low 16 bits are read).
      turns: int array [N] or scalar, side to move (0 black, 1 white).
    Returns:
      int32 array [N] of labels in [0, 2187).
    """
    moves = np.asarray(moves, dtype=np.int64) & 0xFFFF
    turns = np.broadcast_to(np.asarray(turns, dtype=np.int64), moves.shape)
    to_sq = moves & 0x7F
    from_sq = (moves >> 7) & 0x7F
    promotion = (moves >> 14) & 1
    is_drop = from_sq >= _MOVE_DROP_FROM
    white = turns == shogi_rules.WHITE
    to_sq = np.where(white, 80 - to_sq, to_sq)
    board_from = np.where(white, 80 - from_sq, from_sq)
    dx = board_from // 9 - to_sq // 9
    dy = to_sq % 9 - board_from % 9
    direction = _DIRECTION_BY_SIGNS[np.sign(dx) + 1, np.sign(dy) + 1]
    direction = np.where((dy == -2) & (dx == -1), _UP2_LEFT, direction)
    direction = np.where((dy == -2) & (dx == 1), _UP2_RIGHT, direction)
    direction = direction + _PROMOTION_OFFSET * promotion
    direction = np.where(is_drop, _DROP_OFFSET + from_sq - _MOVE_DROP_FROM, direction)
    return (direction * shogi_rules.NUM_SQUARES + to_sq).astype(np.int32)


def legal_moves_and_labels(board):
    """The legal moves of a cshogi.Board and their labels.

    Returns:
      (moves, labels): int64 array [M] of cshogi moves and int32 array [M] of their distinct labels.
    """
    moves = np.fromiter(board.legal_moves, dtype=np.int64)
    return moves, move_labels(moves, board.turn)


def legal_move_mask(boards):
    """Legal moves of boards and the label mask for the SavedModel.

    Returns:
      (mask, moves, labels): bool [N, 2187]; per board int64 [M] cshogi moves and int32 [M] labels.
    Raises:
      ValueError if a board has no legal move (checkmate or no move possible).
    """
    mask = np.zeros((len(boards), NUM_MOVE_LABELS), dtype=bool)
    moves, labels = [], []
    for row, board in enumerate(boards):
        board_moves, board_labels = legal_moves_and_labels(board)
        if not len(board_moves):
            raise ValueError(f"position {board.sfen()!r} has no legal move")
        mask[row, board_labels] = True
        moves.append(board_moves)
        labels.append(board_labels)
    return mask, moves, labels
