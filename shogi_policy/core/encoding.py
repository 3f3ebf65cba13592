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
Records are checked by one rule set in two implementations, record_problems (numpy, the host) and
record_problems_tf (tf.data); records_to_boards checks them before cshogi sees them, then applies
board_from_sfen to each position.
"""

import collections
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
WHITE_PIECE_OFFSET = 16  # a white piece's code is its black twin's + 16
PROMOTED_OFFSET = 8  # a promoted piece's type is its unpromoted type's + 8

# Placement rules, shared by the SFEN parser (board_from_sfen) and the record validator (record_problems
# in numpy, record_problems_tf in TF). Unpromoted piece types P L N S B R G K are cshogi's 1..8 and their
# SFEN letters; hands count P L N S G B R.
PIECE_LETTERS = "PLNSBRGK"
HAND_LETTERS = "PLNSGBR"
HAND_SLOT_OF_TYPE = np.array([-1, 0, 1, 2, 3, 5, 6, 4], dtype=np.int64)  # unpromoted type 1..7 -> hand slot
PIECE_SET = (18, 4, 4, 4, 4, 2, 2)  # pieces of each kind in a shogi set (board and hands), by hand slot
# Ranks (0 = rank a, Black's far end) where an unpromoted piece could never move again, by SFEN letter.
DEAD_RANKS = {"P": (0,), "L": (0,), "N": (0, 1), "p": (8,), "l": (8,), "n": (7, 8)}
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
# about the position, answered by board_from_sfen (records_to_boards).
PIECE_CODES = (0, *range(1, 15), *range(17, 31))  # empty, black P L N S B R G K +P +L +N +S +B +R, white
KING_CODES = (PIECE_LETTERS.index("K") + 1, PIECE_LETTERS.index("K") + 1 + WHITE_PIECE_OFFSET)
HAND_LIMITS = np.array(PIECE_SET * 2, dtype=np.uint8)  # black P L N S G B R, then white: a whole set
RECORD_PROBLEMS = (
    "",  # code 0: a valid record
    "a board byte is not a piece code (0, 1..14, 17..30)",
    "not exactly one king per side",
    "a hand count above a set's pieces of that kind (P 18, L N S G 4, B R 2)",
    f"move label >= {NUM_MOVE_LABELS}",
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
        ((board == KING_CODES[BLACK]).sum(axis=1) != 1) | ((board == KING_CODES[WHITE]).sum(axis=1) != 1),
        (fields["hands"] > HAND_LIMITS).any(axis=1),
        fields["label"] >= NUM_MOVE_LABELS,
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
        (kings[BLACK] != 1) | (kings[WHITE] != 1),
        tf.reduce_any(records[:, HAND_OFFSET:META_OFFSET] > HAND_LIMITS, axis=1),
        fields["label"] >= NUM_MOVE_LABELS,
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


def records_to_boards(records, source=None):
    """cshogi.Boards (move number 1) of records uint8 [N, 100]; ValueError naming the first bad record.

    The records are validated before cshogi sees them (check_records: impossible piece codes crash
    cshogi), then each position goes through board_from_sfen, the one position check.
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
            boards.append(board_from_sfen(board.sfen()))
        except ValueError as error:
            raise ValueError(f"{source + ': ' if source else ''}record {index}: {error}") from None
    return boards


def record_to_board(record):
    """The cshogi.Board of one record uint8 [100] (move number 1); ValueError for a bad one (records_to_boards)."""
    return records_to_boards(np.reshape(record, (1, -1)))[0]


QUOTE_CHARS = 80  # the most characters of bad input an error message quotes


def quote(text, limit=QUOTE_CHARS):
    """repr() of text for an error message; beyond limit characters, the first limit and the length.

    One bad token can be megabytes long: quoted whole, it would flood stderr and the manifest.
    """
    text = str(text)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text):,} characters)"


_SFEN_PIECE = re.compile(r"\+[PLNSBRplnsbr]|[PLNSGBRKplnsgbrk]|[1-9]")
_SFEN_RANK = re.compile(rf"(?:{_SFEN_PIECE.pattern})+")
_SFEN_HANDS = re.compile(r"-|(?:[1-9][0-9]?[PLNSGBRplnsgbr]|[PLNSGBRplnsgbr])+")
_SFEN_EMPTY = {str(run): ("",) * run for run in range(1, 10)}  # a digit's empty squares


def _sfen_rows(board):
    """The 9 rows (rank a first) of an SFEN board as lists of 9 tokens ('' empty, else 'P', '+p', ...)."""
    ranks = board.split("/")
    if len(ranks) != 9:
        raise ValueError(f"SFEN board needs 9 ranks separated by '/', got {len(ranks)}")
    rows = []
    for index, rank in enumerate(ranks):
        if not _SFEN_RANK.fullmatch(rank):
            raise ValueError(f"bad SFEN rank {index + 1} {quote(rank)}")
        row = [square for token in _SFEN_PIECE.findall(rank) for square in _SFEN_EMPTY.get(token, (token,))]
        if len(row) != 9:
            raise ValueError(f"SFEN rank {index + 1} {quote(rank)} has {len(row)} squares, not 9")
        rows.append(row)
    return rows


def _check_placement(rows):
    """ValueError for a piece that could never move (pawn, lance, knight too far) or two pawns of one side on a file.

    Membership and count calls rather than a loop over the squares: every game start of every reader pays this.
    """
    for token, ranks in DEAD_RANKS.items():
        for rank in ranks:
            if token in rows[rank]:
                column = rows[rank].index(token)
                raise ValueError(f"{token!r} on rank {rank + 1}, file {9 - column} could never move")
    for column, squares in enumerate(zip(*rows, strict=True)):
        for pawn in "Pp":
            if squares.count(pawn) > 1:
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
        raise ValueError(f"SFEN needs 'board side hands [move_number]', got {quote(sfen)}")
    board, side, hands = fields[:3]
    try:
        rows = _sfen_rows(board)
        if side not in ("b", "w"):
            raise ValueError(f"SFEN side to move must be 'b' or 'w', got {quote(side)}")
        if not _SFEN_HANDS.fullmatch(hands):
            raise ValueError(f"bad SFEN hands {quote(hands)}")
        # isdigit() alone passes non-ASCII digits ('١'), which int() reads and cshogi cannot encode.
        if len(fields) == 4 and not (fields[3].isascii() and fields[3].isdigit() and int(fields[3]) > 0):
            raise ValueError(f"SFEN move number must be a positive integer, got {quote(fields[3])}")
        counts = collections.Counter(board)  # one letter a piece, promoted or not
        for number, piece in re.findall(r"([0-9]*)([PLNSGBRplnsgbr])", hands):
            counts[piece] += int(number or 1)
        if counts["K"] != 1 or counts["k"] != 1:
            raise ValueError(f"SFEN needs one king per side, got {counts['K']} and {counts['k']}")
        for piece, limit in zip(HAND_LETTERS, PIECE_SET, strict=True):
            if counts[piece] + counts[piece.lower()] > limit:
                raise ValueError(f"SFEN has more than {limit} pieces of kind {piece}")
        _check_placement(rows)
        if cshogi.Board(" ".join([board, "w" if side == "b" else "b", hands])).is_check():
            raise ValueError("SFEN position leaves the king of the side not to move in check")
    except ValueError as error:
        raise ValueError(f"{error} in {quote(sfen)}") from None
    # Without one, cshogi numbers the position 0, which its sfen() then writes and this function refuses.
    return cshogi.Board(" ".join(fields if len(fields) == 4 else [*fields, "1"]))


def split_usi_position(text):
    """(sfen, usi_moves) of a USI position string.

    Accepts "[position ]startpos[ moves m1 m2 ...]", "[position ]sfen <sfen>[ moves ...]" and a
    bare SFEN optionally followed by "moves ...". The SFEN is not checked here (board_from_sfen).
    """
    tokens = text.split()
    if tokens[:1] == ["position"]:
        tokens = tokens[1:]
    if not tokens:
        raise ValueError(f"empty position {quote(text)}")
    moves_at = tokens.index("moves") if "moves" in tokens else len(tokens)
    head, moves = tokens[:moves_at], tokens[moves_at + 1 :]
    if head[0] == "startpos":
        if len(head) > 1:
            raise ValueError(f"expected 'moves' after 'startpos', got {quote(head[1])} in {quote(text)}")
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
        raise ValueError(f"illegal move {quote(usi)}")
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
        raise ValueError(f"{error} of the moves in {quote(position)}") from None
    return board
