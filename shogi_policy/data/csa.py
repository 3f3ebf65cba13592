"""The CSA reader: Games of .csa files (several games a file, separated by '/' lines), as floodgate writes them.

cshogi's CSA parser reads the statements, after this module has refused what would crash it (a board row
missing, pieces placed before the board is set, a move cut short) and what it would misread (statements after
the game-ending special, an unknown special); the moves are replayed on a board (every one legal).
"""

import math
import re

import cshogi
import cshogi.CSA

from shogi_policy.core import quoting, shogi_rules
from shogi_policy.data import game_io

# CSA special moves -> (ending, rule giving the result from the side to move at the end). %OUTE_SENNICHITE: the
# checking side, who just moved, loses; %JISHOGI: cshogi maps floodgate's 'summary:max_moves to it.
_CSA_ENDINGS = game_io.endings(
    mover_loses={"%TORYO": "resign", "%TSUMI": "mate", "%TIME_UP": "timeout", "%ILLEGAL_MOVE": "illegal"},
    mover_wins={"%OUTE_SENNICHITE": "illegal", "%KACHI": "declare"},
    black_loses={"%+ILLEGAL_ACTION": "illegal"},
    white_loses={"%-ILLEGAL_ACTION": "illegal"},
    draw={
        "%SENNICHITE": "repetition",
        "%HIKIWAKE": "impasse",
        "%JISHOGI": "max_plies",
        "%MAX_MOVES": "max_plies",
    },
    unscored={"%CHUDAN": "abort", "%ERROR": "abort"},
)
_SIDES = {"+": "black", "-": "white"}
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
    lines = game_io.read_text_lines(path)
    separators = [i for i, line in enumerate(lines) if line is not None and line.strip() == "/"]
    start = 0
    for end in separators + [len(lines)]:
        if start == 0 or any(line is None or line.strip() for line in lines[start:end]):
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


def _wrong_side(turn, move_texts):
    """The index of the first CSA move whose sign ('+' black, '-' white) is not the side to move's, or None.

    cshogi's parser plays a move for the side to move whatever its sign says; turn (0 black, 1 white) is the
    start position's side to move.
    """
    return next(
        (i for i, text in enumerate(move_texts) if text[0] != "+-"[(turn + i) % 2]),
        None,
    )


def _csa_ratings(lines, path, first_line):
    """{"black"/"white": rating} of a game's rating comments, or a RecordError naming a rating that is no number."""
    rates = {}
    for index, line in enumerate(lines):
        for color, value in _CSA_RATE.findall(line):
            try:
                rates[color] = float(value)
            except ValueError:
                rates[color] = math.nan
            if not math.isfinite(rates[color]):
                return game_io.RecordError(
                    path, first_line + index, f"malformed rating comment {quoting.quote(line.strip())}"
                )
    return rates


def _csa_game(lines, path, first_line):
    """The lines of one CSA game (starting at first_line of path) -> Game or RecordError.

    The statements up to the game-ending special, less comments, go to cshogi's parser one a line (it
    reads one move a line and lets a later special override an earlier one); the ending and the result
    come from that special and the side to move after the moves.
    """
    bad_bytes = game_io.undecodable(lines, first_line)
    if bad_bytes:
        return game_io.RecordError(path, *bad_bytes)
    all_statements = csa_statements(lines)
    ended = _csa_end(all_statements)
    if isinstance(ended[0], int):
        return game_io.RecordError(path, first_line + all_statements[ended[0]][0], ended[1])
    statements, special = ended
    statements = [(index, text) for index, text in statements if not text.startswith("'")]
    texts = [text for _, text in statements]
    move_statements = [i for i, text in enumerate(texts) if text[:1] in "+-" and len(text.strip()) > 1]
    # cshogi reads a move cut short (a truncated file) out of bounds and reports line 1.
    cut = next((i for i in move_statements if not _CSA_MOVE.match(texts[i])), None)
    if cut is not None:
        return game_io.RecordError(
            path,
            first_line + statements[cut][0],
            f"malformed CSA move {quoting.quote(texts[cut].strip())} (file cut short?)",
        )
    problem = _csa_position_problem(texts)
    if problem:
        return game_io.RecordError(path, first_line + statements[problem[0]][0], problem[1])
    parser = cshogi.CSA.Parser()
    try:
        parser.parse_csa_str("\n".join(texts))
        board = shogi_rules.board_from_sfen(parser.sfen) if parser.sfen else None
    except Exception as error:  # cshogi turns its C++ exceptions into several Python types
        return game_io.RecordError(path, first_line, f"CSA parse error: {quoting.quote(str(error))}")
    if board is None:
        return game_io.RecordError(path, first_line, "no start position (not a CSA game)")
    sfen = board.sfen()
    moves = list(parser.moves)
    wrong_side = _wrong_side(board.turn, [texts[i] for i in move_statements])
    if wrong_side is not None:
        index = move_statements[wrong_side]
        return game_io.RecordError(
            path,
            first_line + statements[index][0],
            f"{quoting.quote(texts[index].strip())} is {_SIDES[texts[index][0]]}'s move on "
            f"{_SIDES['+-'[(board.turn + wrong_side) % 2]]}'s turn",
        )
    bad = game_io.first_illegal(board, moves)
    if bad is not None:
        index = move_statements[bad]
        return game_io.RecordError(
            path, first_line + statements[index][0], f"illegal move {quoting.quote(texts[index].strip())}"
        )
    ending, rule = _CSA_ENDINGS.get(special or _floodgate_special(all_statements), ("unknown", None))
    rates = _csa_ratings(lines, path, first_line)
    if isinstance(rates, game_io.RecordError):
        return rates
    game = game_io.Game(
        sfen=sfen,
        moves=moves,
        result=game_io.result_of(rule, board.turn),
        ending=ending,
        black_rating=rates.get("black"),
        white_rating=rates.get("white"),
        source=f"{path}:{first_line}",
    )
    return game_io.finished(game, board, path, first_line)
