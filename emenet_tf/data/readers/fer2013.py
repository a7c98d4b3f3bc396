"""Reads FER2013 (Kaggle): 48x48 grey faces stored as pixel strings in a CSV; EXPR only.

PATH is the CSV or the folder holding it (a folder is searched for fer2013.csv, then
icml_face_data.csv, then train.csv). Layouts (column names are compared stripped and lower-cased, so
icml_face_data.csv's " Usage" and " pixels" work):
  fer2013.csv, icml_face_data.csv   emotion,pixels,Usage. Training -> train, PublicTest -> validation,
                                    PrivateTest is counted ("test_split") and left out.
  train.csv [+ test.csv beside it]  emotion,pixels / emotion,pixels or pixels only. train.csv -> train;
                                    test.csv's labelled rows -> validation, its rows without a label are
                                    counted ("unlabelled"). Without a labelled test row, validation comes
                                    from train.csv by the split rule (common.py; each image its own group:
                                    FER2013 gives no identities).
``emotion`` is 0-6 in FER2013's order (Angry, Disgust, Fear, Happy, Sad, Surprise, Neutral; mapped by
labelmaps.FER2013); an empty cell is "unlabelled". ``pixels`` is 2304 space-separated integers 0-255,
row-major. A bad emotion, a bad pixel string or a wrong field count is a bad line (DataError naming
file, line and value; counted with skip_bad_labels). Pixels are checked for the rows that are used.

The pixels are written once, losslessly, as 48x48 greyscale PNGs under work_dir: ``<csv name>/
<row>.png`` (row: 1-based data row, 5 digits); the pipeline converts grey to RGB itself. A marker
(crops.Preparation) records the CSV's size and mtime: a rerun on the same file reads the labels only.
Each image is its own video ``<csv name>/<row>``, frame 1; ``data_dir`` is work_dir.
"""

from __future__ import annotations

import csv
import os
import warnings

import numpy as np

from emenet_tf.data.index import FrameIndex
from emenet_tf.data.readers import common, crops, labelmaps
from emenet_tf.errors import DataError

NAME = "fer2013"
SIDE = 48
SKIP_REASONS = {
    "test_split": "PrivateTest rows (FER2013's test split, left out)",
    "unlabelled": "rows without an emotion label",
}
CANDIDATES = ("fer2013.csv", "icml_face_data.csv", "train.csv")
USAGE = {"training": "train", "publictest": "validation", "privatetest": "test"}
HOW_TO_SPLIT = "use fer2013.csv, whose Usage column gives the split"


def check_path(path: str) -> None:
    """PATH is a FER2013 CSV with a ``pixels`` column, or a folder holding one."""
    for csv_path in _files(path):
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            header_map(next(csv.reader(f), None), csv_path)


def read(path: str, work_dir: str, skip_bad_labels: bool = False) -> dict[str, FrameIndex]:
    """The reader protocol (data.sources): {"train", "validation"} of the FER2013 CSV(s) at ``path``."""
    skips = common.split_skips(SKIP_REASONS)
    rows = []  # (rel, expr, split or None)
    for csv_path in _files(path):
        rows += _read_file(csv_path, work_dir, skips, skip_bad_labels)
    split = np.array([s for _, _, s in rows], dtype=object)
    ruled = np.array([s is None for s in split], bool)
    if ruled.any() and not (split == "validation").any():  # train.csv without a labelled test.csv
        groups = [common.stem(r) for (r, _, s) in rows if s is None]
        split[ruled] = common.rule_split(groups, path, HOW_TO_SPLIT)
    else:  # the rows without a split are train.csv's, beside a labelled test.csv (or none at all)
        split[ruled] = "train"
    rel = [r for r, _, _ in rows]
    return common.build_splits(
        work_dir,
        NAME,
        path,
        split,
        skips,
        rel,
        expr=np.array([e for _, e, _ in rows], np.int32),
        expr_mask=np.ones(len(rel), np.float32),
    )


def _files(path: str) -> list[str]:
    """The CSVs to read at ``path``: one, or train.csv and test.csv."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise DataError("no such file or folder", path)
    for name in CANDIDATES:
        found = os.path.join(path, name)
        if os.path.isfile(found):
            test = os.path.join(path, "test.csv")
            return [found, test] if name == "train.csv" and os.path.isfile(test) else [found]
    hint = "for the copy of image folders (train/angry/...), use folder:PATH"
    raise DataError(f"not a FER2013 folder: none of {', '.join(CANDIDATES)} in it ({hint})", path)


def header_map(header, path: str) -> dict[str, int]:
    """{column name stripped and lower-cased: position}; DataError without a ``pixels`` column."""
    if not header:
        raise DataError("empty file: expected a header line (emotion,pixels,Usage)", path, 1)
    names = {h.strip().lower(): i for i, h in enumerate(header)}
    if "pixels" not in names:
        raise DataError("no 'pixels' column: not a FER2013 CSV", path, 1, ",".join(header))
    return names


def rows(csv_path: str):
    """Yield (line, row number from 1, cells) of each data row, after the header; header map first."""
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            columns = header_map(next(reader, None), csv_path)
            yield columns
            for number, cells in enumerate(reader, start=1):
                yield reader.line_num, number, cells
        except csv.Error as err:
            raise DataError(f"not a readable CSV ({err})", csv_path, reader.line_num) from None
        except UnicodeDecodeError as err:
            raise DataError(f"not UTF-8 text ({err.reason})", csv_path) from None


def pixels(text: str, csv_path: str, line: int) -> np.ndarray:
    """(48, 48) uint8 of a pixel string: 2304 space-separated integers 0-255 (DataError otherwise)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        try:
            values = np.fromstring(text, dtype=np.int64, sep=" ")
        except (ValueError, DeprecationWarning):
            values = None
    short = text if len(text) <= 40 else text[:40] + "..."
    if values is None or values.size != SIDE * SIDE:
        msg = f"pixels must be {SIDE * SIDE} space-separated integers 0-255"
        raise DataError(
            msg + ("" if values is None else f", got {values.size} numbers"), csv_path, line, short
        )
    if values.min() < 0 or values.max() > 255:
        raise DataError("pixels must be integers 0-255", csv_path, line, short)
    return values.astype(np.uint8).reshape(SIDE, SIDE)


def write_png(prep: crops.Preparation, rel: str, text: str, csv_path: str, line: int) -> None:
    """Make ``rel`` from a pixel string unless the preparation has it; a bad string is recorded."""
    if prep.needs(rel):
        try:
            prep.write(rel, pixels(text, csv_path, line))
        except DataError as err:
            prep.fail(rel, common.BAD_LINE, str(err))


def _read_file(csv_path: str, work_dir: str, skips: dict, skip_bad_labels: bool) -> list:
    folder = os.path.splitext(os.path.basename(csv_path))[0]
    prep = crops.Preparation(work_dir, f".prepared-{folder}.json", [csv_path])
    rows_iter = rows(csv_path)
    columns = next(rows_iter)
    is_test = os.path.basename(csv_path).lower() == "test.csv" and "usage" not in columns
    targets = labelmaps.targets(NAME)
    out = []
    for line, number, cells in rows_iter:
        if not cells:
            continue
        row = _row(cells, columns, csv_path, line, is_test)
        if isinstance(row, DataError):
            common.bad_line(row, skips["train"], skip_bad_labels)
            continue
        emotion, split = row
        rel = f"{folder}/{number:05d}.png"
        if emotion is None or split == "test":
            reason = "unlabelled" if emotion is None else "test_split"
            skips["validation" if split in ("validation", "test") else "train"].add(
                reason, 1, [f"line {line}"]
            )
            continue
        write_png(prep, rel, cells[columns["pixels"]], csv_path, line)
        failed = prep.failure(rel)
        if failed is not None:
            common.bad_line(DataError(failed[1]), skips[split or "train"], skip_bad_labels)
            continue
        out.append((rel, int(targets[emotion]), split))
    prep.finish()
    return out


def _row(cells: list, columns: dict, csv_path: str, line: int, is_test: bool):
    """(emotion 0-6 or None, split or None) of a row, or a DataError."""
    if len(cells) != len(columns):
        msg = f"expected {len(columns)} comma-separated fields, got {len(cells)}"
        return DataError(msg, csv_path, line, ",".join(cells)[:60])
    emotion = cells[columns["emotion"]].strip() if "emotion" in columns else ""
    if emotion and not (emotion.isdigit() and emotion.isascii() and int(emotion) <= 6):
        return DataError("emotion must be an integer 0-6 (FER2013 order) or empty", csv_path, line, emotion)
    split = "validation" if is_test else None
    if "usage" in columns:
        usage = cells[columns["usage"]].strip()
        split = USAGE.get(usage.lower())
        if split is None:
            return DataError("Usage must be Training, PublicTest or PrivateTest", csv_path, line, usage)
    return (int(emotion) if emotion else None), split
