"""Face detection with MediaPipe's BlazeFace models (vendored in edge/models) through LiteRT: boxes, 6 keypoints.

The models are SSD detectors: one output row per fixed anchor (a cell centre of a feature grid), with
a score logit and 16 regressed numbers. This module letterboxes the image into the model's square
input, runs it, decodes the anchors, keeps the confident ones, merges overlapping detections with
MediaPipe's weighted non-maximum suppression and maps the result back to the image's pixels. The
decoding is written from the models' published anchor options, not copied from MediaPipe.

Pixel coordinates (boxes and keypoints): x from the image's left edge, y from its top edge, so pixel
column j spans [j, j + 1) and its centre is at j + 0.5 (MediaPipe's normalised coordinates times the
image size). Needs numpy, OpenCV and LiteRT only.
"""

from __future__ import annotations

import dataclasses
import math
import os

import cv2
import numpy as np

from edge import interpreter
from edge.errors import EdgeError

MODELS = {"full": "face_detection_full_range_sparse.tflite", "short": "face_detection_short_range.tflite"}
MODEL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models")
# Subject's right eye first: on a frontal upright face it is on the image's LEFT (smaller x), like
# the right ear tragion (checked on skimage.data.astronaut(), tests/test_blazeface.py).
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth_centre", "right_ear", "left_ear")
# (input side, anchor strides per SSD layer, anchors per cell per layer): MediaPipe's SsdAnchorsCalculator
# options of the two graphs. Consecutive layers of the same stride share one grid (their anchors merge).
ANCHOR_OPTIONS = {"short": (128, (8, 16, 16, 16), 2), "full": (192, (4,), 1)}
# Default score thresholds: MediaPipe's, 0.5 (short) and 0.6 (full). Measured for the full range model,
# threshold 0.5 -> 0.6: of 300 non-face images (emenet_tf.data.render.ood_image) 5 -> 1 gave a detection;
# rendered faces (heads ~60 px wide) in a 640 px frame found 99% -> 99%, heads ~35 px wide 67% -> 54%;
# skimage.data: astronaut 0.91 and camera 0.90 (faces) kept, hubble_deep_field 0.47 and rocket 0.38
# rejected either way, the logo's snake head 0.62 kept either way. So 0.6 removes most false detections
# and loses only faces too small for the emotion model. The short range model misses heads narrower than
# about 1/7 of the image's longer side (86% found at 1/7, 3% at 1/10); larger faces score 0.8-0.95.
DEFAULT_SCORE_THRESHOLDS = {"short": 0.5, "full": 0.6}
IOU_THRESHOLD = 0.3
_LOGIT_CLIP = 100.0


def _check_kind(kind: str) -> str:
    if kind not in MODELS:
        raise EdgeError(f"unknown BlazeFace model kind {kind!r}: choose one of {', '.join(sorted(MODELS))}")
    return kind


def model_path(kind: str = "full") -> str:
    """Path of the vendored .tflite file of ``kind`` ('full' or 'short'); EdgeError if it is missing."""
    path = os.path.join(MODEL_DIR, MODELS[_check_kind(kind)])
    if not os.path.isfile(path):
        raise EdgeError(f"{path}: BlazeFace model file missing (the edge package was installed without it)")
    return path


def anchors(kind: str) -> np.ndarray:
    """(N, 2) float32 anchor centres (x, y) in [0, 1]: 896 for 'short', 2304 for 'full'.

    Per grid (stride s, side g = ceil(input / s)): cells row-major, centre ((col + 0.5) / g,
    (row + 0.5) / g), the anchors of one cell consecutive; grids in stride order.
    """
    size, strides, per_layer = ANCHOR_OPTIONS[_check_kind(kind)]
    grids, start = [], 0
    while start < len(strides):
        stop = start
        while stop < len(strides) and strides[stop] == strides[start]:
            stop += 1
        side = math.ceil(size / strides[start])
        centres = (np.arange(side, dtype=np.float64) + 0.5) / side
        ys, xs = np.meshgrid(centres, centres, indexing="ij")
        cells = np.stack([xs.ravel(), ys.ravel()], axis=1)
        grids.append(np.repeat(cells, per_layer * (stop - start), axis=0))
        start = stop
    return np.concatenate(grids).astype(np.float32)


def sigmoid_scores(logits) -> np.ndarray:
    """score = 1 / (1 + exp(-clip(logit, -100, 100))), float32, shape (N,)."""
    z = np.clip(np.asarray(logits, dtype=np.float64).reshape(-1), -_LOGIT_CLIP, _LOGIT_CLIP)
    return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)


def decode(regressors, scores_logits, anchors, input_size) -> tuple:
    """Decode raw outputs: (boxes (N, 4) x0, y0, x1, y1, keypoints (N, 6, 2), scores (N,)), normalised.

    ``regressors`` (N, 16) or (1, N, 16) in input pixels; for anchor centre (ax, ay) and S = input_size:
    centre = (r0 / S + ax, r1 / S + ay), w = r2 / S, h = r3 / S, keypoint k = (r[4 + 2k] / S + ax,
    r[5 + 2k] / S + ay). ``scores_logits`` (N,), (N, 1) or (1, N, 1) -> sigmoid_scores.
    """
    reg = np.asarray(regressors, dtype=np.float64).reshape(-1, 16)
    centres = np.asarray(anchors, dtype=np.float64).reshape(-1, 2)
    logits = np.asarray(scores_logits).reshape(-1)
    if not (len(reg) == len(centres) == len(logits)):
        counts = f"{len(reg)} boxes, {len(logits)} scores, {len(centres)} anchors"
        raise EdgeError(f"BlazeFace outputs do not match the anchors: {counts}")
    scaled = reg / float(input_size)
    centre = scaled[:, 0:2] + centres
    half = scaled[:, 2:4] / 2.0
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    keypoints = scaled[:, 4:16].reshape(-1, 6, 2) + centres[:, None, :]
    return boxes.astype(np.float32), keypoints.astype(np.float32), sigmoid_scores(logits)


def box_ious(box, boxes) -> np.ndarray:
    """IoU of one box (x0, y0, x1, y1) with each of ``boxes`` (M, 4); 0 where the union is empty."""
    box, boxes = np.asarray(box, np.float64), np.asarray(boxes, np.float64).reshape(-1, 4)
    width = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = width * height
    area = max(box[2] - box[0], 0) * max(box[3] - box[1], 0)
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    union = area + areas - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def weighted_nms(boxes, keypoints, scores, iou_threshold: float = IOU_THRESHOLD) -> tuple:
    """MediaPipe's WEIGHTED non-maximum suppression; returns (boxes, keypoints, scores), best first.

    Repeat until none is left: the best remaining detection and every remaining one with IoU > iou_threshold
    with it form a cluster; output the cluster's score-weighted mean box and keypoints
    (sum_i s_i * b_i / sum_i s_i) with the best one's score; remove the cluster.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    keypoints = np.asarray(keypoints, np.float64)  # (N, K, 2)
    scores = np.asarray(scores, np.float64).reshape(-1)
    remaining = np.argsort(-scores, kind="stable")
    out_boxes, out_points, out_scores = [], [], []
    while len(remaining):
        top = remaining[0]
        cluster = remaining[box_ious(boxes[top], boxes[remaining]) > iou_threshold]
        cluster = np.union1d(cluster, [top])  # the top one even if its own IoU is 0 (an empty box)
        weights = scores[cluster] / max(scores[cluster].sum(), np.finfo(np.float64).tiny)
        out_boxes.append(weights @ boxes[cluster])
        out_points.append(np.tensordot(weights, keypoints[cluster], axes=1))
        out_scores.append(scores[top])
        remaining = remaining[~np.isin(remaining, cluster)]
    count = len(out_scores)
    return (
        np.asarray(out_boxes, np.float32).reshape(count, 4),
        np.asarray(out_points, np.float32).reshape(count, keypoints.shape[1], 2),
        np.asarray(out_scores, np.float32).reshape(count),
    )


@dataclasses.dataclass(frozen=True)
class Letterbox:
    """Where the image lies in the square model input: input = offset + image pixel * scale (per axis)."""

    size: int
    offset: tuple  # (x, y) input pixels
    scale: tuple  # (x, y) input pixels per image pixel

    def to_image(self, points: np.ndarray) -> np.ndarray:
        """(..., 2) normalised input coordinates -> image pixels."""
        points = np.asarray(points, np.float64)
        return (points * self.size - np.asarray(self.offset)) / np.asarray(self.scale)


def letterbox(image_rgb: np.ndarray, size: int) -> tuple:
    """(size x size uint8 image, Letterbox): the image resized keeping its aspect ratio, centred on black."""
    height, width = image_rgb.shape[:2]
    factor = size / max(height, width)
    new_w, new_h = max(1, round(width * factor)), max(1, round(height * factor))
    shrink = new_w < width or new_h < height
    resized = cv2.resize(
        image_rgb, (new_w, new_h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    )
    x0, y0 = (size - new_w) // 2, (size - new_h) // 2
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[y0 : y0 + new_h, x0 : x0 + new_w] = resized
    return canvas, Letterbox(size, (float(x0), float(y0)), (new_w / width, new_h / height))


def check_image(image_rgb) -> np.ndarray:
    """The image itself if it is uint8 (H, W, 3) with H, W >= 1, else EdgeError."""
    if not isinstance(image_rgb, np.ndarray) or image_rgb.dtype != np.uint8:
        kind = getattr(image_rgb, "dtype", type(image_rgb).__name__)
        raise EdgeError(f"face detection needs a uint8 (H, W, 3) RGB image, got {kind}")
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or min(image_rgb.shape[:2]) < 1:
        raise EdgeError(f"face detection needs a uint8 (H, W, 3) RGB image, got shape {image_rgb.shape}")
    return image_rgb


@dataclasses.dataclass(frozen=True)
class Detection:
    """One face: box (x, y, w, h) and keypoints (6, 2) in pixels of the image given to detect()."""

    box: tuple  # (x, y, w, h) floats; may extend past the image's edges
    score: float
    keypoints: np.ndarray  # (6, 2) float pixels, KEYPOINT_NAMES order

    def keypoint(self, name: str) -> np.ndarray:
        """(x, y) of the keypoint called ``name`` (one of KEYPOINT_NAMES)."""
        return self.keypoints[KEYPOINT_NAMES.index(name)]


def _pick_outputs(details: list, count: int, path: str) -> tuple:
    """(regressors index, scores index) among the outputs, by shape (1, N, 16) and (1, N, 1)."""
    by_shape = {tuple(int(v) for v in d["shape"]): d["index"] for d in details}
    try:
        return by_shape[(1, count, 16)], by_shape[(1, count, 1)]
    except KeyError:
        shapes = ", ".join(str(s) for s in by_shape)
        raise EdgeError(f"{path}: not a BlazeFace model with {count} anchors (outputs {shapes})") from None


class BlazeFace:
    """A BlazeFace detector: ``detect(image)`` -> list of Detection, highest score first.

    kind: 'full' (192x192 input, faces up to ~5 m, the default) or 'short' (128x128, faces within ~2 m,
    faster); ``model`` overrides the vendored file (it must have the anchors of ``kind``).
    """

    def __init__(
        self,
        kind: str = "full",
        score_threshold: float | None = None,
        iou_threshold: float = IOU_THRESHOLD,
        num_threads: int | None = None,
        model: str | None = None,
    ):
        self.kind = _check_kind(kind)
        self.score_threshold = DEFAULT_SCORE_THRESHOLDS[kind] if score_threshold is None else score_threshold
        self.iou_threshold = iou_threshold
        self.model = model_path(kind) if model is None else str(model)
        self.anchors = anchors(kind)
        self._load(num_threads)

    def _load(self, num_threads):
        if not os.path.isfile(self.model):
            raise EdgeError(f"{self.model}: BlazeFace model file not found")
        self._interpreter = interpreter.open_interpreter(self.model, num_threads, allocate=True)
        inputs = self._interpreter.get_input_details()
        shape = tuple(int(v) for v in inputs[0]["shape"]) if len(inputs) == 1 else (len(inputs), "inputs")
        if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3:
            raise EdgeError(f"{self.model}: not a BlazeFace model (input shape {shape})")
        self.input_size = shape[1]
        self._input_index = inputs[0]["index"]
        outputs = self._interpreter.get_output_details()
        self._regressors_index, self._scores_index = _pick_outputs(outputs, len(self.anchors), self.model)

    def _raw(self, tensor: np.ndarray) -> tuple:
        """(regressors (N, 16), logits (N,)) of one (size, size, 3) float32 input."""
        self._interpreter.set_tensor(self._input_index, tensor[None])
        self._interpreter.invoke()
        regressors = self._interpreter.get_tensor(self._regressors_index)[0]
        logits = self._interpreter.get_tensor(self._scores_index)[0, :, 0]
        return regressors, logits

    def detect(self, image_rgb: np.ndarray) -> list:
        """Faces in a uint8 (H, W, 3) RGB image of any size, highest score first (EdgeError on bad input)."""
        square, box = letterbox(check_image(image_rgb), self.input_size)
        tensor = square.astype(np.float32) / 127.5 - 1.0
        regressors, logits = self._raw(tensor)
        keep = sigmoid_scores(logits) >= self.score_threshold
        boxes, points, scores = decode(regressors[keep], logits[keep], self.anchors[keep], self.input_size)
        boxes, points, scores = weighted_nms(boxes, points, scores, self.iou_threshold)
        corners = box.to_image(boxes.reshape(-1, 2, 2))
        points = box.to_image(points)
        return [
            Detection(
                box=(float(c[0, 0]), float(c[0, 1]), float(c[1, 0] - c[0, 0]), float(c[1, 1] - c[0, 1])),
                score=float(s),
                keypoints=p.astype(np.float32),
            )
            for c, p, s in zip(corners, points, scores, strict=True)
        ]
