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

import json
import os

import keras
import tensorflow as tf
from absl import app, flags, logging

from shogi_policy.core import file_io, policy_labels, record_format
from shogi_policy.model import features, network
from shogi_policy.model.model_dir import read_network_config, restore_model
from shogi_policy.serving import onnx_export, policy_ops


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
        shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
        raise ValueError(f"{directory} is not empty (it holds {shown}): pass --overwrite to replace it")


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
    tf.io.gfile.makedirs(staging)
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


def define_flags(flag_values=flags.FLAGS):
    """Registers the app's flags on flag_values (run() uses the global FLAGS; tests their own)."""
    kw = {"flag_values": flag_values}
    flags.DEFINE_string("model_dir", None, "Trainer output directory (its latest checkpoint).", **kw)
    flags.DEFINE_string("keras_model", None, "A .keras model file, instead of --model_dir.", **kw)
    flags.DEFINE_string("export_dir", None, "Where to write the SavedModel.", required=True, **kw)
    flags.DEFINE_enum("format", "savedmodel", ["savedmodel", "onnx"], "onnx: export_dir/model.onnx.", **kw)
    flags.DEFINE_bool(
        "overwrite", False, "Replace a non-empty --export_dir (whole: the old files do not stay).", **kw
    )


def load_model(model_dir=None, keras_model=None):
    """The float32 model to export and its network config, from a trainer directory or a .keras file.

    Returns:
      (model, network_config dict or None). Raises ValueError unless exactly one source is given
      and the model maps records uint8 [N, 100] to 2187 logits.
    """
    if (model_dir is None) == (keras_model is None):
        raise ValueError("give exactly one of model_dir (--model_dir) and keras_model (--keras_model)")
    if model_dir is not None:
        model, directory = restore_model(model_dir), model_dir
    else:
        if not tf.io.gfile.exists(keras_model):
            raise ValueError(f"keras model {keras_model} does not exist")
        model, directory = keras.models.load_model(keras_model, compile=False), os.path.dirname(keras_model)
    if tuple(model.inputs[0].shape[1:]) != (record_format.RECORD_BYTES,):
        raise ValueError(f"{model_dir or keras_model}: input {model.inputs[0].shape} is not records [N, 100]")
    config = read_network_config(directory)
    return float32_model(model), config.to_dict() if config else None


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    args = flags.FLAGS
    source = args.model_dir or args.keras_model
    try:
        check_output_directory(args.export_dir, args.overwrite)  # before the slow part
        model, network_config = load_model(args.model_dir, args.keras_model)
        if args.format == "onnx":
            _, metadata = write_directory(
                args.export_dir,
                lambda staging: onnx_export.export_onnx(model, staging, network_config, source),
                args.overwrite,
            )
            path = os.path.join(args.export_dir, onnx_export.ONNX_FILENAME)
        else:
            metadata = export_model(model, args.export_dir, network_config, source, args.overwrite)
            path = args.export_dir
    except (ValueError, FileNotFoundError, ImportError) as error:
        raise app.UsageError(str(error)) from error
    logging.info("Exported %s to %s: %s", source, path, json.dumps(metadata))
    print(f"exported {source} -> {path}")


def run():
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
