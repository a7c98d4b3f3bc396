"""Face crops for the readers of datasets that are not face crops already, and their cache.

Crops: 112x112 RGB JPEGs (quality 95) from edge.align, the face preparation the device uses; each file
is written to a temporary name and renamed into place. ``Preparation`` reuses a completed preparation
on a rerun: a marker in work_dir records the source files' size and mtime and the settings; a stale
marker (the source or the settings changed) redoes every crop, a partial one (same source, not
finished) keeps the crops already written and makes the rest.
"""

from __future__ import annotations

import json
import os

import cv2
import numpy as np

from edge import align
from edge.align import CROP_SIZE
from emenet_tf.io import atomic_write_text

CROP_JPEG_QUALITY = 95
MARKER_VERSION = 1  # bump when the crop recipe changes: every preparation is then redone


def read_rgb(path: str) -> np.ndarray | None:
    """(H, W, 3) uint8 RGB of an image file, or None when OpenCV cannot read it."""
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def crop(image_rgb: np.ndarray, frame: align.FaceFrame) -> np.ndarray:
    """The CROP_SIZE crop of ``frame`` (edge.align.aligned_crop: the device's face preparation)."""
    return align.aligned_crop(image_rgb, frame, CROP_SIZE)


def landmark_frame(landmarks) -> align.FaceFrame:
    """The face frame of iBUG-68 landmarks (68, 2): eyes and mouth centre -> edge.align.face_frame.
    Raises edge.errors.EdgeError for a wrong shape, non-finite points or coinciding eyes."""
    right_eye, left_eye, _, mouth = align.keypoints_from_landmarks68(landmarks)
    return align.face_frame(right_eye, left_eye, mouth)


def encode(rel: str, image: np.ndarray) -> bytes:
    """The file bytes of ``image`` for ``rel``'s extension: .jpg (RGB in, quality CROP_JPEG_QUALITY;
    OpenCV writes BGR) or .png (grey (H, W) or RGB, lossless)."""
    if rel.lower().endswith(".png"):
        data = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(".png", data)
    else:
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, CROP_JPEG_QUALITY])
    if not ok:
        raise ValueError(f"OpenCV could not encode {rel}")
    return buf.tobytes()


def write_file(path: str, data: bytes) -> None:
    """Write ``data`` to a temporary name beside ``path``, then rename it over ``path``. No fsync: a
    crop can be remade, and hundreds of thousands of fsyncs would cost minutes."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = os.path.join(os.path.dirname(path), f".tmp-{os.getpid()}-{os.path.basename(path)}")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def signature(paths) -> dict:
    """{absolute path: [size, mtime_ns]} of the source files (what a preparation is valid for)."""
    out = {}
    for p in paths:
        st = os.stat(p)
        out[os.path.abspath(p)] = [st.st_size, st.st_mtime_ns]
    return out


class Preparation:
    """The files a reader writes under ``work_dir`` for one source, reused while the source is unchanged.

    marker: the marker's path relative to work_dir (written last, atomically: {"signature": {version,
    sources' size and mtime, settings}, "complete": bool, "failures": {file: [reason, example]}}).
    A rerun with the same signature and a complete marker makes nothing (``needs`` is False
    everywhere) and gives each file's recorded outcome; with the same signature but an unfinished
    marker it keeps the files already there; a different signature redoes every file. A file deleted
    after a complete run is not noticed (the pipeline then counts it as unreadable): delete the marker.
    """

    def __init__(self, work_dir: str, marker: str, sources, settings: dict | None = None):
        self.work_dir = work_dir
        self.marker = os.path.join(work_dir, marker)
        self.signature = {
            "version": MARKER_VERSION,
            "sources": signature(sources),
            "settings": settings or {},
        }
        saved = self._saved()
        same = saved is not None and saved.get("signature") == self.signature
        self.complete = bool(same and saved.get("complete") is True)
        self.failures = {k: tuple(v) for k, v in saved.get("failures", {}).items()} if self.complete else {}
        self._keep_existing = same
        if not same:
            self._write_marker(complete=False)

    def _saved(self) -> dict | None:
        try:
            with open(self.marker, encoding="utf-8") as f:
                saved = json.load(f)
        except (OSError, ValueError):
            return None
        return saved if isinstance(saved, dict) else None

    def _write_marker(self, complete: bool) -> None:
        failures = {k: list(v) for k, v in sorted(self.failures.items())}
        body = {"signature": self.signature, "complete": complete, "failures": failures}
        atomic_write_text(self.marker, json.dumps(body, indent=1) + "\n")

    def path(self, rel: str) -> str:
        return os.path.join(self.work_dir, rel)

    def needs(self, rel: str) -> bool:
        """True when the file ``rel`` (relative to work_dir) must be made on this run."""
        if self.complete or rel in self.failures:
            return False
        return not (self._keep_existing and os.path.isfile(self.path(rel)))

    def write(self, rel: str, image: np.ndarray) -> None:
        """Write ``image`` as ``rel`` (see ``encode``), atomically."""
        write_file(self.path(rel), encode(rel, image))

    def fail(self, rel: str, reason: str, example: str) -> None:
        """Record that ``rel`` could not be made, why (a skip reason) and an example for the warning."""
        self.failures[rel] = (reason, str(example))

    def failure(self, rel: str) -> tuple | None:
        """(reason, example) when ``rel`` could not be made, else None (the file is there)."""
        return self.failures.get(rel)

    def finish(self) -> None:
        """Write the complete marker (last): a rerun on the same source reuses everything."""
        if not self.complete:
            self._write_marker(complete=True)
            self.complete = True
