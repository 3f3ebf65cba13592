"""shogi_policy.data.input_pipeline on small shard directories of real positions from random cshogi games."""

import itertools

import numpy as np
import pytest
import tensorflow as tf
from conftest import random_game_plies

from shogi_policy.core import policy_labels, record_format
from shogi_policy.data import input_pipeline, shard_manifest, shards

CHUNK = 16
SHARD_LENGTHS = (100, 37, 64, 3)  # 204 positions; tails shorter than a chunk, one shard below a chunk


def random_positions(count, seed):
    """uint8 [count, 100] records of positions from random games (cut at 150 plies), random labels and results."""
    boards, hands, turns = [], [], []
    for _, board, _ in itertools.islice(random_game_plies(seed, max_plies=150), count):
        pieces, hand = record_format.board_arrays(board)
        boards.append(pieces)
        hands.append(hand)
        turns.append(board.turn)
    rng = np.random.default_rng(seed)
    return record_format.pack_records(
        boards,
        hands,
        turns,
        rng.integers(0, policy_labels.NUM_MOVE_LABELS, count),
        rng.integers(0, 3, count),
        np.arange(count),  # game id = row: identifies every record
    )


def write_shards(directory, records, lengths=SHARD_LENGTHS, split="train"):
    """A shard directory in the contract's format; returns records."""
    names = []
    offsets = np.cumsum((0,) + lengths)
    for index, (start, end) in enumerate(zip(offsets[:-1], offsets[1:], strict=True)):
        name = shards.shard_name(split, index, len(lengths))
        (directory / name).write_bytes(records[start:end].tobytes())
        names.append(name)
    splits = {split: {"files": names, "positions": int(offsets[-1]), "games": 1}}
    shard_manifest.write_manifest(str(directory), shard_manifest.make_manifest(splits))
    return records


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("shards")
    return directory, write_shards(directory, random_positions(sum(SHARD_LENGTHS), seed=0))


def game_ids(records):
    return record_format.unpack_records(records)["game_id"]


def one_epoch(directory, batch_size, **kwargs):
    dataset = input_pipeline.make_dataset(
        str(directory), "train", batch_size, repeat=False, chunk_records=CHUNK, **kwargs
    )
    return [(records.numpy(), target) for records, target in dataset]


def test_every_record_once_per_epoch_without_shuffle(shard_dir):
    directory, records = shard_dir
    batches = one_epoch(directory, batch_size=12, shuffle=False)  # 204 = 17 * 12
    assert len(batches) == 17
    out = np.concatenate([b for b, _ in batches])
    np.testing.assert_array_equal(np.sort(game_ids(out)), np.arange(len(records)))
    np.testing.assert_array_equal(out[np.argsort(game_ids(out))], records)


def test_hosts_read_disjoint_shard_files_covering_the_split(shard_dir):
    """Multi-host JAX: host h of n reads the files h::n, each record of the split on exactly one host."""
    directory, records = shard_dir
    seen = [
        np.concatenate([b for b, _ in one_epoch(directory, 4, shuffle=False, host_index=host, num_hosts=2)])
        for host in range(2)
    ]
    assert [len(host) for host in seen] == [100 + 64, 37 + 3]  # files 0, 2 and 1, 3
    np.testing.assert_array_equal(
        np.sort(np.concatenate([game_ids(host) for host in seen])), np.arange(len(records))
    )
    with pytest.raises(ValueError, match="4 shard files, too few for host 0 of 5"):
        input_pipeline.make_dataset(str(directory), "train", 3, host_index=0, num_hosts=5)


def test_shuffled_epochs_are_distinct_permutations_and_seeded(shard_dir):
    directory, records = shard_dir
    epochs = [
        np.concatenate([b for b, _ in one_epoch(directory, 12, shuffle=True, seed=seed)])
        for seed in (1, 1, 2)
    ]
    for epoch in epochs:
        np.testing.assert_array_equal(np.sort(game_ids(epoch)), np.arange(len(records)))
        np.testing.assert_array_equal(epoch[np.argsort(game_ids(epoch))], records)
    np.testing.assert_array_equal(epochs[0], epochs[1])
    assert not np.array_equal(game_ids(epochs[0]), game_ids(epochs[2]))
    assert not np.array_equal(game_ids(epochs[0]), np.arange(len(records)))


def test_every_iterator_of_a_seeded_dataset_yields_the_same_stream(shard_dir):
    """Keras may open an iterator to inspect a batch before training; a resumed run's skip() needs the same stream."""
    directory, _ = shard_dir
    dataset = input_pipeline.make_dataset(
        str(directory), "train", 12, chunk_records=CHUNK, seed=5, mirror=True
    )
    first, second = ([records.numpy() for records, _ in dataset.take(40)] for _ in range(2))  # 40 > 2 passes
    np.testing.assert_array_equal(first, second)
    passes = np.concatenate(first)[: 2 * 204 // 12 * 12]
    assert not np.array_equal(passes[:204], passes[204:408]), "each pass in another order"


def test_repeated_stream_drops_no_tail_records(shard_dir):
    directory, records = shard_dir
    # 3 epochs = 612 records = 36 batches of 17: batches straddle epochs, nothing is dropped.
    dataset = input_pipeline.make_dataset(str(directory), "train", 17, shuffle=False, chunk_records=CHUNK)
    out = np.concatenate([b.numpy() for b, _ in dataset.take(36)])
    np.testing.assert_array_equal(np.bincount(game_ids(out)), np.full(len(records), 3))
    # Shuffled, the chunk buffer mixes neighbouring epochs, but every record keeps coming.
    dataset = input_pipeline.make_dataset(
        str(directory), "train", 17, seed=3, chunk_records=CHUNK, shuffle_chunks=4
    )
    out = np.concatenate([b.numpy() for b, _ in dataset.take(36)])
    assert np.bincount(game_ids(out), minlength=len(records)).min() >= 1


@pytest.mark.parametrize("value_targets", [False, True])
def test_static_shapes_and_targets(shard_dir, value_targets):
    directory, _ = shard_dir
    dataset = input_pipeline.make_dataset(
        str(directory), "train", 8, seed=0, value_targets=value_targets, chunk_records=CHUNK
    )
    spec_records, spec_target = dataset.element_spec
    assert (
        spec_records.shape == (8, record_format.RECORD_BYTES) and spec_records.dtype.name == "int32"
    )  # TPUs take no uint8
    policy_spec = spec_target["policy"] if value_targets else spec_target
    assert policy_spec.shape == (8,) and policy_spec.dtype.name == "int32"
    for records, target in dataset.take(5):
        fields = record_format.unpack_records(records.numpy())
        policy = target["policy"] if value_targets else target
        np.testing.assert_array_equal(policy.numpy() & 0xFFF, fields["label"])
        np.testing.assert_array_equal(policy.numpy() >> 12, fields["result"])
        if value_targets:
            assert target["value"].dtype.name == "float32"
            np.testing.assert_array_equal(target["value"].numpy(), fields["result"] / 2)


def test_num_positions_and_errors(shard_dir, tmp_path):
    directory, records = shard_dir
    assert shard_manifest.num_positions(str(directory), "train") == len(records)
    with pytest.raises(ValueError, match="test"):
        input_pipeline.make_dataset(str(directory), "test", 8)
    with pytest.raises(ValueError, match="fewer than a batch"):
        input_pipeline.make_dataset(str(directory), "train", 1000)
    write_shards(tmp_path, records[:10], lengths=(10,))
    (tmp_path / "train-00000-of-00001.rec").write_bytes(records[:10].tobytes()[:-1])
    with pytest.raises(ValueError, match="train-00000-of-00001.rec"):
        input_pipeline.make_dataset(str(tmp_path), "train", 4)


def corrupt(records, rows, **bytes_at):
    """A copy of records with the given rows changed: bytes_at maps 'start_end' (or 'at') to a byte value."""
    out = records.copy()
    for span, value in bytes_at.items():
        start, _, end = span.removeprefix("b").partition("_")
        out[rows, int(start) : int(end or int(start) + 1)] = value
    return out


@pytest.mark.parametrize("shuffle", [False, True])
def test_an_invalid_record_stops_iteration_naming_its_file_and_index(shard_dir, tmp_path, shuffle):
    _, records = shard_dir
    # Record 177 is shard 2's record 40 (shards of 100, 37, 64, 3 records).
    bad = corrupt(records, [137 + 40], b0_95=0xFF)
    write_shards(tmp_path, bad)
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        one_epoch(tmp_path, batch_size=12, shuffle=shuffle, seed=0)
    message = str(raised.value)
    assert f"{tmp_path / 'train-00002-of-00004.rec'}: record 40: a board byte is not a piece code" in message
    assert "--bad_records=skip" in message


def test_an_invalid_label_in_a_tail_chunk_is_named_too(shard_dir, tmp_path):
    _, records = shard_dir
    bad = records.copy()
    bad[100 + 35, record_format.META_OFFSET : record_format.META_OFFSET + 2] = [
        0xFF,
        0x0F,
    ]  # label 4095; shard 1's tail
    write_shards(tmp_path, bad)
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=r"train-00001-of-00004.rec: record 35: move label"
    ):
        one_epoch(tmp_path, batch_size=12, shuffle=False)


def test_skip_drops_exactly_the_invalid_records_and_logs_them(shard_dir, tmp_path, capfd):
    _, records = shard_dir
    rows = [0, 5, 101, 150, 203]
    bad = corrupt(records, rows, b0_95=0xFF)
    write_shards(tmp_path, bad)
    batches = one_epoch(tmp_path, batch_size=11, shuffle=False, bad_records="skip")  # 199 = 18 * 11 + 1
    assert all(b.shape == (11, record_format.RECORD_BYTES) for b, _ in batches) and len(batches) == 18
    seen = game_ids(np.concatenate([b for b, _ in batches]))
    assert not set(seen.tolist()) & set(rows) and len(set(seen.tolist())) == 198
    log = capfd.readouterr().err  # tf.print writes to the process's stderr
    assert "invalid records" in log and "train-00000-of-00004.rec: record 0:" in log


def test_skip_fails_instead_of_reading_forever_when_no_record_is_valid(shard_dir, tmp_path):
    _, records = shard_dir
    write_shards(tmp_path, corrupt(records, slice(None), b95_97=0xFF))
    dataset = input_pipeline.make_dataset(
        str(tmp_path), "train", 8, seed=0, chunk_records=CHUNK, bad_records="skip", shuffle_chunks=4
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="invalid records in a row"):
        next(iter(dataset))
    with pytest.raises(ValueError, match="bad_records"):
        input_pipeline.make_dataset(str(tmp_path), "train", 8, bad_records="ignore")
