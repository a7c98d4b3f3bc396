"""The TFLite interpreter of the edge runtime: which one is installed, loading a model file, input quantisation.

``ai_edge_litert`` is used when installed, else the older ``tflite_runtime`` (said once per process:
its int8 kernels are much slower). ``load_runner`` opens a .tflite file and its ``serving_default``
signature with one-line errors; ``input_tensor`` quantises real input values the way every caller
feeds a model (the exporter's parity checks too).
"""

import importlib
import os
import warnings

import numpy as np

from edge.contract import SIGNATURE
from edge.errors import EdgeError

# The TFLite interpreters the runtime can use, best first (module, pip package).
RUNTIMES = (("ai_edge_litert", "ai-edge-litert"), ("tflite_runtime", "tflite-runtime"))
# Said once per process when the runtime falls back to tflite_runtime; figures in edge/README.md.
FALLBACK_NOTE = (
    "using tflite_runtime because ai_edge_litert is not installed: int8 models run 5-8x slower under "
    "tflite-runtime 2.14 than under ai-edge-litert 2.3 (x86, 1 thread), float32 models as fast, so "
    "there the float32 model is the faster one; pip install ai-edge-litert if your board has a wheel, "
    "else use the float32 model (edge/README.md, 'Which runtime')"
)
_TFLITE_IDENTIFIER = b"TFL3"  # flatbuffer file identifier, bytes 4..8 of every .tflite file


class FallbackRuntimeWarning(RuntimeWarning):
    """The slower ``tflite_runtime`` interpreter is in use (``ai_edge_litert`` is not installed)."""


def find_interpreter() -> tuple:
    """(Interpreter class, module name) of the first importable runtime in RUNTIMES, or (None, None)."""
    for module, _ in RUNTIMES:
        try:
            return importlib.import_module(f"{module}.interpreter").Interpreter, module
        except ImportError:
            continue
    return None, None


Interpreter, RUNTIME = find_interpreter()
_fallback_noted = False


def _note_fallback_once():
    """Warn (FallbackRuntimeWarning) the first time a model is loaded with a fallback runtime."""
    global _fallback_noted
    if RUNTIME != RUNTIMES[0][0] and Interpreter is not None and not _fallback_noted:
        _fallback_noted = True
        warnings.warn(FALLBACK_NOTE, FallbackRuntimeWarning, stacklevel=3)


def _check_runtime_numpy():
    """tflite-runtime (last release 2.14) is built for numpy 1.x: with numpy 2 its first model load
    prints numpy's ABI banner and a traceback. Say it in one line instead."""
    if RUNTIME != "tflite_runtime" or int(np.__version__.split(".")[0]) < 2:
        return
    version = str(getattr(importlib.import_module("tflite_runtime"), "__version__", ""))
    major_minor = tuple(int(v) for v in version.split(".")[:2] if v.isdigit())
    if len(major_minor) == 2 and major_minor <= (2, 14):
        raise EdgeError(
            f"tflite_runtime {version} needs numpy < 2 (numpy {np.__version__} is installed): "
            'pip install "numpy<2" "opencv-python-headless==4.11.0.86", or install ai-edge-litert'
        )


def _check_tflite_file(path: str):
    if not os.path.isfile(path):
        raise EdgeError(f"{path}: model file not found")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise EdgeError(f"{path}: cannot read model file ({e.strerror})") from None
    if len(head) < 8 or head[4:8] != _TFLITE_IDENTIFIER:
        raise EdgeError(f"{path}: not a TFLite model (no 'TFL3' flatbuffer identifier)")


def open_interpreter(path: str, num_threads, allocate: bool = False):
    """The installed runtime's Interpreter of ``path``, its tensors allocated if ``allocate``
    (EdgeError: no runtime installed, or the file does not load)."""
    if Interpreter is None:
        raise EdgeError("no TFLite interpreter installed: pip install ai-edge-litert (see edge/README.md)")
    try:
        interpreter = Interpreter(model_path=path, num_threads=num_threads)
        if allocate:
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EdgeError(f"{path}: cannot load the TFLite model ({first_line})") from None
    return interpreter


def load_runner(path: str, num_threads):
    """Interpreter and ``serving_default`` signature runner of a .tflite file (EdgeError on failure)."""
    _check_tflite_file(path)
    _note_fallback_once()  # both checks do nothing without a runtime: open_interpreter says so
    _check_runtime_numpy()
    interpreter = open_interpreter(path, num_threads)
    signatures = interpreter.get_signature_list()
    if SIGNATURE not in signatures:
        found = ", ".join(sorted(signatures)) or "none"
        raise EdgeError(f"{path}: model has no {SIGNATURE!r} signature (found: {found}); re-export it")
    return interpreter, interpreter.get_signature_runner(SIGNATURE)


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype) -> np.ndarray:
    """Real values to integers: q = round(x / scale + zero_point), clipped to the dtype's range."""
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, np.float64) / scale + zero_point)
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Integers to real values: x = (q - zero_point) * scale."""
    return (np.asarray(q, np.float64) - zero_point) * scale


def tensor_quantization(detail) -> tuple:
    scale, zero_point = detail["quantization"]
    return float(scale), int(zero_point)


def input_tensor(x: np.ndarray, detail: dict) -> np.ndarray:
    """Real input values (in the model's input range) -> an array of the input tensor's dtype.

    Integer inputs are quantised with the tensor's scale and zero point (``quantize``). The one
    implementation of input quantisation: the exporter's parity checks feed models through it too.
    """
    dtype = np.dtype(detail["dtype"])
    if dtype.kind in "iu":
        x = quantize(x, *tensor_quantization(detail), dtype)
    return np.ascontiguousarray(x, dtype=dtype)
