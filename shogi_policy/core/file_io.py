"""Files written whole or not at all (local or gs://), and the one writer and reader of JSON files.

Every JSON file a command writes (network.json, train_flags.json, metrics.json, a shard directory's
manifest.json, an export's metadata, ShogiArena's engine and tournament files, evaluation reports) goes through
write_json: indented by 1, keys sorted, a final newline, strict JSON, written under path + '.tmp' and renamed.

Local paths are written with plain file I/O; paths with a scheme (gs://) through tf.io.gfile, imported only then:
the arena and the data-import scripts write their files without loading TensorFlow (on a TPU VM, TensorFlow can
load libtpu and take the chip).
"""

import importlib
import json
import os


def _tf():
    """The tensorflow module, imported on first use (see the module docstring)."""
    return importlib.import_module("tensorflow")


def _is_remote(path):
    """Whether path names a filesystem of TensorFlow's (gs://, ...) rather than a local file."""
    return "://" in str(path)


def io_error_reason(error):
    """The reason in an I/O error: strerror for an OSError, the message of a TensorFlow OpError."""
    return getattr(error, "strerror", None) or getattr(error, "message", None) or str(error)


def write_file_atomic(path, data):
    """Writes bytes to path (local or gs://) under path + '.tmp', then renames it to path.

    Raises ValueError naming the path when it cannot (a full disk: 'No space left on device').
    """
    tmp = path + ".tmp"
    if not _is_remote(path):
        try:
            with open(tmp, "wb") as stream:
                stream.write(data)
            os.replace(tmp, path)
        except OSError as error:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise ValueError(f"cannot write {path}: {io_error_reason(error)}") from None
        return
    tf = _tf()
    try:
        with tf.io.gfile.GFile(tmp, "wb") as stream:
            stream.write(data)
        tf.io.gfile.rename(tmp, path, overwrite=True)
    except (OSError, tf.errors.OpError) as error:
        if tf.io.gfile.exists(tmp):
            tf.io.gfile.remove(tmp)
        raise ValueError(f"cannot write {path}: {io_error_reason(error)}") from None


def check_writable(path):
    """ValueError naming path when a file cannot be written there, tried before the work that makes it: a directory
    at path, or a probe file path + '.tmp' (what write_file_atomic writes first) that cannot be created."""
    probe = f"{path}.tmp"
    if not _is_remote(path):
        if os.path.isdir(path):
            raise ValueError(f"cannot write {path}: it is a directory")
        try:
            with open(probe, "wb"):
                pass
            os.remove(probe)
        except OSError as error:
            raise ValueError(f"cannot write {path}: {io_error_reason(error)}") from None
        return
    tf = _tf()
    try:
        tf.io.gfile.GFile(probe, "wb").close()
        tf.io.gfile.remove(probe)
    except tf.errors.OpError as error:
        raise ValueError(f"cannot write {path}: {io_error_reason(error)}") from None


def write_json(path, value):
    """Writes value as indented, key-sorted JSON to path (str or Path, local or gs://), whole or not at all.

    Raises ValueError on a NaN or infinity: JSON has no such numbers and json.dumps would write bare
    NaN/Infinity that strict readers refuse, so callers write them as null. ValueError naming the path when
    it cannot be written (write_file_atomic).
    """
    text = json.dumps(value, indent=1, sort_keys=True, allow_nan=False)
    write_file_atomic(str(path), (text + "\n").encode("utf-8"))


def read_json(path):
    """The JSON value of a file (local or gs://); ValueError naming the file when it is not UTF-8 JSON."""
    if _is_remote(path):
        with _tf().io.gfile.GFile(path, "rb") as f:
            data = f.read()
    else:
        with open(path, "rb") as f:
            data = f.read()
    try:
        return json.loads(data.decode("utf-8-sig"))  # a byte-order mark (an editor's) is no JSON error
    except ValueError as error:  # UnicodeDecodeError included
        raise ValueError(f"{path} is not valid JSON: {error}") from None
