"""One writer per run directory: an OS lock on <model_dir>/train.lock, held for the whole of a training run.

The lock is fcntl.flock on the file (exclusive, non-blocking): the kernel releases it when its holder exits
or dies, so a lock left by a crashed or killed trainer is free for the next one without any staleness rule.
The file also holds the holder's pid, host and start time, for the refusal message only; a holder that ends
normally empties it, so content found under a free lock names a trainer that died holding it (logged as a
take-over). flock works on local filesystems and, through the kernel's NFS client, on NFS.

Object stores (gs://, s3://: any path with "://") have no such lock: there the run is not locked and a warning
says so. A marker file there could not tell a live holder from a preempted one on another host (a preempted
Cloud TPU VM comes back as a new host), so it would refuse the resume that preemption needs.

Standard library only, so that tests and tools can take the lock without importing TensorFlow.
"""

import contextlib
import errno
import fcntl
import json
import os
import socket
import time

from absl import logging

LOCK_FILE = "train.lock"
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)  # filesystems without flock (some FUSE mounts)


class RunDirectoryLocked(RuntimeError):
    """Another live process holds the run directory's lock."""


def is_remote(path):
    """True for object-store paths (gs://...), where no OS lock exists."""
    return "://" in str(path)


def _holder(text):
    """The holder dict {"pid", "host", "started"} written in a lock file, or None for empty or torn text."""
    try:
        holder = json.loads(text)
    except ValueError:
        return None
    return holder if isinstance(holder, dict) else None


def _describe(holder):
    if holder is None:
        return "a process that did not record itself"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    return f"pid {holder.get('pid')} on host {holder.get('host')} (since {started})"


@contextlib.contextmanager
def hold(directory):
    """Holds the run lock of directory (which must exist) for the with-block.

    Raises RunDirectoryLocked, naming the holder's pid and host, when another process holds it. A remote
    directory is not locked (warning); nor is one whose filesystem refuses flock (warning).
    """
    if is_remote(directory):
        logging.warning(
            "%s is not on a local filesystem: no lock keeps a second trainer out of it; run one trainer per "
            "--model_dir",
            directory,
        )
        yield
        return
    path = os.path.join(directory, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        locked = _lock(fd, path)
        if locked:
            previous = _holder(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
            if previous is not None:
                logging.warning(
                    "%s: taking over the lock of %s, which ended without releasing it",
                    path,
                    _describe(previous),
                )
            me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(me).encode(), 0)
        try:
            yield
        finally:
            if locked:
                os.ftruncate(fd, 0)  # a normal end leaves an empty file: nothing to take over
    finally:
        os.close(fd)  # releases the flock


def _lock(fd, path):
    """Takes the flock of the open lock file fd: True, or False where the filesystem has none (warning).

    Raises RunDirectoryLocked, naming the holder, when another process holds it.
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
        raise RunDirectoryLocked(
            f"{os.path.dirname(path)} is in use by another trainer: {_describe(holder)} holds {path}. Wait "
            "for it to finish or stop it, or train into another --model_dir"
        ) from None
    except OSError as error:
        if error.errno not in _NO_LOCKS:
            raise
        logging.warning("%s: the filesystem has no flock (%s): the run directory is not locked", path, error)
        return False
    return True
