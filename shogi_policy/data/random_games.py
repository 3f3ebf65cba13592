"""Games of uniformly random legal moves from the start position: positions and records without a data file.

The preflight's training data (shogi_policy.runtime.checks), the tests' games and the benchmarks' positions all
come from here (cshogi and numpy only), so a seed means the same games everywhere.

  random_game_plies(seed, max_plies)   endless (game index, board, move): the board before move is pushed
  random_game_groups(seed, max_plies)  the same, grouped by game: endless (game index, plies)
  random_game_moves(seed, max_plies)   the moves (cshogi move ints) of the seed's first game
  random_game_records(num_games, max_plies, seed)
                                       100-byte records (core.record_format) of num_games games
  random_records(count, max_plies, seed)
                                       exactly count records, from as many games as it takes

A game ends when cshogi says it is over (checkmate, repetition, ...) or after max_plies moves.
"""

import itertools
import operator

import cshogi
import cshogi.dlshogi
import numpy as np

from shogi_policy.core import record_format


def random_game_plies(seed, max_plies):
    """Endless (game index, board, move) along games of uniformly random legal moves.

    Each game has a fresh cshogi.Board from the start position; board is positioned before move and is
    advanced (move pushed) after the yield, so consumers copy it to keep a position. Once the generator has
    moved on to the next game (as itertools.groupby does to close a group), the previous game's board is its
    final position.
    """
    rng = np.random.default_rng(seed)
    for game in itertools.count():
        board = cshogi.Board()
        for _ in range(max_plies):
            if board.is_game_over():
                break
            legal = list(board.legal_moves)
            move = legal[rng.integers(len(legal))]
            yield game, board, move
            board.push(move)


def random_game_groups(seed, max_plies):
    """Endless (game index, plies) groups of random_game_plies, one per game."""
    return itertools.groupby(random_game_plies(seed, max_plies), key=operator.itemgetter(0))


def random_game_moves(seed, max_plies):
    """The moves (cshogi move ints) of the first game of seed: at most max_plies."""
    _, plies = next(random_game_groups(seed, max_plies))
    return [int(move) for _, _, move in plies]


def random_game_records(num_games, max_plies, seed):
    """Records uint8 [N, 100] of num_games random games (results from each game's final position: the side to
    move at checkmate lost, an unfinished game is a draw)."""
    columns = {name: [] for name in ("boards", "hands", "turns", "labels", "results", "game_ids")}
    for game, plies in itertools.islice(random_game_groups(seed, max_plies), num_games):
        turns = []
        for _, board, move in plies:
            pieces, hand = record_format.board_arrays(board)
            columns["boards"].append(pieces)
            columns["hands"].append(hand)
            turns.append(board.turn)
            columns["labels"].append(cshogi.dlshogi.make_move_label(move, board.turn))
        # The group is exhausted: board holds the game's final position.
        loser = board.turn if board.is_game_over() else None
        columns["results"] += [_result(turn, loser) for turn in turns]
        columns["turns"] += turns
        columns["game_ids"] += [game] * len(turns)
    return record_format.pack_records(*columns.values())


def _result(turn, loser):
    """The game's result for the side to move turn, given the loser's colour (None: a draw)."""
    if loser is None:
        return record_format.RESULT_DRAW
    return record_format.RESULT_LOSS if turn == loser else record_format.RESULT_WIN


def random_records(count, max_plies, seed):
    """Exactly count records uint8 [count, 100], the first count positions of random games (whole games but
    possibly the last)."""
    average_game = max(1, min(max_plies, 100))  # random games rarely end before 100 plies
    records = np.zeros((0, record_format.RECORD_BYTES), np.uint8)
    games = 0
    while len(records) < count:
        games += -(-(count - len(records)) // average_game)
        records = random_game_records(games, max_plies, seed)
    return records[:count]
