"""Test-only builder of tiny .tflite models that follow the exported-model contract (ARCHITECTURE.md).

The real exporter is ``emenet_tf/export.py``; these fixtures are a few-kilobyte stand-in with fixed
weights so that ``edge/`` can be tested fast: a 3x3 conv, global average pooling and the image's mean
colour feed one dense layer per member, whose logits become the contract's named, post-processed
outputs (probabilities, normalised entropies, VA expectations; ensemble decomposition for
``kind="ensemble"``). Uses TensorFlow, so only tests import it.
"""

import json
import os
import tempfile

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from edge.contract import ENSEMBLE_OUTPUTS, FORMAT, SIGNATURE, SINGLE_OUTPUTS
from emenet_tf._keras import tf
from emenet_tf.labels import AU_NAMES, EXPR_NAMES, NUM_VA_BINS, va_bin_centres

ENSEMBLE_MEMBERS = 3
_FILTERS = 8
_NUM_LOGITS = len(EXPR_NAMES) + len(AU_NAMES) + 2 * NUM_VA_BINS
_LOG_EPS = 1e-7  # inside the log: p log(p + eps) differs from p log p by < eps


def _categorical_entropy(probs):
    """Normalised entropy over the last axis: -sum_k p_k log(p_k + eps) / log K (keeps the axis)."""
    num = probs.shape[-1]
    h = -tf.reduce_sum(probs * tf.math.log(probs + _LOG_EPS), axis=-1, keepdims=True)
    return h / np.log(num)


def _bernoulli_entropy(p):
    """Elementwise normalised Bernoulli entropy: -(p log p + (1-p) log(1-p)) / log 2 (eps in the logs)."""
    q = 1.0 - p
    h = -(p * tf.math.log(p + _LOG_EPS) + q * tf.math.log(q + _LOG_EPS))
    return h / np.log(2.0)


class _FixtureNet(tf.Module):
    """Members of fixed-seed weights; ``serve`` maps ``image`` to the contract's named outputs."""

    def __init__(self, kind: str, image_size: int, seed: int):
        super().__init__()
        rng = np.random.default_rng(seed)
        members = ENSEMBLE_MEMBERS if kind == "ensemble" else 1
        self.kind = kind
        self.centres = tf.constant(va_bin_centres(NUM_VA_BINS))
        self.kernels, self.biases, self.dense = [], [], []
        for _ in range(members):
            self.kernels.append(tf.constant(rng.normal(0, 0.5, (3, 3, 3, _FILTERS)).astype(np.float32)))
            self.biases.append(tf.constant(rng.normal(0, 0.1, (_FILTERS,)).astype(np.float32)))
            self.dense.append(tf.constant(rng.normal(0, 0.5, (_FILTERS + 3, _NUM_LOGITS)).astype(np.float32)))
        self.serve = tf.function(
            self._serve, input_signature=[tf.TensorSpec((1, image_size, image_size, 3), tf.float32)]
        )

    def _member_probs(self, image, m):
        """One member: (expr (1,7), au (1,12), va (1,2,20)) probabilities."""
        x = tf.nn.relu(tf.nn.conv2d(image, self.kernels[m], strides=2, padding="SAME") + self.biases[m])
        colour = tf.reduce_mean(image, axis=[1, 2]) - 0.5
        feats = tf.concat([tf.reduce_mean(x, axis=[1, 2]), 4.0 * colour], axis=-1)
        logits = tf.matmul(feats, self.dense[m])
        n_e, n_a = len(EXPR_NAMES), len(AU_NAMES)
        expr = tf.nn.softmax(logits[:, :n_e])
        au = tf.sigmoid(logits[:, n_e : n_e + n_a])
        va = tf.nn.softmax(tf.reshape(logits[:, n_e + n_a :], (-1, 2, NUM_VA_BINS)), axis=-1)
        return expr, au, va

    def _serve(self, image):
        members = [self._member_probs(image, m) for m in range(len(self.kernels))]
        expr = tf.add_n([p[0] for p in members]) / len(members)
        au = tf.add_n([p[1] for p in members]) / len(members)
        va = tf.add_n([p[2] for p in members]) / len(members)
        va_expect = tf.reduce_sum(va * self.centres, axis=-1)  # (1, 2)
        va_entropy = _categorical_entropy(va)[..., 0]  # (1, 2)
        out = {
            "expr_probs": expr,
            "expr_entropy": _categorical_entropy(expr),
            "au_probs": au,
            "au_entropy": _bernoulli_entropy(au),
            "valence": va_expect[:, :1],
            "arousal": va_expect[:, 1:],
            "valence_entropy": va_entropy[:, :1],
            "arousal_entropy": va_entropy[:, 1:],
            "va_probs": va,
        }
        if self.kind == "ensemble":
            out.update(self._decomposition(members, out))
        return out

    @staticmethod
    def _decomposition(members, out):
        """Aleatoric = mean member entropy; epistemic = total - aleatoric (clipped at 0)."""
        n = len(members)
        expr_al = tf.add_n([_categorical_entropy(p[0]) for p in members]) / n
        au_al = tf.add_n([_bernoulli_entropy(p[1]) for p in members]) / n
        va_al = tf.add_n([_categorical_entropy(p[2])[..., 0] for p in members]) / n
        va_total = tf.concat([out["valence_entropy"], out["arousal_entropy"]], axis=-1)
        return {
            "expr_aleatoric": expr_al,
            "expr_epistemic": tf.nn.relu(out["expr_entropy"] - expr_al),
            "au_aleatoric": au_al,
            "au_epistemic": tf.nn.relu(out["au_entropy"] - au_al),
            "va_aleatoric": va_al,
            "va_epistemic": tf.nn.relu(va_total - va_al),
        }


def _representative_images(image_size: int, seed: int, count: int = 24):
    """Calibration images: uniform noise, flat colours and smooth gradients, fixed seed."""
    rng = np.random.default_rng(seed + 1)
    ramp = np.linspace(0.0, 1.0, image_size, dtype=np.float32)
    for i in range(count):
        if i % 3 == 0:
            img = rng.uniform(0, 1, (image_size, image_size, 3)).astype(np.float32)
        elif i % 3 == 1:
            img = np.broadcast_to(rng.uniform(0, 1, 3).astype(np.float32), (image_size, image_size, 3))
        else:
            img = np.stack([np.add.outer(ramp, ramp) / 2.0] * 3, axis=-1) * rng.uniform(0.3, 1.0, 3)
        yield [np.asarray(img, np.float32)[None]]


def _convert(saved_dir: str, quantize: str, image_size: int, seed: int, quantized_outputs: bool) -> bytes:
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_dir, signature_keys=[SIGNATURE])
    if quantize == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: _representative_images(image_size, seed)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8 if quantized_outputs else tf.float32
    return converter.convert()


def _input_spec(tflite_path: str, image_size: int) -> dict:
    interpreter = Interpreter(model_path=tflite_path)
    detail = interpreter.get_signature_runner(SIGNATURE).get_input_details()["image"]
    scale, zero_point = detail["quantization"]
    quantised = detail["dtype"] != np.float32
    return {
        "name": "image",
        "size": image_size,
        "channels": "RGB",
        "dtype": np.dtype(detail["dtype"]).name,
        "range": [0, 1],
        "scale": float(scale) if quantised else None,
        "zero_point": int(zero_point) if quantised else None,
    }


def make_metadata(kind: str, input_spec: dict) -> dict:
    """The metadata JSON of a fixture model, in the contract's schema."""
    return {
        "format": FORMAT,
        "kind": kind,
        "members": ENSEMBLE_MEMBERS if kind == "ensemble" else 1,
        "input": input_spec,
        "outputs": list(ENSEMBLE_OUTPUTS if kind == "ensemble" else SINGLE_OUTPUTS),
        "expr_names": list(EXPR_NAMES),
        "au_names": list(AU_NAMES),
        "va_bin_centres": [float(c) for c in va_bin_centres(NUM_VA_BINS)],
        "thresholds": {
            "expr_entropy": 0.5,
            "ood_epistemic": 0.1 if kind == "ensemble" else None,
            "target": "fixture: arbitrary values for tests",
        },
    }


def make_fixture_model(
    out_dir,
    kind: str = "single",
    image_size: int = 32,
    quantize: str = "float",
    seed: int = 0,
    quantized_outputs: bool = False,
):
    """Write ``<out_dir>/<kind>_<quantize>_<size>[_qout].tflite`` and its metadata JSON; return its path.

    ``quantized_outputs=True`` (int8 only) leaves the outputs as uint8 tensors, to test dequantisation.
    """
    if kind not in ("single", "ensemble") or quantize not in ("float", "int8"):
        raise ValueError(f"kind must be single|ensemble and quantize float|int8, got {kind!r}, {quantize!r}")
    if quantized_outputs and quantize != "int8":
        raise ValueError("quantized_outputs needs quantize='int8'")
    os.makedirs(out_dir, exist_ok=True)
    net = _FixtureNet(kind, image_size, seed)
    with tempfile.TemporaryDirectory() as saved_dir:
        tf.saved_model.save(net, saved_dir, signatures={SIGNATURE: net.serve})
        flatbuffer = _convert(saved_dir, quantize, image_size, seed, quantized_outputs)
    suffix = "_qout" if quantized_outputs else ""
    path = os.path.join(str(out_dir), f"{kind}_{quantize}_{image_size}{suffix}.tflite")
    with open(path, "wb") as f:
        f.write(flatbuffer)
    meta = make_metadata(kind, _input_spec(path, image_size))
    with open(path[: -len(".tflite")] + ".json", "w") as f:
        json.dump(meta, f, indent=2)
    return path


def draw_face(size: int = 96) -> np.ndarray:
    """A cartoon face (skin ellipse, eyes, brows, nose, mouth) on a grey background: RGB uint8."""
    import cv2

    img = np.full((size, size, 3), 90, np.uint8)
    c, s = size // 2, size / 96.0
    cv2.ellipse(img, (c, c), (int(30 * s), int(40 * s)), 0, 0, 360, (224, 172, 140), -1)
    for dx in (-12, 12):
        eye = (c + int(dx * s), c - int(10 * s))
        cv2.ellipse(img, eye, (int(6 * s), int(3 * s)), 0, 0, 360, (255, 255, 255), -1)
        cv2.circle(img, eye, max(1, int(2 * s)), (40, 30, 20), -1)
        cv2.line(
            img,
            (eye[0] - int(7 * s), eye[1] - int(7 * s)),
            (eye[0] + int(7 * s), eye[1] - int(8 * s)),
            (60, 40, 30),
            2,
        )
    cv2.line(img, (c, c - int(4 * s)), (c - int(3 * s), c + int(8 * s)), (170, 120, 100), 2)
    cv2.ellipse(img, (c, c + int(20 * s)), (int(12 * s), int(5 * s)), 0, 0, 180, (150, 50, 60), 2)
    return img


def golden_images() -> dict:
    """Deterministic RGB test images by file name (PNG keeps them exact): noise, flat, ramps, a face."""
    rng = np.random.default_rng(3)
    ramp = np.linspace(0, 255, 48)
    return {
        "g0_noise.png": rng.integers(0, 256, (40, 48, 3), dtype=np.uint8),
        "g1_flat.png": np.full((32, 32, 3), (200, 120, 90), np.uint8),
        "g2_ramp.png": (ramp[None, :, None] * np.ones((40, 1, 3))).astype(np.uint8),
        "g3_colour_ramp.png": (ramp[:, None, None] * np.array([1.0, 0.5, 0.2]) * np.ones((1, 48, 1))).astype(
            np.uint8
        ),
        "g4_face.png": draw_face(64),
    }


def write_golden_images(folder) -> str:
    """Write ``golden_images()`` as PNG files into ``folder``; return the folder."""
    import cv2

    os.makedirs(folder, exist_ok=True)
    for name, rgb in golden_images().items():
        cv2.imwrite(os.path.join(str(folder), name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return str(folder)


def golden_cli_lines(models: dict, image_dir) -> list:
    """Run ``edge.predict`` (--no_face_detection) over the golden images with each model.

    Returns the parsed JSON lines with ``source`` cut to the file name and a ``model`` key added.
    """
    import contextlib
    import io

    from edge import predict

    lines = []
    for name, path in sorted(models.items()):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = predict.main(["--model", str(path), "--no_face_detection", str(image_dir)])
        if code != 0:
            raise RuntimeError(f"edge.predict exited {code} on {path}")
        for line in out.getvalue().splitlines():
            record = json.loads(line)
            record["source"] = os.path.basename(record["source"])
            lines.append({"model": name, **record})
    return lines
