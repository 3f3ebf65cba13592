"""The USI move-line reader: one game a line ('startpos moves ...' or 'sfen ... moves ...', then tab-separated
result, source and ending), the project's own games-file format (data/README.md)."""

from shogi_policy.core import quoting, shogi_rules
from shogi_policy.data import game_io


def read_usi(path):
    """Yields the Games (or RecordErrors) of a USI move-list file, one game a line (.gz allowed).

    Line: 'startpos moves ...' or 'sfen ... moves ...' (optionally after 'position '), then
    tab-separated optional result (black_win | white_win | draw), source and ending.
    Blank lines and lines starting with '#' are skipped; a line that is not UTF-8 is a RecordError of its own.
    """
    for number, line in game_io.read_lines(path):
        if line is None:
            yield game_io.RecordError(path, number, "a line that is not UTF-8 text")
        elif line.strip() and not line.startswith("#"):
            yield _usi_game(line.rstrip("\r\n"), path, number)


def _usi_game(line, path, number):
    """One USI move-list line -> Game or RecordError."""
    fields = [field.strip() for field in line.split("\t")]
    result = fields[1] if len(fields) > 1 and fields[1] else None
    if result is not None and result not in game_io.RESULTS:
        return game_io.RecordError(
            path, number, f"bad result {quoting.quote(result)}; expected one of {game_io.RESULTS}"
        )
    try:
        sfen, usi_moves = shogi_rules.split_usi_position(fields[0])
        board = shogi_rules.board_from_sfen(sfen)
        start_sfen = board.sfen()
        moves = shogi_rules.replay(board, usi_moves)
    except ValueError as error:
        return game_io.RecordError(path, number, str(error))
    game = game_io.Game(
        sfen=start_sfen,
        moves=moves,
        result=result,
        ending=fields[3] if len(fields) > 3 and fields[3] else "unknown",
        source=f"{path}:{number}",
    )
    return game_io.finished(game, board, path, number)
