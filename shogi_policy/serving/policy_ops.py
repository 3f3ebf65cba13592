"""Serving ops on policy logits: temperature-scaled Boltzmann softmax over the legal moves, greedy and
stateless sampling, and the names and format fields an export carries.

Plain TF ops (no Keras): the SavedModel signatures are built from them, and readers of an export
check its metadata against format_metadata().
"""

import tensorflow as tf

from shogi_policy.core import policy_labels, record_format

METADATA_FILENAME = "shogi_policy_export.json"
LABEL_SCHEME = "dlshogi-2187"


def format_metadata():
    """The export metadata fields that a reader must find unchanged: label scheme and record layout."""
    return {
        "label_scheme": LABEL_SCHEME,
        "num_labels": policy_labels.NUM_MOVE_LABELS,
        "record_format_version": record_format.RECORD_FORMAT_VERSION,
        "record_bytes": record_format.RECORD_BYTES,
    }


# The export's signatures (shogi_policy.serving.export writes them, shogi_policy.serving.inference checks an export has them):
# name -> (input specs in call order, output name).
RECORDS_SPEC = tf.TensorSpec([None, record_format.RECORD_BYTES], tf.uint8, name="records")
MASK_SPEC = tf.TensorSpec([None, policy_labels.NUM_MOVE_LABELS], tf.bool, name="legal_mask")
TEMPERATURE_SPEC = tf.TensorSpec([], tf.float32, name="temperature")
SEED_SPEC = tf.TensorSpec([], tf.int64, name="seed")
SIGNATURES = {
    "logits": ((RECORDS_SPEC,), "logits"),
    "probabilities": ((RECORDS_SPEC, MASK_SPEC, TEMPERATURE_SPEC), "probabilities"),
    "sample": ((RECORDS_SPEC, MASK_SPEC, TEMPERATURE_SPEC, SEED_SPEC), "label"),
}

# A temperature beyond float32's range would be inf in the graph, and logits / inf are NaN or 0. Refused rather than
# read as "uniform over the legal moves", so that an overflow in the caller's arithmetic is seen, not served.
TEMPERATURE_RULE = "temperature must be a number >= 0 (0: greedy) that is finite in float32 (at most 3.4e38)"


def temperature_is_valid(temperature):
    """Whether a float32 scalar temperature is one the serving ops accept (TEMPERATURE_RULE): bool scalar."""
    return tf.math.is_finite(temperature) & (temperature >= 0)


def tempered_legal_logits(logits, legal_mask, temperature):
    """(logits - max over legal) / T on legal moves, -inf elsewhere: float32 [N, 2187].

    Subtracting the legal maximum before dividing keeps the best move at 0 however small T is
    (only worse moves can overflow, to -inf), so the softmax never sees inf - inf.
    T == 0 is treated as T == 1 here; callers take the greedy branch for it.
    """
    masked = tf.where(legal_mask, logits, tf.constant(-float("inf"), logits.dtype))
    shifted = masked - tf.reduce_max(masked, axis=1, keepdims=True)
    return shifted / tf.where(temperature > 0, temperature, tf.ones_like(temperature))


def greedy_labels(logits, legal_mask):
    """Argmax of the logits over the legal moves: int32 [N]."""
    masked = tf.where(legal_mask, logits, tf.constant(-float("inf"), logits.dtype))
    return tf.argmax(masked, axis=1, output_type=tf.int32)


def legal_probabilities(logits, legal_mask, temperature):
    """softmax(logits / T) over the legal moves, 0 on illegal ones; one-hot argmax when T == 0.

    Args:
      logits: float32 [N, 2187]; legal_mask: bool [N, 2187]; temperature: float32 scalar, valid
        (temperature_is_valid).
    Returns:
      float32 [N, 2187], rows summing to 1.
    """
    boltzmann = tf.nn.softmax(tempered_legal_logits(logits, legal_mask, temperature), axis=1)
    greedy = tf.one_hot(greedy_labels(logits, legal_mask), policy_labels.NUM_MOVE_LABELS, dtype=logits.dtype)
    return tf.where(temperature > 0, boltzmann, greedy)


def sample_labels(logits, legal_mask, temperature, seed):
    """One label per row drawn from legal_probabilities, with stateless (reproducible) random ops.

    Args:
      logits: float32 [N, 2187]; legal_mask: bool [N, 2187]; temperature: float32 scalar, valid
        (temperature_is_valid); seed: int64 scalar (the same seed and inputs give the same labels).
    Returns:
      int32 [N] labels; the greedy argmax when T == 0.
    """
    drawn = tf.random.stateless_categorical(
        tempered_legal_logits(logits, legal_mask, temperature),
        1,
        seed=tf.stack([seed, tf.constant(0, tf.int64)]),
        dtype=tf.int32,
    )[:, 0]
    return tf.where(temperature > 0, drawn, greedy_labels(logits, legal_mask))
