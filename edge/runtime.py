"""Run an exported EMENet-TF .tflite model on faces: load it with its metadata, preprocess, invoke, read.

Needs numpy, LiteRT (``ai_edge_litert``, or the older ``tflite_runtime``) and OpenCV only; never
TensorFlow or ``emenet_tf``. The model contract (signature ``serving_default``, input ``image``, named
post-processed outputs, metadata JSON beside the model) is in docs/ARCHITECTURE.md, "Exported models".
"""

import importlib
import json
import math
import os
import warnings

import cv2
import numpy as np

from edge.contract import (  # noqa: F401  (the output-name tuples are re-exported: edge.runtime.SINGLE_OUTPUTS)
    ENSEMBLE_EXTRA_OUTPUTS,
    FORMAT,
    INPUT_NAME,
    KINDS,
    SIGNATURE,
    SINGLE_OUTPUTS,
    STATE_INPUTS,
    STATE_OUTPUTS,
    output_shapes,
    state_shapes,
)
from edge.errors import EdgeError
from edge.images import load_image, to_rgb_uint8  # noqa: F401  (re-exported: edge.runtime.load_image)
from edge.uncertainty import bernoulli_entropy, normalised_entropy, va_expectation

# The TFLite interpreters the runtime can use, best first (module, pip package).
RUNTIMES = (("ai_edge_litert", "ai-edge-litert"), ("tflite_runtime", "tflite-runtime"))
# Said once per process when the runtime falls back to tflite_runtime; figures in edge/README.md.
FALLBACK_NOTE = (
    "using tflite_runtime because ai_edge_litert is not installed: int8 models run 5-8x slower under "
    "tflite-runtime 2.14 than under ai-edge-litert 2.3 (x86, 1 thread), float32 models as fast, so "
    "there the float32 model is the faster one; pip install ai-edge-litert if your board has a wheel, "
    "else use the float32 model (edge/README.md, 'Which runtime')"
)
INPUT_DTYPES = ("float32", "uint8", "int8")
# A threshold calibrated on float32 entropies of near-uniform outputs can pass 1 by rounding (~1e-7).
_ENTROPY_SLACK = 1e-6
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


def metadata_path(model_path) -> str:
    """The metadata JSON that belongs to a model: ``M.json`` beside ``M.tflite``."""
    return os.path.splitext(str(model_path))[0] + ".json"


def required_outputs(kind: str) -> tuple:
    """Output names the contract requires for a model of ``kind`` (``edge.contract.KINDS``)."""
    return tuple(output_shapes(kind, 1, 1, 1))


def _meta_error(path, key, value, why) -> EdgeError:
    return EdgeError(f"{path}: metadata {key} {why} (value: {value!r})")


def _check_names(meta, path, key, count=None):
    names = meta.get(key)
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise _meta_error(path, key, names, "must be a non-empty list of strings")
    if count is not None and len(names) != count:
        raise _meta_error(path, key, names, f"must have {count} entries")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:  # results are keyed by name: a repeated name would hide one output
        raise _meta_error(path, key, repeated, "must not repeat a name")


def _check_number(value, allow_null=False) -> bool:
    if value is None:
        return allow_null
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_input_quantization(spec, path):
    """float32: scale and zero_point null; uint8 / int8: scale > 0, zero point in the type's range."""
    scale, zero_point = spec.get("scale"), spec.get("zero_point")
    if spec["dtype"] == "float32":
        for key, value in (("scale", scale), ("zero_point", zero_point)):
            if value is not None:
                raise _meta_error(path, f"input.{key}", value, "must be null for a float32 input")
        return
    if not _check_number(scale) or scale <= 0:
        raise _meta_error(
            path, "input.scale", scale, f"must be a positive number for a {spec['dtype']} input"
        )
    info = np.iinfo(spec["dtype"])
    if not _is_int(zero_point) or not info.min <= zero_point <= info.max:
        why = f"must be an integer in [{info.min}, {info.max}] for a {spec['dtype']} input"
        raise _meta_error(path, "input.zero_point", zero_point, why)


def _check_input_spec(spec, path):
    if not isinstance(spec, dict):
        raise _meta_error(path, "input", spec, "must be an object")
    if spec.get("name") != INPUT_NAME:
        raise _meta_error(path, "input.name", spec.get("name"), f"must be {INPUT_NAME!r}")
    size = spec.get("size")
    if not _is_int(size) or size < 1:
        raise _meta_error(path, "input.size", size, "must be a positive integer")
    if spec.get("channels") != "RGB":
        raise _meta_error(path, "input.channels", spec.get("channels"), "must be 'RGB'")
    if spec.get("dtype") not in INPUT_DTYPES:
        raise _meta_error(path, "input.dtype", spec.get("dtype"), f"must be one of {INPUT_DTYPES}")
    rng = spec.get("range")
    if not (isinstance(rng, list) and len(rng) == 2 and all(_check_number(v) for v in rng) and rng == [0, 1]):
        raise _meta_error(path, "input.range", rng, "must be [0, 1] (pixels / 255, as in training)")
    _check_input_quantization(spec, path)


def _check_members(meta, path):
    members = meta.get("members")
    if not _is_int(members) or members < 1:
        raise _meta_error(path, "members", members, "must be a positive integer")
    if meta["kind"] in ("single", "dirichlet") and members != 1:
        raise _meta_error(path, "members", members, f"must be 1 for kind {meta['kind']!r}")
    if meta["kind"] == "ensemble" and members < 2:
        raise _meta_error(path, "members", members, "must be at least 2 for kind 'ensemble'")


def _check_bin_centres(meta, path):
    centres = meta.get("va_bin_centres")
    if not (isinstance(centres, list) and len(centres) >= 2 and all(_check_number(c) for c in centres)):
        raise _meta_error(path, "va_bin_centres", centres, "must be a list of at least 2 numbers")
    if not all(-1.0 <= c <= 1.0 for c in centres) or not np.all(np.diff(centres) > 0):
        raise _meta_error(path, "va_bin_centres", centres, "must increase strictly within [-1, 1]")


def _check_thresholds(meta, path):
    """expr_entropy and ood_epistemic compare normalised entropies, so they lie in [0, 1]
    (ood_epistemic may be null); ood (on a Dirichlet model's ood_score, a log density) is any finite
    number or null (absent: null)."""
    thresholds = meta.get("thresholds")
    if not isinstance(thresholds, dict):
        raise _meta_error(path, "thresholds", thresholds, "must be an object")
    for key, allow_null in (("expr_entropy", False), ("ood_epistemic", True)):
        value = thresholds.get(key)
        is_number = _check_number(value, allow_null)
        if not is_number or (value is not None and not -_ENTROPY_SLACK <= value <= 1.0 + _ENTROPY_SLACK):
            why = "must be a number in [0, 1]" + (" or null" if allow_null else "")
            raise _meta_error(path, f"thresholds.{key}", value, why)
    if not _check_number(thresholds.get("ood"), allow_null=True):
        raise _meta_error(path, "thresholds.ood", thresholds.get("ood"), "must be a finite number or null")


def _check_state(meta, path):
    """A stream model's ``state`` block: the contract's tensor names, a positive size, max_gap >= 0,
    reset_every >= 0 (absent in older exports: filled in as 0, never reset)."""
    state = meta.get("state")
    if state is None:
        return
    if not isinstance(state, dict):
        raise _meta_error(path, "state", state, "must be an object or absent")
    for key, names in (("inputs", STATE_INPUTS), ("outputs", STATE_OUTPUTS)):
        if state.get(key) != list(names):
            raise _meta_error(path, f"state.{key}", state.get(key), f"must be {list(names)}")
    state.setdefault("reset_every", 0)
    for key, low in (("size", 1), ("max_gap", 0), ("reset_every", 0)):
        if not _is_int(state.get(key)) or state[key] < low:
            raise _meta_error(path, f"state.{key}", state.get(key), f"must be an integer >= {low}")


def validate_metadata(meta, path) -> dict:
    """Check a metadata dict's types and ranges (schema: ARCHITECTURE.md); EdgeError naming the key.

    Fills in what older exports lack: ``state.reset_every`` 0."""
    if not isinstance(meta, dict):
        raise _meta_error(path, "root", type(meta).__name__, "must be a JSON object")
    if meta.get("format") != FORMAT:
        raise _meta_error(path, "format", meta.get("format"), f"must be {FORMAT!r}")
    if meta.get("kind") not in KINDS:
        raise _meta_error(path, "kind", meta.get("kind"), f"must be one of {', '.join(map(repr, KINDS))}")
    _check_members(meta, path)
    _check_input_spec(meta.get("input"), path)
    _check_names(meta, path, "outputs")
    missing = [n for n in required_outputs(meta["kind"]) if n not in meta["outputs"]]
    if missing:
        raise _meta_error(path, "outputs", missing, f"lacks outputs a {meta['kind']} model must have")
    _check_names(meta, path, "expr_names")
    _check_names(meta, path, "au_names")
    _check_bin_centres(meta, path)
    _check_thresholds(meta, path)
    _check_state(meta, path)
    return meta


def load_metadata(path) -> dict:
    """Read and validate a model's metadata JSON (EdgeError if missing, not JSON or off-schema)."""
    path = str(path)
    if not os.path.isfile(path):
        raise EdgeError(f"{path}: metadata JSON not found (a model M.tflite needs M.json beside it)")
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except json.JSONDecodeError as e:
        raise EdgeError(f"{path}:{e.lineno}: metadata is not valid JSON ({e.msg})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise EdgeError(f"{path}: cannot read metadata ({e})") from None
    return validate_metadata(meta, path)


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


def _load_runner(path: str, num_threads):
    """Interpreter and ``serving_default`` signature runner of a .tflite file (EdgeError on failure)."""
    _check_tflite_file(path)
    if Interpreter is None:
        raise EdgeError("no TFLite interpreter installed: pip install ai-edge-litert (see edge/README.md)")
    _note_fallback_once()
    _check_runtime_numpy()
    try:
        interpreter = Interpreter(model_path=path, num_threads=num_threads)
    except (ValueError, RuntimeError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EdgeError(f"{path}: cannot load the TFLite model ({first_line})") from None
    signatures = interpreter.get_signature_list()
    if SIGNATURE not in signatures:
        found = ", ".join(sorted(signatures)) or "none"
        raise EdgeError(f"{path}: model has no {SIGNATURE!r} signature (found: {found}); re-export it")
    return interpreter, interpreter.get_signature_runner(SIGNATURE)


def _expected_output_shapes(meta) -> dict:
    counts = (len(meta["expr_names"]), len(meta["au_names"]), len(meta["va_bin_centres"]))
    shapes = output_shapes(meta["kind"], *counts)
    if meta.get("state") is not None:
        shapes.update(state_shapes(meta["state"]["size"]))
    return shapes


def _state_names(meta, key: str) -> list:
    return list(meta["state"][key]) if meta.get("state") is not None else []


def _check_quantization_matches(spec, detail, meta_file):
    """A quantised input's metadata scale / zero point must be the tensor's (float32 rounding apart)."""
    if spec["dtype"] == "float32":
        return
    scale, zero_point = _tensor_quantization(detail)
    if not math.isclose(spec["scale"], scale, rel_tol=1e-6):
        raise _meta_error(
            meta_file, "input.scale", spec["scale"], f"does not match the model input's {scale}"
        )
    if spec["zero_point"] != zero_point:
        why = f"does not match the model input's {zero_point}"
        raise _meta_error(meta_file, "input.zero_point", spec["zero_point"], why)


def _check_model_matches(meta, input_details, output_details, meta_file):
    """The metadata must describe this model: input name/size/dtype, state, output names and shapes."""
    if sorted(input_details) != sorted([INPUT_NAME, *_state_names(meta, "inputs")]):
        key = "state" if meta.get("state") is not None or len(input_details) > 1 else "input.name"
        raise _meta_error(
            meta_file, key, meta.get("state"), f"does not match model inputs {list(input_details)}"
        )
    detail = input_details[INPUT_NAME]
    size = meta["input"]["size"]
    if tuple(int(d) for d in detail["shape"]) != (1, size, size, 3):
        raise _meta_error(
            meta_file, "input.size", size, f"does not match model input shape {list(detail['shape'])}"
        )
    if np.dtype(detail["dtype"]).name != meta["input"]["dtype"]:
        raise _meta_error(
            meta_file,
            "input.dtype",
            meta["input"]["dtype"],
            f"does not match model input {np.dtype(detail['dtype'])}",
        )
    _check_quantization_matches(meta["input"], detail, meta_file)
    if sorted(output_details) != sorted(meta["outputs"] + _state_names(meta, "outputs")):
        raise _meta_error(
            meta_file, "outputs", meta["outputs"], f"do not match model outputs {sorted(output_details)}"
        )
    for name, shape in _expected_output_shapes(meta).items():
        details = input_details if name in _state_names(meta, "inputs") else output_details
        if name in details and tuple(int(d) for d in details[name]["shape"]) != shape:
            got = list(details[name]["shape"])
            key = "state.size" if meta.get("state") is not None and name in state_shapes(1) else "outputs"
            raise _meta_error(meta_file, key, name, f"has model shape {got}, metadata implies {list(shape)}")


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype) -> np.ndarray:
    """Real values to integers: q = round(x / scale + zero_point), clipped to the dtype's range."""
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, np.float64) / scale + zero_point)
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Integers to real values: x = (q - zero_point) * scale."""
    return (np.asarray(q, np.float64) - zero_point) * scale


def _tensor_quantization(detail) -> tuple:
    scale, zero_point = detail["quantization"]
    return float(scale), int(zero_point)


def input_tensor(x: np.ndarray, detail: dict) -> np.ndarray:
    """Real input values (in the model's input range) -> an array of the input tensor's dtype.

    Integer inputs are quantised with the tensor's scale and zero point (``quantize``). The one
    implementation of input quantisation: the exporter's parity checks feed models through it too.
    """
    dtype = np.dtype(detail["dtype"])
    if dtype.kind in "iu":
        x = quantize(x, *_tensor_quantization(detail), dtype)
    return np.ascontiguousarray(x, dtype=dtype)


def _check_face(face_rgb):
    if not isinstance(face_rgb, np.ndarray) or face_rgb.dtype != np.uint8:
        raise EdgeError(f"face must be a uint8 numpy array, got {type(face_rgb).__name__}")
    if face_rgb.ndim != 3 or face_rgb.shape[2] != 3 or min(face_rgb.shape[:2]) < 1:
        raise EdgeError(f"face must be an RGB array (H, W, 3), got shape {face_rgb.shape}")


class EmotionModel:
    """An exported EMENet-TF model with its metadata: faces in, expression / AU / VA results out."""

    def __init__(self, model_path, num_threads=None, face_detector=None):
        self.model_path = str(model_path)
        self._interpreter, self._runner = _load_runner(self.model_path, num_threads)
        meta_file = metadata_path(self.model_path)
        self.metadata = load_metadata(meta_file)
        self._input = self._runner.get_input_details()
        self._outputs = self._runner.get_output_details()
        _check_model_matches(self.metadata, self._input, self._outputs, meta_file)
        self._input = self._input[INPUT_NAME]
        self.state = self.metadata.get("state")  # None: a per-frame model; else a stream model
        self.kind = self.metadata["kind"]
        self.size = self.metadata["input"]["size"]
        self.expr_names = list(self.metadata["expr_names"])
        self.au_names = list(self.metadata["au_names"])
        self.va_bin_centres = np.asarray(self.metadata["va_bin_centres"], np.float64)
        self.thresholds = self.metadata["thresholds"]
        self._detector = face_detector

    @property
    def face_detector(self):
        """The face detector used by ``predict`` (OpenCV's, built on first use unless one was given)."""
        if self._detector is None:
            from edge.faces import FaceDetector

            self._detector = FaceDetector()
        return self._detector

    @face_detector.setter
    def face_detector(self, detector):
        """Any object with ``detect(image_rgb) -> [(x, y, w, h)]``."""
        self._detector = detector

    def preprocess(self, face_rgb: np.ndarray) -> np.ndarray:
        """Face (H, W, 3) uint8 RGB -> model input (1, S, S, 3): resized (INTER_AREA), scaled, quantised."""
        _check_face(face_rgb)
        if face_rgb.shape[:2] != (self.size, self.size):
            face_rgb = cv2.resize(face_rgb, (self.size, self.size), interpolation=cv2.INTER_AREA)
        low, high = self.metadata["input"]["range"]
        x = low + (high - low) * face_rgb.astype(np.float32) / np.float32(255.0)
        return input_tensor(x[None], self._input)

    def run(self, face_rgb: np.ndarray) -> dict:
        """Raw outputs for one face: name -> float64 array without the batch axis, dequantised.

        A stream model runs from its initial state: a single image is a stream of one frame.
        """
        return (
            self.step(face_rgb, None)[0] if self.state is not None else self._raw(self._invoke(face_rgb, {}))
        )

    def initial_state(self) -> dict:
        """The state a stream starts from (zeros), by input name; {} for a per-frame model."""
        if self.state is None:
            return {}
        return {name: np.zeros((1, self.state["size"]), np.float32) for name in self.state["inputs"]}

    def step(self, face_rgb: np.ndarray, state: dict | None) -> tuple:
        """(raw outputs, next state) of one frame of a stream; ``state`` None: the stream's first frame.

        A per-frame model has no state: (its raw outputs, {}). The state is the model's own float32
        tensors, to be passed back unchanged with the next frame of the same face, and replaced by
        None every ``state["reset_every"]`` frames of that face (when > 0): the model was trained on
        clips of that many frames from a zero state (``edge.predict`` does this per face).
        """
        outputs = self._invoke(face_rgb, self.initial_state() if state is None else state)
        if self.state is None:
            return self._raw(outputs), {}
        following = dict(zip(self.state["inputs"], self.state["outputs"], strict=True))
        state = {name: outputs.pop(out) for name, out in following.items()}
        return self._raw(outputs), state

    def _invoke(self, face_rgb: np.ndarray, state: dict) -> dict:
        return self._runner(**{INPUT_NAME: self.preprocess(face_rgb)}, **state)

    def _raw(self, outputs: dict) -> dict:
        raw = {}
        for name, value in outputs.items():
            detail = self._outputs[name]
            if np.dtype(detail["dtype"]).kind in "iu":
                value = dequantize(value, *_tensor_quantization(detail))
            raw[name] = np.asarray(value, np.float64)[0]
        return raw

    def to_result(self, raw: dict, box, source=None, frame=None) -> dict:
        """The result dict (the CLI's JSON line) from raw outputs; floats unrounded."""
        expr = raw["expr_probs"]
        expr_entropy = float(raw["expr_entropy"][0])
        result = {
            "source": source,
            "frame": frame,
            "box": [int(v) for v in box],
            "expression": {
                "label": self.expr_names[int(np.argmax(expr))],
                "probs": {n: float(p) for n, p in zip(self.expr_names, expr, strict=True)},
                "entropy": expr_entropy,
            },
            "au": {
                "probs": {n: float(p) for n, p in zip(self.au_names, raw["au_probs"], strict=True)},
                "entropy": {n: float(h) for n, h in zip(self.au_names, raw["au_entropy"], strict=True)},
            },
            "valence": float(raw["valence"][0]),
            "arousal": float(raw["arousal"][0]),
            "va_entropy": {
                "valence": float(raw["valence_entropy"][0]),
                "arousal": float(raw["arousal_entropy"][0]),
            },
            "uncertain": bool(expr_entropy > self.thresholds["expr_entropy"]),
        }
        if self.kind == "dirichlet":  # its own OOD score (feature density), threshold "ood"
            result["ood_score"] = float(raw["ood_score"][0])
            limit = self.thresholds.get("ood")
            result["ood"] = None if limit is None else bool(result["ood_score"] > limit)
        elif self.kind == "ensemble":
            result["ood_score"] = float(raw["expr_epistemic"][0])
            limit = self.thresholds.get("ood_epistemic")
            result["ood"] = None if limit is None else bool(result["ood_score"] > limit)
        return result

    def predict_face(self, face_rgb: np.ndarray, box=None, source=None, frame=None) -> dict:
        """Result for one already-cropped face (box defaults to the whole face image)."""
        _check_face(face_rgb)
        box = (0, 0, face_rgb.shape[1], face_rgb.shape[0]) if box is None else box
        return self.to_result(self.run(face_rgb), box, source, frame)

    def predict_raw(self, image_rgb: np.ndarray, detect_faces: bool = True) -> list:
        """[(box, raw outputs)] for each face found (or the whole image): box = (x, y, w, h)."""
        _check_face(image_rgb)
        if detect_faces:
            boxes = self.face_detector.detect(image_rgb)
        else:
            boxes = [(0, 0, image_rgb.shape[1], image_rgb.shape[0])]
        return [
            (box, self.run(image_rgb[box[1] : box[1] + box[3], box[0] : box[0] + box[2]])) for box in boxes
        ]

    def predict(self, image_rgb: np.ndarray, detect_faces: bool = True, source=None, frame=None) -> list:
        """One result per face in an RGB uint8 image ([] if none); the whole image when not detecting."""
        return [
            self.to_result(raw, box, source, frame) for box, raw in self.predict_raw(image_rgb, detect_faces)
        ]

    def smooth(self, previous: dict, current: dict, alpha: float) -> dict:
        """Exponential smoothing of raw outputs: p <- alpha p_now + (1 - alpha) p_before.

        Probabilities (and ensemble or Dirichlet aleatoric terms, a Dirichlet's ood_score) are averaged;
        entropies, VA expectations and the epistemic part (total - aleatoric, >= 0) are recomputed
        from the smoothed values.
        """
        mix = {k: alpha * current[k] + (1.0 - alpha) * previous[k] for k in current}
        mix["expr_entropy"] = np.atleast_1d(normalised_entropy(mix["expr_probs"]))
        mix["au_entropy"] = bernoulli_entropy(mix["au_probs"])
        va_h = normalised_entropy(mix["va_probs"])
        va_e = va_expectation(mix["va_probs"], self.va_bin_centres)
        mix["valence_entropy"], mix["arousal_entropy"] = va_h[:1], va_h[1:]
        mix["valence"], mix["arousal"] = va_e[:1], va_e[1:]
        if self.kind in ("ensemble", "dirichlet"):
            mix["expr_epistemic"] = np.maximum(mix["expr_entropy"] - mix["expr_aleatoric"], 0.0)
            mix["au_epistemic"] = np.maximum(mix["au_entropy"] - mix["au_aleatoric"], 0.0)
            mix["va_epistemic"] = np.maximum(va_h - mix["va_aleatoric"], 0.0)
        return mix


def _rounded(value, digits: int):
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v, digits) for v in value]
    return value


def result_to_json(result: dict, digits: int = 4) -> str:
    """One JSON line for a result, floats rounded to ``digits`` decimals."""
    return json.dumps(_rounded(result, digits))
