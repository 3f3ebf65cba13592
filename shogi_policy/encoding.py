"""Compact position records and dlshogi move labels.

One position is a fixed-length record of RECORD_BYTES = 100 bytes (uint8):

  bytes  0..80  board: cshogi piece code of each square, sq = file * 9 + rank
                (0 = empty, 1..14 black P L N S B R G K +P +L +N +S +B +R, 17..30 white).
  bytes 81..94  hands: counts of black P L N S G B R, then white P L N S G B R.
  bytes 95..96  little-endian uint16: bits 0..11 move label (0..2186),
                bits 12..13 game result for the side to move (0 loss, 1 draw, 2 win),
                bit 14 side to move (0 black, 1 white).
  bytes 97..99  little-endian uint24: game id.

The board is stored as played (not rotated); the in-graph feature layer rotates it for White.
Move labels follow cshogi.dlshogi.make_move_label: direction * 81 + to_square, squares
rotated (sq -> 80 - sq) when White moves. The training target of a position packs its label and
result into one int (pack_policy_targets).

Positions enter as SFEN or USI position text through one parser (parse_position): board_from_sfen
checks the start position and a move is legal exactly when it is in cshogi's legal move list.
"""

import re

import cshogi
import numpy as np
import tensorflow as tf

RECORD_BYTES = 100
RECORD_FORMAT_VERSION = 1  # the layout above; shard manifests and exports record it
BOARD_BYTES = 81
HAND_BYTES = 14
BOARD_OFFSET = 0
HAND_OFFSET = 81
META_OFFSET = 95
GAME_ID_OFFSET = 97
MAX_GAME_ID = (1 << 24) - 1

NUM_SQUARES = 81
NUM_MOVE_DIRECTIONS = 27  # 10 board directions, +10 promoting, 7 drops
NUM_MOVE_LABELS = NUM_MOVE_DIRECTIONS * NUM_SQUARES  # 2187

RESULT_LOSS, RESULT_DRAW, RESULT_WIN = 0, 1, 2
BLACK, WHITE = 0, 1
_POLICY_TARGET_RESULT_FACTOR = 1 << 12  # labels < 2187 < 4096: target = label | result << 12

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
    white = turns == WHITE
    to_sq = np.where(white, 80 - to_sq, to_sq)
    board_from = np.where(white, 80 - from_sq, from_sq)
    dx = board_from // 9 - to_sq // 9
    dy = to_sq % 9 - board_from % 9
    direction = _DIRECTION_BY_SIGNS[np.sign(dx) + 1, np.sign(dy) + 1]
    direction = np.where((dy == -2) & (dx == -1), _UP2_LEFT, direction)
    direction = np.where((dy == -2) & (dx == 1), _UP2_RIGHT, direction)
    direction = direction + _PROMOTION_OFFSET * promotion
    direction = np.where(is_drop, _DROP_OFFSET + from_sq - _MOVE_DROP_FROM, direction)
    return (direction * NUM_SQUARES + to_sq).astype(np.int32)


def legal_moves_and_labels(board):
    """The legal moves of a cshogi.Board and their labels.

    Returns:
      (moves, labels): int64 array [M] of cshogi moves and int32 array [M] of their distinct labels.
    """
    moves = np.fromiter(board.legal_moves, dtype=np.int64)
    return moves, move_labels(moves, board.turn)


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
    records = tf.cast(records, tf.int32)
    shift_left, shift_right = tf.bitwise.left_shift, tf.bitwise.right_shift  # tensors have no << or >>
    meta = records[:, META_OFFSET] | shift_left(records[:, META_OFFSET + 1], 8)
    return {
        "board": records[:, BOARD_OFFSET:HAND_OFFSET],
        "hands": records[:, HAND_OFFSET:META_OFFSET],
        "label": meta & 0xFFF,
        "result": shift_right(meta, 12) & 3,
        "turn": shift_right(meta, 14) & 1,
        "game_id": records[:, GAME_ID_OFFSET]
        | shift_left(records[:, GAME_ID_OFFSET + 1], 8)
        | shift_left(records[:, GAME_ID_OFFSET + 2], 16),
    }


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


def record_to_board(record):
    """The cshogi.Board of one record [100] (move number 1)."""
    fields = unpack_records(record)
    board = cshogi.Board()
    hands = fields["hands"][0].tolist()
    board.set_pieces(fields["board"][0].tolist(), (hands[:7], hands[7:]))
    board.turn = int(fields["turn"][0])
    return board


_SFEN_PIECE = r"\+[PLNSBRplnsbr]|[PLNSGBRKplnsgbrk]|[1-9]"
_SFEN_RANK = re.compile(rf"(?:{_SFEN_PIECE})+")
_SFEN_HANDS = re.compile(r"-|(?:[1-9][0-9]?[PLNSGBRplnsgbr]|[PLNSGBRplnsgbr])+")
# Pieces of each kind in a shogi set (board, promoted or not, plus hands).
_PIECE_SET = {"P": 18, "L": 4, "N": 4, "S": 4, "G": 4, "B": 2, "R": 2}
# Unpromoted pieces that could never move again, by the SFEN rows (0 = rank a, Black's far end) they may not stand on.
_DEAD_ROWS = {"P": (0,), "L": (0,), "N": (0, 1), "p": (8,), "l": (8,), "n": (7, 8)}


def _sfen_rows(board):
    """The 9 rows (rank a first) of an SFEN board as lists of 9 tokens ('' empty, else 'P', '+p', ...)."""
    ranks = board.split("/")
    if len(ranks) != 9:
        raise ValueError(f"SFEN board needs 9 ranks separated by '/', got {len(ranks)}")
    rows = []
    for index, rank in enumerate(ranks):
        if not _SFEN_RANK.fullmatch(rank):
            raise ValueError(f"bad SFEN rank {index + 1} {rank!r}")
        row = []
        for token in re.findall(_SFEN_PIECE, rank):
            row += [""] * int(token) if token.isdigit() else [token]
        if len(row) != 9:
            raise ValueError(f"SFEN rank {index + 1} {rank!r} has {len(row)} squares, not 9")
        rows.append(row)
    return rows


def _check_placement(rows):
    """ValueError for a piece that could never move (pawn, lance, knight too far) or two pawns of one side on a file."""
    for row_index, row in enumerate(rows):
        for column, token in enumerate(row):
            if row_index in _DEAD_ROWS.get(token, ()):
                raise ValueError(f"{token!r} on rank {row_index + 1}, file {9 - column} could never move")
    for column in range(9):
        for pawn in "Pp":
            if sum(row[column] == pawn for row in rows) > 1:
                raise ValueError(f"two unpromoted pawns {pawn!r} on file {9 - column} (nifu)")


def board_from_sfen(sfen):
    """A cshogi.Board at `sfen` ("board side hands [move_number]"); ValueError naming what is wrong.

    cshogi's set_sfen aborts the process on some malformed strings and silently accepts impossible
    positions, so the text is checked first: 9 ranks of 9 squares, one king per side, no more pieces
    of a kind than a set holds, no pawn, lance or knight where it could never move, no two unpromoted
    pawns of one side on a file, and the side not to move not in check.
    """
    fields = sfen.split()
    if len(fields) not in (3, 4):
        raise ValueError(f"SFEN needs 'board side hands [move_number]', got {sfen!r}")
    board, side, hands = fields[:3]
    try:
        rows = _sfen_rows(board)
        if side not in ("b", "w"):
            raise ValueError(f"SFEN side to move must be 'b' or 'w', got {side!r}")
        if not _SFEN_HANDS.fullmatch(hands):
            raise ValueError(f"bad SFEN hands {hands!r}")
        # isdigit() alone passes non-ASCII digits ('١'), which int() reads and cshogi cannot encode.
        if len(fields) == 4 and not (fields[3].isascii() and fields[3].isdigit() and int(fields[3]) > 0):
            raise ValueError(f"SFEN move number must be a positive integer, got {fields[3]!r}")
        counts = dict.fromkeys("PLNSGBRKplnsgbrk", 0)
        for token in (token for row in rows for token in row if token):
            counts[token[-1]] += 1
        for number, piece in re.findall(r"([0-9]*)([PLNSGBRplnsgbr])", hands):
            counts[piece] += int(number or 1)
        if counts["K"] != 1 or counts["k"] != 1:
            raise ValueError(f"SFEN needs one king per side, got {counts['K']} and {counts['k']}")
        for piece, limit in _PIECE_SET.items():
            if counts[piece] + counts[piece.lower()] > limit:
                raise ValueError(f"SFEN has more than {limit} pieces of kind {piece}")
        _check_placement(rows)
        if cshogi.Board(" ".join([board, "w" if side == "b" else "b", hands])).is_check():
            raise ValueError("SFEN position leaves the king of the side not to move in check")
    except ValueError as error:
        raise ValueError(f"{error} in {sfen!r}") from None
    return cshogi.Board(sfen)


def split_usi_position(text):
    """(sfen, usi_moves) of a USI position string.

    Accepts "[position ]startpos[ moves m1 m2 ...]", "[position ]sfen <sfen>[ moves ...]" and a
    bare SFEN optionally followed by "moves ...". The SFEN is not checked here (board_from_sfen).
    """
    tokens = text.split()
    if tokens[:1] == ["position"]:
        tokens = tokens[1:]
    if not tokens:
        raise ValueError(f"empty position {text!r}")
    moves_at = tokens.index("moves") if "moves" in tokens else len(tokens)
    head, moves = tokens[:moves_at], tokens[moves_at + 1 :]
    if head[0] == "startpos":
        if len(head) > 1:
            raise ValueError(f"expected 'moves' after 'startpos', got {head[1]!r} in {text!r}")
        return cshogi.STARTING_SFEN, moves
    return " ".join(head[1:] if head[0] == "sfen" else head), moves


def is_legal_move(board, move):
    """Whether the cshogi move (int) is legal on board: membership in cshogi's legal move list.

    cshogi's own is_legal is not exact: it accepts promotions of pieces outside the promotion
    zone (7g7f+), unpromoted pawns, lances and knights that could never move again, and drops
    carrying a promotion flag.
    """
    return bool(move) and move in board.legal_moves


def legal_move(board, usi):
    """The cshogi move (int) of a USI move string on board; ValueError unless it is legal."""
    try:
        move = board.move_from_usi(usi)  # 0 for malformed text
    except UnicodeEncodeError:
        move = 0
    if not is_legal_move(board, move):
        raise ValueError(f"illegal move {usi!r}")
    return move


def replay(board, usi_moves):
    """Plays USI moves on board (in place); the cshogi moves. ValueError naming the first illegal move's ply."""
    moves = []
    for ply, usi in enumerate(usi_moves, start=1):
        try:
            move = legal_move(board, usi)
        except ValueError as error:
            raise ValueError(f"{error} at ply {ply}") from None
        board.push(move)
        moves.append(move)
    return moves


def parse_position(position):
    """A cshogi.Board from an SFEN, a USI position string (see split_usi_position) or a cshogi.Board (copied).

    Raises ValueError naming the bad SFEN or the first illegal move and its ply.
    """
    if isinstance(position, cshogi.Board):
        return position.copy()
    if not isinstance(position, str):
        raise ValueError(f"a position must be a string or cshogi.Board, got {type(position).__name__}")
    sfen, usi_moves = split_usi_position(position)
    board = board_from_sfen(sfen)
    try:
        replay(board, usi_moves)
    except ValueError as error:
        raise ValueError(f"{error} of the moves in {position!r}") from None
    return board
