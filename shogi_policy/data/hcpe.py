"""The hcpe reader: dlshogi's 38-byte HuffmanCodedPosAndEval rows, regrouped into games.

hcpe rows carry no game boundaries; a row continues the previous row's game exactly when it holds that row's
position after its move. Each row's position is checked before cshogi sees it (set_hcp writes out of bounds for
a king square >= 81).
"""

import functools

import cshogi
import numpy as np
import tensorflow as tf

from shogi_policy.core import shogi_rules
from shogi_policy.data import game_io

_HCPE_DTYPE = np.dtype(cshogi.HuffmanCodedPosAndEval)
_HCPE_CHUNK_ROWS = 1 << 16
_HCPE_MAX_FAILURES = 16  # consecutive bad rows before a file is given up
_HCPE_RESULTS = {0: game_io.DRAW, 1: game_io.BLACK_WIN, 2: game_io.WHITE_WIN}


def read_hcpe(path):
    """Yields the Games (or RecordErrors) of a dlshogi hcpe file (optionally .gz).

    hcpe rows carry no game boundaries: row i+1 continues row i's game exactly when it holds row i's
    position after row i's move (identical HuffmanCodedPos) and the same gameResult.
    A file whose size is not a multiple of 38 bytes is one RecordError (rows cannot be trusted).
    """
    if not game_io.is_gzip(path):
        size = tf.io.gfile.stat(path).length
        if size % _HCPE_DTYPE.itemsize:
            yield game_io.RecordError(
                path, 0, f"size {size} is not a multiple of {_HCPE_DTYPE.itemsize} (truncated?)"
            )
            return
    board = cshogi.Board()
    after = np.zeros(32, dtype=np.uint8)  # HuffmanCodedPos after the last pushed move
    game, game_result, row, failures = None, None, 0, 0  # game: the Game (or RecordError) being read
    trailing = None
    for rows in _hcpe_chunks(path):
        if isinstance(rows, game_io.RecordError):
            trailing = rows
            break
        hcps = rows["hcp"].tobytes()  # bytes slices compare much faster than numpy rows
        moves16, results = rows["bestMove16"].tolist(), rows["gameResult"].tolist()
        for i, (move16, result) in enumerate(zip(moves16, results, strict=True)):
            row += 1
            hcp = hcps[32 * i : 32 * i + 32]
            if not (isinstance(game, game_io.Game) and result == game_result and after.tobytes() == hcp):
                if game is not None:
                    yield _finished(game, board, path)
                game, game_result = _hcpe_game_start(board, rows["hcp"][i], result, path, row), result
                failures = failures + 1 if isinstance(game, game_io.RecordError) else 0
                if failures == _HCPE_MAX_FAILURES:
                    yield game_io.RecordError(
                        path, row, f"{failures} bad rows in a row: giving up (not hcpe?)"
                    )
                    return
            if isinstance(game, game_io.Game):
                move = board.move_from_move16(move16 & 0xFFFF)
                if shogi_rules.is_legal_move(board, move):
                    board.push(move)
                    board.to_hcp(after)
                    game.moves.append(move)
                else:
                    game = game_io.RecordError(path, row, f"illegal move16 {move16 & 0xFFFF:#06x}")
    if game is not None:
        yield _finished(game, board, path)
    if trailing is not None:
        yield trailing


def _finished(game, board, path):
    """A Game checked against board, its final position (game_io.finished), or a RecordError as it is."""
    if isinstance(game, game_io.RecordError):
        return game
    return game_io.finished(game, board, path, int(game.source.rpartition(":")[2]))


def _hcpe_chunks(path):
    """Yields structured arrays of whole hcpe rows, then a RecordError if trailing bytes remain."""
    itemsize = _HCPE_DTYPE.itemsize
    leftover = b""
    with game_io.open_binary(path) as stream:
        while data := stream.read(_HCPE_CHUNK_ROWS * itemsize):
            data = leftover + data
            whole = len(data) - len(data) % itemsize
            leftover = data[whole:]
            yield np.frombuffer(data[:whole], dtype=_HCPE_DTYPE)
    if leftover:
        yield game_io.RecordError(path, 0, f"{len(leftover)} trailing bytes: not a whole {itemsize}-byte row")


@functools.lru_cache(maxsize=4096)
def _position_problem(sfen):
    """What shogi_rules.board_from_sfen (the placement rules every reader applies) says against sfen, or None.

    Cached: the games of a file mostly start from a few positions, and the check costs as much as reading
    a hundred hcpe rows.
    """
    try:
        shogi_rules.board_from_sfen(sfen)
    except ValueError as error:
        return str(error)
    return None


def _hcpe_game_start(board, hcp, result, path, row):
    """Sets board to hcp (uint8 [32]); the new (empty) Game starting there, or a RecordError."""
    # Bits 1-7 and 8-14 are the king squares; cshogi writes out of bounds for squares >= 81.
    head = int(hcp[0]) | int(hcp[1]) << 8
    kings = (head >> 1) & 0x7F, (head >> 8) & 0x7F
    if max(kings) >= shogi_rules.NUM_SQUARES or kings[0] == kings[1]:
        return game_io.RecordError(path, row, f"bad HuffmanCodedPos: king squares {kings}")
    try:
        board.set_hcp(hcp)
    except RuntimeError as error:
        return game_io.RecordError(path, row, f"bad HuffmanCodedPos: {error}")
    problem = _position_problem(board.sfen())
    if problem:
        return game_io.RecordError(path, row, f"impossible HuffmanCodedPos position: {problem}")
    if not board.is_ok():
        return game_io.RecordError(path, row, "inconsistent HuffmanCodedPos position")
    if result not in _HCPE_RESULTS:
        return game_io.RecordError(path, row, f"bad gameResult {result}")
    return game_io.Game(sfen=board.sfen(), moves=[], result=_HCPE_RESULTS[result], source=f"{path}:{row}")
