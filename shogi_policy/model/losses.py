"""Policy loss and metrics on packed int32 policy targets (record_format.pack_policy_targets).

Targets carry the game result beside the move label so that the loss can weight positions by
outcome (e.g. winner-only training) while staying a plain serializable keras.losses.Loss, and the
metrics can still read the label. Logits are float32 [B, 2187]; targets int32 [B].
"""

import keras
from keras import ops

from shogi_policy.core import record_format


def split_targets(targets):
    """int [B] (or [B, 1]) packed targets -> (label int32 [B], result int32 [B])."""
    # Keras losses hand y_true over as float32; packed targets (< 2**14) are exact there.
    return record_format.unpack_policy_targets(ops.reshape(ops.cast(targets, "int32"), (-1,)))


@keras.saving.register_keras_serializable(package="shogi_policy")
class PolicyLoss(keras.losses.Loss):
    """Softmax cross-entropy from logits, with label smoothing and per-result sample weights.

    Args:
      label_smoothing: mass spread uniformly over all 2187 labels (as CategoricalCrossentropy).
      loser_weight, draw_weight: weights of positions whose side to move lost / drew the game;
        winners weigh 1. loser_weight=0 trains on the winners' moves only.
    """

    def __init__(
        self,
        label_smoothing=0.0,
        loser_weight=1.0,
        draw_weight=1.0,
        name="policy_loss",
        reduction="sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must lie in [0, 1), got {label_smoothing}")
        if loser_weight < 0 or draw_weight < 0:
            raise ValueError(f"result weights must be >= 0, got loser {loser_weight}, draw {draw_weight}")
        self.label_smoothing = float(label_smoothing)
        self.loser_weight = float(loser_weight)
        self.draw_weight = float(draw_weight)

    def call(self, y_true, y_pred):
        """Packed targets [B], logits [B, 2187] -> weighted per-sample loss float32 [B]."""
        label, result = split_targets(y_true)
        log_probs = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
        nll = -ops.squeeze(ops.take_along_axis(log_probs, label[:, None], axis=-1), axis=-1)
        loss = nll
        if self.label_smoothing:
            uniform_nll = -ops.mean(log_probs, axis=-1)
            loss = (1.0 - self.label_smoothing) * nll + self.label_smoothing * uniform_nll
        weight = ops.where(
            result == record_format.RESULT_WIN,
            1.0,
            ops.where(result == record_format.RESULT_DRAW, self.draw_weight, self.loser_weight),
        )
        return loss * weight

    def get_config(self):
        return {
            **super().get_config(),
            "label_smoothing": self.label_smoothing,
            "loser_weight": self.loser_weight,
            "draw_weight": self.draw_weight,
        }


@keras.saving.register_keras_serializable(package="shogi_policy")
def policy_accuracy(y_true, y_pred):
    """float32 [B]: 1 where argmax softmax(logits) is the label (softmax keeps the argmax of logits)."""
    label, _ = split_targets(y_true)
    return ops.cast(ops.argmax(y_pred, axis=-1) == label, "float32")


@keras.saving.register_keras_serializable(package="shogi_policy")
def policy_top5_accuracy(y_true, y_pred):
    """float32 [B]: 1 where the label is among the 5 largest logits."""
    label, _ = split_targets(y_true)
    return ops.cast(ops.in_top_k(label, ops.cast(y_pred, "float32"), 5), "float32")


class _PackedTargetMetric(keras.metrics.MeanMetricWrapper):
    """The mean of a per-position metric fn(y_true, y_pred) on packed targets; subclasses name fn and the metric."""

    fn = None
    default_name = None

    def __init__(self, name=None, dtype=None):
        super().__init__(fn=type(self).fn, name=name or self.default_name, dtype=dtype)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="shogi_policy")
class PolicyAccuracy(_PackedTargetMetric):
    """Top-1 move accuracy on packed targets."""

    fn = staticmethod(policy_accuracy)
    default_name = "accuracy"


@keras.saving.register_keras_serializable(package="shogi_policy")
class PolicyTop5Accuracy(_PackedTargetMetric):
    """Top-5 move accuracy on packed targets."""

    fn = staticmethod(policy_top5_accuracy)
    default_name = "top5_accuracy"


def policy_metrics():
    return [PolicyAccuracy(), PolicyTop5Accuracy()]


def value_loss():
    """Binary cross-entropy of the value logit [B, 1] against result / 2 (float32 [B])."""
    return keras.losses.BinaryCrossentropy(from_logits=True, name="value_loss")


def value_metrics():
    # Logit > 0 predicts a win; draws (target 0.5) never count as correct.
    return [keras.metrics.BinaryAccuracy(threshold=0.0, name="accuracy")]
