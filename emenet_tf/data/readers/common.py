"""Shared by the dataset readers: skip counts, bad lines, the split rule, safe paths, crops and their cache.

Skips: each reader names its reasons (its SKIP_REASONS, plus COMMON_REASONS); a split's ``Skips``
counts every one (0 where none) and keeps NUM_EXAMPLES examples of each, and ``build_splits`` writes
ONE warning per split. A skip is counted in the split of its row (``PendingSkips`` holds them by group
until the split rule has placed the groups); a skip that belongs to no split (a line too malformed to
say which) is counted in train's.

The split rule (datasets without a split of their own): a row's group is its identity where the
dataset gives one, else its image; a group goes to validation when zlib.crc32 of its name (UTF-8)
mod VALIDATION_BUCKETS is 0, else to train (about 10% of the groups). Whenever that leaves a split
empty and there are >= 2 groups, the group with the smallest crc32 moves to validation (or the one
with the largest to train), so small datasets still get both splits. One group cannot be split: a
one-line DataError says so and how to give a split.

Crops: 112x112 RGB JPEGs (quality 95) from edge.align, the face preparation the device uses; each file
is written to a temporary name and renamed into place. ``Preparation`` reuses a completed preparation
on a rerun: a marker in work_dir records the source files' size and mtime and the settings; a stale
marker (the source or the settings changed) redoes every crop, a partial one (same source, not
finished) keeps the crops already written and makes the rest.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import zlib

import cv2
import numpy as np
from absl import logging

from edge import align
from edge.align import CROP_SIZE
from emenet_tf.data.index import FrameIndex
from emenet_tf.errors import DataError
from emenet_tf.io import atomic_write_text
from emenet_tf.labels import NUM_AU, NUM_EXPR

CROP_JPEG_QUALITY = 95
VALIDATION_BUCKETS = 10  # validation = crc32(group) % VALIDATION_BUCKETS == 0
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")  # compared lower-cased
NUM_EXAMPLES = 3
SPLITS = ("train", "validation")
MARKER_VERSION = 1  # bump when the crop recipe changes: every preparation is then redone
BAD_LINE = "bad_line"
# A path that needs no cleaning: no backslash, no empty, '.' or '..' part, not absolute, no drive letter.
_CLEAN = re.compile(r"^(?![A-Za-z]:)(?!\.\.?(?:/|$))(?!.*/\.\.?(?:/|$))(?!.*//)[^/\\][^\\]*(?<!/)$")
# Reasons every reader may count.
COMMON_REASONS = {BAD_LINE: "bad lines (malformed, out of range, or a path outside the dataset)"}


class Skips:
    """What a reader left out of one split: a count per reason and the first few examples of each."""

    def __init__(self, reasons: dict[str, str]):
        self.reasons = reasons
        self.counts = dict.fromkeys(reasons, 0)
        self.examples: dict[str, list[str]] = {reason: [] for reason in reasons}

    def add(self, reason: str, count: int = 1, examples=()) -> None:
        """Count ``count`` more of ``reason``; keep examples (read lazily) up to NUM_EXAMPLES."""
        if count:
            self.counts[reason] += int(count)
            room = NUM_EXAMPLES - len(self.examples[reason])
            self.examples[reason].extend(str(e) for e in itertools.islice(examples, max(room, 0)))


def split_skips(reasons: dict[str, str]) -> dict[str, Skips]:
    """{split: Skips} over COMMON_REASONS and ``reasons``."""
    return {split: Skips({**COMMON_REASONS, **reasons}) for split in SPLITS}


class PendingSkips:
    """Skips kept with the key that decides their row's split (its group, or the split's own name where
    the dataset gives one) until the groups' splits are known (``resolve``). A group the split rule never
    saw (every row of it skipped) goes where the plain rule (``bucket_validation``) puts it; a key that
    is a split's name ("train", "validation") goes to that split; a skip of no key (None: a line too
    malformed to say) goes to train."""

    def __init__(self, reasons: dict[str, str]):
        self.reasons = {**COMMON_REASONS, **reasons}
        self.items = []

    def add(self, group: str | None, reason: str, count: int = 1, examples=()) -> None:
        if reason not in self.reasons:
            raise KeyError(reason)
        if count:
            self.items.append(
                (group, reason, int(count), [str(e) for e in itertools.islice(examples, NUM_EXAMPLES)])
            )

    def of(self, group: str | None) -> _GroupSkips:
        """An object with ``add(reason, count, examples)`` counting under ``group`` (for ``bad_line``)."""
        return _GroupSkips(self, group)

    def resolve(self, splits: dict[str, str]) -> dict[str, Skips]:
        """{split: Skips} given {group: split} (``group_splits``)."""
        out = {split: Skips(self.reasons) for split in SPLITS}
        for group, reason, count, examples in self.items:
            if group is None or group in SPLITS:
                split = group or "train"
            else:
                split = splits.get(group) or ("validation" if bucket_validation(group) else "train")
            out[split].add(reason, count, examples)
        return out


class _GroupSkips:
    def __init__(self, pending: PendingSkips, group: str | None):
        self.pending, self.group = pending, group

    def add(self, reason: str, count: int = 1, examples=()) -> None:
        self.pending.add(self.group, reason, count, examples)


def bad_line(error: DataError, skips: Skips, skip_bad_labels: bool) -> None:
    """Raise ``error`` unless ``skip_bad_labels``; then count it as a bad line, its message the example."""
    if not skip_bad_labels:
        raise error
    skips.add(BAD_LINE, 1, [str(error)])


def relative_path(value: str) -> str | None:
    """``value`` as a clean relative path ('/' separators, backslashes read as separators), or None
    when it is empty, absolute (also 'C:...') or leaves its root through '..'. Lexical only: a
    symbolic link inside the dataset is followed wherever it points."""
    text = value.strip()
    if text and _CLEAN.match(text):  # the common case, without splitting
        return text
    text = text.replace("\\", "/")
    if not text or text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        return None
    parts = []
    for part in text.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts) or None


def is_image_name(name: str) -> bool:
    """True for a file name ending in one of IMAGE_EXTENSIONS (any case)."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def stem(path: str) -> str:
    """``path`` without its extension ('a/b.jpg' -> 'a/b'; as os.path.splitext, for '/' paths, faster)."""
    dot = path.rfind(".")
    return path[:dot] if dot > path.rfind("/") + 1 and path[dot - 1] != "/" else path


def existing(root: str, paths) -> np.ndarray:
    """(N,) bool: each relative path (str, '/' separators) is a file under ``root``. Lists each
    folder once (faster than a stat per file for many files in few folders)."""
    listing: dict[str, set] = {}
    out = np.zeros(len(paths), bool)
    for i, rel in enumerate(paths):
        folder, _, name = rel.rpartition("/")
        if folder not in listing:
            try:
                with os.scandir(os.path.join(root, folder)) as entries:
                    listing[folder] = {e.name for e in entries if not e.is_dir()}
            except OSError:
                listing[folder] = set()
        out[i] = name in listing[folder]
    return out


# ---------------------------------------------------------------- the split rule


def bucket_validation(group: str) -> bool:
    """The plain rule, without the small-dataset fix: crc32(group) mod VALIDATION_BUCKETS == 0."""
    return zlib.crc32(group.encode("utf-8")) % VALIDATION_BUCKETS == 0


def group_splits(groups, path: str, how: str) -> dict[str, str]:
    """{group: "train" / "validation"} of the distinct ``groups`` by the module's split rule.

    ``how`` tells the user how to give a split instead; DataError when there is one group only.
    """
    names = sorted({str(g) for g in groups})
    if len(names) == 1:
        raise DataError(
            f"one identity ({names[0]!r}) only: too small to split into train and validation; {how}", path
        )
    crc = np.array([zlib.crc32(n.encode("utf-8")) for n in names], np.int64)
    validation = crc % VALIDATION_BUCKETS == 0
    if len(names) and not validation.any():
        validation[np.argmin(crc)] = True
    if len(names) and validation.all():
        validation[np.argmax(crc)] = False
    return {n: ("validation" if v else "train") for n, v in zip(names, validation.tolist(), strict=True)}


def rule_split(groups, path: str, how: str) -> np.ndarray:
    """(N,) object array of "train" / "validation" per row of ``groups`` (``group_splits``)."""
    splits = group_splits(groups, path, how)
    out = np.empty(len(groups), dtype=object)
    out[:] = [splits[str(g)] for g in groups]
    return out


# ---------------------------------------------------------------- building the index


def _objects(values) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def _labels(n: int, columns: dict) -> dict:
    """Every label array of a FrameIndex for ``n`` rows: given ones cast, the others 0 (masked)."""
    shapes = {"au": (NUM_AU,), "au_mask": (NUM_AU,), "va": (2,), "va_mask": (2,), "expr_mask": ()}
    out = {}
    for name, shape in shapes.items():
        value = columns.get(name)
        out[name] = np.zeros((n, *shape), np.float32) if value is None else np.asarray(value, np.float32)
    expr = columns.get("expr")
    out["expr"] = np.zeros(n, np.int32) if expr is None else np.asarray(expr, np.int32)
    dist = columns.get("expr_dist")
    out["expr_dist"] = None if dist is None else np.asarray(dist, np.float32).reshape(n, NUM_EXPR)
    return out


def build_splits(
    data_dir: str, dataset: str, path: str, row_split, skips: dict, paths, video, frame, **labels
) -> dict[str, FrameIndex]:
    """{"train", "validation"} FrameIndex of the rows, each sorted by (video, frame); one warning a split.

    row_split: (N,) "train" / "validation"; paths (relative to ``data_dir``), video, frame: (N,);
    labels: any of au, au_mask, expr, expr_mask, va, va_mask, expr_dist ((N, ...) arrays; absent:
    0 and masked; expr_dist None: the dataset has no annotator distributions). DataError when no
    row is left at all; ValueError (a programming error) when (video, frame) repeats.
    """
    row_split = np.asarray(row_split, dtype=object).astype(str)
    n = len(row_split)
    columns = _labels(n, labels)
    video = np.asarray(video, dtype=object).astype(str)
    frame = np.asarray(frame, np.int32)
    if n == 0:
        totals = {r: sum(s.counts[r] for s in skips.values()) for r in next(iter(skips.values())).counts}
        left = ", ".join(f"{k} {v}" for k, v in totals.items() if v) or "nothing"
        raise DataError(f"{dataset}: no usable row (skipped: {left})", path)
    out = {}
    for split in SPLITS:
        rows = np.flatnonzero(row_split == split)
        rows = rows[np.lexsort((frame[rows], video[rows]))]
        out[split] = _index(data_dir, split, rows, paths, video, frame, columns, skips[split])
        warn(dataset, split, path, skips[split])
    return out


def _index(data_dir, split, rows, paths, video, frame, columns, skips: Skips) -> FrameIndex:
    v, f = video[rows], frame[rows]
    if len(rows) > 1 and np.any((v[1:] == v[:-1]) & (f[1:] == f[:-1])):
        raise ValueError(f"{split}: a (video, frame) pair repeats")
    dist = columns["expr_dist"]
    index = FrameIndex(
        data_dir=data_dir,
        split=split,
        paths=_objects(np.asarray(paths, dtype=object)[rows]),
        video=_objects(v),
        frame=f,
        au=columns["au"][rows],
        au_mask=columns["au_mask"][rows],
        expr=columns["expr"][rows],
        expr_mask=columns["expr_mask"][rows],
        va=columns["va"][rows],
        va_mask=columns["va_mask"][rows],
        skipped=dict(skips.counts),
        skip_examples={r: list(ex) for r, ex in skips.examples.items() if ex},
        expr_dist=None if dist is None else dist[rows],
    )
    index.validate()
    return index


def warn(dataset: str, split: str, path: str, skips: Skips) -> None:
    """One warning for the split: each reason's count, meaning and first examples."""
    clauses = [
        f"{n} {skips.reasons[reason]} (e.g. {'; '.join(skips.examples[reason])})"
        for reason, n in skips.counts.items()
        if n
    ]
    if clauses:
        logging.warning("%s %s split of %s: skipped %s", dataset, split, path, ", ".join(clauses))


# ---------------------------------------------------------------- images and crops


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
