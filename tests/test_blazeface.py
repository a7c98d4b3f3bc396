"""edge.blazeface: anchors, decoding, weighted NMS, the letterbox, and real detections on public photos.

The photos come from scikit-image's bundled public-domain images (requirements-dev: scikit-image==0.26.0).
Golden numbers were measured once with ai-edge-litert 2.3.0 and OpenCV 4.14 on x86. LiteRT's float32
kernels differ between CPUs (SIMD width, FMA) by ~1e-5 relative in the raw outputs, i.e. hundredths of a
pixel here; the tolerances below are looser because OpenCV's resize may round a uint8 pixel differently
across versions, which moves a detection by a fraction of a pixel of the model's 128/192 px input.
"""

import ast
import hashlib
import math
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

from edge import blazeface
from edge.blazeface import BlazeFace, decode, weighted_nms
from edge.errors import EdgeError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Measured on skimage.data.astronaut() (512 x 512) at the default thresholds: box (x, y, w, h), score,
# keypoints in KEYPOINT_NAMES order (pixels, pixel column j spans [j, j + 1)).
GOLDEN = {
    "full": {
        "box": (172.10, 66.26, 105.86, 105.85),
        "score": 0.9065,
        "keypoints": [
            (202.01, 102.72),
            (247.99, 106.11),
            (222.85, 132.37),
            (220.81, 148.92),
            (176.72, 105.27),
            (271.61, 112.05),
        ],
    },
    "short": {
        "box": (178.07, 80.91, 94.07, 94.07),
        "score": 0.9226,
        "keypoints": [
            (203.87, 100.81),
            (247.97, 108.43),
            (221.96, 124.67),
            (218.90, 145.49),
            (177.86, 109.24),
            (271.12, 124.74),
        ],
    },
}
# Golden boxes / keypoints: 1.5 px of 512 (see the module docstring; the CPU-to-CPU spread is ~0.05 px).
PIXEL_TOL = 1.5
SCORE_TOL = 0.01


@pytest.fixture(scope="module")
def detectors():
    return {kind: BlazeFace(kind, num_threads=1) for kind in ("full", "short")}


def photo(name: str) -> np.ndarray:
    """A scikit-image sample photo as uint8 RGB (grey ones repeated); skips the test without scikit-image."""
    # For the lead: requirements-dev.txt needs  scikit-image==0.26.0
    data = pytest.importorskip("skimage.data")
    image = getattr(data, name)()
    return np.ascontiguousarray(np.repeat(image[..., None], 3, 2) if image.ndim == 2 else image)


@pytest.fixture(scope="module")
def astronaut():
    return photo("astronaut")


# ---------------------------------------------------------------- anchors, decoding, NMS


def test_anchor_counts_centres_and_per_cell_order():
    short, full = blazeface.anchors("short"), blazeface.anchors("full")
    assert short.shape == (896, 2) and full.shape == (2304, 2)
    # short: 16x16 grid, 2 anchors a cell (indices 0..511), then 8x8 grid, 6 a cell (512..895).
    np.testing.assert_array_equal(short[0], [1 / 32, 1 / 32])
    np.testing.assert_array_equal(short[1], short[0])  # the anchors of one cell are consecutive
    np.testing.assert_array_equal(short[2], [3 / 32, 1 / 32])  # next column
    np.testing.assert_array_equal(short[32], [1 / 32, 3 / 32])  # next row (16 cells x 2)
    np.testing.assert_array_equal(short[511], [31 / 32, 31 / 32])
    np.testing.assert_array_equal(short[512:518], np.tile([1 / 16, 1 / 16], (6, 1)))
    np.testing.assert_array_equal(short[518], [3 / 16, 1 / 16])
    np.testing.assert_array_equal(short[512 + 8 * 6], [1 / 16, 3 / 16])
    np.testing.assert_array_equal(short[-1], [15 / 16, 15 / 16])
    # full: one 48x48 grid, one anchor a cell.
    np.testing.assert_allclose(full[0], [1 / 96, 1 / 96], rtol=1e-6)
    np.testing.assert_allclose(full[1], [3 / 96, 1 / 96], rtol=1e-6)
    np.testing.assert_allclose(full[48], [1 / 96, 3 / 96], rtol=1e-6)
    np.testing.assert_allclose(full[-1], [95 / 96, 95 / 96], rtol=1e-6)
    assert len(np.unique(full, axis=0)) == 2304 and len(np.unique(short, axis=0)) == 16 * 16 + 8 * 8


def test_decode_hand_made_regressors():
    anchors = np.array([[0.25, 0.5], [0.75, 0.125]], np.float32)
    regressors = np.zeros((1, 2, 16), np.float32)
    regressors[0, 0, :4] = [12.8, -6.4, 32.0, 64.0]  # 128 px input: +0.1, -0.05, w 0.25, h 0.5
    regressors[0, 0, 4:] = np.arange(12) * 1.28  # keypoint k: (2k, 2k + 1) * 0.01 from the anchor
    regressors[0, 1, :4] = [0.0, 0.0, 12.8, 25.6]
    logits = np.array([[[0.0], [2.0]]], np.float32)
    boxes, keypoints, scores = decode(regressors, logits, anchors, 128)
    # float32 arithmetic on exact binary fractions times 1/128: errors ~1e-7.
    np.testing.assert_allclose(boxes[0], [0.35 - 0.125, 0.45 - 0.25, 0.35 + 0.125, 0.45 + 0.25], atol=1e-6)
    np.testing.assert_allclose(boxes[1], [0.70, 0.025, 0.80, 0.225], atol=1e-6)
    expected = np.array([0.25, 0.5]) + np.arange(12).reshape(6, 2) * 0.01
    np.testing.assert_allclose(keypoints[0], expected, atol=1e-6)
    np.testing.assert_allclose(keypoints[1], np.tile([0.75, 0.125], (6, 1)), atol=1e-6)
    np.testing.assert_allclose(scores, [0.5, 1 / (1 + math.exp(-2.0))], rtol=1e-6)
    with pytest.raises(EdgeError, match="anchors"):
        decode(regressors, logits, anchors[:1], 128)


def test_sigmoid_clips_logits_at_100():
    with np.errstate(over="raise", under="ignore"):  # exp(1000) would overflow without the clip
        scores = blazeface.sigmoid_scores([-1000.0, -100.0, 0.0, 100.0, 1000.0])
    assert scores.dtype == np.float32
    assert scores[0] == scores[1] == np.float32(1.0 / (1.0 + math.exp(100.0))) > 0
    assert scores[2] == 0.5 and scores[3] == scores[4] == 1.0


def test_weighted_nms_averages_a_cluster_around_the_top_detection():
    boxes = np.array(
        [
            [0.0, 0.0, 1.0, 1.0],  # A, 0.9: the top one
            [0.1, 0.0, 1.1, 1.0],  # B, 0.6: IoU(A) = 0.9 / 1.1 > 0.3 -> merged into A
            [2.0, 2.0, 3.0, 3.0],  # C, 0.8: apart
            [0.6, 0.0, 1.6, 1.0],  # D, 0.5: IoU(A) = 0.4 / 1.6 = 0.25 -> stays (IoU(B) = 0.33 does not count)
        ]
    )
    keypoints = np.zeros((4, 6, 2))
    keypoints[:, :, 0] = np.array([1.0, 2.0, 3.0, 4.0])[:, None]
    scores = np.array([0.9, 0.6, 0.8, 0.5])
    out_boxes, out_points, out_scores = weighted_nms(boxes, keypoints, scores, 0.3)
    # exact decimals through float64 sums, returned as float32: 1e-6.
    np.testing.assert_allclose(out_scores, [0.9, 0.8, 0.5], atol=1e-6)
    np.testing.assert_allclose(
        out_boxes[0], [0.06 / 1.5, 0.0, 1.56 / 1.5, 1.0], atol=1e-6
    )  # (0.9 A + 0.6 B) / 1.5
    np.testing.assert_allclose(out_boxes[1:], boxes[[2, 3]], atol=1e-6)
    np.testing.assert_allclose(out_points[:, 0, 0], [(0.9 * 1 + 0.6 * 2) / 1.5, 3.0, 4.0], atol=1e-6)
    empty = weighted_nms(np.zeros((0, 4)), np.zeros((0, 6, 2)), np.zeros(0))
    assert [a.shape for a in empty] == [(0, 4), (0, 6, 2), (0,)]


# ---------------------------------------------------------------- the letterbox


@pytest.mark.parametrize("width, height", [(300, 100), (100, 300), (257, 131)])
def test_letterbox_centres_the_image_and_maps_back(width, height):
    image = np.full((height, width, 3), 60, np.uint8)
    x0, y0 = width // 2, height // 3
    image[y0 : y0 + 30, x0 : x0 + 20] = 255
    square, box = blazeface.letterbox(image, 128)
    assert square.shape == (128, 128, 3)
    inside = square.max(axis=2) > 0
    rows, cols = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
    # The image spans the whole of its longer axis and sits centred on the other (pad split evenly,
    # black); the shorter axis keeps the aspect ratio.
    long_axis, short_axis = (cols, rows) if width > height else (rows, cols)
    assert (long_axis[0], long_axis[-1]) == (0, 127)
    assert abs(short_axis[0] - (127 - short_axis[-1])) <= 1
    assert len(short_axis) == len(np.flatnonzero(np.diff(short_axis) == 1)) + 1  # one band, no holes
    assert abs(len(short_axis) - 128 * min(width, height) / max(width, height)) <= 0.5
    # The bright patch's intensity centroid maps back to its centre: INTER_AREA keeps centroids, so
    # only the 1/128 rounding of the resized size is left (< 0.5 source px).
    weight = np.clip(square[..., 0].astype(np.float64) - 60, 0, None)
    ys, xs = np.mgrid[0:128, 0:128] + 0.5
    centroid = np.array([(weight * xs).sum(), (weight * ys).sum()]) / weight.sum() / 128
    np.testing.assert_allclose(box.to_image(centroid), [x0 + 10, y0 + 15], atol=0.5)


@pytest.mark.parametrize(
    "width, height, expected",
    [
        # 128 px input: factor 0.2 -> the image is 128 x 64 at y 32 (wide) or 64 x 128 at x 32 (tall).
        # One anchor (row 5, col 9 of the 16x16 grid: centre (9.5, 5.5) / 16 = (76, 44) input px)
        # regresses centre offset (3.2, 12.8), size (32, 48) -> box x 63.2..95.2, y 32.8..80.8.
        (640, 320, (316.0, 4.0, 160.0, 240.0)),  # x / 0.2, (y - 32) / 0.2
        (320, 640, (156.0, 164.0, 160.0, 240.0)),  # (x - 32) / 0.2, y / 0.2
    ],
)
def test_detect_maps_the_letterbox_back_to_image_pixels(detectors, monkeypatch, width, height, expected):
    detector = detectors["short"]
    index = (5 * 16 + 9) * 2
    regressors = np.zeros((896, 16), np.float32)
    regressors[index, :4] = [3.2, 12.8, 32.0, 48.0]
    regressors[index, 4:6] = [-12.8, -6.4]  # right eye: anchor + (-12.8, -6.4) = (63.2, 37.6) input px
    logits = np.full(896, -20.0, np.float32)
    logits[index] = 3.0
    monkeypatch.setattr(detector, "_raw", lambda tensor: (regressors, logits))
    (found,) = detector.detect(np.zeros((height, width, 3), np.uint8))
    pad_x, pad_y = (128 - 0.2 * width) / 2, (128 - 0.2 * height) / 2
    # float32 regressors over exact decimals: ~1e-5 px after / 0.2.
    np.testing.assert_allclose(found.box, expected, atol=1e-3)
    np.testing.assert_allclose(found.keypoints[0], [(63.2 - pad_x) / 0.2, (37.6 - pad_y) / 0.2], atol=1e-3)
    assert found.score == pytest.approx(1 / (1 + math.exp(-3.0)), rel=1e-6)


# ---------------------------------------------------------------- real photos


@pytest.mark.parametrize("kind", ["full", "short"])
def test_astronaut_golden_face(detectors, astronaut, kind):
    found = detectors[kind].detect(astronaut)
    assert len(found) == 1
    face, golden = found[0], GOLDEN[kind]
    np.testing.assert_allclose(face.box, golden["box"], atol=PIXEL_TOL)
    np.testing.assert_allclose(face.keypoints, golden["keypoints"], atol=PIXEL_TOL)
    assert face.score == pytest.approx(golden["score"], abs=SCORE_TOL)
    x, y, w, h = face.box
    for name in ("right_eye", "left_eye", "nose_tip", "mouth_centre"):
        px, py = face.keypoint(name)
        assert x < px < x + w and y < py < y + h, name
    # The subject's right eye is on the image's left; eyes above the nose, the nose above the mouth.
    right, left, nose, mouth = (face.keypoint(n) for n in blazeface.KEYPOINT_NAMES[:4])
    assert right[0] + 30 < left[0] and max(right[1], left[1]) < nose[1] < mouth[1]
    assert face.keypoint("right_ear")[0] < right[0] and face.keypoint("left_ear")[0] > left[0]


@pytest.mark.parametrize("name", ["coffee", "brick", "grass"])
def test_no_face_in_photos_without_one(detectors, name):
    image = photo(name)
    for detector in detectors.values():
        assert detector.detect(image) == []


def _affine_into_canvas(image, angle_deg, scale, size, centre):
    """``image`` turned by angle_deg (counter-clockwise on screen), scaled, its centre put at ``centre``
    of a black canvas (width, height); returns the canvas and the 3x3 map of pixel coordinates
    (continuous: pixel j spans [j, j + 1))."""
    height, width = image.shape[:2]
    turn = np.vstack([cv2.getRotationMatrix2D((0, 0), angle_deg, scale), [0, 0, 1]])
    move = np.array([[1, 0, centre[0]], [0, 1, centre[1]], [0, 0, 1.0]])
    matrix = move @ turn @ np.array([[1, 0, -width / 2], [0, 1, -height / 2], [0, 0, 1.0]])
    half = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1.0]])  # cv2 puts pixel centres at integers
    cv_matrix = (np.linalg.inv(half) @ matrix @ half)[:2]
    return cv2.warpAffine(image, cv_matrix, size, flags=cv2.INTER_AREA), matrix


@pytest.mark.parametrize("angle", [20, -20])
def test_turned_smaller_offset_face_maps_back_to_the_same_facial_points(detectors, astronaut, angle):
    canvas, matrix = _affine_into_canvas(astronaut, angle, 0.5, (400, 360), (190, 175))
    found = detectors["full"].detect(canvas)
    assert len(found) == 1
    expected = np.asarray(GOLDEN["full"]["keypoints"]) @ matrix[:2, :2].T + matrix[:2, 2]
    eye_distance = np.linalg.norm(expected[1] - expected[0])  # 22.6 px
    got = found[0].keypoints
    # Keypoints of a face 1/4 the area, turned: the model's own error, measured 0.02-0.27 eye distance
    # for eyes, nose and mouth (deterministic per input; a letterbox or rotation bug moves them by more).
    errors = np.linalg.norm(got[:4] - expected[:4], axis=1) / eye_distance
    assert errors.max() < 0.4, errors
    angle_got = math.degrees(math.atan2(got[1, 1] - got[0, 1], got[1, 0] - got[0, 0]))
    angle_expected = math.degrees(math.atan2(*(expected[1] - expected[0])[::-1]))  # 4.2 - angle
    assert abs(angle_got - angle_expected) < 7.0, (angle_got, angle_expected)  # measured 2.1 and 4.3


@pytest.mark.parametrize("size, offset", [((768, 512), (200, 0)), ((512, 768), (0, 200))])
def test_face_in_a_wide_and_a_tall_canvas(detectors, astronaut, size, offset):
    canvas = np.zeros((size[1], size[0], 3), np.uint8)
    canvas[offset[1] : offset[1] + 512, offset[0] : offset[0] + 512] = astronaut
    found = detectors["full"].detect(canvas)
    assert len(found) == 1
    expected = np.asarray(GOLDEN["full"]["keypoints"]) + offset
    # The face is 2/3 as large in the model's input as in the golden test: the model's own keypoint
    # error, measured up to 4 px (0.09 eye distance) for eyes, nose and mouth; the pad is 32 input px
    # (128 image px), so a letterbox mistake would be far outside.
    np.testing.assert_allclose(found[0].keypoints[:4], expected[:4], atol=8.0)
    np.testing.assert_allclose(found[0].box[:2], np.asarray(GOLDEN["full"]["box"][:2]) + offset, atol=8.0)


def test_rendered_faces_are_found(detectors):
    """Cartoon faces of the synthetic benchmark (emenet_tf.data.render), 112 px on a 224 px canvas."""
    from emenet_tf.data import render

    rng = np.random.default_rng(0)
    for _ in range(10):
        ident = render.identity(rng)
        action_units = rng.uniform(0, 1, (1, 12)) * (rng.random((1, 12)) < 0.3)
        _, face = next(render.video_frames(action_units, ident, rng, np.zeros(1, bool), 112))
        canvas = np.empty((224, 224, 3), np.uint8)
        canvas[:] = face[0, 0]  # the background's colour at the corner
        canvas[56:168, 56:168] = face
        found = detectors["full"].detect(canvas)
        assert len(found) == 1
        x, y, w, h = found[0].box
        right, left = found[0].keypoint("right_eye"), found[0].keypoint("left_eye")
        assert right[0] < left[0] and 56 < x + w / 2 < 168 and 56 < y + h / 2 < 168


# ---------------------------------------------------------------- API and errors


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((10, 10), np.uint8),
        np.zeros((10, 10, 4), np.uint8),
        np.zeros((10, 10, 3), np.float32),
        np.zeros((0, 10, 3), np.uint8),
        [[0, 0, 0]],
    ],
)
def test_bad_images_are_refused_in_one_line(detectors, bad):
    with pytest.raises(EdgeError, match=r"uint8 \(H, W, 3\) RGB") as info:
        detectors["short"].detect(bad)
    assert "\n" not in str(info.value)


def test_models_and_kinds():
    with pytest.raises(EdgeError, match="unknown BlazeFace model kind"):
        BlazeFace("medium")
    with pytest.raises(EdgeError, match="2304 anchors"):
        BlazeFace("full", model=blazeface.model_path("short"))
    with pytest.raises(EdgeError, match="not found"):
        BlazeFace("short", model=os.path.join(ROOT, "no_such_model.tflite"))
    assert (
        BlazeFace("full").score_threshold == 0.6
        and BlazeFace("short", score_threshold=0.7).score_threshold == 0.7
    )


def test_vendored_files_match_the_notice():
    """The .tflite files are the ones NOTICE.md names (unchanged copies from the mediapipe wheel)."""
    with open(os.path.join(blazeface.MODEL_DIR, "NOTICE.md")) as f:
        notice = f.read()
    for kind in ("full", "short"):
        path = blazeface.model_path(kind)
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        assert re.search(rf"`{re.escape(os.path.basename(path))}`.*`{digest}`", notice), kind
    assert os.path.isfile(os.path.join(blazeface.MODEL_DIR, "LICENSE-mediapipe.txt"))


def _imported_modules(path: str) -> set:
    with open(path) as f:
        tree = ast.parse(f.read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
    return names


def test_edge_modules_import_no_tensorflow_or_emenet_tf():
    forbidden = ("tensorflow", "tf_keras", "keras", "emenet_tf")
    for module in ("blazeface", "align"):
        names = _imported_modules(os.path.join(ROOT, "edge", f"{module}.py"))
        assert not [n for n in names if n.split(".")[0] in forbidden], (module, names)
    code = (  # importing a forbidden module fails in this interpreter, and none may be loaded at the end
        "import sys\n"
        f"sys.modules.update(dict.fromkeys({forbidden!r}))\n"
        "import numpy as np, edge.blazeface as b, edge.align as a\n"
        "face = b.BlazeFace('short').detect(np.zeros((64, 48, 3), np.uint8))\n"
        "a.aligned_crop(np.zeros((8, 8, 3), np.uint8), a.box_frame((0, 0, 4, 4)), 4)\n"
        f"print(sorted(m for m, v in sys.modules.items() if v is not None and m.split('.')[0] in {forbidden!r}))\n"
    )
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"
