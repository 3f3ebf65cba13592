"""Property-based fuzzing of the serving API and the USI engine (hypothesis).

The rule, whatever the input: no crash and no hang; either a ValueError that names the problem or a
result that is legal (legal moves of the parsed position, probabilities over its legal moves). Random
legal games give the positions, then characters are inserted, deleted or replaced. Bounded and
derandomized, so the suite is reproducible and fast.
"""

import functools
import math
from unittest import mock

import cshogi
import numpy as np
import pytest
from conftest import FUZZ_SETTINGS
from hypothesis import given, settings
from hypothesis import strategies as st

from shogi_policy.core import policy_labels, shogi_rules
from shogi_policy.serving import inference, usi

FUZZ = settings(FUZZ_SETTINGS, max_examples=60)
FLOAT32_MAX = float(np.finfo(np.float32).max)
# Characters that SFEN and USI text are made of, and some that they are not.
ALPHABET = "PLNSGBRKplnsgbrk+*/-0123456789abcdefghi bwmovestartpos\t\x00\u3000\u0661７歩é"


@pytest.fixture(scope="module")
def policy(tiny_export):
    return inference.PolicyModel(str(tiny_export[1]))


@st.composite
def random_game_positions(draw):
    """A position text of a random legal game: 'startpos moves ...', a bare SFEN, or 'sfen ... moves ...'."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    board, moves = cshogi.Board(), []
    for _ in range(draw(st.integers(0, 80))):
        legal = list(board.legal_moves)
        if not legal:
            break
        move = legal[rng.integers(len(legal))]
        moves.append(cshogi.move_to_usi(move))
        board.push(move)
    split = draw(st.integers(0, len(moves)))
    head = cshogi.Board()
    for move in moves[:split]:
        head.push_usi(move)
    tail = " ".join(moves[split:])
    return draw(
        st.sampled_from(
            [
                f"startpos moves {' '.join(moves)}",
                f"position startpos moves {' '.join(moves)}",
                board.sfen(),
                f"sfen {head.sfen()} moves {tail}",
            ]
        )
    )


@st.composite
def mutated(draw, texts):
    """A text from `texts` with up to 4 characters inserted, deleted or replaced."""
    text = draw(texts)
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(text)))
        char = draw(st.sampled_from(ALPHABET))
        text = draw(
            st.sampled_from(
                [text[:at] + char + text[at:], text[:at] + text[at + 1 :], text[:at] + char + text[at + 1 :]]
            )
        )
    return text


positions = mutated(random_game_positions())
# One loaded model for all USI examples: engines load through inference.PolicyModel, patched to this.
load_policy_model = functools.cache(inference.PolicyModel)


def legal_usi_moves(position):
    return {cshogi.move_to_usi(move) for move in shogi_rules.parse_position(position).legal_moves}


def temperature_is_valid(temperature):
    """Oracle of policy_ops.TEMPERATURE_RULE in numpy: a number >= 0 whose float32 value is finite."""
    try:
        value = float(temperature)
    except (TypeError, ValueError, OverflowError):
        return False
    with np.errstate(over="ignore"):
        return value >= 0 and bool(np.isfinite(np.float32(value)))


@FUZZ
@given(
    temperature=st.one_of(
        st.floats(),
        st.sampled_from([0.0, -0.0, 5e-324, 1e-46, 1e-30, FLOAT32_MAX, 3.5e38, 1e39, math.inf, -math.inf]),
        st.integers(-(10**400), 10**400),
        st.text(max_size=6),
        st.none(),
    ),
    seed=st.one_of(st.integers(-(2**70), 2**70), st.floats(), st.booleans(), st.text(max_size=3)),
)
def test_temperatures_and_seeds(policy, temperature, seed):
    valid_seed = isinstance(seed, int) and not isinstance(seed, bool) and -(2**63) <= seed < 2**63
    try:
        (move,) = policy.sample(["startpos moves 7g7f"], temperature, seed)
    except ValueError as error:
        assert not (temperature_is_valid(temperature) and valid_seed), error
        assert "temperature" in str(error) or "seed" in str(error)
        return
    assert temperature_is_valid(temperature) and valid_seed
    assert move in legal_usi_moves("startpos moves 7g7f")


@FUZZ
@given(
    k=st.one_of(st.integers(-3, 3000), st.floats(), st.booleans(), st.text(max_size=2)),
    temperature=st.sampled_from([0.0, 1e-30, 0.5, 1.0, 1e30, FLOAT32_MAX]),
)
def test_top_k(policy, k, temperature):
    try:
        (top,) = policy.top_k(["startpos"], k, temperature)
    except ValueError as error:
        assert "k must be" in str(error)
        assert isinstance(k, bool) or not isinstance(k, int) or k < 1
        return
    assert len(top) == min(k, 30) and {usi for usi, _ in top} <= legal_usi_moves("startpos")
    probabilities = [p for _, p in top]
    assert all(np.isfinite(probabilities)) and probabilities == sorted(probabilities, reverse=True)


@settings(FUZZ, max_examples=200)  # the cheapest and most varied input: more examples
@given(batch=st.lists(positions, max_size=3))
def test_mutated_positions(policy, batch):
    try:
        moves = policy.sample(batch, 1.0, 0)
        top = policy.top_k(batch, 3, 1.0)
    except ValueError as error:
        # Our message, not a codec's (UnicodeError is a ValueError too).
        assert type(error) is ValueError and str(error), repr(error)
        return
    assert len(moves) == len(top) == len(batch)
    for position, move, best in zip(batch, moves, top, strict=True):
        legal = legal_usi_moves(position)
        assert move in legal and {usi for usi, _ in best} <= legal


@FUZZ
@given(
    num_records=st.integers(0, 3),
    num_masks=st.integers(0, 3),
    record_bytes=st.sampled_from([99, 100, 101]),
    mask_width=st.sampled_from([2186, 2187]),
    records_dtype=st.sampled_from([np.uint8, np.int32]),
    mask_dtype=st.sampled_from([bool, np.float32]),
    empty_row=st.one_of(st.none(), st.integers(0, 2)),
)
def test_record_batch_shapes(
    policy, num_records, num_masks, record_bytes, mask_width, records_dtype, mask_dtype, empty_row
):
    records, mask, _, _ = inference.encode_positions(
        ["startpos", "startpos moves 7g7f", "startpos moves 2g2f"]
    )
    records = np.resize(records[:num_records], (num_records, record_bytes)).astype(records_dtype)
    mask = np.resize(mask[:num_masks], (num_masks, mask_width)).astype(mask_dtype)
    if empty_row is not None and empty_row < num_masks:
        mask[empty_row] = False
    try:
        probabilities = policy.record_probabilities(records, mask, 1.0)
        labels = policy.sample_record_labels(records, mask, 1.0, 0)
    except ValueError as error:
        assert "records must be" in str(error) or "legal_mask" in str(error)
        return
    assert probabilities.shape == (num_records, policy_labels.NUM_MOVE_LABELS) and labels.shape == (
        num_records,
    )
    assert (probabilities[~mask] == 0).all() and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert mask[np.arange(num_records), labels].all()


USI_OPTIONS = [*usi.OPTIONS, "No_Such"]
GO_COMMANDS = ["go", "go btime 0 wtime 0 byoyomi 100", "go ponder", "go infinite", "go mate 1000"]
USI_COMMANDS = [
    *GO_COMMANDS,
    "usi",
    "isready",
    "usinewgame",
    "stop",
    "ponderhit",
    "gameover win",
    "position startpos",
    "position",
    "setoption",
    "setoption name",
    "quit",
]
# Valid positions followed by go often enough that moves are played, and garbage of every kind between.
usi_lines = st.one_of(
    st.sampled_from(USI_COMMANDS),
    st.sampled_from(GO_COMMANDS),
    random_game_positions().map(lambda position: f"position {position}"),
    positions.map(lambda position: f"position {position}"),
    st.builds(
        "setoption name {} value {}".format,
        st.sampled_from(USI_OPTIONS),
        st.one_of(st.integers(-5, 20000).map(str), st.sampled_from(["true", "false"]), st.text(max_size=5)),
    ),
    mutated(st.sampled_from(USI_COMMANDS)),
    st.text(max_size=12),
)
# Rounds of up to 3 lines, then a go.
usi_scripts = st.lists(
    st.tuples(st.lists(usi_lines, max_size=3), st.sampled_from(GO_COMMANDS)), min_size=1, max_size=4
).map(lambda rounds: [line for lines, go in rounds for line in (*lines, go)])


def _parsed_or_none(position):
    try:
        return shogi_rules.parse_position(position)
    except ValueError:
        return None


def check_bestmove(line, board, model_loads):
    """A bestmove line names a legal move of the board the engine was asked about, 'win', or 'resign'.

    With a valid position that has a legal move and a model that loads, it must play (or declare).
    """
    move = line.split()[1]
    if board is not None and len(board.legal_moves) and model_loads:
        assert move == "win" or move in legal_usi_moves(board), line
    else:
        assert move in ("resign", "win"), line


@FUZZ
@given(script=usi_scripts)
def test_usi_engine_answers_every_command(tiny_export, script):
    export_dir = str(tiny_export[1])
    lines = []
    with mock.patch.object(inference, "PolicyModel", load_policy_model):
        engine = usi.UsiEngine(lines.append, export_dir)
        # pending: (board, model loads) of a ponder search awaiting its bestmove (at most one).
        board, pending = None, []
        for line in ["isready", *script]:
            before = len(lines)
            keep_going = engine.handle(line)  # must never raise
            out = lines[before:]
            bestmoves = [answer for answer in out if answer.startswith("bestmove")]
            tokens = line.split()
            command, args = (tokens[0], tokens[1:]) if tokens else (None, [])
            asked = (board, engine.options["ModelPath"] == export_dir)
            assert out.count("readyok") == (command == "isready"), (line, out)
            if command == "quit":
                assert keep_going is False
                break
            if command == "position":
                board = _parsed_or_none(" ".join(args))
            if command == "go":
                if pending:  # a go without stop first answers the pending ponder move
                    check_bestmove(bestmoves.pop(0), *pending.pop())
                if args[:1] == ["mate"]:
                    assert not bestmoves and "checkmate notimplemented" in out
                elif ("ponder" in args or "infinite" in args) and not bestmoves:
                    pending.append(asked)
                else:
                    assert len(bestmoves) == 1, (line, out)
                    check_bestmove(bestmoves[0], *asked)
            elif command in ("stop", "ponderhit") and pending:
                assert len(bestmoves) == 1, (line, out)
                check_bestmove(bestmoves[0], *pending.pop())
            else:
                assert not bestmoves, (line, out)
