"""Face detection for the edge runtime and the aligned face crop it feeds the model, shared with training.

Two detectors (``DETECTORS``):
- ``blazeface`` (the default): MediaPipe's BlazeFace through LiteRT (``edge.blazeface``; the model
  files are vendored in ``edge/models``). Full range on whole frames; the short-range model, faster,
  on the region around a face already found (``detect_near``). Six keypoints per face, so the crop is
  aligned: eyes level, a square midway between the eyes and the mouth (``edge.align``), the same
  crop ``emenet_tf.prepare`` and the readers make of training photographs.
- ``haar``: OpenCV's frontal-face Haar cascade (shipped in ``cv2.data.haarcascades`` by
  opencv-python(-headless) 4.x or Debian's ``opencv-data``): the fallback when BlazeFace cannot be
  loaded (one warning line says so). No keypoints: its box is the square around the cascade's
  detection, HAAR_MARGIN wider on each side, and its crop is that square, not aligned. It runs on a
  copy whose longer side is at most ``detect_size`` pixels.

A ``Face`` is one detection: its box (the detector's, in image pixels), its score (BlazeFace's
confidence; None for Haar), its keypoints (None for Haar) and ``frame``, the square the model's crop
is cut from (``crop``). A detector that fails (OpenCV out of memory) is rebuilt, so the next image
does not inherit its state.
"""

from __future__ import annotations

import dataclasses
import os
import warnings

import cv2
import numpy as np

from edge.align import CROP_SIZE, FaceFrame, aligned_crop, box_frame, keypoint_frame
from edge.errors import EdgeError

DETECTORS = ("blazeface", "haar")
HAAR_FILE = "haarcascade_frontalface_default.xml"
HAAR_MARGIN = 0.1  # Haar's box (and crop): the square around the cascade's box, this much wider each side
# Longest side of the copy Haar detects on (0: full size). 640 px finds faces of at least min_size
# (24 px) / 640 = 4% of the longer side.
DETECT_SIZE = 640
# detect_near: the region searched is _NEAR_REGION box sides wide around the last face; Haar looks for
# faces of _NEAR_SCALES times the last size in it, shrunk so the face is about TRACK_FACE_PX pixels.
TRACK_FACE_PX = 64
_NEAR_REGION = 2.0
_NEAR_SCALES = (0.75, 1.33)
_HAAR_DIRS = (
    "/usr/share/opencv4/haarcascades",
    "/usr/share/opencv/haarcascades",
    "/usr/local/share/opencv4/haarcascades",
)


class DetectorFallbackWarning(RuntimeWarning):
    """BlazeFace could not be loaded: faces are found with the Haar cascade (no aligned crops)."""


@dataclasses.dataclass(frozen=True, eq=False)
class Face:
    """One detected face: box (x, y, w, h) in image pixels, score (None: Haar), keypoints (6, 2) in
    ``edge.blazeface.KEYPOINT_NAMES`` order (None: Haar)."""

    box: tuple
    score: float | None = None
    keypoints: np.ndarray | None = None

    @property
    def frame(self) -> FaceFrame:
        """The square the model's crop is cut from: aligned on the keypoints, else the box's square
        (Haar's box already holds its margin: another one would crop 1.44x the cascade's box)."""
        if self.keypoints is not None:
            return keypoint_frame(self.keypoints)
        return box_frame(self.box)

    def crop(self, image_rgb: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
        """The face as the model sees it: the aligned crop, ``size`` pixels a side (uint8 RGB)."""
        return aligned_crop(image_rgb, self.frame, size)

    def moved(self, dx: float, dy: float) -> Face:
        """The same face moved by (dx, dy) pixels (what template matching follows between detections)."""
        x, y, w, h = self.box
        keypoints = None if self.keypoints is None else self.keypoints + np.array([dx, dy], np.float32)
        return Face((x + dx, y + dy, w, h), self.score, keypoints)

    def scaled(self, factor: float) -> Face:
        """The same face in an image ``factor`` times larger (a JPEG decoded at a reduced scale)."""
        keypoints = None if self.keypoints is None else self.keypoints * np.float32(factor)
        return Face(tuple(v * factor for v in self.box), self.score, keypoints)

    def pixel_box(self, width: int, height: int) -> tuple:
        """The box as whole pixels inside a ``width`` x ``height`` image (x, y, w, h), at least 1 x 1."""
        x0, y0 = int(round(max(0.0, self.box[0]))), int(round(max(0.0, self.box[1])))
        x0, y0 = min(x0, width - 1), min(y0, height - 1)
        x1 = min(width, int(round(self.box[0] + self.box[2])))
        y1 = min(height, int(round(self.box[1] + self.box[3])))
        return (x0, y0, max(1, x1 - x0), max(1, y1 - y0))


def haar_cascade_path():
    """Path of the frontal-face Haar cascade shipped with OpenCV or the OS, or None."""
    dirs = []
    data = getattr(cv2, "data", None)
    if data is not None and getattr(data, "haarcascades", None):
        dirs.append(data.haarcascades)
    dirs.append(os.path.join(os.path.dirname(cv2.__file__), "data"))
    dirs.extend(_HAAR_DIRS)
    for folder in dirs:
        path = os.path.join(folder, HAAR_FILE)
        if os.path.isfile(path):
            return path
    return None


def square_box(box, image_width: int, image_height: int, margin: float) -> tuple:
    """Square (x, y, s, s) around a detection: side = max(w, h) * (1 + 2 margin), same centre.

    The square is shifted to lie inside the image, and shrunk to the image's shorter side if larger.
    """
    x, y, w, h = (float(v) for v in box)
    side = int(round(max(w, h) * (1.0 + 2.0 * margin)))
    side = max(1, min(side, image_width, image_height))
    cx, cy = x + w / 2.0, y + h / 2.0
    x0 = int(round(min(max(cx - side / 2.0, 0.0), image_width - side)))
    y0 = int(round(min(max(cy - side / 2.0, 0.0), image_height - side)))
    return (x0, y0, side, side)


def scale_box(box, factor: float, image_width: int, image_height: int) -> tuple:
    """(x, y, w, h) times ``factor``, rounded, kept inside an ``image_width`` x ``image_height`` image."""
    x, y, w, h = (int(round(float(v) * factor)) for v in box)
    x, y = min(max(x, 0), image_width - 1), min(max(y, 0), image_height - 1)
    return (x, y, max(1, min(w, image_width - x)), max(1, min(h, image_height - y)))


def box_iou(a, b) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


class FaceDetector:
    """Finds faces in an RGB uint8 image; ``detect`` returns ``Face``s sorted left to right.

    detector: ``blazeface`` (default; falls back to ``haar`` with a DetectorFallbackWarning when its
    model cannot be loaded) or ``haar``. min_size: faces smaller than this (pixels of the image, or of
    Haar's detection copy) are not reported. score_threshold: BlazeFace's (None: its default).
    """

    def __init__(
        self,
        detector: str = "blazeface",
        min_size: int = 24,
        score_threshold: float | None = None,
        detect_size: int = DETECT_SIZE,
        num_threads: int | None = None,
    ):
        if detector not in DETECTORS:
            raise EdgeError(f"unknown face detector {detector!r}; choose one of {', '.join(DETECTORS)}")
        self.min_size = min_size
        self.score_threshold = score_threshold
        self.detect_size = detect_size
        self.num_threads = num_threads
        self.backend = detector
        self._init_backend()

    def _init_backend(self):
        if self.backend == "blazeface":
            try:
                self._init_blazeface()
                return
            except EdgeError as err:
                warnings.warn(
                    f"BlazeFace cannot be used ({err}): faces are found with OpenCV's Haar cascade, whose "
                    "crops are not aligned (edge/README.md, 'Face detection')",
                    DetectorFallbackWarning,
                    stacklevel=3,
                )
                self.backend = "haar"
        self._init_haar()

    def _init_blazeface(self):
        from edge.blazeface import BlazeFace

        kwargs = {"score_threshold": self.score_threshold, "num_threads": self.num_threads}
        self._full, self._short = BlazeFace("full", **kwargs), BlazeFace("short", **kwargs)

    def _init_haar(self):
        path = haar_cascade_path()
        if path is None or not hasattr(cv2, "CascadeClassifier"):
            raise EdgeError(
                f"no face detector available: BlazeFace cannot be loaded and OpenCV {cv2.__version__} has no "
                "Haar cascade; reinstall the edge package (pip install ./edge) or use --no_face_detection"
            )
        self._haar = cv2.CascadeClassifier(path)
        if self._haar.empty():
            raise EdgeError(f"{path}: cannot load the Haar cascade")

    # ------------------------------------------------------------ whole images

    def detect(self, image_rgb: np.ndarray) -> list:
        """The faces of a whole image (``Face``s in its pixels), sorted left to right.

        EdgeError if the detector fails (e.g. OpenCV out of memory); it is then rebuilt for the next image.
        """
        if self.backend == "blazeface":
            faces = self._blazeface(self._full, image_rgb)
        else:
            height, width = image_rgb.shape[:2]
            small, factor = self._detection_copy(image_rgb)
            boxes = self._guarded(small)
            faces = [Face(square_box([v * factor for v in b], width, height, HAAR_MARGIN)) for b in boxes]
        return sorted(faces, key=lambda f: tuple(f.box))

    def _blazeface(self, model, image_rgb: np.ndarray, offset=(0.0, 0.0)) -> list:
        """BlazeFace's faces in ``image_rgb`` as ``Face``s, moved by ``offset`` (a region's corner)."""
        found = []
        for d in model.detect(image_rgb):
            if max(d.box[2], d.box[3]) < self.min_size:
                continue
            found.append(Face(d.box, d.score, d.keypoints).moved(*offset))
        return found

    def _detection_copy(self, image_rgb: np.ndarray) -> tuple:
        """(image to detect on, factor from its pixels to the full image's): at most detect_size a side."""
        longest = max(image_rgb.shape[:2])
        if self.detect_size <= 0 or longest <= self.detect_size:
            return image_rgb, 1.0
        factor = longest / self.detect_size
        height, width = image_rgb.shape[:2]
        size = (max(1, int(round(width / factor))), max(1, int(round(height / factor))))
        return cv2.resize(image_rgb, size, interpolation=cv2.INTER_AREA), factor

    def _haar_boxes(self, image_rgb: np.ndarray, sizes: tuple | None = None) -> list:
        """Haar's detections (x, y, w, h) in ``image_rgb``'s pixels; ``sizes``: (smallest, largest) side."""
        low, high = (self.min_size, None) if sizes is None else (max(self.min_size, sizes[0]), sizes[1])
        gray = cv2.equalizeHist(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY))
        limits = {} if high is None else {"maxSize": (int(high), int(high))}
        found = self._haar.detectMultiScale(
            gray, scaleFactor=1.1, minNeighbors=5, minSize=(int(low), int(low)), **limits
        )
        return [tuple(b) for b in found]

    def _guarded(self, image_rgb: np.ndarray, sizes=None) -> list:
        """``_haar_boxes``; if OpenCV fails (out of memory) the detector is rebuilt and EdgeError raised."""
        try:
            return self._haar_boxes(image_rgb, sizes)
        except (cv2.error, MemoryError) as e:
            self._init_backend()
            text = " ".join(str(e).split()) or type(e).__name__
            raise EdgeError(f"face detection failed ({text}); the detector was reset") from None

    # ------------------------------------------------------------ near a known face

    def detect_near(self, image_rgb: np.ndarray, face: Face) -> Face | None:
        """The face at about ``face`` in this frame (a later frame of a video), or None if it is not there.

        Detects only in a region _NEAR_REGION box sides wide around the last box (BlazeFace: its
        short-range model, whose faces fill such a region; Haar: shrunk so the face is about
        TRACK_FACE_PX pixels, at sizes within _NEAR_SCALES of the last) and returns the face that
        overlaps the last box most.
        """
        height, width = image_rgb.shape[:2]
        x, y, w, h = (float(v) for v in face.box)
        side = max(w, h)
        half = side * _NEAR_REGION / 2.0
        cx, cy = x + w / 2.0, y + h / 2.0
        x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
        x1, y1 = min(width, int(cx + half)), min(height, int(cy + half))
        if x1 - x0 < self.min_size or y1 - y0 < self.min_size:
            return None
        region = np.ascontiguousarray(image_rgb[y0:y1, x0:x1])
        if self.backend == "blazeface":
            found = self._blazeface(self._short, region, (x0, y0))
        else:
            found = self._haar_near(region, face, (x0, y0), (width, height))
        best = max(found, key=lambda f: box_iou(f.box, face.box), default=None)
        return best if best is not None and box_iou(best.box, face.box) > 0 else None

    def _haar_near(self, region, face: Face, offset, image_size) -> list:
        inner = max(face.box[2], face.box[3]) / (1.0 + 2.0 * HAAR_MARGIN)  # the cascade's own box
        factor = max(1.0, inner / TRACK_FACE_PX)
        if factor > 1.0:
            size = (max(1, round(region.shape[1] / factor)), max(1, round(region.shape[0] / factor)))
            region = cv2.resize(region, size, interpolation=cv2.INTER_AREA)
        expected = inner / factor
        raw = self._guarded(region, (expected * _NEAR_SCALES[0], expected * _NEAR_SCALES[1]))
        x0, y0 = offset
        return [
            Face(
                square_box(
                    (x0 + bx * factor, y0 + by * factor, bw * factor, bh * factor), *image_size, HAAR_MARGIN
                )
            )
            for bx, by, bw, bh in raw
        ]
