"""The aligned face crop shared by the device and by training data preparation: eyes level, fixed framing.

The recipe follows the seed paper's MTCNN alignment, adapted to BlazeFace's keypoints: rotate the
image so the eye line is horizontal; centre a square midway between the eyes' centre and the mouth
centre; make its side CROP_SCALE x max(eye distance, eye-centre-to-mouth distance along the face's
vertical axis). The square is sampled at the source resolution (rotation and translation only,
bilinear, black outside the image), then shrunk to the requested size with area averaging, so a
large face is averaged, not aliased (a square over MAX_WARP_SIDE pixels is first shrunk by an integer
factor with block means, which bounds the work).

Pixel coordinates: x from the image's left edge, y from its top edge, pixel column j spans [j, j + 1)
(its centre is j + 0.5), as in edge.blazeface. With eye vector u = left_eye - right_eye, the angle is
a = atan2(u_y, u_x) (0 for an upright face; y points down, so a > 0 is a clockwise tilt on screen),
and a crop point (X, Y) relative to the crop centre lies at centre + R(a) (X, Y) * side / size in
the image, R(a) = [[cos a, -sin a], [sin a, cos a]].
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

from edge.errors import EdgeError

CROP_SCALE = 2.0
# The side of every face crop: what the device feeds its model (resized to the model's input) and what
# training data preparation writes (emenet_tf.prepare and the readers; Aff-Wild2's cropped_aligned: 112).
CROP_SIZE = 112
# The largest square warped at the source resolution; a larger one is first shrunk by an integer factor
# with block means (only the part of the image under the square), so a 24-megapixel close-up stays cheap.
MAX_WARP_SIDE = 1024
_MIN_EYE_DISTANCE = 1e-3  # pixels: eyes closer than this are one point


def _rotation(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


@dataclasses.dataclass(frozen=True)
class FaceFrame:
    """Where the crop lies in the source image: a square of ``side`` pixels at ``centre``, turned by ``angle``."""

    centre: tuple  # (x, y) pixels
    angle: float  # radians, the eye line's angle
    side: float  # pixels

    def corners(self) -> np.ndarray:
        """(4, 2) the square's corners in source pixels: crop top-left, top-right, bottom-right, bottom-left."""
        half = self.side / 2.0
        local = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
        return local @ _rotation(self.angle).T + np.asarray(self.centre, np.float64)

    def to_crop(self, points, size: int) -> np.ndarray:
        """Source pixels (..., 2) -> pixels of the (size x size) crop: size/side * R(-a) (p - centre) + size/2."""
        points = np.asarray(points, np.float64) - np.asarray(self.centre, np.float64)
        return points @ _rotation(self.angle) * (size / self.side) + size / 2.0


def _point(value, name: str) -> np.ndarray:
    point = np.asarray(value, np.float64).reshape(-1)
    if point.shape != (2,) or not np.all(np.isfinite(point)):
        raise EdgeError(f"face alignment needs a finite (x, y) {name}, got {value!r}")
    return point


def face_frame(right_eye, left_eye, mouth_centre) -> FaceFrame:
    """The crop frame of a face from the subject's right eye (image left when upright), left eye, mouth centre.

    angle = atan2 of (left_eye - right_eye); with eye centre e and the face's downward axis
    v = (-sin a, cos a): side = CROP_SCALE * max(|left_eye - right_eye|, |(mouth - e) . v|),
    centre = (e + mouth) / 2. EdgeError for NaN / infinite points or eyes at the same point.
    """
    right, left, mouth = (
        _point(right_eye, "right eye"),
        _point(left_eye, "left eye"),
        _point(mouth_centre, "mouth"),
    )
    eye_vector = left - right
    eye_distance = float(np.hypot(*eye_vector))
    if eye_distance < _MIN_EYE_DISTANCE:
        raise EdgeError(f"face alignment needs two distinct eyes, got both at {tuple(right.tolist())}")
    angle = math.atan2(eye_vector[1], eye_vector[0])
    eyes = (right + left) / 2.0
    down = np.array([-math.sin(angle), math.cos(angle)])
    mouth_distance = abs(float((mouth - eyes) @ down))
    centre = (eyes + mouth) / 2.0
    return FaceFrame(
        (float(centre[0]), float(centre[1])), angle, CROP_SCALE * max(eye_distance, mouth_distance)
    )


def keypoint_frame(keypoints) -> FaceFrame:
    """The crop frame of a detection's keypoints, in BlazeFace's order (right eye, left eye, nose tip,
    mouth centre, ...): ``face_frame`` of the eyes and the mouth centre."""
    right_eye, left_eye, _, mouth = keypoints[:4]
    return face_frame(right_eye, left_eye, mouth)


def box_frame(box, margin: float = 0.0) -> FaceFrame:
    """The frame of a face known only by a box (x, y, w, h): angle 0, the box centre, side max(w, h) (1 + 2 margin)."""
    values = np.asarray(box, np.float64).reshape(-1)
    if values.shape != (4,) or not np.all(np.isfinite(values)) or min(values[2], values[3]) <= 0:
        raise EdgeError(f"a face box must be 4 finite numbers (x, y, w, h) with w, h > 0, got {box!r}")
    if not (math.isfinite(margin) and 1.0 + 2.0 * margin > 0):
        raise EdgeError(f"a face box margin must be finite and > -0.5, got {margin!r}")
    x, y, w, h = (float(v) for v in values)
    return FaceFrame((x + w / 2.0, y + h / 2.0), 0.0, max(w, h) * (1.0 + 2.0 * margin))


def keypoints_from_landmarks68(landmarks) -> np.ndarray:
    """iBUG-68 landmarks (68, 2), 0-based -> (4, 2): right_eye, left_eye, nose_tip, mouth_centre.

    In the iBUG 300-W scheme points 36-41 outline the eye on the image's left for a frontal face,
    which is the subject's RIGHT eye (BlazeFace's right_eye); 42-47 the subject's left eye. Eyes: the
    means of those six points; nose tip: point 30; mouth centre: the mean of the outer lip, 48-59.
    The points keep the caller's pixel convention (300-W files count from 1: subtract 1 first).
    """
    points = np.asarray(landmarks, np.float64)
    if points.shape != (68, 2) or not np.all(np.isfinite(points)):
        raise EdgeError(f"iBUG-68 landmarks must be a finite (68, 2) array, got shape {points.shape}")
    right_eye, left_eye, mouth = points[36:42].mean(0), points[42:48].mean(0), points[48:60].mean(0)
    return np.stack([right_eye, left_eye, points[30], mouth])


def _describe(image) -> str:
    return (
        f"{image.dtype} array of shape {image.shape}"
        if isinstance(image, np.ndarray)
        else type(image).__name__
    )


def _check_inputs(image_rgb, frame: FaceFrame, size) -> None:
    if not (
        isinstance(image_rgb, np.ndarray)
        and image_rgb.dtype == np.uint8
        and image_rgb.ndim == 3
        and image_rgb.shape[2] == 3
        and min(image_rgb.shape[:2]) >= 1
    ):
        raise EdgeError(f"face alignment needs a uint8 (H, W, 3) RGB image, got {_describe(image_rgb)}")
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise EdgeError(f"crop size must be a positive integer, got {size!r}")
    numbers = (*frame.centre, frame.angle, frame.side)
    if not all(math.isfinite(v) for v in numbers) or frame.side <= 0:
        raise EdgeError(f"face frame must be finite with side > 0, got {frame}")


def _affine(frame: FaceFrame, out_side: int) -> np.ndarray:
    """3x3 map from source pixels to the out_side-square warp's pixels (the convention of the module doc)."""
    turn = _rotation(-frame.angle) * (out_side / frame.side)
    matrix = np.eye(3)
    matrix[:2, :2] = turn
    matrix[:2, 2] = out_side / 2.0 - turn @ np.asarray(frame.centre, np.float64)
    return matrix


def _shrunk_source(image_rgb: np.ndarray, frame: FaceFrame, factor: int) -> tuple | None:
    """(the image under the square, mean of each factor x factor block, 3x3 map source -> it), None if off-image.

    The region is padded with black to whole blocks, so INTER_AREA averages exact blocks (no beat patterns).
    """
    height, width = image_rgb.shape[:2]
    corners = frame.corners()
    x0, y0 = (max(0, math.floor(v) - 1) for v in corners.min(0))
    x1, y1 = min(width, math.ceil(corners[:, 0].max()) + 1), min(height, math.ceil(corners[:, 1].max()) + 1)
    if x1 <= x0 or y1 <= y0:
        return None
    pad_x, pad_y = -(x1 - x0) % factor, -(y1 - y0) % factor
    part = cv2.copyMakeBorder(
        image_rgb[y0:y1, x0:x1], 0, pad_y, 0, pad_x, cv2.BORDER_CONSTANT, value=(0, 0, 0)
    )
    target = (part.shape[1] // factor, part.shape[0] // factor)
    part = cv2.resize(part, target, interpolation=cv2.INTER_AREA)
    return part, np.array(
        [[1.0 / factor, 0.0, -x0 / factor], [0.0, 1.0 / factor, -y0 / factor], [0.0, 0.0, 1.0]]
    )


def aligned_crop(image_rgb: np.ndarray, frame: FaceFrame, size: int) -> np.ndarray:
    """The (size, size, 3) uint8 crop of ``frame`` in a uint8 (H, W, 3) RGB image; black outside the image.

    A square of side above MAX_WARP_SIDE source pixels is first shrunk k times by block means (the
    integer k = ceil(side / MAX_WARP_SIDE), at most side / size); the square, now n = side / k pixels,
    is warped (bilinear) to max(size, round(n)) pixels a side, then shrunk to size with INTER_AREA.
    """
    _check_inputs(image_rgb, frame, size)
    factor = max(1, min(math.ceil(frame.side / MAX_WARP_SIDE), math.floor(frame.side / size)))
    out_side = int(max(size, round(frame.side / factor)))
    source, to_source = image_rgb, np.eye(3)
    if factor > 1:  # a huge face: block-average the image under it first
        shrunk = _shrunk_source(image_rgb, frame, factor)
        if shrunk is None:
            return np.zeros((size, size, 3), np.uint8)
        source, to_source = shrunk
    half = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])  # pixel centres: j + 0.5 <-> j
    matrix = np.linalg.inv(half) @ _affine(frame, out_side) @ np.linalg.inv(to_source) @ half
    warped = cv2.warpAffine(
        source,
        matrix[:2],
        (out_side, out_side),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
    if out_side == size:
        return warped
    return cv2.resize(warped, (size, size), interpolation=cv2.INTER_AREA)
