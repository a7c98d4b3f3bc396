"""Atomic writes: every file that matters is written to a temporary name, then renamed."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile

import numpy as np

from emenet_tf.errors import WriteError


@contextlib.contextmanager
def atomic_path(path: str):
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    The temporary path keeps the final file's extension (Keras and numpy choose formats by it).
    Works for files and for directories written at the yielded path.
    """
    directory = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(directory, exist_ok=True)
    base = os.path.basename(path)
    # The random part goes first so compound suffixes (".weights.h5") that pick formats are kept.
    tmp = os.path.join(directory, f".tmp-{os.getpid()}-{next(tempfile._get_candidate_names())}-{base}")
    try:
        yield tmp
        if os.path.isdir(tmp) and os.path.isdir(path):
            old = tmp + ".old"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except OSError as err:
        raise WriteError(f"{path}: cannot write ({describe_os_error(err)}); nothing was replaced") from None
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.remove(tmp)


def short_reason(err: BaseException, limit: int = 160) -> str:
    """Why ``err`` happened, on one line of at most ``limit`` characters (TensorFlow's errors: their
    ``message``, without the op's traceback); its type's name when it says nothing."""
    return " ".join(str(getattr(err, "message", err)).split())[:limit] or type(err).__name__


def describe_os_error(err: BaseException) -> str:
    """A short reason for a failed write: 'No space left on device', 'Permission denied', ..."""
    reason = getattr(err, "strerror", None) or " ".join(str(err).split())[:200]
    return reason or type(err).__name__


def atomic_write_bytes(path: str, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_save_weights(model, path: str) -> None:
    """A Keras model's weights to ``path`` (``*.weights.h5``), atomically.

    HDF5 is written to a scratch file in memory (/dev/shm where it exists), then copied into
    place with plain file writes: a full disk then fails as one clean WriteError naming
    ``path``, where h5py writing straight to a full disk was seen to crash the process.
    """
    scratch_root = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="emenet-weights-", dir=scratch_root) as scratch:
        scratch_path = os.path.join(scratch, os.path.basename(path))
        try:
            model.save_weights(scratch_path)
        except (OSError, RuntimeError) as err:
            raise WriteError(f"{path}: cannot serialise the weights ({describe_os_error(err)})") from None
        with open(scratch_path, "rb") as f:
            data = f.read()
    atomic_write_bytes(path, data)


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def atomic_save_npz(path: str, **arrays) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value)}")
