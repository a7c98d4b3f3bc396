"""Reads face images and their labels: a CSV (``folder:FILE.csv``) or class sub-folders (``folder:DIR``).

``folder:FILE.csv``: a header line, then one row per image. Columns (names exact, any order):
  path               required; the image, relative to the CSV's folder ('/' or '\\' separators);
                     .jpg .jpeg .png .bmp .gif in any case; absolute paths and paths leaving the
                     folder through '..' are bad lines
  expr               an expression name (case-insensitive: neutral, anger/angry, disgust, fear,
                     happiness/happy, sadness/sad, surprise) or an index 0-6 in Aff-Wild2 order;
                     contempt, none, uncertain and no-face are counted by their reason and masked
  AU1 ... AU26       any of the project's 12 AUs, 0 or 1
  valence, arousal   each in [-1, 1]
  split              train or validation (case-insensitive); without the column, the split rule
  group              optional extra: the identity a row belongs to (rows of one group stay in one
                     split); default the ``source`` cell, else the image path without extension
  source             optional extra: where the image came from (e.g. the photograph a crop was cut
                     from); not read otherwise
  face_score, frame  optional extras emenet_tf.prepare writes (the detector's confidence; a video's
                     frame number); not read
An empty cell is a missing label (mask 0). A row without any label is skipped ("no_label"); a path
listed twice (or with another extension: the video is the path without it), a wrong field count, an
unknown name or a value out of range is a bad line (DataError naming file, line and value, or counted
with skip_bad_labels). Any other column is a DataError naming it.

``folder:DIR``: Keras' image_dataset_from_directory layout, DIR/<class>/.../<image>: class folders
named like the expression names above (case-insensitive; contempt, none, uncertain, no-face counted
by reason), images found at any depth under them; a folder with another name is counted
("unknown_class"). When DIR holds ``train/`` (any case), it holds the training classes and the first
of ``validation/``, ``val/``, ``test/`` present the validation classes (a further one is counted,
"test_split"; other folders beside them are "unknown_class"); without a validation folder, train/'s
images are split by the rule. Otherwise DIR holds the classes and the split rule applies.

Split rule (common.py): the group of a row is its identity (``group``, else ``source``) or the image
path without extension; validation = the groups with crc32(group) % 10 == 0, at least one group in each
split when there are two or more; a single group raises a one-line DataError (give a ``split`` column).

Each image is its own video (its path without extension), frame 1; images are used as they are (no
cropping: emenet_tf.prepare turns photographs into aligned crops and writes such a CSV). ``data_dir``
is the CSV's folder (or DIR). ``work_dir`` is not used.
"""

from __future__ import annotations

import csv
import dataclasses
import os

import numpy as np

from emenet_tf.data.index import FrameIndex
from emenet_tf.data.readers import common, labelmaps
from emenet_tf.errors import DataError
from emenet_tf.labels import AU_NAMES, NUM_AU

NAME = "folder"
SKIP_REASONS = {
    "no_image": "rows whose image file is missing",
    "no_label": "rows without any label",
    "contempt": "rows labelled contempt (EXPR masked; row dropped if nothing else is labelled)",
    "none": "rows labelled none (EXPR masked)",
    "uncertain": "rows labelled uncertain (EXPR masked)",
    "no_face": "rows labelled no-face (EXPR masked)",
    "unknown_class": "images in sub-folders that are not expression names",
    "not_image": "files that are not images (.jpg .jpeg .png .bmp .gif)",
    "loose_file": "files outside the class sub-folders",
    "test_split": "images in a further held-out folder (test/ beside validation/ or val/)",
    "same_name": "images named as another but for the extension (a.jpg, a.png: the first kept)",
}
LABEL_COLUMNS = ("expr", *AU_NAMES, "valence", "arousal")
EXTRA_COLUMNS = ("split", "group", "source", "face_score", "frame")
COLUMNS = ("path", *LABEL_COLUMNS, *EXTRA_COLUMNS)
SPLIT_FOLDERS = {"train": "train", "validation": "validation", "val": "validation", "test": "validation"}
HOW_TO_SPLIT = "add a 'split' column (train / validation) to the CSV"


@dataclasses.dataclass
class Table:
    """The rows of a labels CSV that parsed, before any image is looked at (``parse_csv``)."""

    lines: np.ndarray  # (N,) 1-based line numbers
    paths: list  # clean relative paths
    group: np.ndarray  # (N,) object
    split: np.ndarray | None  # (N,) object "train" / "validation", None without a split column
    labels: dict  # FrameIndex label arrays: au, au_mask, expr, expr_mask, va, va_mask
    errors: list  # DataErrors of the first bad lines, line order
    bad_lines: int  # how many lines are bad
    reasons: list  # (row, reason) of rows whose EXPR is outside the 7 (counted, masked)


def check_path(path: str) -> None:
    """A CSV with a known header, or a folder (before anything is written)."""
    if os.path.isdir(path):
        return
    if not path.lower().endswith(".csv"):
        raise DataError("not a .csv file or a folder of class sub-folders", path)
    with _open(path) as f:
        header = next(csv.reader(f), None)
    _check_header(header, path)


def read(path: str, work_dir: str, skip_bad_labels: bool = False) -> dict[str, FrameIndex]:
    """The reader protocol (data.sources): {"train", "validation"} of the CSV or folder at ``path``."""
    check_path(path)
    if os.path.isdir(path):
        from emenet_tf.data.readers import folder_tree  # it reads this module's rules

        return folder_tree.read_tree(path, skip_bad_labels)
    return _read_csv(path, skip_bad_labels)


# ---------------------------------------------------------------- the CSV


def _open(path: str):
    return open(path, newline="", encoding="utf-8-sig")


def _check_header(header, path: str) -> list[str]:
    if not header:
        raise DataError("empty file: expected a header line with a 'path' column", path, 1)
    names = [h.strip() for h in header]
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        known = "path, expr, AU1..AU26 (the 12), valence, arousal, split, group, source"
        raise DataError(f"unknown columns {', '.join(map(repr, unknown))}; known: {known}", path, 1)
    if len(set(names)) != len(names):
        raise DataError("a column is named twice", path, 1, ",".join(names))
    if "path" not in names:
        raise DataError("no 'path' column", path, 1, ",".join(names))
    if not any(n in LABEL_COLUMNS for n in names):
        raise DataError(f"no label column (any of {', '.join(LABEL_COLUMNS)})", path, 1)
    return names


def _rows(path: str) -> tuple[list[str], list, list, list]:
    """(header, cell rows, their line numbers, DataErrors of rows with a wrong field count)."""
    rows, lines, errors = [], [], []
    try:
        with _open(path) as f:
            reader = csv.reader(f)
            header = _check_header(next(reader, None), path)
            width = len(header)
            for row in reader:
                if len(row) == width:
                    rows.append(row)
                    lines.append(reader.line_num)
                elif row:  # blank lines are ignored
                    msg = f"expected {width} comma-separated fields, got {len(row)}"
                    errors.append(DataError(msg, path, reader.line_num, ",".join(row)))
    except UnicodeDecodeError as err:
        raise DataError(f"not UTF-8 text ({err.reason} at byte {err.start})", path) from None
    except csv.Error as err:
        raise DataError(f"not a readable CSV ({err})", path, getattr(reader, "line_num", None)) from None
    return header, rows, lines, errors


class _Checks:
    """Bad cells of a table, column by column: (bad mask, message of a row) pairs."""

    def __init__(self, n: int):
        self.n = n
        self.items = []

    def add(self, bad: np.ndarray, message) -> None:
        if bad.any():
            self.items.append((bad, message))

    def bad(self) -> np.ndarray:
        out = np.zeros(self.n, bool)
        for mask, _ in self.items:
            out |= mask
        return out

    def message(self, row: int) -> tuple[str, str]:
        """(message, value) of the first bad column of ``row``."""
        return next(message(row) for mask, message in self.items if mask[row])


def parse_csv(path: str) -> Table:
    """Parse and check a labels CSV without touching any image: every row's path, group, split and
    labels, and a DataError per bad line (wrong field count, bad value, unsafe path, repeated path)."""
    header, rows, lines, errors = _rows(path)
    n = len(rows)
    columns = list(zip(*rows, strict=True)) if n else [()] * len(header)
    cells = {name: np.array(col, dtype=str) for name, col in zip(header, columns, strict=True)}
    checks = _Checks(n)
    clean = _paths(cells["path"], checks)
    labels, reasons = _labels(cells, checks)
    split = _splits(cells["split"], checks) if "split" in cells else None
    _repeats(clean, checks, np.asarray(lines))
    bad = checks.bad()
    bad_lines = len(errors) + int(bad.sum())
    lines = np.asarray(lines, np.int64)
    for row in np.flatnonzero(bad)[: common.NUM_EXAMPLES]:
        message, value = checks.message(row)
        errors.append(DataError(message, path, int(lines[row]), value))
    errors.sort(key=lambda e: e.line)
    keep = np.flatnonzero(~bad)
    group = _groups(cells, clean)
    return Table(
        lines=lines[keep],
        paths=[clean[i] for i in keep.tolist()],
        group=group[keep],
        split=None if split is None else split[keep],
        labels={k: v[keep] for k, v in labels.items()},
        errors=errors[: max(common.NUM_EXAMPLES, 1)],
        bad_lines=bad_lines,
        reasons=[(int(np.searchsorted(keep, r)), reason) for r, reason in reasons if not bad[r]],
    )


def _paths(raw: np.ndarray, checks: _Checks) -> list:
    clean = [common.relative_path(p) for p in raw.tolist()]
    unsafe = np.array([c is None for c in clean], bool)
    checks.add(unsafe, lambda r: ("path is empty, absolute or leaves the CSV's folder", raw[r]))
    not_image = np.array([c is not None and not common.is_image_name(c) for c in clean], bool)
    exts = " ".join(common.IMAGE_EXTENSIONS)
    checks.add(not_image, lambda r: (f"path is not an image file ({exts})", raw[r]))
    return clean


def _repeats(clean: list, checks: _Checks, lines: np.ndarray) -> None:
    """A path listed twice, or with another extension (an image's video is its path without extension)."""
    keyed = np.array([common.stem(c) if c else "" for c in clean], dtype=str)
    if keyed.size == 0:
        return
    _, first, inverse = np.unique(keyed, return_index=True, return_inverse=True)
    repeat = (first[inverse] != np.arange(keyed.size)) & (keyed != "")
    message = "path listed twice, or with another extension (first on line {})"
    checks.add(repeat, lambda r: (message.format(lines[first[inverse[r]]]), clean[r]))


def _labels(cells: dict, checks: _Checks) -> tuple[dict, list]:
    """FrameIndex label arrays of every row, and (row, reason) of EXPR names outside the 7."""
    n = checks.n
    out = {
        "au": np.zeros((n, NUM_AU), np.float32),
        "au_mask": np.zeros((n, NUM_AU), np.float32),
        "va": np.zeros((n, 2), np.float32),
        "va_mask": np.zeros((n, 2), np.float32),
    }
    reasons = []
    if "expr" in cells:
        out["expr"], out["expr_mask"], reasons = _expr(cells["expr"], checks)
    for k, name in enumerate(AU_NAMES):
        if name in cells:
            out["au"][:, k], out["au_mask"][:, k] = _au(cells[name], name, checks)
    for k, name in enumerate(("valence", "arousal")):
        if name in cells:
            out["va"][:, k], out["va_mask"][:, k] = _va(cells[name], name, checks)
    return out, reasons


def _expr(raw: np.ndarray, checks: _Checks) -> tuple:
    names, inverse = np.unique(np.char.strip(raw), return_inverse=True)
    meaning = [labelmaps.folder_class(v) if v else "" for v in names.tolist()]
    value = np.array([m if isinstance(m, int) else 0 for m in meaning], np.int32)[inverse]
    present = np.array([isinstance(m, int) for m in meaning], np.float32)[inverse]
    unknown = np.array([m is None for m in meaning], bool)[inverse]
    rule = "expr must be an expression name (neutral, anger, ... surprise) or an index 0-6"
    checks.add(unknown, lambda r: (rule, raw[r]))
    reason = [m if isinstance(m, str) and m else None for m in meaning]
    rows = [(r, reason[i]) for r, i in enumerate(inverse.tolist()) if reason[i] is not None]
    return value, present, rows


def _numbers(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, present, not-a-number) of a column of cells; empty cells are missing."""
    text = np.char.strip(raw)
    present = text != ""
    values = np.zeros(raw.shape, np.float64)
    bad = np.zeros(raw.shape, bool)
    names, inverse = np.unique(text[present], return_inverse=True)
    parsed = np.full(names.shape, np.nan)
    for i, name in enumerate(names.tolist()):
        try:
            parsed[i] = float(name)
        except ValueError:
            pass
    values[present] = parsed[inverse]
    bad[present] = ~np.isfinite(parsed[inverse])
    values[bad] = 0.0
    return values, present, bad


def _au(raw: np.ndarray, name: str, checks: _Checks) -> tuple:
    values, present, bad = _numbers(raw)
    bad |= present & ~np.isin(values, (0.0, 1.0))
    checks.add(bad, lambda r: (f"{name} must be 0 or 1 (empty: missing)", raw[r]))
    return np.where(bad, 0, values), (present & ~bad).astype(np.float32)


def _va(raw: np.ndarray, name: str, checks: _Checks) -> tuple:
    values, present, bad = _numbers(raw)
    bad |= present & ((values < -1) | (values > 1))
    checks.add(bad, lambda r: (f"{name} must be a number in [-1, 1] (empty: missing)", raw[r]))
    return np.where(bad, 0, values), (present & ~bad).astype(np.float32)


def _splits(raw: np.ndarray, checks: _Checks) -> np.ndarray:
    text = np.char.lower(np.char.strip(raw))
    ok = (text == "train") | (text == "validation")
    checks.add(~ok, lambda r: ("split must be train or validation", raw[r]))
    return np.where(ok, text, "train").astype(object)


def _groups(cells: dict, clean: list) -> np.ndarray:
    group = np.array([common.stem(c or "") for c in clean], dtype=object)
    for name in ("source", "group"):  # group wins over source
        if name in cells:
            given = np.char.strip(cells[name])
            group = np.where(given != "", given.astype(object), group)
    return group


def _read_csv(path: str, skip_bad_labels: bool) -> dict[str, FrameIndex]:
    table = parse_csv(path)
    pending = common.PendingSkips(SKIP_REASONS)
    root = os.path.dirname(os.path.abspath(path))
    if table.errors:
        if not skip_bad_labels:
            raise table.errors[0]
        pending.add(None, common.BAD_LINE, table.bad_lines, map(str, table.errors))
    key = table.group if table.split is None else table.split  # what decides a row's split
    outside = np.zeros(len(key), bool)
    for row, reason in table.reasons:
        pending.add(key[row], reason, 1, [f"line {table.lines[row]}: {table.paths[row]}"])
        outside[row] = True
    labels = table.labels
    has_label = (labels["au_mask"].sum(1) + labels.get("expr_mask", 0) + labels["va_mask"].sum(1)) > 0
    keep = _count(pending, key, ~has_label & ~outside, "no_label", table) & has_label
    has_image = common.existing(root, table.paths)
    keep &= _count(pending, key, keep & ~has_image, "no_image", table)
    rows = np.flatnonzero(keep)
    if table.split is None:
        splits = common.group_splits(key[rows], path, HOW_TO_SPLIT)
    else:
        splits = {s: s for s in common.SPLITS}
    paths = [table.paths[i] for i in rows.tolist()]
    return common.build_splits(
        root,
        NAME,
        path,
        [splits[k] for k in key[rows]],
        pending.resolve(splits),
        paths,
        **{k: v[rows] for k, v in labels.items()},
    )


def _count(pending: common.PendingSkips, key, rows: np.ndarray, reason: str, table: Table) -> np.ndarray:
    """Count ``rows`` (bool) under ``reason``, each with its split key; returns the rows kept (~rows)."""
    for r in np.flatnonzero(rows).tolist():
        pending.add(key[r], reason, 1, [f"line {table.lines[r]}: {table.paths[r]}"])
    return ~rows


# ---------------------------------------------------------------- class sub-folders
