"""Face detection for the edge runtime with OpenCV only: square boxes like the aligned training crops.

Two backends, tried in this order:
- YuNet (``cv2.FaceDetectorYN``), when given its ONNX file (``face_detection_yunet_2023mar.onnx`` from
  the OpenCV model zoo): the better detector, but no OpenCV wheel ships the file.
- The Haar cascade ``haarcascade_frontalface_default.xml``: shipped in ``cv2.data.haarcascades`` by
  opencv-python(-headless) 4.x, or by Debian's ``opencv-data`` package. OpenCV 5 has neither the
  cascade files nor ``cv2.CascadeClassifier``; there a YuNet file is needed.

Detection runs on a copy whose longer side is at most ``detect_size`` pixels (default
``DETECT_SIZE``), and the boxes are mapped back to the full image: memory and time stay bounded
however large the photo, at the cost of faces smaller than ``min_size / detect_size`` of the
image's longer side. A detector that fails (OpenCV out of memory) is rebuilt, so the next image
does not inherit its state.
"""

import os

import cv2
import numpy as np

from edge.errors import EdgeError

HAAR_FILE = "haarcascade_frontalface_default.xml"
# Longest side of the copy faces are detected on (0: detect at full size). 640 px finds faces of at
# least min_size (24 px) / 640 = 4% of the longer side, and is YuNet's usual working size.
DETECT_SIZE = 640
# detect_near (following a face between full detections, edge.tracking): the region searched is
# _NEAR_REGION box sides wide around the last box, shrunk so the face is about TRACK_FACE_PX pixels,
# and only faces of _NEAR_SCALES times the last size are looked for. Measured on rendered faces
# moving over 640x480 frames: at 48 px 5% of the faces were missed, at 64 px 3% (box IoU with a
# full detection: median 0.94), at 80 px as at 64 px but slower.
TRACK_FACE_PX = 64
_NEAR_REGION = 2.0
_NEAR_SCALES = (0.75, 1.33)
_HAAR_DIRS = (
    "/usr/share/opencv4/haarcascades",
    "/usr/share/opencv/haarcascades",
    "/usr/local/share/opencv4/haarcascades",
)


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
    """Finds faces in an RGB uint8 image; ``detect`` returns square boxes (x, y, s, s), left to right."""

    def __init__(
        self,
        model_path=None,
        margin: float = 0.1,
        min_size: int = 24,
        score_threshold: float = 0.7,
        detect_size: int = DETECT_SIZE,
    ):
        self.margin = margin
        self.min_size = min_size  # in pixels of the detection copy
        self.score_threshold = score_threshold
        self.detect_size = detect_size
        self.model_path = None if model_path is None else str(model_path)
        self._init_backend()

    def _init_backend(self):
        if self.model_path is not None:
            self._init_yunet(self.model_path)
        else:
            self._init_haar()

    def _init_yunet(self, path: str):
        if not os.path.isfile(path):
            raise EdgeError(f"{path}: face detector model not found")
        try:
            self._yunet = cv2.FaceDetectorYN.create(path, "", (320, 320), self.score_threshold, 0.3, 50)
        except cv2.error:
            raise EdgeError(f"{path}: cannot load as a YuNet face detector (ONNX)") from None
        self.backend = "yunet"

    def _init_haar(self):
        path = haar_cascade_path()
        if path is None or not hasattr(cv2, "CascadeClassifier"):
            raise EdgeError(
                f"no face detector available: OpenCV {cv2.__version__} has no Haar cascade; give a YuNet "
                "ONNX file (--face_model), install opencv-python-headless<5, or use --no_face_detection"
            )
        self._haar = cv2.CascadeClassifier(path)
        if self._haar.empty():
            raise EdgeError(f"{path}: cannot load the Haar cascade")
        self.backend = "haar"

    def _raw_boxes(self, image_rgb: np.ndarray, sizes: tuple | None = None) -> list:
        """Detections (x, y, w, h) in ``image_rgb``'s pixels; ``sizes``: (smallest, largest) face side."""
        low, high = (self.min_size, None) if sizes is None else (max(self.min_size, sizes[0]), sizes[1])
        if self.backend == "yunet":
            height, width = image_rgb.shape[:2]
            self._yunet.setInputSize((width, height))
            _, faces = self._yunet.detect(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
            faces = [] if faces is None else faces
            return [
                tuple(f[:4])
                for f in faces
                if low <= min(f[2], f[3]) and (high is None or max(f[2], f[3]) <= high)
            ]
        gray = cv2.equalizeHist(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY))
        limits = {} if high is None else {"maxSize": (int(high), int(high))}
        found = self._haar.detectMultiScale(
            gray, scaleFactor=1.1, minNeighbors=5, minSize=(int(low), int(low)), **limits
        )
        return [tuple(b) for b in found]

    def _detection_copy(self, image_rgb: np.ndarray) -> tuple:
        """(image to detect on, factor from its pixels to the full image's): at most detect_size a side."""
        longest = max(image_rgb.shape[:2])
        if self.detect_size <= 0 or longest <= self.detect_size:
            return image_rgb, 1.0
        factor = longest / self.detect_size
        height, width = image_rgb.shape[:2]
        size = (max(1, int(round(width / factor))), max(1, int(round(height / factor))))
        return cv2.resize(image_rgb, size, interpolation=cv2.INTER_AREA), factor

    def detect_near(self, image_rgb: np.ndarray, box) -> tuple | None:
        """The face at about ``box`` (a square from ``detect``) in this frame, or None if it is not there.

        Detects only in a region _NEAR_REGION box sides wide around ``box``, shrunk so the face is
        about TRACK_FACE_PX pixels, at face sizes within _NEAR_SCALES of the last one; returns the
        square box (full-image pixels, with the margin) that overlaps ``box`` most.
        """
        height, width = image_rgb.shape[:2]
        x, y, side = (float(v) for v in box[:3])
        half = side * _NEAR_REGION / 2.0
        x0, y0 = max(0, int(x + side / 2 - half)), max(0, int(y + side / 2 - half))
        x1, y1 = min(width, int(x + side / 2 + half)), min(height, int(y + side / 2 + half))
        if x1 - x0 < self.min_size or y1 - y0 < self.min_size:
            return None
        face = side / (1.0 + 2.0 * self.margin)  # the detector's own box inside the square
        factor = max(1.0, face / TRACK_FACE_PX)
        region = image_rgb[y0:y1, x0:x1]
        if factor > 1.0:
            size = (max(1, round((x1 - x0) / factor)), max(1, round((y1 - y0) / factor)))
            region = cv2.resize(region, size, interpolation=cv2.INTER_AREA)
        expected = face / factor
        raw = self._guarded(region, (expected * _NEAR_SCALES[0], expected * _NEAR_SCALES[1]))
        boxes = [
            square_box(
                (x0 + bx * factor, y0 + by * factor, bw * factor, bh * factor), width, height, self.margin
            )
            for bx, by, bw, bh in raw
        ]
        best = max(boxes, key=lambda b: box_iou(b, box), default=None)
        return best if best is not None and box_iou(best, box) > 0 else None

    def _guarded(self, image_rgb: np.ndarray, sizes=None) -> list:
        """``_raw_boxes``; if OpenCV fails (out of memory) the detector is rebuilt and EdgeError raised."""
        try:
            return self._raw_boxes(image_rgb, sizes)
        except (cv2.error, MemoryError) as e:
            self._init_backend()
            text = " ".join(str(e).split()) or type(e).__name__
            raise EdgeError(f"face detection failed ({text}); the detector was reset") from None

    def detect(self, image_rgb: np.ndarray) -> list:
        """Square face boxes (x, y, s, s) in full-image pixels, with the margin, sorted left to right.

        EdgeError if OpenCV fails (e.g. out of memory); the detector is then rebuilt for the next image.
        """
        height, width = image_rgb.shape[:2]
        small, factor = self._detection_copy(image_rgb)
        raw = self._guarded(small)
        boxes = [square_box([v * factor for v in b], width, height, self.margin) for b in raw]
        return sorted(boxes)
