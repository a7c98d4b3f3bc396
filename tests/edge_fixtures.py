"""Test-only .tflite models made by the real exporter (``emenet_tf.export``) from fixed-weight tiny EMENets.

Each member is ``build_emenet("tiny")`` at 32x32 whose weights are then set from a seeded numpy
generator (numpy's streams, not Keras' initialisers, which may change between TensorFlow versions).
The members go through the exporter's own path: ``ExportModule`` (the contract's post-processed
outputs; ensemble decomposition for ``kind="ensemble"``), ``convert`` (float32, or int8 with the
float post-processing) and the exporter's metadata, with thresholds calibrated on the fixture's
float outputs. So the edge runtime is tested on what the exporter writes. Uses TensorFlow, so only
tests import it.
"""

import json
import os

import cv2
import numpy as np

from edge.faces import haar_cascade_path
from emenet_tf._keras import tf
from emenet_tf.export.convert import convert
from emenet_tf.export.graph import ExportModule
from emenet_tf.export.metadata import calibrate_thresholds, metadata
from emenet_tf.export.tflite import input_spec, run_tflite
from emenet_tf.models import build_emenet

# Whether this OpenCV build can run the Haar fallback detector (its cascade file and the class).
HAVE_HAAR = haar_cascade_path() is not None and hasattr(cv2, "CascadeClassifier")
ENSEMBLE_MEMBERS = 2
KINDS = ("single", "ensemble")
QUANTIZE = ("float", "int8")


def fixed_weight_member(seed: int, image_size: int = 32):
    """A tiny EMENet whose every weight is drawn from ``numpy.random.default_rng(seed)``.

    Kernels ~ N(0, 2 / fan_in) (He: activations keep their scale through the ReLU6 stack), biases
    and BatchNorm shifts / means ~ N(0, 0.1), BatchNorm scales / variances ~ U(0.8, 1.2).
    """
    return set_fixed_weights(build_emenet("tiny", image_size=image_size, seed=seed), seed)


def set_fixed_weights(net, seed: int):
    """Set every weight of ``net`` from ``numpy.random.default_rng(seed)`` (see fixed_weight_member;
    a GRU's recurrent kernel (units, 3 units) ~ N(0, 1 / units)); returns ``net``."""
    rng = np.random.default_rng(seed)
    for var in net.weights:
        shape, name = tuple(var.shape), var.name.split("/")[-1].split(":")[0]
        if name in ("gamma", "moving_variance"):
            value = rng.uniform(0.8, 1.2, shape)
        elif name in ("beta", "moving_mean", "bias"):
            value = rng.normal(0.0, 0.1, shape)
        elif name == "recurrent_kernel":
            value = rng.normal(0.0, np.sqrt(1.0 / shape[0]), shape)
        else:  # kernel (kh, kw, in, out) / (in, out), depthwise_kernel (kh, kw, in, 1)
            fan_in = int(np.prod(shape[:-1])) if name == "kernel" else int(np.prod(shape[:2]))
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        var.assign(value.astype(np.float32))
    return net


def make_stream_fixture(
    out_dir, quantize: str = "float", image_size: int = 32, seed: int = 0, max_gap: int = 2
):
    """A stream model (``export.stream.StreamModule`` of a fixed-weight tiny temporal EMENet) written by
    the exporter's path: ``<out_dir>/stream_<quantize>_<size>.tflite`` and its metadata; returns its path.

    int8: calibrated on the representative images as one stream. Thresholds as ``make_fixture_model``'s.
    """
    from emenet_tf.export.stream import StreamModule
    from emenet_tf.models.temporal import build_temporal_emenet

    out_dir = str(out_dir)
    path = os.path.join(out_dir, f"stream_{quantize}_{image_size}.tflite")
    if _made(path):
        return path
    net = set_fixed_weights(build_temporal_emenet("tiny", image_size=image_size, seed=seed), seed)
    module = StreamModule([net], image_size, max_gap, reset_every=0)  # the tests step the state themselves
    images = representative_images(image_size, seed)
    starts = np.zeros(len(images), bool)
    starts[0] = True
    saved_dir = os.path.join(out_dir, "saved", f"stream_{image_size}_{seed}")
    module.save(saved_dir)
    content = convert(saved_dir)
    no_labels = np.zeros(len(images))
    thresholds = calibrate_thresholds(run_tflite(content, images, starts=starts), no_labels, no_labels)
    if quantize == "int8":
        content = convert(saved_dir, "float_post", module.representative({"image": images, "start": starts}))
    meta = metadata(module.kind, 1, input_spec(content, image_size), thresholds, module.state)
    return _write(path, content, meta)


def make_dirichlet_fixture(out_dir, quantize: str = "int8", image_size: int = 32, seed: int = 0):
    """A Dirichlet student (``kind`` dirichlet: an ensemble's outputs plus ``ood_score``) written by the
    exporter's path: a fixed-weight tiny EMENet built with ``dirichlet=True`` and a feature density
    fitted on the representative images (three made-up classes);
    ``<out_dir>/dirichlet_<quantize>_<size>.tflite`` and its metadata; returns its path."""
    from emenet_tf._keras import keras
    from emenet_tf.density import GaussianDensity, feature_tensor

    out_dir = str(out_dir)
    path = os.path.join(out_dir, f"dirichlet_{quantize}_{image_size}.tflite")
    if _made(path):
        return path
    net = set_fixed_weights(build_emenet("tiny", image_size=image_size, seed=seed, dirichlet=True), seed)
    images = representative_images(image_size, seed)
    features = keras.Model(net.input, feature_tensor(net))(images).numpy()
    density = GaussianDensity.fit(features, np.arange(len(images)) % 3)
    module = ExportModule([net], image_size, density)
    saved_dir = os.path.join(out_dir, "saved", f"dirichlet_{image_size}_{seed}")
    module.save(saved_dir)
    content = convert(saved_dir)
    no_labels = np.zeros(len(images))
    thresholds = calibrate_thresholds(run_tflite(content, images), no_labels, no_labels)
    if quantize == "int8":
        content = convert(saved_dir, "float_post", images)
    meta = metadata(module.kind, 1, input_spec(content, image_size), thresholds)
    return _write(path, content, meta)


def _made(path: str) -> bool:
    """The model and its metadata are already there (made earlier in the same folder)."""
    return os.path.isfile(path) and os.path.isfile(path[: -len(".tflite")] + ".json")


def _write(path: str, content: bytes, meta: dict) -> str:
    """Write a .tflite file and its metadata JSON beside it; return the model's path."""
    with open(path, "wb") as f:
        f.write(content)
    with open(path[: -len(".tflite")] + ".json", "w") as f:
        json.dump(meta, f, indent=2)
    return path


def representative_images(image_size: int, seed: int, count: int = 24) -> np.ndarray:
    """Calibration images (N, S, S, 3) in [0, 1]: uniform noise, flat colours and smooth gradients."""
    rng = np.random.default_rng(seed + 1)
    ramp = np.linspace(0.0, 1.0, image_size, dtype=np.float32)
    images = []
    for i in range(count):
        if i % 3 == 0:
            img = rng.uniform(0, 1, (image_size, image_size, 3))
        elif i % 3 == 1:
            img = np.broadcast_to(rng.uniform(0, 1, 3), (image_size, image_size, 3))
        else:
            img = np.stack([np.add.outer(ramp, ramp) / 2.0] * 3, axis=-1) * rng.uniform(0.3, 1.0, 3)
        images.append(np.asarray(img, np.float32))
    return np.stack(images)


def _network(out_dir: str, kind: str, image_size: int, seed: int) -> tuple:
    """(ExportModule, SavedModel folder, float32 flatbuffer) of a fixture network, made once per
    (kind, size, seed) and cached under ``out_dir/saved/`` (conversion takes seconds)."""
    members = ENSEMBLE_MEMBERS if kind == "ensemble" else 1
    module = ExportModule([fixed_weight_member(seed + k, image_size) for k in range(members)], image_size)
    saved_dir = os.path.join(out_dir, "saved", f"{kind}_{image_size}_{seed}")
    float_path = os.path.join(saved_dir, "float32.tflite")
    if not os.path.isfile(float_path):
        module.save(saved_dir)
        with open(float_path, "wb") as f:
            f.write(convert(saved_dir))
    with open(float_path, "rb") as f:
        return module, saved_dir, f.read()


def shared_dir(tmp_path_factory):
    """The session's one folder of fixture models: every edge test module that asks for a model from
    it gets the file another module already made (``make_fixture_model`` makes each file once)."""
    folder = tmp_path_factory.getbasetemp() / "edge_models"
    folder.mkdir(exist_ok=True)
    return folder


def make_fixture_model(
    out_dir,
    kind: str = "single",
    image_size: int = 32,
    quantize: str = "float",
    seed: int = 0,
    quantized_outputs: bool = False,
):
    """Write ``<out_dir>/<kind>_<quantize>_<size>[_qout].tflite`` and its metadata JSON; return its path.

    quantize="int8": the exporter's int8 model (uint8 input, float post-processing).
    ``quantized_outputs=True`` (int8 only): the exporter's ``quantize="full"`` model (every op int8)
    with uint8 output tensors, which the contract allows, to test dequantisation.
    The thresholds are calibrated on the float network's outputs on the representative images.
    A model already in ``out_dir`` (same name) is returned as it is.
    """
    if kind not in KINDS or quantize not in QUANTIZE:
        raise ValueError(f"kind must be single|ensemble and quantize float|int8, got {kind!r}, {quantize!r}")
    if quantized_outputs and quantize != "int8":
        raise ValueError("quantized_outputs needs quantize='int8'")
    out_dir = str(out_dir)
    suffix = "_qout" if quantized_outputs else ""
    path = os.path.join(out_dir, f"{kind}_{quantize}_{image_size}{suffix}.tflite")
    if _made(path):  # made earlier in this folder (``shared_dir``: by another test module)
        return path
    module, saved_dir, content = _network(out_dir, kind, image_size, seed)
    representative = representative_images(image_size, seed)
    no_labels = np.zeros(len(representative))  # masks 0: the thresholds' "target" text says n/a
    thresholds = calibrate_thresholds(run_tflite(content, representative), no_labels, no_labels)
    if quantized_outputs:  # every op int8 (the post-processing too), outputs uint8
        content = convert(saved_dir, "full", representative, output_type=tf.uint8)
    elif quantize == "int8":
        content = convert(saved_dir, "float_post", representative)
    meta = metadata(module.kind, len(module.members), input_spec(content, image_size), thresholds)
    return _write(path, content, meta)


def draw_face(size: int = 96) -> np.ndarray:
    """A cartoon face (skin ellipse, eyes, brows, nose, mouth) on a grey background: RGB uint8."""
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


def write_golden_images(folder, images: dict | None = None) -> str:
    """Write ``images`` (default ``golden_images()``) as PNG files into ``folder``; return the folder."""
    os.makedirs(folder, exist_ok=True)
    for name, rgb in (golden_images() if images is None else images).items():
        cv2.imwrite(os.path.join(str(folder), name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return str(folder)


def astronaut(side: int = 256) -> np.ndarray:
    """scikit-image's astronaut photo (Eileen Collins, NASA: public domain) shrunk to side x side with
    INTER_AREA: RGB uint8. Needs scikit-image (a test calls ``pytest.importorskip("skimage")`` first)."""
    from skimage import data

    return cv2.resize(data.astronaut(), (side, side), interpolation=cv2.INTER_AREA)


def golden_detection_images() -> dict:
    """The golden images run with face detection (BlazeFace), by file name: one real face."""
    return {"g5_astronaut.png": astronaut(256)}


def golden_cli_lines(models: dict, image_dir, detection_dir=None) -> list:
    """Run ``edge.predict`` over the golden images with each model: ``image_dir`` (if given) with
    --no_face_detection, ``detection_dir`` (if given) with BlazeFace.

    Returns the parsed JSON lines with ``source`` cut to the file name and a ``model`` key added.
    """
    lines = []
    for name, path in sorted(models.items()):
        runs = [["--no_face_detection", str(image_dir)]] if image_dir is not None else []
        runs += [["--detector", "blazeface", str(detection_dir)]] if detection_dir is not None else []
        for args in runs:
            lines += [{"model": name, **record} for record in _cli_records(["--model", str(path), *args])]
    return lines


def _cli_records(argv: list) -> list:
    """``edge.predict.main(argv)``'s JSON lines, ``source`` cut to the file name (RuntimeError if it fails)."""
    import contextlib
    import io

    from edge import predict

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = predict.main(argv)
    if code != 0:
        raise RuntimeError(f"edge.predict exited {code}: {argv}")
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    return [{**r, "source": os.path.basename(r["source"])} for r in records]


def rendered_face(folder) -> np.ndarray:
    """A rendered synthetic face (seed 0, the first training frame, 112x112 RGB uint8), written by
    the real benchmark generator into ``folder``."""
    from emenet_tf.data import synthetic

    synthetic.generate(str(folder), seed=0, train_videos=1, val_videos=1, frames_per_video=3, ood_images=1)
    frame = sorted((folder / "cropped_aligned").glob("syn-train-*/00001.jpg"))[0]
    return cv2.cvtColor(cv2.imread(str(frame)), cv2.COLOR_BGR2RGB)


def face_on_grey_canvas(folder) -> np.ndarray:
    """``rendered_face(folder)`` enlarged to 160 px and placed at (80, 40) on a 320x240 grey canvas (RGB)."""
    canvas = np.full((240, 320, 3), 90, np.uint8)
    canvas[40:200, 80:240] = cv2.resize(rendered_face(folder), (160, 160), interpolation=cv2.INTER_CUBIC)
    return canvas
