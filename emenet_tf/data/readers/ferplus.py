"""Reads FER+ (microsoft/FERPlus): ten annotators' votes per FER2013 face, as EXPR distributions.

PATH is the folder holding ``fer2013new.csv`` (``Usage,Image name,neutral,happiness,surprise,sadness,
anger,disgust,fear,contempt,unknown,NF``; 10 votes a row). The faces are FER2013's: ``fer2013.csv`` is
looked for beside it, then in its parent folder, and joined BY ROW (row i of fer2013new.csv is row i of
fer2013.csv; a different row count is a DataError).

Per row, in this order: a blank Image name is skipped ("blank_name"; 173 rows of the real file, all
NF = 10); unknown + NF votes over half of the 10 are skipped ("unknown_or_no_face"); contempt votes are
added up ("contempt_votes", a count of VOTES over the rows that reach this step) and dropped; a row
left with no vote among the 7 is skipped ("no_expression_votes"). ``expr_dist`` holds the votes of the
7 (labelmaps.FERPLUS: columns to the project's order) divided by their sum; ``expr`` is the majority
class, ties going to the first tied class in the project's order (Neutral, Anger, ... Surprise).
A row whose fields are not 2 + 10, whose votes are not non-negative integers, that does not sum to 10
votes, or whose Image name is not a plain image file name or repeats an earlier one, is a bad line
(DataError naming file, line and value; counted with skip_bad_labels).

Splits: FER+'s Usage: Training -> train, PublicTest -> validation, PrivateTest counted ("test_split")
and left out. Pixels are written once as 48x48 grey PNGs under work_dir, in FER+'s folders
(``FER2013Train/`` / ``FER2013Valid/``, named by Image name's stem: ``fer0000000.png``); a marker records
both CSVs' size and mtime. Each image is its own video (``FER2013Train/fer0000000``), frame 1.
"""

from __future__ import annotations

import csv
import os
import re

import numpy as np

from emenet_tf.data.index import FrameIndex
from emenet_tf.data.readers import common, crops, fer2013, labelmaps
from emenet_tf.errors import DataError

NAME = "ferplus"
LABELS = "fer2013new.csv"
VOTES = 10
VOTE_COLUMNS = tuple(name for name, _ in labelmaps.FERPLUS)
HEADER = ("Usage", "Image name", *VOTE_COLUMNS)
SKIP_REASONS = {
    "blank_name": "rows with a blank Image name",
    "unknown_or_no_face": "rows with more than half of the votes unknown or no-face",
    "contempt_votes": "contempt votes (votes, not rows; dropped)",
    "no_expression_votes": "rows with no vote among the 7 expressions",
    "test_split": "PrivateTest rows (left out)",
}
USAGE = {"Training": "train", "PublicTest": "validation", "PrivateTest": "test"}
_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")  # a plain file name (it becomes a path under work_dir)
FOLDERS = {"train": "FER2013Train", "validation": "FER2013Valid"}


def pixels_csv(path: str) -> str:
    """fer2013.csv beside fer2013new.csv, else in the parent folder; DataError naming both places."""
    here = os.path.abspath(path)
    tried = [os.path.join(here, "fer2013.csv"), os.path.join(os.path.dirname(here), "fer2013.csv")]
    for found in tried:
        if os.path.isfile(found):
            return found
    raise DataError(f"FER+ needs FER2013's pixels: no fer2013.csv at {tried[0]} or {tried[1]}", path)


def check_path(path: str) -> None:
    """A folder holding fer2013new.csv, with fer2013.csv beside it or in its parent."""
    if not os.path.isfile(os.path.join(path, LABELS)):
        raise DataError(f"not a FER+ folder: no {LABELS} in it", path)
    pixels_csv(path)


def read(path: str, work_dir: str, skip_bad_labels: bool = False) -> dict[str, FrameIndex]:
    """The reader protocol (data.sources): {"train", "validation"} of the FER+ folder at ``path``."""
    check_path(path)
    labels = os.path.join(path, LABELS)
    table = parse_votes(labels)
    skips = common.split_skips(SKIP_REASONS)
    for error in table["errors"]:
        common.bad_line(error, skips["train"], skip_bad_labels)
    keep = _select(table, skips)
    source = pixels_csv(path)
    prep = crops.Preparation(work_dir, ".prepared.json", [labels, source])
    rel = {
        i: f"{FOLDERS[table['split'][i]]}/{common.stem(table['name'][i])}.png" for i in np.flatnonzero(keep)
    }
    written = _write_pixels(source, table, rel, prep, skips, skip_bad_labels)
    rows = np.flatnonzero(keep & written)
    split = table["split"][rows]
    dist = table["dist"][rows]
    return common.build_splits(
        work_dir,
        NAME,
        path,
        split,
        skips,
        [rel[i] for i in rows],
        expr=np.argmax(dist, axis=1),
        expr_mask=np.ones(len(rows), np.float32),
        expr_dist=dist,
    )


def parse_votes(path: str) -> dict:
    """Every row of fer2013new.csv: usage split, name, votes in file order, line, and bad-line errors.

    Bad rows keep zero votes and split "bad" (they still hold their place: row i is FER2013's row i).
    """
    split, names, votes, lines, errors, seen = [], [], [], [], [], {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != HEADER:
            raise DataError(f"wrong header: expected {','.join(HEADER)}", path, 1, ",".join(header or []))
        for cells in reader:
            row_split, name, row_votes, error = _parse_row(cells, path, reader.line_num, seen)
            split.append(row_split)
            names.append(name)
            votes.append(row_votes)
            lines.append(reader.line_num)
            if error is not None:
                errors.append(error)
    return {
        "split": np.array(split, dtype=object),
        "name": np.array(names, dtype=object),
        "votes": np.array(votes, np.int64).reshape(-1, len(VOTE_COLUMNS)),
        "line": np.array(lines, np.int64),
        "errors": errors,
    }


def _parse_row(cells: list, path: str, line: int, seen: dict) -> tuple:
    """(split, image name, votes, None) of a good row, ("bad", "", zeros, DataError) of a bad one.
    ``seen``: {Image name without extension: its line}, updated."""
    zeros = [0] * len(VOTE_COLUMNS)
    if len(cells) != len(HEADER):
        msg = f"expected {len(HEADER)} comma-separated fields, got {len(cells)}"
        return "bad", "", zeros, DataError(msg, path, line, ",".join(cells))
    split = USAGE.get(cells[0].strip())
    if split is None:
        return (
            "bad",
            "",
            zeros,
            DataError("Usage must be Training, PublicTest or PrivateTest", path, line, cells[0]),
        )
    fields = [c.strip() for c in cells[2:]]
    if not all(c.isdigit() and c.isascii() for c in fields):
        bad = next(c for c in fields if not (c.isdigit() and c.isascii()))
        return "bad", "", zeros, DataError("votes must be non-negative integers", path, line, bad)
    row = [int(c) for c in fields]
    if sum(row) != VOTES:
        msg = f"the votes must add up to {VOTES}, got {sum(row)}"
        return "bad", "", zeros, DataError(msg, path, line, ",".join(fields))
    name = cells[1].strip()
    if name and not (_NAME.match(name) and common.is_image_name(name)):
        return "bad", "", zeros, DataError("Image name must be a plain image file name", path, line, name)
    if name and common.stem(name) in seen:
        msg = f"Image name listed twice (first on line {seen[common.stem(name)]})"
        return "bad", "", zeros, DataError(msg, path, line, name)
    if name:
        seen[common.stem(name)] = line
    return split, name, row, None


def _select(table: dict, skips: dict) -> np.ndarray:
    """(rows,) bool: the rows kept. Counts the skipped ones by reason and sets table["dist"] (rows, 7)."""
    split, name, votes, line = table["split"], table["name"], table["votes"], table["line"]
    columns = {label: k for k, label in enumerate(VOTE_COLUMNS)}
    keep = split != "bad"

    def count(rows, reason, values=None):
        for s in ("train", "validation", "test"):
            found = np.flatnonzero(rows & (split == s))
            total = found.size if values is None else int(values[found].sum())
            where = skips["validation" if s == "test" else s]
            where.add(reason, total, (f"line {line[r]}" for r in found))
        return ~rows

    keep &= count(keep & (name == ""), "blank_name")
    unsure = votes[:, columns["unknown"]] + votes[:, columns["NF"]]
    keep &= count(keep & (2 * unsure > VOTES), "unknown_or_no_face")
    keep &= count(keep & (split == "test"), "test_split")
    count(keep, "contempt_votes", votes[:, columns["contempt"]])
    target = labelmaps.targets(NAME)
    dist = np.zeros((len(split), 7), np.float64)
    for k, t in enumerate(target.tolist()):
        if t >= 0:
            dist[:, t] = votes[:, k]
    total = dist.sum(axis=1)
    keep &= count(keep & (total == 0), "no_expression_votes")
    table["dist"] = np.divide(dist, total[:, None], out=np.zeros_like(dist), where=total[:, None] > 0)
    return keep


def _write_pixels(source: str, table: dict, rel: dict, prep, skips, skip_bad_labels) -> np.ndarray:
    """(rows,) bool: the kept rows (``rel``: row -> its PNG's path) whose PNG is there. Streams
    fer2013.csv once (not at all when the preparation is complete); DataError when its row count
    differs from fer2013new.csv's."""
    n = len(table["split"])
    written = np.zeros(n, bool)
    if not prep.complete:  # a complete preparation checked the row counts of these very files
        count = 0
        rows = fer2013.rows(source)
        column = next(rows)["pixels"]
        for line, number, cells in rows:
            count = number
            if number - 1 in rel:
                text = cells[column] if column < len(cells) else ""
                fer2013.write_png(prep, rel[number - 1], text, source, line)
        if count != n:
            msg = f"has {count} data rows but {LABELS} has {n}: FER+ joins the two files row by row"
            raise DataError(msg, source)
    for i, r in rel.items():
        failed = prep.failure(r)
        if failed is None:
            written[i] = True
        else:
            common.bad_line(DataError(failed[1]), skips[table["split"][i]], skip_bad_labels)
    prep.finish()
    return written
