"""The KIF reader: the main line of a .kif/.kifu file (Shift_JIS/CP932 or UTF-8), its result and ending."""

import re

import cshogi
import cshogi.KIF

from shogi_policy.core import quoting, shogi_rules
from shogi_policy.data import game_io

# KIF terminal words -> (ending, result rule); a "まで...の勝ち" result line takes precedence.
_KIF_ENDINGS = game_io.endings(
    mover_loses={"投了": "resign", "詰み": "mate", "切れ負け": "timeout", "反則負け": "illegal"},
    mover_wins={"反則勝ち": "illegal", "入玉宣言": "declare", "入玉勝ち": "declare"},
    draw={"千日手": "repetition", "持将棋": "impasse"},
    unscored={"中断": "abort"},
)
_KIF_MOVE_LINE = re.compile(r"^\s*[0-9]+\s+(\S+)")
# A start position drawn as a board (BOD: hands, rows, side to move): cshogi's KIF parser skips it and
# would read the moves from the initial position.
_KIF_BOARD_DIAGRAM = re.compile(r"\s*(?:[先後上下]手の持駒：|[先後上下]手番\s*$|\+-{9}|\|.*\|)")
_KIF_RESULTS = {
    cshogi.BLACK_WIN: game_io.BLACK_WIN,
    cshogi.WHITE_WIN: game_io.WHITE_WIN,
    cshogi.DRAW: game_io.DRAW,
}


def read_kif(path):
    """Yields the Game (or a RecordError) of a KIF file, Shift_JIS/CP932 or UTF-8; main line only.

    cshogi's KIF parser reads the header (start position, result line); the moves are replayed
    here line by line with its move parser, so an unreadable or illegal move names its line.
    """
    lines = game_io.read_text_lines(path)
    # Variations follow the main line after a "変化：" line.
    lines = lines[: next((i for i, line in enumerate(lines) if line and line.startswith("変化")), len(lines))]
    bad_bytes = game_io.undecodable(lines)
    if bad_bytes:
        yield game_io.RecordError(path, *bad_bytes)
        return
    diagram = next((i for i, line in enumerate(lines) if _KIF_BOARD_DIAGRAM.match(line)), None)
    if diagram is not None:
        yield game_io.RecordError(path, diagram + 1, "a board diagram (BOD) start position is not supported")
        return
    try:
        parser = cshogi.KIF.Parser.parse_str("\n".join(lines))
        board = shogi_rules.board_from_sfen(parser.sfen)
    except Exception as error:  # KIF.ParserException, or a KeyError/ValueError on odd headers
        yield game_io.RecordError(path, 1, f"KIF parse error: {quoting.quote(str(error))}")
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
                yield game_io.RecordError(path, later, f"{text} after {match.group(1)}, which ended the game")
                return
            break
        move, _, _ = cshogi.KIF.Parser.parse_move_str(line, board)
        if not shogi_rules.is_legal_move(board, move):
            yield game_io.RecordError(
                path, number, f"illegal or unreadable move {quoting.quote(line.strip())}"
            )
            return
        board.push(move)
        moves.append(move)
    if not seen_move_line and not any("：" in line for line in lines):
        yield game_io.RecordError(path, 1, "neither a KIF header nor moves")
        return
    result = _KIF_RESULTS[parser.win] if parser.win is not None else game_io.result_of(rule, board.turn)
    game = game_io.Game(sfen=sfen, moves=moves, result=result, ending=ending, source=f"{path}:1")
    yield game_io.finished(game, board, path, 1)
