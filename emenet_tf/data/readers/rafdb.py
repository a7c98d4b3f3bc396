"""Reads RAF-DB basic (Real-world Affective Faces): aligned 100x100 faces with one expression each; EXPR only.

PATH is the ``basic`` folder, holding
  EmoLabel/list_patition_label.txt   (the file's own spelling) lines ``train_00001.jpg 5``: an image name
                                     and a 1-based label, 1 Surprise, 2 Fear, 3 Disgust, 4 Happiness,
                                     5 Sadness, 6 Anger, 7 Neutral (labelmaps.RAFDB)
  Image/aligned/<stem>_aligned.jpg   the aligned faces, used as they are (train names have 5 digits,
                                     test names 4)
Splits are RAF-DB's own: ``train_`` images -> train, ``test_`` images -> validation. A line with another
name pattern, a field count other than 2, a label outside 1-7, or a name listed twice is a bad line
(DataError naming file, line and value; counted with skip_bad_labels); a missing image is counted
("no_image"). Each image is its own video (its name without extension, e.g. ``train_00001``), frame 1;
``data_dir`` is PATH; ``work_dir`` is not used.

RAF-DB also ships a 7-dimensional annotator distribution per image, but no description of that file's
name and format could be found to check against, so it is not read (``expr_dist`` is None).
"""

from __future__ import annotations

import os
import re

import numpy as np

from emenet_tf.data.index import FrameIndex
from emenet_tf.data.readers import common, labelmaps
from emenet_tf.errors import DataError

NAME = "rafdb"
LABELS = os.path.join("EmoLabel", "list_patition_label.txt")
IMAGES = "Image/aligned"
SKIP_REASONS = {"no_image": "labelled images whose aligned file is missing"}
_NAME = re.compile(r"^(train|test)_(\d+)\.jpg$")
_SPLIT = {"train": "train", "test": "validation"}


def check_path(path: str) -> None:
    """A RAF-DB basic folder: EmoLabel/list_patition_label.txt and Image/aligned/."""
    for part in (LABELS, IMAGES):
        if not os.path.exists(os.path.join(path, part)):
            raise DataError(f"not a RAF-DB basic folder: no {part} in it", path)


def read(path: str, work_dir: str, skip_bad_labels: bool = False) -> dict[str, FrameIndex]:
    """The reader protocol (data.sources): {"train", "validation"} of the RAF-DB basic folder ``path``."""
    check_path(path)
    skips = common.split_skips(SKIP_REASONS)
    labels_path = os.path.join(path, LABELS)
    names, labels, splits, lines = _parse(labels_path, skips, skip_bad_labels)
    rel = [f"{IMAGES}/{n[: -len('.jpg')]}_aligned.jpg" for n in names]
    has = common.existing(path, rel)
    for i in np.flatnonzero(~has):
        skips[splits[i]].add("no_image", 1, [f"line {lines[i]}: {rel[i]}"])
    keep = np.flatnonzero(has)
    target = labelmaps.targets(NAME)
    return common.build_splits(
        path,
        NAME,
        path,
        np.asarray(splits, dtype=object)[keep],
        skips,
        [rel[i] for i in keep],
        [names[i][: -len(".jpg")] for i in keep],
        expr=target[np.asarray(labels, np.int64)[keep] - 1],
        expr_mask=np.ones(len(keep), np.float32),
    )


def _parse(path: str, skips: dict, skip_bad_labels: bool) -> tuple[list, list, list, list]:
    """(names, labels 1-7, splits, line numbers) of the good lines; bad ones raise or are counted."""
    names, labels, splits, lines, seen = [], [], [], [], {}
    for line_no, text in common.text_lines(path):
        parsed = _parse_line(text.split(), path, line_no, seen)
        if isinstance(parsed, DataError):
            common.bad_line(parsed, skips["train"], skip_bad_labels)
            continue
        name, label, split = parsed
        seen[name] = line_no
        names.append(name)
        labels.append(label)
        splits.append(split)
        lines.append(line_no)
    return names, labels, splits, lines


def _parse_line(fields: list, path: str, line: int, seen: dict) -> tuple[str, int, str] | DataError:
    """(image name, label 1-7, split) of one line's fields, or a DataError naming the bad value."""
    if len(fields) != 2:
        return DataError(
            f"expected 2 space-separated fields (image label), got {len(fields)}",
            path,
            line,
            " ".join(fields),
        )
    name, label = fields
    matched = _NAME.match(name)
    if not matched:
        return DataError("image name must be train_<digits>.jpg or test_<digits>.jpg", path, line, name)
    if not (label.isdigit() and label.isascii() and 1 <= int(label) <= 7):
        return DataError("label must be an integer 1-7", path, line, label)
    if name in seen:
        return DataError(f"image listed twice (first on line {seen[name]})", path, line, name)
    return name, int(label), _SPLIT[matched.group(1)]
