"""Exports a trained policy network as a SavedModel with logits, probability and sampling signatures.

  shogi-policy-export --model_dir=runs/cpu --export_dir=export/cpu
  shogi-policy-export --keras_model=runs/cpu/model.keras --export_dir=export/cpu
  shogi-policy-export --model_dir=runs/cpu --export_dir=export/cpu --format=onnx   # dlshogi's ONNX (onnx_export)

Signatures (all loadable with tf.saved_model.load alone, no shogi_policy import):
  "logits"(records uint8 [N, 100]) -> {"logits": float32 [N, 2187]}
  "probabilities"(records, legal_mask bool [N, 2187], temperature float32 []) -> {"probabilities": f32 [N, 2187]}
  "sample"(records, legal_mask, temperature, seed int64 []) -> {"label": int32 [N]}
Probabilities are the Boltzmann softmax(logits / T) over the legal moves only (zero elsewhere);
T == 0 means greedy (one-hot argmax over the legal moves). The signatures check their inputs in the graph
(InvalidArgumentError naming the rule): T finite in float32 and >= 0 (policy_ops.TEMPERATURE_RULE), records
and legal_mask of the same batch size, at least one legal move per row. An empty batch (N = 0) gives empty
outputs. A model whose weights hold NaN or inf is not exported.
Beside the SavedModel, shogi_policy_export.json records the label scheme, record and feature layout
and the network config, so that readers can check they speak the same format.
"""

import dataclasses
import os

import keras
import tensorflow as tf

from shogi_policy.core import file_io, policy_labels, record_format
from shogi_policy.data import shard_manifest, shards
from shogi_policy.model import features, network
from shogi_policy.model import model_dir as model_dir_module
from shogi_policy.serving import onnx_export, policy_ops

EXPORT_MARKERS = (policy_ops.METADATA_FILENAME, onnx_export.ONNX_FILENAME)  # an export holds one of them


def _check_inputs(records, legal_mask, temperature):
    """Graph-side guards, so that a SavedModel caller without shogi_policy gets an error, not NaNs or a broadcast."""
    return [
        tf.debugging.assert_equal(
            policy_ops.temperature_is_valid(temperature), True, message=policy_ops.TEMPERATURE_RULE
        ),
        tf.debugging.assert_equal(
            tf.shape(records)[0],
            tf.shape(legal_mask)[0],
            message="records and legal_mask must hold the same number of positions",
        ),
        tf.debugging.assert_equal(
            tf.reduce_all(tf.reduce_any(legal_mask, axis=1)),
            True,
            message="every position needs at least one legal move in legal_mask",
        ),
    ]


def policy_logits(model, records):
    """The model's policy logits float32 [N, 2187] (the "policy" output of a two-headed model).

    records: uint8 (the serving form) or int32 [N, 100], the model's input dtype. An empty batch gives
    empty logits without running the model (TF's CPU convolution fails on a batch of 0).
    """

    def run_model():
        outputs = model(tf.cast(records, tf.int32), training=False)
        if isinstance(outputs, dict):
            outputs = outputs["policy"]
        return tf.cast(outputs, tf.float32)

    def no_positions():
        return tf.zeros([0, policy_labels.NUM_MOVE_LABELS], tf.float32)

    return tf.cond(tf.shape(records)[0] > 0, run_model, no_positions)


def check_output_directory(directory, overwrite):
    """ValueError when directory is a file, or a non-empty directory and not overwrite (absent is fine)."""
    directory = str(directory).rstrip("/")
    if not tf.io.gfile.exists(directory):
        return
    if not tf.io.gfile.isdir(directory):
        raise ValueError(f"{directory} is a file, not a directory")
    present = sorted(name.rstrip("/") for name in tf.io.gfile.listdir(directory))
    if present and not overwrite:
        raise ValueError(
            f"{directory} is not empty (it holds {_shown(present)}): pass --overwrite to replace it"
        )


def check_export_dir(directory, overwrite):
    """check_output_directory, and ValueError for a directory an export must never replace, --overwrite or not:
    one holding a trainer's run or shards, or anything but an earlier export (EXPORT_MARKERS)."""
    check_output_directory(directory, overwrite)
    directory = str(directory).rstrip("/")
    present = (
        sorted(name.rstrip("/") for name in tf.io.gfile.listdir(directory))
        if tf.io.gfile.isdir(directory)
        else []
    )
    foreign = _foreign_kind(directory, present)
    if foreign:
        raise ValueError(
            f"{directory} holds {foreign} ({_shown(present)}): an export never replaces it; choose another directory"
        )
    if present and not set(present) & set(EXPORT_MARKERS):
        raise ValueError(
            f"{directory} holds {_shown(present)}, not an export: --overwrite replaces only an earlier export; "
            "choose another directory"
        )


def _shown(names):
    return ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")


def _foreign_kind(directory, present):
    """What a directory holds that an export must never replace ("a trainer's run", "shards"), or None."""
    if {model_dir_module.FLAGS_JSON, model_dir_module.CHECKPOINT_DIR} & set(present):
        return "a trainer's run"
    if shard_manifest.MANIFEST in present or shards.existing_outputs(directory):
        return "shards"
    return None


def check_not_source(export_dir, source):
    """ValueError when export_dir is the directory a model is exported from (or holds it): replacing it would
    delete the run."""
    if not source or "://" in str(export_dir) + str(source):
        return
    target, origin = os.path.realpath(export_dir), os.path.realpath(source)
    if origin == target or origin.startswith(target.rstrip(os.sep) + os.sep):
        raise ValueError(
            f"--export_dir {export_dir} is or holds {source}, the model exported: write the export elsewhere "
            f"(e.g. {os.path.join(str(source), 'export')})"
        )


def write_directory(directory, write, overwrite=False):
    """Runs write(path) on a fresh sibling directory and moves it to `directory` once it is complete.

    A reader never sees a half-written directory or a mix of old and new files: `directory` is replaced
    by two renames (the old one aside, the new one in), and the old one is then deleted.

    Args:
      directory: the output directory (local or gs://); absent or empty unless overwrite.
      write: callable(path) writing everything into path (which exists and is empty).
      overwrite: replace a non-empty directory.
    Returns:
      What write returned.
    Raises:
      ValueError, before anything is written, when directory is a file, or non-empty without overwrite.
    """
    directory = str(directory).rstrip("/")
    check_output_directory(directory, overwrite)
    parent, name = os.path.split(directory)
    staging = os.path.join(parent, f".{name}.tmp-{os.getpid()}")
    aside = os.path.join(parent, f".{name}.old-{os.getpid()}")
    for leftover in (staging, aside):  # from an earlier process of this pid that died half-way
        if tf.io.gfile.exists(leftover):
            tf.io.gfile.rmtree(leftover)
    try:
        tf.io.gfile.makedirs(staging)
    except (OSError, tf.errors.OpError) as error:  # a read-only or missing place: nothing was written
        raise ValueError(f"cannot write {directory}: {file_io.io_error_reason(error)}") from None
    try:
        result = write(staging)
    except BaseException:
        tf.io.gfile.rmtree(staging)
        raise
    if tf.io.gfile.exists(directory):
        tf.io.gfile.rename(directory, aside)
    tf.io.gfile.rename(staging, directory)
    if tf.io.gfile.exists(aside):
        tf.io.gfile.rmtree(aside)
    return result


def export_model(model, export_dir, network_config=None, source=None, overwrite=False):
    """Writes `model` as a SavedModel with the three signatures, plus shogi_policy_export.json.

    Args:
      model: keras.Model, records int32 [N, 100] -> logits [N, 2187] (or a dict with "policy"),
        float32 weights, built under the default strategy.
      export_dir: output directory (local or gs://), written whole or not at all (write_directory).
      network_config: dict of NetworkConfig.to_dict(), recorded in the metadata (None if unknown).
      source: where the model came from, recorded in the metadata.
      overwrite: replace a non-empty export_dir.
    Returns:
      The metadata dict that was written.
    Raises:
      ValueError, before anything is written, if a weight holds NaN or inf (a diverged training run) or
      export_dir is not empty and not overwrite.
      RuntimeError under a Keras backend other than TensorFlow.
    """
    if keras.backend.backend() != "tensorflow":
        # Under JAX, ExportArchive goes through jax2tf and our tf.function signatures call a JAX model on TF
        # tensors (TracerArrayConversionError). A JAX run's model.keras and checkpoints load under TensorFlow.
        raise RuntimeError(
            f"export needs the TensorFlow Keras backend, not {keras.backend.backend()!r}: run "
            "shogi-policy-export (it sets KERAS_BACKEND=tensorflow) or start Python with KERAS_BACKEND=tensorflow"
        )
    check_export_dir(export_dir, overwrite)
    network.check_finite_weights(model)
    for layer in model.layers:
        if isinstance(layer, features.DlshogiFeatures):
            layer.nested_xla = False  # an XLA-must-compile function fails on hosts without XLA
    archive = keras.export.ExportArchive()
    archive.track(model)

    def logits_fn(records):
        return {"logits": policy_logits(model, records)}

    def probabilities_fn(records, legal_mask, temperature):
        with tf.control_dependencies(_check_inputs(records, legal_mask, temperature)):
            logits = policy_logits(model, records)
        return {"probabilities": policy_ops.legal_probabilities(logits, legal_mask, temperature)}

    def sample_fn(records, legal_mask, temperature, seed):
        with tf.control_dependencies(_check_inputs(records, legal_mask, temperature)):
            logits = policy_logits(model, records)
        return {"label": policy_ops.sample_labels(logits, legal_mask, temperature, seed)}

    functions = {"logits": logits_fn, "probabilities": probabilities_fn, "sample": sample_fn}
    for name, (specs, _) in policy_ops.SIGNATURES.items():
        archive.add_endpoint(name, functions[name], input_signature=list(specs))
    metadata = {
        "format": "shogi_policy.export",
        **policy_ops.format_metadata(),
        "feature_scheme": features.FEATURE_SCHEME,
        "network": network_config,
        "signatures": list(policy_ops.SIGNATURES),
        "source": source,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
    }

    def write(path):
        archive.write_out(path, verbose=False)
        file_io.write_json(os.path.join(path, policy_ops.METADATA_FILENAME), metadata)

    write_directory(export_dir, write, overwrite)
    return metadata


def float32_model(model):
    """The model itself when it computes in float32, else a float32 clone with the same weights.

    A model trained under mixed_bfloat16 keeps that dtype policy in its saved config; serving it
    on CPU/GPU in bfloat16 would be slow and lossy, so the export rebuilds it in float32.
    """
    if all(layer.compute_dtype == "float32" for layer in model.layers):
        return model

    def clone_layer(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    clone = keras.models.clone_model(model, clone_function=clone_layer)
    clone.set_weights(model.get_weights())
    return clone


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """One export, as shogi-policy-export's flags give it (each field is the flag of its name)."""

    model_dir: str | None = dataclasses.field(
        default=None, metadata={"help": "Trainer output directory (its latest checkpoint)."}
    )
    keras_model: str | None = dataclasses.field(
        default=None, metadata={"help": "A .keras model file, instead of --model_dir."}
    )
    export_dir: str | None = dataclasses.field(
        default=None, metadata={"help": "Where to write the SavedModel.", "required": True}
    )
    format: str = dataclasses.field(
        default="savedmodel",
        metadata={"help": "onnx: export_dir/model.onnx.", "choices": ("savedmodel", "onnx")},
    )
    overwrite: bool = dataclasses.field(
        default=False,
        metadata={"help": "Replace a non-empty --export_dir (whole: the old files do not stay)."},
    )

    def __post_init__(self):
        if not self.export_dir:
            raise ValueError("--export_dir is required")
        if self.format not in ("savedmodel", "onnx"):
            raise ValueError(f"--format must be savedmodel or onnx, got {self.format!r}")


def load_model(model_dir=None, keras_model=None):
    """The float32 model to export and its network config, from a trainer directory or a .keras file.

    Returns:
      (model, network_config dict or None). Raises ValueError unless exactly one source is given
      and the model maps records uint8 [N, 100] to 2187 logits.
    """
    if (model_dir is None) == (keras_model is None):
        raise ValueError("give exactly one of model_dir (--model_dir) and keras_model (--keras_model)")
    source_dir = model_dir
    if model_dir is not None:
        model = model_dir_module.restore_model(source_dir)
    else:
        if not tf.io.gfile.exists(keras_model):
            raise ValueError(f"keras model {keras_model} does not exist")
        model, source_dir = keras.models.load_model(keras_model, compile=False), os.path.dirname(keras_model)
    if tuple(model.inputs[0].shape[1:]) != (record_format.RECORD_BYTES,):
        raise ValueError(f"{model_dir or keras_model}: input {model.inputs[0].shape} is not records [N, 100]")
    config = model_dir_module.read_network_config(source_dir)
    return float32_model(model), config.to_dict() if config else None


def export(config):
    """Exports per an ExportConfig (what shogi-policy-export does): (path written, its metadata dict).

    The output directory is checked before the model loads (check_not_source, check_output_directory).
    Raises ValueError naming the flag or file when it cannot.
    """
    source = config.model_dir or config.keras_model
    source_dir = config.model_dir or (os.path.dirname(config.keras_model) if config.keras_model else None)
    check_not_source(config.export_dir, source_dir)
    check_export_dir(config.export_dir, config.overwrite)  # before the slow part
    model, network_config = load_model(config.model_dir, config.keras_model)
    if config.format == "onnx":
        try:
            _, metadata = write_directory(
                config.export_dir,
                lambda staging: onnx_export.export_onnx(model, staging, network_config, source),
                config.overwrite,
            )
        except ImportError as error:  # the optional onnx packages: the message says what to install
            raise ValueError(str(error)) from None
        return os.path.join(config.export_dir, onnx_export.ONNX_FILENAME), metadata
    return config.export_dir, export_model(model, config.export_dir, network_config, source, config.overwrite)
