"""Files written whole or not at all (local or gs://), and the one writer and reader of JSON files.

Every JSON file a command writes (network.json, train_flags.json, metrics.json, a shard directory's
manifest.json, an export's metadata, ShogiArena's engine and tournament files, evaluation reports) goes through
write_json: indented by 1, keys sorted, a final newline, strict JSON, written under path + '.tmp' and renamed.

TensorFlow (tf.io.gfile, which reads and writes gs:// too) is imported on the first read or write, not with this
module: the arena and the data-import script import it without loading TensorFlow.
"""

import importlib
import json


def _tf():
    """The tensorflow module, imported on first use (see the module docstring)."""
    return importlib.import_module("tensorflow")


def io_error_reason(error):
    """The reason in an I/O error: strerror for an OSError, the message of a TensorFlow OpError."""
    return getattr(error, "strerror", None) or getattr(error, "message", None) or str(error)


def write_file_atomic(path, data):
    """Writes bytes to path (local or gs://) under path + '.tmp', then renames it to path.

    Raises ValueError naming the path when it cannot (a full disk: 'No space left on device').
    """
    tf = _tf()
    tmp = path + ".tmp"
    try:
        with tf.io.gfile.GFile(tmp, "wb") as stream:
            stream.write(data)
        tf.io.gfile.rename(tmp, path, overwrite=True)
    except (OSError, tf.errors.OpError) as error:
        raise ValueError(f"cannot write {path}: {io_error_reason(error)}") from None
    finally:
        if tf.io.gfile.exists(tmp):
            tf.io.gfile.remove(tmp)


def write_json(path, value):
    """Writes value as indented, key-sorted JSON to path (str or Path, local or gs://), whole or not at all.

    Raises ValueError on a NaN or infinity: JSON has no such numbers and json.dumps would write bare
    NaN/Infinity that strict readers refuse, so callers write them as null. ValueError naming the path when
    it cannot be written (write_file_atomic).
    """
    text = json.dumps(value, indent=1, sort_keys=True, allow_nan=False)
    write_file_atomic(str(path), (text + "\n").encode("utf-8"))


def read_json(path):
    """The JSON value of a file (local or gs://); ValueError naming the file when it does not parse."""
    with _tf().io.gfile.GFile(path) as f:
        text = f.read()
    try:
        return json.loads(text)
    except ValueError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
