"""Reads ExpW (Expression in-the-Wild): faces in web photographs, one expression each; EXPR only.

PATH is the ExpW folder, holding
  label/label.lst    one line per face: ``image_name face_id top left right bottom confidence label``
                     (space-separated; box in pixels; label 0-6 in FER2013's order: Angry, Disgust, Fear,
                     Happy, Sad, Surprise, Neutral; labelmaps.EXPW)
  image/origin/      the photographs
ExpW ships no landmarks, so each face is cropped from its box (edge.align.box_frame, margin 0: a square of
side max(w, h) on the box centre, upright) to 112x112, written under work_dir as
``image/origin/<image stem>_<face_id>.jpg``; a marker records label.lst's size and mtime. A face listed
again (same image and face_id) is counted ("duplicate_face") and the first kept. A wrong field count, a
non-number, a label outside 0-6, a box with right <= left or bottom <= top, or an image name that is
absolute or leaves image/origin/ is a bad line (DataError naming file, line and value; counted with
skip_bad_labels). Missing and unreadable photographs are counted ("no_image", "unreadable_image").

Split rule (common.py), the group being the photograph (the faces of one photograph stay together):
validation = photographs whose crc32 of the image name mod 10 == 0. The box confidence is not used.
Each face is its own video ``<image stem>_<face_id>``, frame 1; ``data_dir`` is work_dir.
"""

from __future__ import annotations

import os

import numpy as np

from edge import align
from emenet_tf.data.index import FrameIndex
from emenet_tf.data.readers import common, crops, labelmaps
from emenet_tf.errors import DataError

NAME = "expw"
LABELS = "label/label.lst"
IMAGES = "image/origin"
SKIP_REASONS = {
    "duplicate_face": "faces listed again (same image and face_id; the first kept)",
    "no_image": "faces whose photograph is missing",
    "unreadable_image": "photographs OpenCV cannot read",
}
HOW_TO_SPLIT = "ExpW needs faces from at least two photographs"


def check_path(path: str) -> None:
    """An ExpW folder: label/label.lst and image/origin/."""
    for part in (LABELS, IMAGES):
        if not os.path.exists(os.path.join(path, part)):
            raise DataError(f"not an ExpW folder: no {part} in it", path)


def read(path: str, work_dir: str, skip_bad_labels: bool = False) -> dict[str, FrameIndex]:
    """The reader protocol (data.sources): {"train", "validation"} of the ExpW folder at ``path``."""
    check_path(path)
    labels_path = os.path.join(path, LABELS)
    pending = common.PendingSkips(SKIP_REASONS)
    faces = _parse(labels_path, pending, skip_bad_labels)
    images = os.path.join(path, IMAGES)
    has = common.existing(images, [f["image"] for f in faces])
    prep = crops.Preparation(work_dir, ".prepared.json", [labels_path])
    kept = []
    for face, present in zip(faces, has, strict=True):
        where = pending.of(face["image"])
        if not present:
            where.add("no_image", 1, [f"line {face['line']}: {face['image']}"])
            continue
        if prep.needs(face["rel"]):
            _crop(prep, face, images)
        failed = prep.failure(face["rel"])
        if failed is not None:
            where.add(failed[0], 1, [failed[1]])
            continue
        kept.append(face)
    prep.finish()
    splits = common.group_splits([f["image"] for f in kept], path, HOW_TO_SPLIT)
    target = labelmaps.targets(NAME)
    rel = [f["rel"] for f in kept]
    return common.build_splits(
        work_dir,
        NAME,
        path,
        [splits[f["image"]] for f in kept],
        pending.resolve(splits),
        rel,
        [common.stem(r[len(IMAGES) + 1 :]) for r in rel],
        expr=target[np.array([f["label"] for f in kept], np.int64)],
        expr_mask=np.ones(len(kept), np.float32),
    )


def _parse(path: str, pending: common.PendingSkips, skip_bad_labels: bool) -> list[dict]:
    """The good faces of label.lst, in file order (duplicates counted); bad lines raise or are counted."""
    faces, seen = [], {}
    for line_no, text in common.text_lines(path):
        face = _face(text.split(), path, line_no)
        if isinstance(face, DataError):
            common.bad_line(face, pending.of(None), skip_bad_labels)
            continue
        key = (face["image"], face["face_id"])
        if key in seen:
            example = f"line {line_no} (first: line {seen[key]})"
            pending.add(face["image"], "duplicate_face", 1, [example])
            continue
        seen[key] = line_no
        faces.append(face)
    return faces


def _face(fields: list, path: str, line: int):
    """A face dict of one line's fields, or a DataError naming the bad value."""
    if len(fields) != 8:
        return DataError(
            f"expected 8 space-separated fields, got {len(fields)}", path, line, " ".join(fields)
        )
    image = common.relative_path(fields[0])
    if image is None or not common.is_image_name(image):
        return DataError("image_name must be an image file inside image/origin/", path, line, fields[0])
    try:
        top, left, right, bottom, _ = (float(v) for v in fields[2:7])
    except ValueError:
        return DataError("face box and confidence must be numbers", path, line, " ".join(fields[2:7]))
    if not (right > left and bottom > top) or not np.all(np.isfinite([top, left, right, bottom])):
        return DataError(
            "face box must have right > left and bottom > top", path, line, " ".join(fields[2:6])
        )
    label = fields[7]
    if not (label.isdigit() and label.isascii() and int(label) <= 6):
        return DataError("label must be an integer 0-6 (FER2013 order)", path, line, label)
    face_id = fields[1]
    rel = f"{IMAGES}/{common.stem(image)}_{face_id}.jpg"
    if common.relative_path(face_id) != face_id or "/" in face_id:
        return DataError("face_id must be a plain name", path, line, face_id)
    box = (left, top, right - left, bottom - top)
    return {"image": image, "face_id": face_id, "box": box, "label": int(label), "line": line, "rel": rel}


def _crop(prep: crops.Preparation, face: dict, images: str) -> None:
    source = os.path.join(images, face["image"])
    image = crops.read_rgb(source)
    if image is None:
        prep.fail(face["rel"], "unreadable_image", face["image"])
        return
    prep.write(face["rel"], crops.crop(image, align.box_frame(face["box"], margin=0.0)))
