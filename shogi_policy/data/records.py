"""Game records (CSA, KIF, USI move lists, dlshogi hcpe) -> Games -> compact position records.

Readers yield `Game`s, or a `RecordError` for each game (or file) they cannot use; they never raise
for one bad game, so a converter can count and report bad input and go on. Every move of a yielded
Game is legal: readers replay each game on a cshogi.Board.

`games_to_records` turns Games into uint8 [n, 100] records (record_format.pack_records) without a board
per position: the board before each move is rebuilt in numpy from the moves' cshogi bit fields.
"""

import dataclasses
import functools
import gzip
import io
import itertools
import os
import re

import cshogi
import cshogi.CSA
import cshogi.KIF
import numpy as np
import tensorflow as tf

from shogi_policy.core import policy_labels, quoting, record_format, shogi_rules

BLACK_WIN, WHITE_WIN, DRAW = "black_win", "white_win", "draw"
RESULTS = (BLACK_WIN, WHITE_WIN, DRAW)
ENDINGS = (
    "resign",
    "mate",
    "repetition",
    "declare",
    "timeout",
    "illegal",
    "max_plies",
    "impasse",
    "abort",
    "perpetual_check",
    "unknown",
)
EXTENSIONS = (".csa", ".kif", ".kifu", ".usi", ".txt", ".sfen", ".hcpe")

_HCPE_DTYPE = np.dtype(cshogi.HuffmanCodedPosAndEval)
_HCPE_CHUNK_ROWS = 1 << 16
_HCPE_MAX_FAILURES = 16  # consecutive bad rows before a file is given up


@dataclasses.dataclass
class Game:
    """One game: the start position and the legal cshogi moves (full 32-bit values) played from it.

    result is black_win / white_win / draw, or None when unknown; ending is one of ENDINGS for
    CSA/KIF/hcpe (USI files may name others). Ratings are None when the record has none.
    source is "file:line" of the game's first line (the 1-based row for hcpe).
    """

    sfen: str
    moves: list
    result: str | None = None
    ending: str = "unknown"
    black_rating: float | None = None
    white_rating: float | None = None
    source: str = ""


class RecordError(ValueError):
    """A game (or file) that cannot be used; str() is "file:line: message"."""

    def __init__(self, source, line, message):
        super().__init__(f"{source}:{line}: {message}")
        self.source, self.line, self.message = source, line, message


def read_games(path):
    """Yields the Games and RecordErrors of one record file, by extension (optionally .gz).

    .csa -> read_csa, .kif/.kifu -> read_kif, .usi/.txt/.sfen -> read_usi, .hcpe -> read_hcpe.
    A file that cannot be read (I/O, bad gzip) ends with a RecordError instead of raising.
    Raises ValueError for an unknown extension.
    """
    path = os.fspath(path)
    readers = {".csa": read_csa, ".kif": read_kif, ".kifu": read_kif, ".hcpe": read_hcpe}
    readers.update(dict.fromkeys((".usi", ".txt", ".sfen"), read_usi))
    extension = record_extension(path)
    if extension not in readers:
        raise ValueError(
            f"{path}: unknown record extension {quoting.quote(extension)}; expected one of {EXTENSIONS}"
        )
    try:
        yield from readers[extension](path)
    except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile, tf.errors.OpError) as error:
        yield RecordError(path, 0, f"cannot read: {error}")


# ---------------------------------------------------------------------------- shared helpers


def is_gzip(path):
    """Whether a record file is gzipped: its name ends with .gz in any case ('a.USI.GZ')."""
    return path.lower().endswith(".gz")


def record_extension(path):
    """The lower-case extension of a record file, ignoring a trailing .gz ('.csa' for 'a.CSA.gz')."""
    return os.path.splitext(path[:-3] if is_gzip(path) else path)[1].lower()


def _open_binary(path):
    """A binary file object of path (local or gs://), gunzipped when it ends with .gz."""
    stream = tf.io.gfile.GFile(path, "rb")
    return gzip.GzipFile(fileobj=stream, mode="rb") if is_gzip(path) else stream


def _open_lines(path):
    """A UTF-8 text file object of path (local or gs://, .gz allowed) iterating over lines."""
    if is_gzip(path):
        return io.TextIOWrapper(_open_binary(path), encoding="utf-8")
    return tf.io.gfile.GFile(path, "r")  # GFile is no io.IOBase; it decodes UTF-8 in text mode


def _read_text(path):
    """The whole text of a record file: UTF-8 (BOM or not), else CP932 (Shift_JIS); '\\n' newlines."""
    with _open_binary(path) as stream:
        data = stream.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp932")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _first_illegal(board, moves):
    """Pushes moves on board; the index of the first illegal (or null) move, else None."""
    for index, move in enumerate(moves):
        if not shogi_rules.is_legal_move(board, move):
            return index
        board.push(move)
    return None


def _result_of(rule, turn):
    """The result of a game ended under rule ('mover_loses', ...) with turn (0/1) to move at the end."""
    if rule == "mover_loses":
        return WHITE_WIN if turn == shogi_rules.BLACK else BLACK_WIN
    if rule == "mover_wins":
        return BLACK_WIN if turn == shogi_rules.BLACK else WHITE_WIN
    return {"draw": DRAW, "black_loses": WHITE_WIN, "white_loses": BLACK_WIN}.get(rule)


# ---------------------------------------------------------------------------- CSA

# CSA special moves -> (ending, rule giving the result from the side to move at the end).
_CSA_ENDINGS = {
    "%TORYO": ("resign", "mover_loses"),
    "%TSUMI": ("mate", "mover_loses"),
    "%TIME_UP": ("timeout", "mover_loses"),
    "%ILLEGAL_MOVE": ("illegal", "mover_loses"),
    "%+ILLEGAL_ACTION": ("illegal", "black_loses"),
    "%-ILLEGAL_ACTION": ("illegal", "white_loses"),
    "%OUTE_SENNICHITE": ("illegal", "mover_wins"),  # the checking side, who just moved, loses
    "%KACHI": ("declare", "mover_wins"),
    "%SENNICHITE": ("repetition", "draw"),
    "%HIKIWAKE": ("impasse", "draw"),
    "%JISHOGI": ("max_plies", "draw"),  # cshogi maps floodgate's 'summary:max_moves to it
    "%MAX_MOVES": ("max_plies", "draw"),
    "%CHUDAN": ("abort", None),
    "%ERROR": ("abort", None),
}
# A move statement: side, from square (00 for a drop), to square, piece.
_CSA_MOVE = re.compile(r"[+-][0-9]{4}[A-Z]{2}\s*$")
# Floodgate writes why a game without a special ended in a comment ("'summary:max_moves:..."), as cshogi reads it.
_FLOODGATE_SUMMARY = {"illegal move": "%ILLEGAL_MOVE", "max_moves": "%JISHOGI", "abnormal": "%ERROR"}
# Position lines, as cshogi reads them without crashing: the initial position less some pieces, nine
# board rows, or pieces placed ('00' in hand, 'AL' for the rest) once one of those two has set the board.
_CSA_PIECE = "(?:FU|KY|KE|GI|KI|KA|HI|OU|TO|NY|NK|NG|UM|RY)"
_CSA_INITIAL = re.compile(rf"PI(?:[1-9]{{2}}{_CSA_PIECE})*\s*$")
_CSA_ROW = re.compile(rf"P([1-9])(?: \* |[+-]{_CSA_PIECE}){{9}}\s*$")
_CSA_PLACED = re.compile(rf"P[+-](?:[0-9]{{2}}(?:{_CSA_PIECE}|AL))+\s*$")
# Floodgate: 'black_rate:NAME+HASH:3512.0 (the rating follows the last colon).
_CSA_RATE = re.compile(r"^'(black|white)_rate:.*:([-+0-9.eE]+)\s*$", re.MULTILINE)


def read_csa(path):
    """Yields the Games (or RecordErrors) of a CSA file; several games may be separated by '/' lines."""
    lines = _read_text(path).split("\n")
    separators = [i for i, line in enumerate(lines) if line.strip() == "/"]
    start = 0
    for end in separators + [len(lines)]:
        if start == 0 or any(line.strip() for line in lines[start:end]):
            yield _csa_game(lines[start:end], path, start + 1)
        start = end + 1


def csa_statements(lines):
    """The statements of CSA lines: [(line index, statement)], one line's comma-separated statements apart.

    CSA allows several statements on a line separated by commas ('-7362GI,+3262RY', '+7776FU,T12').
    A comment (from a ' to the end of its line) and the name, information and version lines
    (N, $, V: free text that may hold commas) are one statement each.
    """
    statements = []
    for index, line in enumerate(lines):
        if line[:1] in ("'", "N", "$", "V"):
            statements.append((index, line))
            continue
        head, quote, comment = line.partition("'")
        statements.extend((index, part) for part in head.split(",") if part.strip())
        if quote:
            statements.append((index, quote + comment))
    return statements


def _csa_end(statements):
    """(statements up to the game-ending special, the special or None) or a (statement index, message) problem.

    A special ends the game where it stands: the time it took (T) and comments may follow it; a move or
    another special after it is a problem, as is a special this reader does not know (%MATTA...).
    """
    end = next((i for i, (_, text) in enumerate(statements) if text.startswith("%")), None)
    if end is None:
        return statements, None
    special = statements[end][1].strip()
    if special not in _CSA_ENDINGS:
        return end, f"unsupported CSA special {quoting.quote(special)}; known: {', '.join(_CSA_ENDINGS)}"
    for index in range(end + 1, len(statements)):
        text = statements[index][1].strip()
        if text and not text.startswith(("'", "T")):
            return index, f"{quoting.quote(text)} after {special}, which ended the game"
    return statements[:end], special


def _floodgate_special(statements):
    """The CSA special of a floodgate "'summary:REASON:..." comment when a record has no special, or None."""
    for _, text in statements:
        if text.startswith("'summary:"):
            return _FLOODGATE_SUMMARY.get(text.split(":", 2)[1])
    return None


def _csa_position_problem(lines):
    """(line index, message) of the first line of a CSA game that cshogi could crash on, or None.

    cshogi's parser segfaults on a missing board row, on pieces placed before the board is set and on
    a side to move or moves before it, and reports a short row as line 1 with a C++ message.
    """
    rows, board_set, moved = [], False, False
    for index, line in enumerate(lines):
        if line[:1] in "+-":  # the side to move, or a move
            if rows and not board_set:
                break
            if not board_set:
                return (
                    index,
                    f"{quoting.quote(line.strip())} before the start position is set (PI or P1..P9)",
                )
            moved |= len(line.strip()) > 1
        if line[:1] != "P":
            continue
        row = _CSA_ROW.match(line)
        if moved:
            return index, f"a CSA position line after the moves: {quoting.quote(line.strip())}"
        if row and int(row.group(1)) != len(rows) + 1:
            return (
                index,
                f"CSA board row out of order (P{len(rows) + 1} expected): {quoting.quote(line.strip())}",
            )
        if row:
            rows.append(index)
            board_set |= len(rows) == 9
        elif _CSA_INITIAL.match(line) and not rows:
            board_set = True
        elif not (_CSA_PLACED.match(line) and board_set):
            what = (
                "pieces placed before the board is set (PI or P1..P9)" if _CSA_PLACED.match(line) else "line"
            )
            return index, f"malformed CSA position {what}: {quoting.quote(line.strip())}"
    if rows and not board_set:
        return rows[-1], f"CSA board rows end at P{len(rows)}: P1..P9 are needed"
    return None


def _csa_game(lines, path, first_line):
    """The lines of one CSA game (starting at first_line of path) -> Game or RecordError.

    The statements up to the game-ending special, less comments, go to cshogi's parser one a line (it
    reads one move a line and lets a later special override an earlier one); the ending and the result
    come from that special and the side to move after the moves.
    """
    all_statements = csa_statements(lines)
    ended = _csa_end(all_statements)
    if isinstance(ended[0], int):
        return RecordError(path, first_line + all_statements[ended[0]][0], ended[1])
    statements, special = ended
    statements = [(index, text) for index, text in statements if not text.startswith("'")]
    texts = [text for _, text in statements]
    move_statements = [i for i, text in enumerate(texts) if text[:1] in "+-" and len(text.strip()) > 1]
    # cshogi reads a move cut short (a truncated file) out of bounds and reports line 1.
    cut = next((i for i in move_statements if not _CSA_MOVE.match(texts[i])), None)
    if cut is not None:
        return RecordError(
            path,
            first_line + statements[cut][0],
            f"malformed CSA move {quoting.quote(texts[cut].strip())} (file cut short?)",
        )
    problem = _csa_position_problem(texts)
    if problem:
        return RecordError(path, first_line + statements[problem[0]][0], problem[1])
    parser = cshogi.CSA.Parser()
    try:
        parser.parse_csa_str("\n".join(texts))
        board = shogi_rules.board_from_sfen(parser.sfen) if parser.sfen else None
    except Exception as error:  # cshogi turns its C++ exceptions into several Python types
        return RecordError(path, first_line, f"CSA parse error: {quoting.quote(str(error))}")
    if board is None:
        return RecordError(path, first_line, "no start position (not a CSA game)")
    sfen = board.sfen()
    moves = list(parser.moves)
    bad = _first_illegal(board, moves)
    if bad is not None:
        index = move_statements[bad]
        return RecordError(
            path, first_line + statements[index][0], f"illegal move {quoting.quote(texts[index].strip())}"
        )
    text = "\n".join(lines)
    ending, rule = _CSA_ENDINGS.get(special or _floodgate_special(all_statements), ("unknown", None))
    rates = {color: float(value) for color, value in _CSA_RATE.findall(text)}
    return Game(
        sfen=sfen,
        moves=moves,
        result=_result_of(rule, board.turn),
        ending=ending,
        black_rating=rates.get("black"),
        white_rating=rates.get("white"),
        source=f"{path}:{first_line}",
    )


# ---------------------------------------------------------------------------- KIF

# KIF terminal words -> (ending, result rule); a "まで...の勝ち" result line takes precedence.
_KIF_ENDINGS = {
    "投了": ("resign", "mover_loses"),
    "詰み": ("mate", "mover_loses"),
    "切れ負け": ("timeout", "mover_loses"),
    "反則負け": ("illegal", "mover_loses"),
    "反則勝ち": ("illegal", "mover_wins"),
    "千日手": ("repetition", "draw"),
    "持将棋": ("impasse", "draw"),
    "入玉宣言": ("declare", "mover_wins"),
    "入玉勝ち": ("declare", "mover_wins"),
    "中断": ("abort", None),
}
_KIF_MOVE_LINE = re.compile(r"^\s*[0-9]+\s+(\S+)")
# A start position drawn as a board (BOD: hands, rows, side to move): cshogi's KIF parser skips it and
# would read the moves from the initial position.
_KIF_BOARD_DIAGRAM = re.compile(r"\s*(?:[先後上下]手の持駒：|[先後上下]手番\s*$|\+-{9}|\|.*\|)")
_KIF_RESULTS = {cshogi.BLACK_WIN: BLACK_WIN, cshogi.WHITE_WIN: WHITE_WIN, cshogi.DRAW: DRAW}


def read_kif(path):
    """Yields the Game (or a RecordError) of a KIF file, Shift_JIS/CP932 or UTF-8; main line only.

    cshogi's KIF parser reads the header (start position, result line); the moves are replayed
    here line by line with its move parser, so an unreadable or illegal move names its line.
    """
    lines = _read_text(path).split("\n")
    # Variations follow the main line after a "変化：" line.
    lines = lines[: next((i for i, line in enumerate(lines) if line.startswith("変化")), len(lines))]
    diagram = next((i for i, line in enumerate(lines) if _KIF_BOARD_DIAGRAM.match(line)), None)
    if diagram is not None:
        yield RecordError(path, diagram + 1, "a board diagram (BOD) start position is not supported")
        return
    try:
        parser = cshogi.KIF.Parser.parse_str("\n".join(lines))
        board = shogi_rules.board_from_sfen(parser.sfen)
    except Exception as error:  # KIF.ParserException, or a KeyError/ValueError on odd headers
        yield RecordError(path, 1, f"KIF parse error: {quoting.quote(str(error))}")
        return
    sfen = board.sfen()
    moves, ending, rule, seen_move_line = [], "unknown", None, False
    for number, line in enumerate(lines, 1):
        match = _KIF_MOVE_LINE.match(line)
        if not match:
            continue
        seen_move_line = True
        if match.group(1) in _KIF_ENDINGS:
            ending, rule = _KIF_ENDINGS[match.group(1)]
            # The game ends here: a move line after it is no part of it, and no guess is made which end is true.
            later = next(
                (n for n, text in enumerate(lines[number:], number + 1) if _KIF_MOVE_LINE.match(text)), None
            )
            if later is not None:
                text = quoting.quote(lines[later - 1].strip())
                yield RecordError(path, later, f"{text} after {match.group(1)}, which ended the game")
                return
            break
        move, _, _ = cshogi.KIF.Parser.parse_move_str(line, board)
        if not shogi_rules.is_legal_move(board, move):
            yield RecordError(path, number, f"illegal or unreadable move {quoting.quote(line.strip())}")
            return
        board.push(move)
        moves.append(move)
    if not seen_move_line and not any("：" in line for line in lines):
        yield RecordError(path, 1, "neither a KIF header nor moves")
        return
    result = _KIF_RESULTS[parser.win] if parser.win is not None else _result_of(rule, board.turn)
    yield Game(sfen=sfen, moves=moves, result=result, ending=ending, source=f"{path}:1")


# ---------------------------------------------------------------------------- USI move lists


def read_usi(path):
    """Yields the Games (or RecordErrors) of a USI move-list file, one game a line (.gz allowed).

    Line: 'startpos moves ...' or 'sfen ... moves ...' (optionally after 'position '), then
    tab-separated optional result (black_win | white_win | draw), source and ending.
    Blank lines and lines starting with '#' are skipped.
    """
    with _open_lines(path) as stream:
        for number, line in enumerate(stream, 1):
            if line.strip() and not line.startswith("#"):
                yield _usi_game(line.rstrip("\n"), path, number)


def _usi_game(line, path, number):
    """One USI move-list line -> Game or RecordError."""
    fields = [field.strip() for field in line.split("\t")]
    result = fields[1] if len(fields) > 1 and fields[1] else None
    if result is not None and result not in RESULTS:
        return RecordError(path, number, f"bad result {quoting.quote(result)}; expected one of {RESULTS}")
    try:
        sfen, usi_moves = shogi_rules.split_usi_position(fields[0])
        board = shogi_rules.board_from_sfen(sfen)
        start_sfen = board.sfen()
        moves = shogi_rules.replay(board, usi_moves)
    except ValueError as error:
        return RecordError(path, number, str(error))
    return Game(
        sfen=start_sfen,
        moves=moves,
        result=result,
        ending=fields[3] if len(fields) > 3 and fields[3] else "unknown",
        source=f"{path}:{number}",
    )


# ---------------------------------------------------------------------------- hcpe

_HCPE_RESULTS = {0: DRAW, 1: BLACK_WIN, 2: WHITE_WIN}


def read_hcpe(path):
    """Yields the Games (or RecordErrors) of a dlshogi hcpe file (optionally .gz).

    hcpe rows carry no game boundaries: row i+1 continues row i's game exactly when it holds row i's
    position after row i's move (identical HuffmanCodedPos) and the same gameResult.
    A file whose size is not a multiple of 38 bytes is one RecordError (rows cannot be trusted).
    """
    if not is_gzip(path):
        size = tf.io.gfile.stat(path).length
        if size % _HCPE_DTYPE.itemsize:
            yield RecordError(
                path, 0, f"size {size} is not a multiple of {_HCPE_DTYPE.itemsize} (truncated?)"
            )
            return
    board = cshogi.Board()
    after = np.zeros(32, dtype=np.uint8)  # HuffmanCodedPos after the last pushed move
    game, game_result, row, failures = None, None, 0, 0  # game: the Game (or RecordError) being read
    trailing = None
    for rows in _hcpe_chunks(path):
        if isinstance(rows, RecordError):
            trailing = rows
            break
        hcps = rows["hcp"].tobytes()  # bytes slices compare much faster than numpy rows
        moves16, results = rows["bestMove16"].tolist(), rows["gameResult"].tolist()
        for i, (move16, result) in enumerate(zip(moves16, results, strict=True)):
            row += 1
            hcp = hcps[32 * i : 32 * i + 32]
            if not (isinstance(game, Game) and result == game_result and after.tobytes() == hcp):
                if game is not None:
                    yield game
                game, game_result = _hcpe_game_start(board, rows["hcp"][i], result, path, row), result
                failures = failures + 1 if isinstance(game, RecordError) else 0
                if failures == _HCPE_MAX_FAILURES:
                    yield RecordError(path, row, f"{failures} bad rows in a row: giving up (not hcpe?)")
                    return
            if isinstance(game, Game):
                move = board.move_from_move16(move16 & 0xFFFF)
                if shogi_rules.is_legal_move(board, move):
                    board.push(move)
                    board.to_hcp(after)
                    game.moves.append(move)
                else:
                    game = RecordError(path, row, f"illegal move16 {move16 & 0xFFFF:#06x}")
    if game is not None:
        yield game
    if trailing is not None:
        yield trailing


def _hcpe_chunks(path):
    """Yields structured arrays of whole hcpe rows, then a RecordError if trailing bytes remain."""
    itemsize = _HCPE_DTYPE.itemsize
    leftover = b""
    with _open_binary(path) as stream:
        while data := stream.read(_HCPE_CHUNK_ROWS * itemsize):
            data = leftover + data
            whole = len(data) - len(data) % itemsize
            leftover = data[whole:]
            yield np.frombuffer(data[:whole], dtype=_HCPE_DTYPE)
    if leftover:
        yield RecordError(path, 0, f"{len(leftover)} trailing bytes: not a whole {itemsize}-byte row")


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
        return RecordError(path, row, f"bad HuffmanCodedPos: king squares {kings}")
    try:
        board.set_hcp(hcp)
    except RuntimeError as error:
        return RecordError(path, row, f"bad HuffmanCodedPos: {error}")
    problem = _position_problem(board.sfen())
    if problem:
        return RecordError(path, row, f"impossible HuffmanCodedPos position: {problem}")
    if not board.is_ok():
        return RecordError(path, row, "inconsistent HuffmanCodedPos position")
    if result not in _HCPE_RESULTS:
        return RecordError(path, row, f"bad gameResult {result}")
    return Game(sfen=board.sfen(), moves=[], result=_HCPE_RESULTS[result], source=f"{path}:{row}")


# ---------------------------------------------------------------------------- positions

# cshogi Move bit fields: to 0-6, from 7-13 (81 + piece type - 1 for drops), promotion 14,
# moved piece type 16-19, captured piece type 20-23.
_RESULT_FOR_BLACK = {
    BLACK_WIN: record_format.RESULT_WIN,
    WHITE_WIN: record_format.RESULT_LOSS,
    DRAW: record_format.RESULT_DRAW,
    None: record_format.RESULT_DRAW,
}


def games_to_records(games, game_ids):
    """The positions of games as records: the board before each move and the move played.

    Vectorised over all positions of all games (no cshogi call per position): a square holds the
    value of its last write, where a game's first row writes its whole start board and each move
    writes its from- and to-squares. A game of unknown result is stored as a draw. Fastest on
    batches of a few thousand positions.

    Args:
      games: sequence of Game; game_ids: int [len(games)] in [0, 2**24).
    Returns:
      uint8 [total moves, 100] records (record_format.pack_records layout), games in order.
    """
    lengths = np.fromiter((len(game.moves) for game in games), dtype=np.int64, count=len(games))
    moves = np.fromiter(itertools.chain.from_iterable(game.moves for game in games), np.int64, lengths.sum())
    starts = np.cumsum(lengths) - lengths
    rows = len(moves)
    start_boards, start_hands, start_turns = _start_positions([game.sfen for game in games])
    game_of_row = np.repeat(np.arange(len(games)), lengths)
    ply = np.arange(rows) - starts[game_of_row]
    turns = (start_turns[game_of_row] + ply) & 1

    to_sq = moves & 0x7F
    from_sq = (moves >> 7) & 0x7F
    is_drop = from_sq >= shogi_rules.NUM_SQUARES
    moved_type = np.where(is_drop, from_sq - shogi_rules.NUM_SQUARES + 1, (moves >> 16) & 0xF)
    placed = (
        moved_type
        + shogi_rules.PROMOTED_OFFSET * ((moves >> 14) & 1)
        + shogi_rules.WHITE_PIECE_OFFSET * turns
    )

    # written[r, sq]: row of the last write to sq at or before row r (forward-filled below).
    written = np.full((rows, shogi_rules.NUM_SQUARES), -1, dtype=np.int32)
    value = np.zeros((rows, shogi_rules.NUM_SQUARES), dtype=np.uint8)
    nonempty = lengths > 0
    first_rows = starts[nonempty]
    written[first_rows] = first_rows[:, np.newaxis]
    value[first_rows] = start_boards[nonempty]
    after = np.flatnonzero(ply[1:] > 0)  # moves followed by a row of the same game
    board_moves = after[~is_drop[after]]
    written[board_moves + 1, from_sq[board_moves]] = board_moves + 1
    value[board_moves + 1, from_sq[board_moves]] = 0
    written[after + 1, to_sq[after]] = after + 1
    value[after + 1, to_sq[after]] = placed[after]
    written = np.maximum.accumulate(written, axis=0)
    boards = value[written, np.arange(shogi_rules.NUM_SQUARES)]

    # Hands: +1 for a capture (demoted: type & 7), -1 for a drop, in the mover's half; the running
    # sum restarts at each game's start hands.
    captured = (moves >> 20) & 0xF
    hand_type = np.where(is_drop, moved_type, captured & 7)
    delta = np.zeros((rows, record_format.HAND_BYTES), dtype=np.int16)
    changed = np.flatnonzero(is_drop | (captured > 0))
    delta[changed, turns[changed] * 7 + shogi_rules.HAND_SLOT_OF_TYPE[hand_type[changed]]] = np.where(
        is_drop[changed], -1, 1
    )
    before = np.cumsum(delta, axis=0) - delta  # sum of the deltas of earlier rows
    hands = start_hands[game_of_row] + before - before[starts[game_of_row]]

    black_result = np.array([_RESULT_FOR_BLACK[game.result] for game in games], dtype=np.int64)
    results = np.where(turns == shogi_rules.BLACK, black_result[game_of_row], 2 - black_result[game_of_row])
    labels = policy_labels.move_labels(moves, turns)
    return record_format.pack_records(
        boards, hands, turns, labels, results, np.asarray(game_ids)[game_of_row]
    )


@functools.lru_cache(maxsize=4096)
def _start_position(sfen):
    """(pieces uint8 [81], hands int16 [14], turn) of an SFEN; cached since most games share one."""
    board = cshogi.Board(sfen)
    pieces, hands = record_format.board_arrays(board)
    return pieces, hands.astype(np.int16), board.turn


def _start_positions(sfens):
    """Start boards uint8 [G, 81], hands int16 [G, 14] and turns int64 [G] of SFENs."""
    if not sfens:
        return (
            np.zeros((0, record_format.BOARD_BYTES), np.uint8),
            np.zeros((0, record_format.HAND_BYTES), np.int16),
            np.zeros(0, np.int64),
        )
    pieces, hands, turns = zip(*(_start_position(sfen) for sfen in sfens), strict=True)
    return np.stack(pieces), np.stack(hands), np.array(turns, dtype=np.int64)
