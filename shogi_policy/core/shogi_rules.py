"""Shogi's pieces and sides as cshogi codes them, positions in SFEN and USI text, and the one legality rule.

Positions enter as SFEN or USI position text or cshogi.Boards through one parser (parse_position): board_from_sfen checks
the position before cshogi sees it (cshogi aborts on some malformed strings and silently accepts impossible
positions), and a move is legal exactly when it is in cshogi's legal move list (is_legal_move).
"""

import collections
import re

import cshogi
import numpy as np

from shogi_policy.core import quoting

NUM_SQUARES = 81  # sq = file * 9 + rank, cshogi's square numbering
BLACK, WHITE = 0, 1
WHITE_PIECE_OFFSET = 16  # a white piece's code is its black twin's + 16
PROMOTED_OFFSET = 8  # a promoted piece's type is its unpromoted type's + 8

# Placement rules, shared by the SFEN parser (board_from_sfen) and the record validator
# (record_format.record_problems in numpy, record_problems_tf in TF). Unpromoted piece types
# P L N S B R G K are cshogi's 1..8 and their SFEN letters; hands count P L N S G B R.
PIECE_LETTERS = "PLNSBRGK"
HAND_LETTERS = "PLNSGBR"
HAND_SLOT_OF_TYPE = np.array([-1, 0, 1, 2, 3, 5, 6, 4], dtype=np.int64)  # unpromoted type 1..7 -> hand slot
PIECE_SET = (18, 4, 4, 4, 4, 2, 2)  # pieces of each kind in a shogi set (board and hands), by hand slot
# Ranks (0 = rank a, Black's far end) where an unpromoted piece could never move again, by SFEN letter.
DEAD_RANKS = {"P": (0,), "L": (0,), "N": (0, 1), "p": (8,), "l": (8,), "n": (7, 8)}

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
            raise ValueError(f"bad SFEN rank {index + 1} {quoting.quote(rank)}")
        row = [square for token in _SFEN_PIECE.findall(rank) for square in _SFEN_EMPTY.get(token, (token,))]
        if len(row) != 9:
            raise ValueError(f"SFEN rank {index + 1} {quoting.quote(rank)} has {len(row)} squares, not 9")
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
        raise ValueError(f"SFEN needs 'board side hands [move_number]', got {quoting.quote(sfen)}")
    board, side, hands = fields[:3]
    try:
        rows = _sfen_rows(board)
        if side not in ("b", "w"):
            raise ValueError(f"SFEN side to move must be 'b' or 'w', got {quoting.quote(side)}")
        if not _SFEN_HANDS.fullmatch(hands):
            raise ValueError(f"bad SFEN hands {quoting.quote(hands)}")
        # isdigit() alone passes non-ASCII digits ('١'), which int() reads and cshogi cannot encode.
        if len(fields) == 4 and not (fields[3].isascii() and fields[3].isdigit() and int(fields[3]) > 0):
            raise ValueError(f"SFEN move number must be a positive integer, got {quoting.quote(fields[3])}")
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
        raise ValueError(f"{error} in {quoting.quote(sfen)}") from None
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
        raise ValueError(f"empty position {quoting.quote(text)}")
    moves_at = tokens.index("moves") if "moves" in tokens else len(tokens)
    head, moves = tokens[:moves_at], tokens[moves_at + 1 :]
    if head[0] == "startpos":
        if len(head) > 1:
            raise ValueError(
                f"expected 'moves' after 'startpos', got {quoting.quote(head[1])} in {quoting.quote(text)}"
            )
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
        raise ValueError(f"illegal move {quoting.quote(usi)}")
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

    A board gets the checks an SFEN gets (board_from_sfen on its SFEN: cshogi.Board accepts a position without
    kings); its copy keeps the moves that led to it. Raises ValueError naming the bad SFEN or the first illegal
    move and its ply.
    """
    if isinstance(position, cshogi.Board):
        board_from_sfen(position.sfen())
        return position.copy()
    if not isinstance(position, str):
        raise ValueError(f"a position must be a string or cshogi.Board, got {type(position).__name__}")
    sfen, usi_moves = split_usi_position(position)
    board = board_from_sfen(sfen)
    try:
        replay(board, usi_moves)
    except ValueError as error:
        raise ValueError(f"{error} of the moves in {quoting.quote(position)}") from None
    return board
