"""Move-match evaluation against cshogi's labels and legal moves and the Keras model's own logits."""

import codecs
import inspect
import json
import subprocess
import sys

import cshogi
import cshogi.dlshogi
import keras
import numpy as np
import pytest
from conftest import random_game_records, restamp_manifest

from shogi_policy.core import policy_labels, record_format
from shogi_policy.data import move_match, shard_manifest, shards
from shogi_policy.serving import evaluate, inference


@pytest.fixture
def val_positions(shared_data):
    """(sfen, usi_move) of the val lines of the floodgate development set."""
    lines = (shared_data / "floodgate_positions" / "train_val_2000.tsv").read_text().splitlines()
    return [tuple(line.split("\t")[1:]) for line in lines if line.startswith("val\t")]


def test_move_match_against_sorting_oracle():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(300, policy_labels.NUM_MOVE_LABELS)).astype(np.float32)
    mask = rng.random((300, policy_labels.NUM_MOVE_LABELS)) < 0.02
    mask[:, 0] = True  # some rows then have a single legal move
    labels = np.array([rng.choice(np.flatnonzero(row)) for row in mask])
    accuracy = move_match.move_match(logits, mask, labels, ks=(1, 3, 5))
    for k in (1, 3, 5):
        hits = [
            label in sorted(np.flatnonzero(row_mask), key=lambda i, r=row: -r[i])[:k]
            for row, row_mask, label in zip(logits, mask, labels, strict=True)
        ]
        assert accuracy[k] == pytest.approx(np.mean(hits))
    assert move_match.random_move_match(mask, ks=(1,))[1] == pytest.approx(np.mean(1 / mask.sum(axis=1)))


def test_tsv_evaluation_matches_keras_and_cshogi(tiny_export, shared_data, val_positions):
    model_dir, export_dir = tiny_export
    tsv = shared_data / "floodgate_positions" / "train_val_2000.tsv"
    records, mask, labels = move_match.tsv_inputs(str(tsv), "val")
    report = evaluate.evaluate(inference.PolicyModel(str(export_dir)), records, mask, labels)
    assert report["positions"] == len(val_positions) == 1000

    keras_model = keras.models.load_model(model_dir / "model.keras")
    boards = [cshogi.Board(sfen.removeprefix("sfen ")) for sfen, _ in val_positions]
    logits = keras.ops.convert_to_numpy(keras_model(record_format.encode_boards(boards)))
    top1 = top5 = 0
    for board, row, (_, usi) in zip(boards, logits, val_positions, strict=True):
        legal = [cshogi.dlshogi.make_move_label(m, board.turn) for m in board.legal_moves]
        played = cshogi.dlshogi.make_move_label(board.move_from_usi(usi), board.turn)
        ranked = sorted(legal, key=lambda label, r=row: -r[label])
        top1 += ranked[0] == played
        top5 += played in ranked[:5]
    assert report["top1"] == pytest.approx(top1 / 1000)
    assert report["top5"] == pytest.approx(top5 / 1000)
    assert report["top1"] <= report["top5"]


@pytest.mark.parametrize(
    "line, message",
    [
        ("val\tstartpos\n", "expected 'split<TAB>position<TAB>usi_move'"),
        ("val\tstartpos\t7g7e\n", "played move '7g7e' is not legal"),
        ("val\tsfen 9/9/9 b - 1\t7g7f\n", "SFEN board needs 9 ranks"),
    ],
)
def test_read_tsv_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.tsv"
    path.write_text("val\tstartpos\t7g7f\n" + line)
    with pytest.raises(ValueError, match=f"bad.tsv:2: {message}"):
        list(move_match.read_tsv(str(path), "val"))


def test_read_tsv_keeps_the_first_row_after_a_byte_order_mark_and_names_a_non_utf8_line(tmp_path):
    """The issue's example: a TSV with a byte-order mark lost its first row (evaluate and --eval_tsv)."""
    path = tmp_path / "bom.tsv"
    path.write_bytes(codecs.BOM_UTF8 + b"val\tstartpos\t7g7f\r\nval\tstartpos\t2g2f\n")
    assert [cshogi.move_to_usi(move) for _, move in move_match.read_tsv(str(path), "val")] == ["7g7f", "2g2f"]
    assert len(move_match.tsv_inputs(str(path), "val")[2]) == 2
    path.write_bytes(b"val\tstartpos\t7g7f\nval\tstartpos \xff\t2g2f\n")
    with pytest.raises(ValueError, match="bom.tsv:2: not UTF-8 text"):
        list(move_match.read_tsv(str(path), "val"))


def test_tsv_rows_are_read_lazily_in_batches(tmp_path):
    """Memory flat in the rows (shogi-policy-evaluate --tsv on 1M rows needed 24 GB): the reader is a generator
    that gives its first rows before it reads the rest, and tsv_batches holds one batch at a time."""
    path = tmp_path / "rows.tsv"
    path.write_text("val\tstartpos\t7g7f\n" * 10 + "val\tstartpos\t7g7e\n")  # an illegal last row
    rows = move_match.read_tsv(str(path), "val")
    assert inspect.isgenerator(rows) and next(rows)[0].sfen() == cshogi.Board().sfen()
    batches = move_match.tsv_batches(str(path), "val", batch_size=4)
    assert [len(next(batches)[2]), len(next(batches)[2])] == [4, 4]
    with pytest.raises(ValueError, match="rows.tsv:11: played move '7g7e' is not legal"):
        next(batches)


def test_evaluation_in_batches_equals_the_whole(tiny_export, tmp_path):
    """evaluate_batches sums counts over batches: the report of 7-position batches is the report of the whole."""
    records = random_game_records(4, 40, seed=3)
    shards.write_records(str(tmp_path / "s"), {"test": records})
    model = inference.PolicyModel(str(tiny_export[1]))
    whole = evaluate.evaluate(
        model,
        *(
            np.concatenate(a)
            for a in zip(*move_match.shard_batches(str(tmp_path / "s"), "test"), strict=True)
        ),
    )
    batched = evaluate.evaluate_batches(
        model, move_match.shard_batches(str(tmp_path / "s"), "test", batch_size=7)
    )
    assert batched["positions"] == whole["positions"] == len(records)
    for key in ("top1", "top5", "random_top1", "random_top5", "mean_legal_moves"):
        assert batched[key] == pytest.approx(whole[key]), key
    with pytest.raises(ValueError, match="no positions to evaluate"):
        evaluate.evaluate_batches(model, [])


def write_test_shards(data_dir, positions):
    """A shard directory whose test split holds positions (sfen, usi_move), labels from cshogi."""
    boards = [cshogi.Board(sfen.removeprefix("sfen ")) for sfen, _ in positions]
    arrays = [record_format.board_arrays(board) for board in boards]
    labels = [
        cshogi.dlshogi.make_move_label(b.move_from_usi(usi), b.turn)
        for b, (_, usi) in zip(boards, positions, strict=True)
    ]
    n = len(boards)
    records = record_format.pack_records(
        [a[0] for a in arrays], [a[1] for a in arrays], [b.turn for b in boards], labels, [0] * n, range(n)
    )
    shards.write_records(str(data_dir), {"test": records}, positions_per_shard=300)


@pytest.mark.slow
def test_cli_on_a_shard_directory(tiny_export, shared_data, val_positions, tmp_path):
    export_dir = tiny_export[1]
    write_test_shards(tmp_path / "shards", val_positions)
    tsv = shared_data / "floodgate_positions" / "train_val_2000.tsv"
    expected = evaluate.evaluate(
        inference.PolicyModel(str(export_dir)), *move_match.tsv_inputs(str(tsv), "val")
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "shogi_policy.cli.evaluate",
            f"--model={export_dir}",
            f"--data_dir={tmp_path / 'shards'}",
            f"--json_out={tmp_path / 'eval.json'}",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "top-1" in result.stdout
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["split"] == "test" and report["positions"] == 1000
    for key in ("top1", "top5", "random_top1", "random_top5", "mean_legal_moves"):
        assert report[key] == pytest.approx(expected[key]), key


def shard_of(data_dir, records):
    """Writes records as the test split of data_dir (one shard); the shard's path and its records, as stored."""
    shards.write_records(str(data_dir), {"test": records})
    (path,) = shard_manifest.shard_files(str(data_dir), "test").paths
    return path, np.fromfile(path, np.uint8).reshape(-1, record_format.RECORD_BYTES)


@pytest.mark.slow
def test_cli_refuses_a_corrupt_shard_naming_file_and_record(tiny_export, tmp_path):
    """Issue 15 item 1: bytes 0..94 of every record set to 0xFF made evaluate die with SIGSEGV in cshogi."""
    path, records = shard_of(tmp_path / "bad", random_game_records(3, 30, seed=5))
    records[:, :95] = 0xFF
    records.tofile(path)
    restamp_manifest(tmp_path / "bad")
    command = [sys.executable, "-m", "shogi_policy.cli.evaluate", f"--model={tiny_export[1]}"]
    result = subprocess.run(
        [*command, f"--data_dir={tmp_path / 'bad'}", "--split=test", "--limit=500"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert f"{path}: record 0: a board byte is not a piece code" in result.stderr


def test_shard_inputs_name_the_record_of_an_impossible_position_or_illegal_label(tmp_path):
    path, records = shard_of(tmp_path / "a", random_game_records(3, 30, seed=6))
    board = record_format.record_to_board(records[3])
    legal = set(policy_labels.legal_moves_and_labels(board)[1].tolist())
    illegal = next(label for label in range(policy_labels.NUM_MOVE_LABELS) if label not in legal)
    records[3, record_format.META_OFFSET : record_format.META_OFFSET + 2] = [
        illegal & 0xFF,
        (illegal >> 8) | board.turn << 6,
    ]
    records.tofile(path)
    restamp_manifest(tmp_path / "a")
    with pytest.raises(ValueError, match=f"{path}: record 3: its label is not a legal move"):
        list(move_match.shard_batches(str(tmp_path / "a"), "test"))
    records[5, :81] = record_format.board_arrays(cshogi.Board("P3k4/9/9/9/9/9/9/9/4K4 b - 1"))[
        0
    ]  # a dead pawn
    records.tofile(path)
    restamp_manifest(tmp_path / "a")
    with pytest.raises(ValueError, match=f"{path}: record 5: 'P' on rank 1, file 9 could never move"):
        list(move_match.shard_batches(str(tmp_path / "a"), "test"))
