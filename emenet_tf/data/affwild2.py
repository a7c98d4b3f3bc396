"""Reads an Aff-Wild2 (ABAW2) tree into a FrameIndex: one row per frame, a mask per task, clear errors.

Layout (see docs/ARCHITECTURE.md; the ABAW2 release of Aff-Wild2):
  <data_dir>/cropped_aligned/<video>/00001.jpg        five digits, 1-based; failed detections missing
  <data_dir>/annotations/{AU_Set,EXPR_Set,VA_Set}/{Train_Set,Validation_Set}/<video>.txt
Line 1 of an annotation file is its header, line k+1 the label of frame k. A frame gets every label
it has in the three task files of its split; a task it is not labelled for is masked (mask 0).
Any ``<digits>.jpg`` or ``.jpeg`` (any case) is the image of frame int(digits): ``1.jpg``,
``00001.jpg`` and ``00001.JPG`` all work, and the index records the file's own name; two files
for one frame are refused. Whatever is left out is counted by reason (``SKIP_REASONS``) with a few
examples in ``FrameIndex.skipped`` / ``skip_examples`` and in ONE warning per split.

Speed: each file is parsed in bulk with numpy (no Python loop per line unless the file is bad and
its first bad line has to be named), and each video folder is listed once. The index never opens
an image. Strings are object arrays: ``video`` rows share one str per video (8 bytes a row) and
``paths`` costs about 100 bytes a row against 168 for fixed-width unicode (benchmarks/index_bench.py).
"""

from __future__ import annotations

import os

import numpy as np

from emenet_tf.data.index import FrameIndex, object_array
from emenet_tf.data.readers import common
from emenet_tf.errors import ConfigError, DataError
from emenet_tf.labels import (
    ANNOTATION_DIR,
    AU_MISSING,
    AU_NAMES,
    EXPR_MISSING,
    HEADERS,
    IMAGE_DIR,
    NUM_AU,
    SPLITS,
    TASK_DIRS,
    TASKS,
    VA_MISSING,
    VA_NAMES,
    frame_name,
)

IMAGE_EXTENSIONS = ("jpg", "jpeg")  # compared lower-cased
# What the reader leaves out, by reason: the unit counted and what it means (the warning's words).
SKIP_REASONS = {
    "all_missing": "frames with every label missing",
    "no_image": "labelled frames without an image",
    "bad_line": "bad annotation lines",
    "no_video_folder": "annotated videos without an image folder",
    "no_label_line": "images after the last annotation line of their video",
    "no_annotation": "image folders annotated in no split",
    "not_frame_image": "files that are not frame images (<digits>.jpg)",
}

_COLUMNS = {"au": AU_NAMES, "expr": ("EXPR",), "va": VA_NAMES}
_MISSING = {"au": AU_MISSING, "expr": EXPR_MISSING, "va": VA_MISSING}
_RULES = {
    "au": "label must be 0, 1 or -1 (missing)",
    "expr": "label must be an integer in 0..6 or -1 (missing)",
    "va": "value must be in [-1, 1] or -5 (missing)",
}


def check_data_dir(data_dir: str) -> None:
    """Raise a one-line DataError unless ``data_dir`` holds cropped_aligned/ and annotations/."""
    layout = f"expected {IMAGE_DIR}/<video>/00001.jpg and {ANNOTATION_DIR}/<Task>_Set/<Split>_Set/<video>.txt"
    if not os.path.isdir(data_dir):
        raise DataError(f"not a folder; {layout}", path=data_dir)
    for sub in (IMAGE_DIR, ANNOTATION_DIR):
        if not os.path.isdir(os.path.join(data_dir, sub)):
            raise DataError(f"not an Aff-Wild2 folder: no {sub}/ in it; {layout}", path=data_dir)


def load_split(
    data_dir: str, split: str, skip_bad_labels: bool = False, check_images: bool = True
) -> FrameIndex:
    """Index every labelled frame of ``split`` ("train" or "validation"), sorted by (video, frame).

    skip_bad_labels: a bad line (field count, non-number, value out of range) or an annotated video
      without an image folder is skipped and counted instead of raising; bad headers still raise.
    check_images: list each video folder, drop frames without an image and count images and
      folders nothing labels (False: trust the annotations; for benchmarks and label-only trees).
    Raises DataError when two files of one folder are images of the same frame (1.jpg, 00001.jpg).
    ``skipped`` counts every key of SKIP_REASONS; ``skip_examples`` holds a few of each.
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; expected one of {sorted(SPLITS)}")
    check_data_dir(data_dir)
    annotated = {s: _annotation_files(data_dir, s) for s in SPLITS}
    files = annotated[split]
    if not files:
        where = os.path.join(data_dir, ANNOTATION_DIR, "{AU_Set,EXPR_Set,VA_Set}", SPLITS[split])
        raise DataError(f"no annotation files for split {split!r} (looked for {where}/*.txt)")
    skips = common.Skips(SKIP_REASONS)
    if check_images:
        _count_unannotated(data_dir, annotated, skips)
    other_splits = set().union(*(videos for s, videos in annotated.items() if s != split))
    parts = []
    for video in sorted(files):
        part = _read_video(data_dir, video, files[video], skip_bad_labels, check_images, skips)
        if part is not None:
            parts.append(part)
    index = _build_index(data_dir, split, parts, skips, other_splits)
    index.validate()
    common.warn("Aff-Wild2", split, data_dir, skips)
    return index


def load_splits(
    data_dir: str,
    splits=("train", "validation"),
    skip_bad_labels: bool = False,
    check_images: bool = True,
) -> dict[str, FrameIndex]:
    """``{split: load_split(...)}`` for each split named."""
    return {s: load_split(data_dir, s, skip_bad_labels, check_images) for s in splits}


def read_annotation(path: str, task: str, skip_bad_labels: bool = False) -> tuple[np.ndarray, list]:
    """Labels of one annotation file: ((lines, columns) array, [DataError per skipped line]).

    Row k-1 is frame k. AU and EXPR come back as int8, VA as float32, missing markers kept.
    Raises DataError on a wrong header, and on the first bad line unless ``skip_bad_labels``
    (then bad lines are returned as errors and their rows hold the missing marker).
    """
    with open(path, "rb") as f:
        raw = f.read()
    body = _check_header(raw, path, task)
    values = _bulk_values(body, len(_COLUMNS[task]))
    errors = []
    if values is None or _invalid(values, task).any():
        values, errors = _values_line_by_line(body, path, task)
        if errors and not skip_bad_labels:
            raise errors[0]
    dtype = np.float32 if task == "va" else np.int8
    return values.astype(dtype), errors


def _annotation_files(data_dir: str, split: str) -> dict[str, dict[str, str]]:
    """{video: {task: annotation path}} for ``split`` (empty when it has none)."""
    files: dict[str, dict[str, str]] = {}
    for task in TASKS:
        folder = os.path.join(data_dir, ANNOTATION_DIR, TASK_DIRS[task], SPLITS[split])
        if not os.path.isdir(folder):
            continue
        for entry in os.scandir(folder):
            if entry.name.endswith(".txt") and not entry.name.startswith(".") and entry.is_file():
                files.setdefault(entry.name[:-4], {})[task] = entry.path
    return files


def _count_unannotated(data_dir: str, annotated: dict, skips: common.Skips) -> None:
    """Count image folders annotated in no split, and loose files, in cropped_aligned/."""
    folders, loose = [], []
    for entry in os.scandir(os.path.join(data_dir, IMAGE_DIR)):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            loose.append(f"{IMAGE_DIR}/{entry.name}")
        elif not any(entry.name in videos for videos in annotated.values()):
            folders.append(f"{IMAGE_DIR}/{entry.name}/")
    skips.add("no_annotation", len(folders), sorted(folders))
    skips.add("not_frame_image", len(loose), sorted(loose))


def _read_video(data_dir, video, files, skip_bad_labels, check_images, skips) -> tuple | None:
    """(video, {task: labels}, images or None) for one annotated video; None if it is skipped."""
    folder = os.path.join(data_dir, IMAGE_DIR, video)
    if check_images and not os.path.isdir(folder):
        path = next(iter(files.values()))
        if not skip_bad_labels:
            raise DataError(f"video {video!r} has no images folder", path=path, value=folder)
        skips.add("no_video_folder", 1, [path])
        return None
    labels = {}
    for task, path in files.items():
        labels[task], errors = read_annotation(path, task, skip_bad_labels)
        skips.add("bad_line", len(errors), map(str, errors))
    images = _image_files(folder, video, skips) if check_images else None
    return video, labels, images


def _check_header(raw: bytes, path: str, task: str) -> bytes:
    """The body after a correct header line, CRs removed and trailing blank lines dropped."""
    raw = raw.replace(b"\r", b"")
    header, _, body = raw.partition(b"\n")
    found = header.decode("utf-8", "replace").strip().lstrip("\ufeff").strip()
    if found != HEADERS[task]:
        raise DataError(f"wrong header for a {task.upper()} file: expected {HEADERS[task]!r}", path, 1, found)
    return body.rstrip(b" \t\n")


def _bulk_values(body: bytes, ncols: int) -> np.ndarray | None:
    """(lines, ncols) values of a well-formed body, parsed in bulk; None if any line is malformed."""
    if not body:
        return np.zeros((0, ncols), np.float64)
    buf = np.frombuffer(body, np.uint8)
    is_newline = buf == ord("\n")
    sep = np.flatnonzero(is_newline | (buf == ord(",")))
    n_lines = int(np.count_nonzero(is_newline)) + 1
    if sep.size + 1 != n_lines * ncols:
        return None
    # Every line has ncols fields iff exactly every ncols-th separator is a newline.
    if not np.array_equal(is_newline[sep], np.arange(1, sep.size + 1) % ncols == 0):
        return None
    starts = np.concatenate(([0], sep + 1))
    ends = np.append(sep, buf.size)
    values = _small_ints(buf, starts, ends)
    if values is None:
        try:
            values = np.array(body.replace(b"\n", b",").split(b","), dtype=np.float64)
        except ValueError:
            return None
    return values.reshape(n_lines, ncols)


def _small_ints(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray | None:
    """Fields as float64 when every field is "d" or "-d" (AU and EXPR files), else None. Vectorised."""
    length = ends - starts
    if not np.all((length == 1) | (length == 2)):
        return None
    first = buf[starts].astype(np.int16) - ord("0")
    last = buf[ends - 1].astype(np.int16) - ord("0")
    ok = (last >= 0) & (last <= 9) & np.where(length == 1, True, first == ord("-") - ord("0"))
    if not ok.all():
        return None
    return np.where(length == 1, last, -last).astype(np.float64)


def _invalid(values: np.ndarray, task: str) -> np.ndarray:
    """Boolean mask of values that break ``task``'s rule (NaN is invalid everywhere)."""
    v = values
    if task == "au":
        return ~((v == 0) | (v == 1) | (v == AU_MISSING))
    if task == "expr":
        return ~(((v >= 0) & (v <= 6) & (v == np.floor(v))) | (v == EXPR_MISSING))
    return ~(((v >= -1) & (v <= 1)) | (v == VA_MISSING))


def _values_line_by_line(body: bytes, path: str, task: str) -> tuple[np.ndarray, list]:
    """Slow path for a bad file: parse each line, naming every bad one; bad rows hold the marker."""
    columns = _COLUMNS[task]
    lines = body.decode("utf-8", "replace").split("\n") if body else []
    values = np.full((len(lines), len(columns)), _MISSING[task], np.float64)
    errors = []
    for i, line in enumerate(lines):
        error, row = _parse_line(line, path, i + 2, task)
        if error is None:
            values[i] = row
        else:
            errors.append(error)
    return values, errors


def _parse_line(line: str, path: str, lineno: int, task: str) -> tuple[DataError | None, list]:
    """(None, values) for a good line, else (DataError naming file, line and value, [])."""
    columns = _COLUMNS[task]
    fields = line.split(",") if line.strip() else []
    if len(fields) != len(columns):
        msg = f"expected {len(columns)} comma-separated {task.upper()} values, got {len(fields)}"
        return DataError(msg, path, lineno, line), []
    row = []
    for name, field in zip(columns, fields, strict=True):
        try:
            row.append(float(field))
        except ValueError:
            return DataError(f"{name} is not a number", path, lineno, field.strip()), []
    bad = np.flatnonzero(_invalid(np.array(row), task))
    if bad.size:
        j = int(bad[0])
        return DataError(f"{columns[j]} {_RULES[task]}", path, lineno, fields[j].strip()), []
    return None, row


def _image_files(folder: str, video: str, skips: common.Skips) -> tuple[np.ndarray, np.ndarray]:
    """(frame numbers, file names) of the frame images in ``folder``: one listdir, no stat.

    A frame image is <digits>.jpg or .jpeg in any case; other names (hidden files aside) are
    counted as not_frame_image. Two images of one frame raise DataError naming both.
    """
    frames, names, others = [], [], []
    for name in os.listdir(folder):
        stem, dot, ext = name.rpartition(".")
        if dot and stem.isdigit() and stem.isascii() and ext.lower() in IMAGE_EXTENSIONS:
            frames.append(int(stem))
            names.append(name)
        elif not name.startswith("."):
            others.append(name)
    skips.add("not_frame_image", len(others), (f"{IMAGE_DIR}/{video}/{n}" for n in sorted(others)))
    frames = np.array(frames, dtype=np.int64)
    names = object_array(names)
    order = np.argsort(frames, kind="stable")
    frames, names = frames[order], names[order]
    same = np.flatnonzero(frames[1:] == frames[:-1])
    if same.size:
        k = same[0]
        raise DataError(
            f"two images of frame {frames[k]}: {names[k]} and {names[k + 1]}; keep one", path=folder
        )
    return frames, names


def _build_index(
    data_dir: str, split: str, parts: list, skips: common.Skips, other_splits: set
) -> FrameIndex:
    """Merge per-video labels into one FrameIndex; drop unlabelled and imageless frames (counted)."""
    lengths = [max(len(v) for v in labels.values()) for _, labels, _ in parts]
    raw = _merged_labels(parts, lengths)
    video_id = np.repeat(np.arange(len(parts), dtype=np.int32), lengths)
    frame = np.concatenate([np.arange(1, n + 1, dtype=np.int32) for n in lengths] or [np.zeros(0, np.int32)])
    has_image = _has_image(parts, lengths, skips, other_splits)
    labelled = (raw["au"] != AU_MISSING).any(1) | (raw["expr"][:, 0] != EXPR_MISSING)
    labelled |= (raw["va"] != VA_MISSING).any(1)
    names = [video for video, _, _ in parts]
    for reason, rows in (("all_missing", ~labelled), ("no_image", labelled & ~has_image)):
        found = np.flatnonzero(rows)
        skips.add(reason, found.size, (f"{names[video_id[r]]} frame {frame[r]}" for r in found))
    keep = labelled & has_image
    au, expr, va = raw["au"][keep], raw["expr"][keep, 0], raw["va"][keep]
    del raw
    video_id, frame = video_id[keep], frame[keep]
    return FrameIndex(
        data_dir=data_dir,
        split=split,
        paths=_paths(parts, video_id, frame),
        video=object_array(names)[video_id],
        frame=frame,
        au=np.maximum(au, 0).astype(np.float32),
        au_mask=(au != AU_MISSING).astype(np.float32),
        expr=np.maximum(expr, 0).astype(np.int32),
        expr_mask=(expr != EXPR_MISSING).astype(np.float32),
        va=np.where(va == VA_MISSING, 0.0, va).astype(np.float32),
        va_mask=(va != VA_MISSING).astype(np.float32),
        skipped=dict(skips.counts),
        skip_examples={reason: list(ex) for reason, ex in skips.examples.items() if ex},
    )


def _merged_labels(parts: list, lengths: list) -> dict:
    """{task: (frames, columns) raw labels of all videos, back to back}; missing marker where absent."""
    total = int(sum(lengths))
    raw = {
        "au": np.full((total, NUM_AU), AU_MISSING, np.int8),
        "expr": np.full((total, 1), EXPR_MISSING, np.int8),
        "va": np.full((total, 2), VA_MISSING, np.float32),
    }
    start = 0
    for (_, labels, _), n in zip(parts, lengths, strict=True):
        for task, values in labels.items():
            raw[task][start : start + len(values)] = values
        start += n
    return raw


def _has_image(parts: list, lengths: list, skips: common.Skips, other_splits: set) -> np.ndarray:
    """(frames,) bool: the frame has an image. Counts images after a video's last annotation line.

    Images of a video that the other split annotates too are not counted: they may be its frames.
    """
    has_image = np.ones(int(sum(lengths)), bool)
    start = 0
    for (video, _, images), n in zip(parts, lengths, strict=True):
        if images is not None:
            frames, files = images
            inside = (frames >= 1) & (frames <= n)
            present = np.zeros(n + 1, bool)
            present[frames[inside]] = True
            has_image[start : start + n] = present[1:]
            if video not in other_splits:
                outside = files[~inside]
                skips.add("no_label_line", outside.size, (f"{IMAGE_DIR}/{video}/{f}" for f in outside))
        start += n
    return has_image


def _paths(parts: list, video_id: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """(N,) object array of "cropped_aligned/<video>/<file name>", built one video at a time.

    The file name is the image's own (``1.jpg``, ``00001.JPG``); without a listing (check_images
    False) it is the standard ``00001.jpg``.
    """
    out = np.empty(frame.shape[0], dtype=object)
    bounds = np.searchsorted(video_id, np.arange(len(parts) + 1))
    for v, (name, _, images) in enumerate(parts):
        lo, hi = bounds[v], bounds[v + 1]
        prefix = f"{IMAGE_DIR}/{name}/"
        if images is None:
            out[lo:hi] = [prefix + frame_name(k) for k in frame[lo:hi].tolist()]
        else:
            frames, files = images  # sorted by frame, one file each
            out[lo:hi] = [prefix + f for f in files[np.searchsorted(frames, frame[lo:hi])].tolist()]
    return out


def check_path(path: str) -> None:
    """The ``--data affwild2:PATH`` check before anything is written: a folder with the layout."""
    check_data_dir(path)


def read(path: str, work_dir: str, skip_bad_labels: bool = False) -> dict[str, FrameIndex]:
    """The reader protocol of ``data.sources``: both splits of the Aff-Wild2 tree at ``path``
    (``work_dir`` is not needed: the frames are face crops already)."""
    return load_splits(path, skip_bad_labels=skip_bad_labels)
