"""Reads AffectNet's manually annotated faces: expression and valence/arousal, cropped the device's way.

Two layouts (PATH is the folder holding them):
  CSV (the original release)  training.csv and validation.csv, in PATH or PATH/Manually_Annotated_file_lists/,
      columns subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,
      valence,arousal (68 landmarks as 136 numbers x;y;x;y;...); images under PATH/Manually_Annotated_Images/
      or PATH/Manually_Annotated/Manually_Annotated_Images/ + subDirectory_filePath.
  npy (the 2021 release)      train_set/ and val_set/, each images/<N>.jpg and annotations/<N>_exp.npy,
      <N>_val.npy, <N>_aro.npy, <N>_lnd.npy (one value each; landmarks 136 numbers or (68, 2)). The images
      are face crops already: where landmarks fail, the whole image is the box.
Splits are AffectNet's: training -> train, validation -> validation.

Labels: expression 0 Neutral, 1 Happy, 2 Sad, 3 Surprise, 4 Fear, 5 Disgust, 6 Anger (labelmaps.AFFECTNET);
7 Contempt, 8 None, 9 Uncertain, 10 No-face are not among the 7: their EXPR is left out, counted under
their reason, and the row is kept when it has valence/arousal. Valence and arousal are in [-1, 1],
-2 meaning none (mask 0). A wrong field count, a non-number, an expression outside 0-10, VA outside
[-1, 1] (other than -2), a path that is absolute or leaves the images folder, or a path listed twice is a
bad line (DataError naming file, line and value; counted with skip_bad_labels).

Faces: aligned crops from the 68 landmarks (edge.align: keypoints_from_landmarks68 -> face_frame ->
aligned_crop), the device's crop. Where the landmarks are absent or degenerate (not 136 finite numbers,
or eyes at one point), the crop comes from the face box (box_frame, margin 0), counted ("box_crop": rows
KEPT, not skipped); with no usable box either the row is skipped ("no_face_box"). Crops are 112x112
JPEGs under work_dir mirroring the source (``Manually_Annotated_Images/<subDirectory_filePath>`` with a
.jpg extension; ``train_set/images/<N>.jpg``); a marker per label file (per annotations folder in the
npy layout: its size and mtime, which change when files are added or removed) makes reruns reuse them.
Each image is its own video (its path without extension), frame 1; ``data_dir`` is work_dir.

``parse_csv`` parses and checks a label CSV without touching any image (benchmarks/index_bench_real.py).
"""

from __future__ import annotations

import os

import numpy as np

from edge import align
from edge.errors import EdgeError
from emenet_tf.data.index import FrameIndex
from emenet_tf.data.readers import common, crops, labelmaps
from emenet_tf.errors import DataError

NAME = "affectnet"
COLUMNS = (
    "subDirectory_filePath",
    "face_x",
    "face_y",
    "face_width",
    "face_height",
    "facial_landmarks",
    "expression",
    "valence",
    "arousal",
)
CSV_FILES = {"train": "training.csv", "validation": "validation.csv"}
CSV_DIRS = ("", "Manually_Annotated_file_lists")
IMAGE_DIRS = ("Manually_Annotated_Images", "Manually_Annotated/Manually_Annotated_Images")
RELEASE_DIRS = {"train": "train_set", "validation": "val_set"}
VA_NONE = -2.0
NUM_LANDMARK_VALUES = 136
SKIP_REASONS = {
    "contempt": "rows labelled contempt (EXPR left out; row kept when it has valence/arousal)",
    "none": "rows labelled None (EXPR left out; row kept when it has valence/arousal)",
    "uncertain": "rows labelled Uncertain (EXPR left out; row kept when it has valence/arousal)",
    "no_face": "rows labelled No-face (EXPR left out; row kept when it has valence/arousal)",
    "no_image": "rows whose image file is missing",
    "unreadable_image": "images OpenCV cannot read",
    "box_crop": "rows cropped from the face box, their landmarks absent or degenerate (KEPT)",
    "no_face_box": "rows with neither usable landmarks nor a usable face box",
}


def layout(path: str) -> dict:
    """{"kind": "csv", "csv": {split: file}, "images": folder} or {"kind": "npy", "dirs": {split: folder}}."""
    for sub in CSV_DIRS:
        files = {s: os.path.join(path, sub, name) for s, name in CSV_FILES.items()}
        if all(os.path.isfile(f) for f in files.values()):
            images = [os.path.join(path, d) for d in IMAGE_DIRS if os.path.isdir(os.path.join(path, d))]
            if not images:
                raise DataError(f"AffectNet: no image folder (looked for {' or '.join(IMAGE_DIRS)})", path)
            return {"kind": "csv", "csv": files, "images": images[0]}
    dirs = {s: os.path.join(path, d) for s, d in RELEASE_DIRS.items()}
    if all(os.path.isdir(os.path.join(d, "annotations")) for d in dirs.values()):
        return {"kind": "npy", "dirs": dirs}
    raise DataError(
        "not an AffectNet folder: expected training.csv and validation.csv (in it or in "
        "Manually_Annotated_file_lists/), or train_set/ and val_set/ with annotations/ and images/",
        path,
    )


def check_path(path: str) -> None:
    """An AffectNet folder in one of the two layouts (before anything is written)."""
    layout(path)


def read(path: str, work_dir: str, skip_bad_labels: bool = False) -> dict[str, FrameIndex]:
    """The reader protocol (data.sources): {"train", "validation"} of the AffectNet folder at ``path``."""
    found = layout(path)
    skips = common.split_skips(SKIP_REASONS)
    parts = []
    for split in common.SPLITS:
        if found["kind"] == "csv":
            part = _csv_split(found["csv"][split], found["images"], work_dir, split, skips, skip_bad_labels)
        else:
            part = _npy_split(found["dirs"][split], work_dir, split, skips, skip_bad_labels)
        parts.append(part)
    rows = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return common.build_splits(
        work_dir,
        NAME,
        path,
        rows["split"],
        skips,
        rows["rel"],
        expr=rows["expr"],
        expr_mask=rows["expr_mask"],
        va=rows["va"],
        va_mask=rows["va_mask"],
    )


# ---------------------------------------------------------------- the CSV layout


def parse_csv(path: str) -> dict:
    """Parse and check one label CSV without touching any image (numpy over whole columns).

    Returns {"line", "path" (clean relative), "box" (N, 4) x y w h, "landmarks" (N, 2) byte offset and
    length of each row's landmark cell in the file (read when a crop is made: the cells are ~1 KB a row),
    "expression", "va" (N, 2), "errors" (the first DataErrors, line order), "bad_lines"}: good rows only.
    """
    rows, offsets, numbers, errors, bad = [], [], [], [], 0
    rule = f"expected {len(COLUMNS)} comma-separated fields, got"
    with open(path, "rb") as f:
        head = f.readline()
        header = head.decode("utf-8-sig", "replace").strip()
        if tuple(h.strip() for h in header.split(",")) != COLUMNS:
            raise DataError(f"wrong header: expected {','.join(COLUMNS)}", path, 1, header[:200])
        offset = len(head)
        for number, line in enumerate(f, start=2):
            fields = line.rstrip(b"\r\n").split(b",")
            if len(fields) == len(COLUMNS):
                offsets.append((offset + sum(len(v) for v in fields[:5]) + 5, len(fields[5])))
                fields[5] = b""  # the landmarks are read back by offset when needed
                rows.append(fields)
                numbers.append(number)
            elif line.strip():
                bad += 1
                if len(errors) < common.NUM_EXAMPLES:
                    text = line.decode("utf-8", "replace").strip()[:200]
                    errors.append(DataError(f"{rule} {len(fields)}", path, number, text))
            offset += len(line)
    cols = list(zip(*rows, strict=True)) if rows else [()] * len(COLUMNS)
    cells = {name: np.array(col, dtype="S") for name, col in zip(COLUMNS, cols, strict=True)}
    cells[COLUMNS[0]] = np.array([v.decode("utf-8", "replace") for v in cols[0]], dtype=str)
    marks = np.array(offsets, np.int64).reshape(-1, 2)
    return _check_rows(path, cells, marks, np.array(numbers, np.int64), bad, errors)


def read_landmarks(f, where) -> np.ndarray | None:
    """(68, 2) landmarks of a row from the open CSV ``f`` at (offset, length) ``where``; None when the
    cell is not 136 numbers ('x;y;x;y...')."""
    f.seek(int(where[0]))
    text = f.read(int(where[1])).decode("ascii", "replace")
    values = [v for v in text.split(";") if v.strip()]
    try:
        points = np.array(values, np.float64)
    except ValueError:
        return None
    return points.reshape(68, 2) if points.size == NUM_LANDMARK_VALUES else None


def _floats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(float64 values, bad mask) of a column of cells; a cell that is not a finite number is bad."""
    try:
        out = values.astype(np.float64)
        bad = ~np.isfinite(out)
    except ValueError:
        out, bad = np.zeros(values.shape), np.zeros(values.shape, bool)
        for i, v in enumerate(values.tolist()):
            try:
                out[i] = float(v)
                bad[i] = not np.isfinite(out[i])
            except ValueError:
                bad[i] = True
    return np.where(bad, 0.0, out), bad


def _check_rows(
    path, cells: dict, marks: np.ndarray, lines: np.ndarray, bad_so_far: int, errors: list
) -> dict:
    n = len(lines)
    problems = []  # (bad mask, message, column)
    where = "subDirectory_filePath"
    clean = [common.relative_path(p) for p in cells[where].tolist()]
    unsafe = np.array([c is None for c in clean], bool)
    problems.append((unsafe, "path is empty, absolute or leaves the images folder", where))
    ext = np.array([c is not None and not common.is_image_name(c) for c in clean], bool)
    problems.append((ext, "path is not an image file", where))
    keyed = np.array([common.stem(c) if c else "" for c in clean], dtype=str)  # crops are <stem>.jpg
    if n:
        _, first, inverse = np.unique(keyed, return_index=True, return_inverse=True)
        twice = (first[inverse] != np.arange(n)) & (keyed != "")
        problems.append((twice, "path listed twice, or with another extension", where))
    box = np.zeros((n, 4))
    for k, name in enumerate(COLUMNS[1:5]):
        box[:, k], bad = _floats(cells[name])
        problems.append((bad, f"{name} is not a number", name))
    expression, bad = _floats(cells["expression"])
    bad |= (expression != np.round(expression)) | (expression < 0) | (expression >= len(labelmaps.AFFECTNET))
    problems.append((bad, f"expression must be an integer 0-{len(labelmaps.AFFECTNET) - 1}", "expression"))
    va = np.zeros((n, 2))
    for k, name in enumerate(("valence", "arousal")):
        va[:, k], bad = _floats(cells[name])
        bad |= ((va[:, k] < -1) | (va[:, k] > 1)) & (va[:, k] != VA_NONE)
        problems.append((bad, f"{name} must be in [-1, 1] or -2 (none)", name))
    bad = np.zeros(n, bool)
    for mask, _, _ in problems:
        bad |= mask
    for row in np.flatnonzero(bad)[: common.NUM_EXAMPLES]:
        message, column = next((m, c) for mask, m, c in problems if mask[row])
        value = cells[column][row]
        value = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        errors.append(DataError(message, path, int(lines[row]), value[:200]))
    errors.sort(key=lambda e: e.line)
    keep = np.flatnonzero(~bad)
    return {
        "line": lines[keep],
        "path": [clean[i] for i in keep.tolist()],
        "box": box[keep],
        "landmarks": marks[keep],
        "expression": expression[keep].astype(np.int64),
        "va": va[keep],
        "errors": errors[: common.NUM_EXAMPLES],
        "bad_lines": bad_so_far + int(bad.sum()),
    }


def _csv_split(csv_path, images, work_dir, split, skips, skip_bad_labels) -> dict:
    table = parse_csv(csv_path)
    if table["errors"]:
        if not skip_bad_labels:
            raise table["errors"][0]
        skips[split].add(common.BAD_LINE, table["bad_lines"], map(str, table["errors"]))
    where = [f"{os.path.basename(csv_path)} line {n}" for n in table["line"]]
    rel_out = [f"{os.path.basename(images)}/{common.stem(p)}.jpg" for p in table["path"]]
    labels = _labels(table["expression"], table["va"], where, skips[split])
    has_image = common.existing(images, table["path"])
    for i in np.flatnonzero(labels["keep"] & ~has_image):
        skips[split].add("no_image", 1, [f"{where[i]}: {table['path'][i]}"])
    todo = np.flatnonzero(labels["keep"] & has_image)
    prep = crops.Preparation(work_dir, f".prepared-{os.path.basename(csv_path)}.json", [csv_path])
    with open(csv_path, "rb") as f:
        for i in todo:
            if prep.needs(rel_out[i]):
                source = os.path.join(images, table["path"][i])
                marks = table["landmarks"][i]
                _crop(prep, rel_out[i], source, lambda m=marks: read_landmarks(f, m), table["box"][i])
    prep.finish()
    return _kept(todo, rel_out, labels, prep, skips[split], split)


# ---------------------------------------------------------------- the npy layout (2021 release)


def _npy_value(path: str) -> float:
    """The one number an annotation .npy holds (stored as a number or as its text)."""
    value = np.load(path, allow_pickle=False)
    if value.size != 1:
        raise ValueError(f"{value.size} values")
    return float(value.reshape(()).item())


def _npy_split(folder, work_dir, split, skips, skip_bad_labels) -> dict:
    notes = os.path.join(folder, "annotations")
    ids = sorted(
        (name[: -len("_exp.npy")] for name in os.listdir(notes) if name.endswith("_exp.npy")),
        key=lambda s: (len(s), s),
    )
    expression, va, where, good = [], [], [], []
    for n in ids:
        row = _npy_row(notes, n)
        if isinstance(row, DataError):
            common.bad_line(row, skips[split], skip_bad_labels)
            continue
        expression.append(row[0])
        va.append(row[1:])
        where.append(f"{os.path.basename(folder)}/annotations/{n}_exp.npy")
        good.append(n)
    sub = os.path.basename(folder)
    rel_in = [f"images/{n}.jpg" for n in good]
    rel_out = [f"{sub}/{r}" for r in rel_in]
    va = np.asarray(va, np.float64).reshape(-1, 2)
    labels = _labels(np.asarray(expression, np.int64), va, where, skips[split])
    has_image = common.existing(folder, rel_in)
    for i in np.flatnonzero(labels["keep"] & ~has_image):
        skips[split].add("no_image", 1, [f"{sub}/{rel_in[i]}"])
    todo = np.flatnonzero(labels["keep"] & has_image)
    prep = crops.Preparation(work_dir, f".prepared-{sub}.json", [notes])
    for i in todo:
        if prep.needs(rel_out[i]):
            lnd = os.path.join(notes, f"{good[i]}_lnd.npy")
            _crop(prep, rel_out[i], os.path.join(folder, rel_in[i]), lambda p=lnd: _npy_landmarks(p), None)
    prep.finish()
    return _kept(todo, rel_out, labels, prep, skips[split], split)


def _npy_row(notes: str, n: str):
    """(expression, valence, arousal) of image ``n`` (VA -2 when its file is absent), or a DataError."""
    out = []
    for kind in ("exp", "val", "aro"):
        file = os.path.join(notes, f"{n}_{kind}.npy")
        if kind != "exp" and not os.path.isfile(file):
            out.append(VA_NONE)
            continue
        try:
            out.append(_npy_value(file))
        except (OSError, ValueError) as err:
            return DataError(f"not a one-number .npy ({err})", file)
    expression, valence, arousal = out
    if expression != round(expression) or not 0 <= expression < len(labelmaps.AFFECTNET):
        rule = f"expression must be an integer 0-{len(labelmaps.AFFECTNET) - 1}"
        return DataError(rule, os.path.join(notes, f"{n}_exp.npy"), value=expression)
    for name, v in (("valence", valence), ("arousal", arousal)):
        if not (-1 <= v <= 1 or v == VA_NONE):
            file = os.path.join(notes, f"{n}_{name[:3]}.npy")
            return DataError(f"{name} must be in [-1, 1] or -2 (none)", file, value=v)
    return int(expression), valence, arousal


def _npy_landmarks(path: str) -> np.ndarray | None:
    try:
        values = np.load(path, allow_pickle=False).astype(np.float64)
    except (OSError, ValueError):
        return None
    return values.reshape(68, 2) if values.size == NUM_LANDMARK_VALUES else None


# ---------------------------------------------------------------- shared by both layouts


def _labels(expression: np.ndarray, va: np.ndarray, where: list, skips: common.Skips) -> dict:
    """EXPR / VA arrays and masks of each row, and which rows keep a label (others counted, dropped)."""
    target = labelmaps.targets(NAME)[expression] if len(expression) else np.zeros(0, np.int64)
    for code, reason in labelmaps.reasons(NAME).items():
        found = np.flatnonzero(expression == code)
        skips.add(reason, found.size, (where[i] for i in found))
    va_mask = (va != VA_NONE).astype(np.float32)
    expr_mask = (target >= 0).astype(np.float32)
    keep = (expr_mask > 0) | (va_mask.sum(axis=1) > 0)
    return {
        "expr": np.maximum(target, 0),
        "expr_mask": expr_mask,
        "va": np.where(va_mask > 0, va, 0.0),
        "va_mask": va_mask,
        "keep": keep,
    }


def _crop(prep: crops.Preparation, rel: str, source: str, landmarks, box) -> None:
    """Make the crop ``rel`` of image ``source``: from landmarks (a callable), else from ``box``
    (x, y, w, h; None: the whole image), recording the outcome in ``prep``."""
    image = crops.read_rgb(source)
    if image is None:
        prep.fail(rel, "unreadable_image", source)
        return
    points = landmarks()
    try:
        frame = crops.landmark_frame(points) if points is not None else None
    except EdgeError:
        frame = None
    if frame is None:
        whole = (0.0, 0.0, float(image.shape[1]), float(image.shape[0]))
        try:
            frame = align.box_frame(whole if box is None else box)
        except EdgeError:
            prep.fail(rel, "no_face_box", source)
            return
        prep.fail(rel, "box_crop", source)  # recorded, yet the crop is made and kept
    prep.write(rel, crops.crop(image, frame))


def _kept(todo: np.ndarray, rel_out: list, labels: dict, prep, skips: common.Skips, split: str) -> dict:
    """The rows of ``todo`` whose crop exists; counts the others (and the box crops) by reason."""
    rows = []
    for i in todo.tolist():
        failed = prep.failure(rel_out[i])
        if failed is not None:
            skips.add(failed[0], 1, [failed[1]])
        if failed is None or failed[0] == "box_crop":
            rows.append(i)
    rows = np.asarray(rows, np.int64)
    return {
        "split": np.full(len(rows), split, dtype=object),
        "rel": np.asarray([rel_out[i] for i in rows.tolist()], dtype=object),
        "expr": labels["expr"][rows],
        "expr_mask": labels["expr_mask"][rows],
        "va": labels["va"][rows].reshape(-1, 2),
        "va_mask": labels["va_mask"][rows].reshape(-1, 2),
    }
