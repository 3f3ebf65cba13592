"""Benchmark: game records -> compact records (positions/s), ours beside a per-position cshogi loop.

  python scripts/bench/convert.py            # the 1,291 floodgate games (games.usi and the hcpe files)
  python scripts/bench/convert.py --quick    # 300 games and one hcpe file (< 30 s)

Rows are skipped when ../shared/data is absent.
"""

import sys
import tempfile
import time
from pathlib import Path

import cshogi
import cshogi.dlshogi
import numpy as np

from shogi_policy.core import record_format
from shogi_policy.data import convert, records

GAMES = Path(__file__).resolve().parents[3] / "shared" / "data" / "floodgate_games"
HCPE_FILES = ("hozon_train.hcpe", "hozon_test.hcpe", "kapi_test.hcpe")
BATCH_POSITIONS = 8192


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def extract(games):
    """games_to_records in batches of about BATCH_POSITIONS positions, as convert does."""
    out, batch, positions = [], [], 0
    for game in games:
        batch.append(game)
        positions += len(game.moves)
        if positions >= BATCH_POSITIONS:
            out.append(records.games_to_records(batch, np.zeros(len(batch), dtype=np.int64)))
            batch, positions = [], 0
    out.append(records.games_to_records(batch, np.zeros(len(batch), dtype=np.int64)))
    return np.concatenate(out)


def cshogi_loop(games):
    """The obvious per-position extraction: replay on a cshogi.Board, read pieces, hands, label."""
    out = []
    board = cshogi.Board()
    for game in games:
        board.set_sfen(game.sfen)
        for move in game.moves:
            pieces, hands = record_format.board_arrays(board)
            out.append((pieces, hands, board.turn, cshogi.dlshogi.make_move_label(move, board.turn)))
            board.push(move)
    return out


def hcpe_set_hcp_loop(paths):
    """The obvious per-row hcpe extraction: set_hcp, then pieces, hands and label of every row."""
    board = cshogi.Board()
    count = 0
    for path in paths:
        for row in np.fromfile(path, dtype=cshogi.HuffmanCodedPosAndEval):
            board.set_hcp(row["hcp"])
            record_format.board_arrays(board)
            cshogi.dlshogi.make_move_label(board.move_from_move16(int(row["bestMove16"])), board.turn)
            count += 1
    return count


def row(name, value, unit, note):
    return {"benchmark": name, "value": round(float(value), 3), "unit": unit, "note": note}


def run(quick: bool = False) -> list[dict]:
    if not GAMES.is_dir():
        return []
    usi_path = str(GAMES / "games.usi")
    hcpe_paths = [str(GAMES / name) for name in (HCPE_FILES[1:2] if quick else HCPE_FILES)]
    limit = 300 if quick else None
    rows = []

    all_games, read_s = timed(lambda: list(records.read_games(usi_path)))
    read_rate = sum(len(g.moves) for g in all_games) / read_s
    games = all_games[:limit]
    positions = sum(len(g.moves) for g in games)
    recs, extract_s = timed(lambda: extract(games))
    assert len(recs) == positions
    _, loop_s = timed(lambda: cshogi_loop(games))
    note = f"{len(games)} floodgate games, {positions} positions"
    rows.append(row("usi read (parse + legality)", read_rate, "positions/s", "all 1,291 games of games.usi"))
    rows.append(row("games_to_records (extraction)", positions / extract_s, "positions/s", note))
    rows.append(
        row(
            "cshogi per-position loop (board_arrays + make_move_label)",
            positions / loop_s,
            "positions/s",
            note,
        )
    )
    rows.append(row("extraction speed-up vs cshogi loop", loop_s / extract_s, "x", "same games, same run"))
    rows.append(row("usi -> records total", 1 / (1 / read_rate + extract_s / positions), "positions/s", note))

    hcpe_games, hcpe_read_s = timed(lambda: [g for p in hcpe_paths for g in records.read_games(p)])
    hcpe_positions = sum(len(g.moves) for g in hcpe_games)
    _, hcpe_extract_s = timed(lambda: extract(hcpe_games))
    rows_count, set_hcp_s = timed(lambda: hcpe_set_hcp_loop(hcpe_paths))
    assert rows_count == hcpe_positions
    note = f"{len(hcpe_paths)} hcpe files, {len(hcpe_games)} games found, {hcpe_positions} positions"
    hcpe_total = hcpe_positions / (hcpe_read_s + hcpe_extract_s)
    rows.append(
        row("hcpe read (game boundaries + legality)", hcpe_positions / hcpe_read_s, "positions/s", note)
    )
    rows.append(row("hcpe -> records total", hcpe_total, "positions/s", note))
    rows.append(row("cshogi set_hcp per-row loop", rows_count / set_hcp_s, "positions/s", note))
    rows.append(
        row("hcpe speed-up vs set_hcp loop", set_hcp_s / (hcpe_read_s + hcpe_extract_s), "x", "same run")
    )

    if not quick:
        with tempfile.TemporaryDirectory() as output:
            manifest, app_s = timed(lambda: convert.convert([usi_path], output, log_every=10**9))
        stored = sum(split["positions"] for split in manifest["splits"].values())
        rows.append(
            row(
                "convert games.usi -> shards (end to end)",
                stored / app_s,
                "positions/s",
                f"{stored} positions",
            )
        )
    return rows


if __name__ == "__main__":
    for r in run(quick="--quick" in sys.argv[1:]):
        print(f"{r['benchmark']:<60} {r['value']:>14,.1f} {r['unit']:<12} {r['note']}")
