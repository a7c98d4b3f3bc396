"""Shared by the dataset readers: skip counts, bad lines, the split rule, safe paths, the index.

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

Face crops and their cache: ``readers.crops``.
"""

from __future__ import annotations

import itertools
import os
import re
import zlib

import numpy as np
from absl import logging

from emenet_tf.data.index import FrameIndex, object_array
from emenet_tf.errors import DataError
from emenet_tf.labels import NUM_AU, NUM_EXPR

VALIDATION_BUCKETS = 10  # validation = crc32(group) % VALIDATION_BUCKETS == 0
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")  # compared lower-cased
NUM_EXAMPLES = 3
SPLITS = ("train", "validation")
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


def text_lines(path: str):
    """(line number from 1, stripped text) of each non-blank line of a text label file (UTF-8, a BOM
    dropped, undecodable bytes replaced so that the line is named, not the decoder)."""
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        for line_no, line in enumerate(f, start=1):
            text = line.strip()
            if text:
                yield line_no, text


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
    return object_array([splits[str(g)] for g in groups])


# ---------------------------------------------------------------- building the index


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
    data_dir: str,
    dataset: str,
    path: str,
    row_split,
    skips: dict,
    paths,
    video=None,
    frame=None,
    **labels,
) -> dict[str, FrameIndex]:
    """{"train", "validation"} FrameIndex of the rows, each sorted by (video, frame); one warning a split.

    row_split: (N,) "train" / "validation"; paths (relative to ``data_dir``), video, frame: (N,);
    video None: each image its own video, named by its path less the extension; frame None: all 1;
    labels: any of au, au_mask, expr, expr_mask, va, va_mask, expr_dist ((N, ...) arrays; absent:
    0 and masked; expr_dist None: the dataset has no annotator distributions). DataError when no
    row is left at all; ValueError (a programming error) when (video, frame) repeats.
    """
    row_split = np.asarray(row_split, dtype=object).astype(str)
    n = len(row_split)
    columns = _labels(n, labels)
    video = np.asarray([stem(p) for p in paths] if video is None else video, dtype=object).astype(str)
    frame = np.ones(n, np.int32) if frame is None else np.asarray(frame, np.int32)
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
        paths=object_array(np.asarray(paths, dtype=object)[rows]),
        video=object_array(v),
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
