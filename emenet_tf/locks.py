"""Advisory locks on parts of a run folder, so that one writer at a time owns each part.

A lock is ``fcntl.flock`` on a small file that also records its holder (pid, host, command, start
time) for the error message. The kernel releases it when the holder's process ends, however it
ends: a lock left by a killed run (kill -9 included) is simply taken over by the next run.
flock works between processes of one machine; on network file systems (NFS) it may not.

The parts and how they are taken:
  run setup (config.json, the synthetic data, class weights)   waits: short, so jobs queue
  one member's training (gen<g>/member<k>/.lock)              refuses: two writers of one member
  one generation's soft labels                                 waits: parallel member jobs share them
  evaluation, export                                           refuse
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import sys

from emenet_tf.errors import RunError


class LockHeld(RunError):
    """Another live process holds the lock; the message names it."""


def _holder(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096).decode("utf-8", "replace")
    try:
        info = json.loads(raw)
        return f"pid {info['pid']} on {info['host']} (since {info['since']}: {info['command']})"
    except (ValueError, KeyError, TypeError):
        return "another process"


def _record(fd: int) -> None:
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(sys.argv)[:300],
    }
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(info).encode())


@contextlib.contextmanager
def hold(path: str, what: str, wait: bool = False):
    """Hold the lock file ``path`` for the block; ``what`` names the part in the error.

    wait=False: raise LockHeld at once when another process holds it; wait=True: block until free.
    """
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise RunError(f"{path}: cannot create the lock file ({err.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise LockHeld(
                f"{what} is in use by {_holder(fd)}; wait for it to end, or use another --workdir"
            ) from None
        try:
            _record(fd)
        except OSError:
            pass  # the holder record is only for messages; the lock itself is held
        yield
    finally:
        os.close(fd)  # releases the lock
