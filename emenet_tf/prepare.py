"""Face preparation: raw labelled photographs (or a video) -> aligned face crops and a labels.csv to train on.

  python -m emenet_tf.prepare INPUT --out DIR [--detector blazeface|haar] [--every N]
  (console script: emenet-prepare)

INPUT is a ``folder`` CSV (a ``path`` column relative to the CSV's folder and any label columns of
``emenet_tf.data.readers.folder``), a class-folder tree (``DIR/happy/x.jpg``, Keras'
``image_dataset_from_directory`` layout) or a video file. Each photograph's faces are found and
cropped by the device's own code (``edge.faces.FaceDetector``: BlazeFace, and the aligned crop of
``edge.align``, ``CROP_SIZE`` pixels a side), so a model trained on these crops sees faces the way
it will see them on the device. A photograph with several faces gives the most confident one (its
label is one label; the others are counted). DIR gets:
  crops/<the photo's relative path>.jpg   the aligned crops (JPEG quality crops.CROP_JPEG_QUALITY)
  labels.csv                              one row per face kept: ``path`` (relative to DIR), the input's
                                          label columns as they were, ``source`` (the photograph) and
                                          ``face_score`` (the detector's confidence); a video: ``frame``
  no_face.txt                             every photograph (or video frame) without a face, one a line
  prepare_summary.json                    the counts by reason
and is then the data of ``python train.py --data folder:DIR/labels.csv``. DIR must be empty, absent
or an earlier preparation (it holds MARKER); anything else is refused, never written into. The
crops are written under temporary names and renamed; labels.csv is written last.
"""

from __future__ import annotations

import csv
import os

import cv2
import numpy as np

from edge.align import CROP_SIZE
from edge.faces import FaceDetector
from edge.images import IMAGE_EXTENSIONS, load_image, to_rgb_uint8
from emenet_tf.data.readers import crops
from emenet_tf.errors import DataError
from emenet_tf.io import atomic_path, atomic_write_json, atomic_write_text

MARKER = ".emenet-prepare"
CROPS = "crops"
LABELS = "labels.csv"
NO_FACE = "no_face.txt"
SUMMARY = "prepare_summary.json"
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
REASONS = {
    "no_face": "photographs (or frames) without a face",
    "unreadable": "files that could not be read as an image",
    "several_faces": "photographs with more than one face (the most confident kept)",
}


def check_out_dir(out_dir: str) -> None:
    """DataError unless ``out_dir`` is absent, empty or an earlier preparation (it holds MARKER)."""
    if not os.path.exists(out_dir):
        return
    if not os.path.isdir(out_dir):
        raise DataError("exists and is not a folder; refusing to write the preparation there", path=out_dir)
    entries = set(os.listdir(out_dir))
    if entries and MARKER not in entries:
        raise DataError("not empty and not an earlier preparation; refusing to write into it", path=out_dir)


def photo_rows(input_path: str) -> tuple[str, list[dict], list[str]]:
    """(root, rows, label columns) of a folder CSV or a class-folder tree: each row has ``path``
    (relative to root) and its label columns as text."""
    if os.path.isdir(input_path):
        rows = []
        for name in sorted(os.listdir(input_path)):
            folder = os.path.join(input_path, name)
            if not os.path.isdir(folder) or name.startswith("."):
                continue
            for dirpath, _, files in sorted(os.walk(folder)):
                for f in sorted(files):
                    if f.lower().endswith(IMAGE_EXTENSIONS):
                        rel = os.path.relpath(os.path.join(dirpath, f), input_path)
                        rows.append({"path": rel, "expr": name})
        return input_path, rows, ["expr"]
    with open(input_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        if "path" not in columns:
            raise DataError(f"no 'path' column (columns: {columns})", path=input_path, line=1)
        rows = list(reader)
    return os.path.dirname(os.path.abspath(input_path)), rows, [c for c in columns if c != "path"]


def _inside(root: str, rel: str) -> str | None:
    """The absolute path of ``rel`` if it lies inside ``root``, else None."""
    full = os.path.realpath(os.path.join(root, rel))
    return full if full.startswith(os.path.realpath(root) + os.sep) else None


class Preparation:
    """One preparation into ``out_dir``: crops written, rows kept, skips counted and named."""

    def __init__(self, out_dir: str, detector: FaceDetector):
        self.out_dir, self.detector = out_dir, detector
        self.rows: list[dict] = []
        self.counts = dict.fromkeys(REASONS, 0)
        self.no_face: list[str] = []

    def best_face(self, rgb: np.ndarray, name: str):
        """The most confident face of an image (Haar: the largest), or None (counted)."""
        faces = self.detector.detect(rgb)
        if not faces:
            self.counts["no_face"] += 1
            self.no_face.append(name)
            return None
        if len(faces) > 1:
            self.counts["several_faces"] += 1
        return max(faces, key=lambda f: (f.score or 0.0, f.box[2] * f.box[3]))

    def write_crop(self, rgb: np.ndarray, face, rel: str) -> str:
        """Write the face's aligned crop as crops/<rel>.jpg (atomically); return its path relative to out_dir."""
        out_rel = os.path.join(CROPS, os.path.splitext(rel)[0] + ".jpg")
        path = os.path.join(self.out_dir, out_rel)
        crop = face.crop(rgb, CROP_SIZE)
        try:
            data = crops.encode(out_rel, crop)
        except ValueError:
            raise DataError("JPEG encoding failed", path=path) from None
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            f.write(data)
        return out_rel

    def photos(self, input_path: str) -> None:
        root, rows, columns = photo_rows(input_path)
        self.columns = columns
        for line, row in enumerate(rows, start=2):
            rel = (row.get("path") or "").strip()
            full = _inside(root, rel) if rel else None
            if full is None:
                where = f"{input_path}:{line}" if os.path.isfile(input_path) else input_path
                raise DataError(f"{where}: path is empty or outside {root}", value=rel)
            try:
                rgb, _ = load_image(full)
            except (ValueError, OSError, cv2.error):
                self.counts["unreadable"] += 1
                self.no_face.append(rel)
                continue
            face = self.best_face(rgb, rel)
            if face is not None:
                kept = {c: row.get(c, "") for c in columns}
                self.rows.append({"path": self.write_crop(rgb, face, rel), **kept, "source": rel,
                                  "face_score": "" if face.score is None else f"{face.score:.4f}"})  # fmt: skip

    def video(self, path: str, every: int) -> None:
        self.columns = ["frame"]
        capture = cv2.VideoCapture(path)
        if not capture.isOpened():
            raise DataError("cannot open the video", path=path)
        stem, index = os.path.splitext(os.path.basename(path))[0], 0
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                if index % every == 0:
                    rgb, _ = to_rgb_uint8(frame)
                    name = f"{stem}/{index + 1:05d}"
                    face = self.best_face(rgb, f"{path} frame {index + 1}")
                    if face is not None:
                        self.rows.append({"path": self.write_crop(rgb, face, name), "frame": index + 1,
                                          "source": os.path.basename(path),
                                          "face_score": "" if face.score is None else f"{face.score:.4f}"})  # fmt: skip
                index += 1
        finally:
            capture.release()

    def finish(self, total: int) -> dict:
        """Write labels.csv (last, atomically), no_face.txt and the summary; return the summary."""
        summary = {
            "inputs": total,
            "kept": len(self.rows),
            "skipped": self.counts,
            "detector": self.detector.backend,
        }
        atomic_write_text(os.path.join(self.out_dir, NO_FACE), "".join(f"{n}\n" for n in self.no_face))
        atomic_write_json(os.path.join(self.out_dir, SUMMARY), summary)
        fields = ["path", *self.columns, "source", "face_score"]
        with atomic_path(os.path.join(self.out_dir, LABELS)) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(fields)))
            writer.writeheader()
            writer.writerows(self.rows)
        return summary


def prepare(input_path: str, out_dir: str, detector: str = "blazeface", every: int = 1) -> dict:
    """Prepare ``input_path`` (folder CSV, class-folder tree or video) into ``out_dir``; the summary."""
    if not os.path.exists(input_path):
        raise DataError("no such file or folder", path=input_path)
    if every < 1:
        raise DataError("--every must be >= 1", value=every)
    check_out_dir(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    atomic_write_text(os.path.join(out_dir, MARKER), "written by emenet_tf.prepare\n")
    work = Preparation(out_dir, FaceDetector(detector))
    if os.path.isfile(input_path) and input_path.lower().endswith(VIDEO_EXTENSIONS):
        work.video(input_path, every)
        total = work.counts["no_face"] + len(work.rows)
    else:
        work.photos(input_path)
        total = len(work.rows) + work.counts["no_face"] + work.counts["unreadable"]
    return work.finish(total)


def describe(summary: dict) -> str:
    """The one summary line the command prints."""
    skipped = ", ".join(f"{n} {REASONS[k]}" for k, n in summary["skipped"].items() if n)
    return f"{summary['kept']} of {summary['inputs']} inputs kept" + (f"; {skipped}" if skipped else "")


if __name__ == "__main__":
    from emenet_tf.cli.prepare import run_main

    run_main()
