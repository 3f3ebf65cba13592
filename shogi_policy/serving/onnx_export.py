"""dlshogi-compatible ONNX export: the network after its in-graph feature layer, in dlshogi's I/O convention.

  shogi-policy-export --model_dir=runs/r1 --export_dir=runs/r1/export --format=onnx   # -> export_dir/model.onnx

The file has dlshogi's inputs and outputs (names, order, dynamic batch, as dlshogi's convert_model_to_onnx.py
writes them), so its engines and python-dlshogi2 load it in place of their own networks:
  input1         float32 [batch_size, 62, 9, 9]  cshogi.dlshogi.make_input_features' features1 (channels-first,
  input2         float32 [batch_size, 57, 9, 9]  features2; square = file * 9 + rank)
  output_policy  float32 [batch_size, 2187]      logits over dlshogi's move labels (cshogi.dlshogi.make_move_label)
  output_value   float32 [batch_size, 1]         P(side to move wins) = sigmoid of the value head's logit;
                                                 a constant POLICY_ONLY_VALUE for a network without a value head
                                                 (dlshogi's engines and usi_policy_only.py always bind it)
Converter: Keras's own `model.export(format="onnx")`, which on the TensorFlow backend runs
tf2onnx.convert.from_function (tf2onnx >= 1.17: 1.16 pins protobuf 3.20, below TensorFlow's). BatchNorm folds
into the convolutions; the graph uses only standard ONNX ops (Conv, Add, Mul, Sigmoid/Relu/Clip, MatMul, Reshape,
Concat, Transpose, ...). The model must compute in float32 (export.load_model gives a float32 copy): a bfloat16
graph is refused by onnxruntime on CPU. tf2onnx and onnx come with the optional 'onnx' extra and are imported
only when a file is written.
"""

import json
import os
import warnings

import keras
import tensorflow as tf

from shogi_policy.core import policy_labels
from shogi_policy.model import features, network
from shogi_policy.serving import policy_ops

ONNX_FILENAME = "model.onnx"  # dlshogi's default DNN_Model / ModelPath
INPUT_NAMES = ("input1", "input2")
OUTPUT_NAMES = ("output_policy", "output_value")  # TensorRT binds outputs by position: this order
BATCH_DIM = "batch_size"
OPSET = 17  # what torch.onnx (dlshogi's own exporter) has written for years; tf2onnx supports up to 18
POLICY_ONLY_VALUE = 0.5  # output_value of a network without a value head: "no idea who wins"
METADATA_KEY = "shogi_policy_export"  # onnx metadata_props key of the JSON metadata


def _input_specs():
    """tf.TensorSpecs of input1 [N, 62, 9, 9] and input2 [N, 57, 9, 9], float32."""
    shapes = ((features.FEATURES1_NUM, 9, 9), (features.FEATURES2_NUM, 9, 9))
    return [
        tf.TensorSpec([None, *shape], tf.float32, name=name)
        for name, shape in zip(INPUT_NAMES, shapes, strict=True)
    ]


def dlshogi_io_model(model):
    """A Keras model with dlshogi's inputs and outputs around `model`'s layers after its "features" layer.

    Args:
      model: a functional shogi_policy model (records -> logits, or {"policy", "value"}) computing in float32.
    Returns:
      keras.Model [input1 [N, 62, 9, 9], input2 [N, 57, 9, 9]] -> {"output_policy": [N, 2187],
      "output_value": [N, 1]}, sharing model's layers and weights (no DlshogiFeatures in it).
    """
    input1, input2 = (keras.Input(spec.shape[1:], dtype="float32", name=spec.name) for spec in _input_specs())
    # cshogi's plane c is DlshogiFeatures' channel c, with H = file and W = rank: concatenate, then NCHW -> NHWC.
    planes = keras.layers.Permute((2, 3, 1))(keras.layers.Concatenate(axis=1)([input1, input2]))
    tower = keras.Model(model.get_layer("features").output, model.output, name="tower")
    outputs = tower(planes)
    if isinstance(outputs, dict):
        policy, value = outputs["policy"], keras.layers.Activation("sigmoid")(outputs["value"])
    else:  # a constant of shape [N, 1]: what a network without a value head can honestly say
        policy = outputs
        value = keras.ops.zeros_like(policy[:, :1]) + POLICY_ONLY_VALUE
    # The dict keys name the ONNX outputs; the converter orders them sorted, which is OUTPUT_NAMES' order.
    return keras.Model(
        [input1, input2], dict(zip(OUTPUT_NAMES, (policy, value), strict=True)), name="dlshogi_io"
    )


def export_onnx(model, export_dir, network_config=None, source=None, opset=OPSET):
    """Writes export_dir/model.onnx in dlshogi's convention (see the module docstring).

    Args:
      model: keras.Model as for dlshogi_io_model, float32, built under the default strategy.
      export_dir: output directory (local; created if needed).
      network_config: dict of NetworkConfig.to_dict(), recorded in the file's metadata (None if unknown).
      source: where the model came from, recorded in the metadata.
      opset: ONNX opset version.
    Returns:
      (path of the .onnx file, the metadata dict stored in its metadata_props under METADATA_KEY).
    Raises:
      ImportError naming the 'onnx' extra when tf2onnx or onnx is not installed.
    """
    try:
        import onnx
        import tf2onnx  # noqa: F401  (Keras's exporter imports it; fail early with the fix)
    except ImportError as error:
        raise ImportError(
            f"ONNX export needs the 'onnx' extra: pip install 'shogi_policy[onnx]' ({error})"
        ) from None
    network.check_finite_weights(model)
    os.makedirs(export_dir, exist_ok=True)
    path = os.path.join(export_dir, ONNX_FILENAME)
    io_model = dlshogi_io_model(model)
    # The wrapper was never called, so Keras needs the signature; the nested list is one argument of two inputs.
    with warnings.catch_warnings():
        # Keras's tf2onnx patch probes np.object, which numpy 2 answers with a FutureWarning: nothing to act on.
        warnings.filterwarnings("ignore", message=".*np.object.*", category=FutureWarning)
        io_model.export(
            path, format="onnx", verbose=False, opset_version=opset, input_signature=[_input_specs()]
        )
    metadata = {
        "format": "shogi_policy.onnx_export",
        "label_scheme": policy_ops.LABEL_SCHEME,
        "num_labels": policy_labels.NUM_MOVE_LABELS,
        "feature_scheme": features.FEATURE_SCHEME,
        "inputs": list(INPUT_NAMES),
        "outputs": list(OUTPUT_NAMES),
        "value": "sigmoid" if isinstance(model.output, dict) else f"constant {POLICY_ONLY_VALUE}",
        "network": network_config,
        "source": source,
        "opset": opset,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
    }
    proto = onnx.load(path)
    for value in [
        *proto.graph.input,
        *proto.graph.output,
    ]:  # tf2onnx names it unk__N; dlshogi's files batch_size
        value.type.tensor_type.shape.dim[0].dim_param = BATCH_DIM
    proto.metadata_props.add(key=METADATA_KEY, value=json.dumps(metadata))
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, path)
    return path, metadata
