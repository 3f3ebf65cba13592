"""Legal-move probabilities and temperature sampling from an exported policy SavedModel.

  model = PolicyModel("export/cpu")
  model.top_k(["startpos moves 7g7f"], k=5)      # [[("3c3d", 0.41), ...]]
  model.sample(["startpos"], temperature=1.0, seed=7)  # ["7g7f"]

Positions are SFEN strings, USI position strings ("position startpos moves ...", "startpos moves ...",
"sfen ... moves ...") or cshogi.Boards. The legal-move mask is built on the host with cshogi
(policy_labels.legal_moves_and_labels); the softmax, masking and sampling run inside the SavedModel.
Bad input raises ValueError naming it (a position, a temperature, a seed, k, array shapes); no positions
give an empty result. So does an export directory that is not one of this package's exports, or is damaged
(load_export): the sampler, evaluator and USI engine load through PolicyModel.
"""

import os

import cshogi
import numpy as np
import tensorflow as tf

from shogi_policy.core import file_io, policy_labels, quoting, record_format, shogi_rules
from shogi_policy.serving import policy_ops

DEFAULT_BATCH_SIZE = 256


def parse_positions(positions):
    """cshogi.Boards of one position or a list of them (see shogi_rules.parse_position)."""
    if isinstance(positions, (str, cshogi.Board)):
        positions = [positions]
    return [shogi_rules.parse_position(position) for position in positions]


def encode_positions(positions):
    """Model inputs of positions (see parse_positions).

    Returns:
      (records, mask, moves, labels): uint8 [N, 100], bool [N, 2187], and per position the legal
      cshogi moves int64 [M] and their labels int32 [M].
    """
    boards = parse_positions(positions)
    mask, moves, labels = policy_labels.legal_move_mask(boards)
    return record_format.encode_boards(boards), mask, moves, labels


def check_temperature(temperature):
    """The temperature as a float; ValueError unless the SavedModel signatures accept it too.

    The rule is policy_ops.TEMPERATURE_RULE, applied to the float32 value the signatures receive: NaN,
    negative numbers and anything beyond float32's range (1e39 becomes inf) are refused; 0 is greedy.
    """
    try:
        value = float(temperature)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int beyond any float
        raise ValueError(f"{policy_ops.TEMPERATURE_RULE}, got {temperature!r}") from None
    if not policy_ops.temperature_is_valid(tf.constant(value, tf.float32)):
        raise ValueError(f"{policy_ops.TEMPERATURE_RULE}, got {temperature!r}")
    return value


def check_records(records):
    """records as a numpy array; ValueError unless it is uint8 [N, 100] (N may be 0)."""
    records = np.asarray(records)
    if records.dtype != np.uint8 or records.ndim != 2 or records.shape[1] != record_format.RECORD_BYTES:
        raise ValueError(
            f"records must be uint8 [N, {record_format.RECORD_BYTES}], got {records.dtype} {list(records.shape)}"
        )
    return records


def check_legal_mask(records, mask):
    """mask as a numpy array; ValueError unless it is bool [N, 2187] for N records, each row with a legal move."""
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != (len(records), policy_labels.NUM_MOVE_LABELS):
        raise ValueError(
            f"legal_mask must be bool [{len(records)}, {policy_labels.NUM_MOVE_LABELS}] for {len(records)} records, "
            f"got {mask.dtype} {list(mask.shape)}"
        )
    no_move = np.flatnonzero(~mask.any(axis=1))
    if len(no_move):
        raise ValueError(f"legal_mask row {no_move[0]} has no legal move")
    return mask


def _check_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if not -(2**63) <= int(seed) < 2**63:
        raise ValueError(f"seed must fit in int64, got {seed}")
    return int(seed)


def read_metadata(export_dir):
    """The shogi_policy_export.json of an export, checked against this package's record and label layout."""
    path = os.path.join(export_dir, policy_ops.METADATA_FILENAME)
    if not tf.io.gfile.exists(path):
        raise ValueError(f"{path} not found: {export_dir} is not a shogi_policy export")
    try:
        metadata = file_io.read_json(path)
    except ValueError as error:  # names the file
        raise ValueError(f"{error}: a damaged export") from None
    if not isinstance(metadata, dict):
        raise ValueError(f"{path} holds a JSON {type(metadata).__name__}, not an object: a damaged export")
    for key, value in policy_ops.format_metadata().items():
        if metadata.get(key) != value:
            raise ValueError(
                f"{path}: {key} is {quoting.quote(metadata.get(key), 300)}, this package reads {value!r}"
            )
    return metadata


def _describe_inputs(specs):
    return ", ".join(f"{name} {specs[name].dtype.name} {specs[name].shape}" for name in sorted(specs))


def _check_signatures(loaded, export_dir):
    """ValueError unless the loaded SavedModel serves policy_ops.SIGNATURES, with their inputs and outputs."""
    for name, (specs, output) in policy_ops.SIGNATURES.items():
        signature = loaded.signatures.get(name)
        if signature is None or not callable(getattr(loaded, name, None)):
            raise ValueError(
                f"{export_dir}: the SavedModel has no {name!r} signature (it has {sorted(loaded.signatures)}): "
                f"not a shogi_policy export, whatever its {policy_ops.METADATA_FILENAME} says"
            )
        inputs = signature.structured_input_signature[1]
        expected = {spec.name: spec for spec in specs}
        if (
            _describe_inputs(inputs) != _describe_inputs(expected)
            or output not in signature.structured_outputs
        ):
            raise ValueError(
                f"{export_dir}: signature {name!r} takes ({_describe_inputs(inputs)}) and gives "
                f"{sorted(signature.structured_outputs)}, not ({_describe_inputs(expected)}) and [{output!r}]: "
                "not a shogi_policy export (or one of another version)"
            )


def load_export(export_dir):
    """(metadata dict, loaded SavedModel) of an export directory, checked before use.

    Raises ValueError naming export_dir and the problem: no or other metadata (read_metadata), a
    SavedModel that does not load (truncated or damaged files), or one without this package's signatures.
    """
    metadata = read_metadata(export_dir)
    try:
        loaded = tf.saved_model.load(export_dir)
    except (
        Exception
    ) as error:  # TF raises many kinds on a damaged SavedModel (DataLossError, ValueError, ...)
        raise ValueError(
            f"{export_dir}: the SavedModel does not load ({type(error).__name__}: {quoting.quote(error, 300)}): "
            "truncated or damaged files? Export it again"
        ) from None
    _check_signatures(loaded, export_dir)
    return metadata, loaded


class PolicyModel:
    """An exported policy network: batched legal-move probabilities, top-k and sampling."""

    def __init__(self, export_dir, batch_size=DEFAULT_BATCH_SIZE):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.export_dir = export_dir
        self.batch_size = batch_size
        self.metadata, self._saved_model = load_export(export_dir)

    def _batches(self, *arrays):
        for start in range(0, len(arrays[0]), self.batch_size):
            yield [array[start : start + self.batch_size] for array in arrays]

    def record_logits(self, records):
        """Raw logits of records uint8 [N, 100] -> float32 [N, 2187]."""
        records = check_records(records)
        out = [self._saved_model.logits(batch)["logits"].numpy() for (batch,) in self._batches(records)]
        return np.concatenate(out) if out else np.zeros((0, policy_labels.NUM_MOVE_LABELS), np.float32)

    def record_probabilities(self, records, mask, temperature=1.0):
        """softmax(logits / T) over the legal moves: records uint8 [N, 100], mask bool [N, 2187] -> f32 [N, 2187].

        ValueError for a bad temperature, shapes or dtypes that do not match, or a row without a legal move.
        """
        temperature = check_temperature(temperature)
        records = check_records(records)
        mask = check_legal_mask(records, mask)
        out = [
            self._saved_model.probabilities(batch, batch_mask, tf.constant(temperature, tf.float32))[
                "probabilities"
            ].numpy()
            for batch, batch_mask in self._batches(records, mask)
        ]
        return np.concatenate(out) if out else np.zeros((0, policy_labels.NUM_MOVE_LABELS), np.float32)

    def sample_record_labels(self, records, mask, temperature=1.0, seed=0):
        """One label per row drawn at temperature T (0 = greedy): int32 [N]. Same seed, same labels.

        ValueError as record_probabilities, and for a seed that is not an integer within int64.
        """
        temperature = check_temperature(temperature)
        seed = _check_seed(seed)
        records = check_records(records)
        mask = check_legal_mask(records, mask)
        out = [
            self._saved_model.sample(
                batch,
                batch_mask,
                tf.constant(temperature, tf.float32),
                tf.constant(_batch_seed(seed, index), tf.int64),
            )["label"].numpy()
            for index, (batch, batch_mask) in enumerate(self._batches(records, mask))
        ]
        return np.concatenate(out) if out else np.zeros((0,), np.int32)

    def move_probabilities(self, positions, temperature=1.0):
        """Per position, [(usi_move, probability)] of all legal moves, most probable first."""
        records, mask, moves, labels = encode_positions(positions)
        return _ranked_moves(self.record_probabilities(records, mask, temperature), moves, labels)

    def top_k(self, positions, k=5, temperature=1.0):
        """Per position, the k most probable legal moves [(usi_move, probability)]."""
        _check_k(k)
        return [moves[:k] for moves in self.move_probabilities(positions, temperature)]

    def sample(self, positions, temperature=1.0, seed=0):
        """Per position, one legal move (USI string) drawn from softmax(logits / T); T == 0 is greedy."""
        records, mask, moves, labels = encode_positions(positions)
        return _drawn_moves(self.sample_record_labels(records, mask, temperature, seed), moves, labels)

    def sample_and_rank(self, positions, temperature=1.0, seed=0, k=5, rank_temperature=None):
        """sample(positions, temperature, seed) and top_k(positions, k, rank_temperature), from one encoding of the
        positions and one run of the network: (moves [N], per position [(usi_move, probability)] of k).

        rank_temperature: the temperature of the ranking's probabilities (default: temperature). The moves and
        probabilities are those of sample and top_k (the export's own ops, run on its logits).
        """
        temperature, seed = check_temperature(temperature), _check_seed(seed)
        rank_temperature = check_temperature(temperature if rank_temperature is None else rank_temperature)
        _check_k(k)
        records, mask, moves, labels = encode_positions(positions)
        logits = self.record_logits(records)
        drawn, probabilities = [], []
        for index, (batch_logits, batch_mask) in enumerate(self._batches(logits, mask)):
            batch_drawn, batch_probabilities = _sample_and_probabilities(
                batch_logits,
                batch_mask,
                tf.constant(temperature, tf.float32),
                tf.constant(_batch_seed(seed, index), tf.int64),
                tf.constant(rank_temperature, tf.float32),
            )
            drawn.append(batch_drawn.numpy())
            probabilities.append(batch_probabilities.numpy())
        if not drawn:
            return [], []
        ranked = _ranked_moves(np.concatenate(probabilities), moves, labels)
        return _drawn_moves(np.concatenate(drawn), moves, labels), [row[:k] for row in ranked]


@tf.function(
    input_signature=[
        tf.TensorSpec([None, policy_labels.NUM_MOVE_LABELS], tf.float32),
        policy_ops.MASK_SPEC,
        policy_ops.TEMPERATURE_SPEC,
        policy_ops.SEED_SPEC,
        policy_ops.TEMPERATURE_SPEC,
    ]
)
def _sample_and_probabilities(logits, legal_mask, temperature, seed, rank_temperature):
    """The sample signature's draw and the probabilities signature's output at rank_temperature, of logits
    float32 [N, 2187] from the logits signature: int32 [N], float32 [N, 2187]. One graph call: these few ops run
    eagerly cost more than the network of a small preset."""
    return (
        policy_ops.sample_labels(logits, legal_mask, temperature, seed),
        policy_ops.legal_probabilities(logits, legal_mask, rank_temperature),
    )


def _check_k(k):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")


def _batch_seed(seed, index):
    """The sampling seed of the index-th batch: seed for the first, then one derived from (seed, index), so that
    batches draw independently."""
    if not index:
        return seed
    state = np.random.SeedSequence([seed % 2**64, index]).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))


def _ranked_moves(probabilities, moves, labels):
    """Per row, [(usi_move, probability)] of its legal moves, most probable first: probabilities f32 [N, 2187]."""
    result = []
    for row, (row_moves, row_labels) in enumerate(zip(moves, labels, strict=True)):
        row_probabilities = probabilities[row, row_labels]
        order = np.argsort(-row_probabilities, kind="stable")
        result.append([(cshogi.move_to_usi(int(row_moves[i])), float(row_probabilities[i])) for i in order])
    return result


def _drawn_moves(drawn, moves, labels):
    """The USI move of each drawn label int32 [N], among its row's legal moves and their labels."""
    result = []
    for label, row_moves, row_labels in zip(drawn, moves, labels, strict=True):
        (index,) = np.flatnonzero(row_labels == label)
        result.append(cshogi.move_to_usi(int(row_moves[index])))
    return result
