"""Reads AFEW-VA: film clips with per-frame valence, arousal and 68 landmarks; VA only.

PATH is the AFEW-VA folder. A clip is a folder ``<clip>/`` holding ``<clip>.json`` and its frames
``<frame>.png``; clips are looked for in PATH and one level deeper (``PATH/<part>/<clip>/``, as per-part
archives unpack). The JSON (as the public loaders read it, e.g. radekd91/emoca's AfewVaDataModule and
EmoNet's AFEW-VA scripts): ``{"frames": {"00000": {"valence": v, "arousal": a, "landmarks": [[x, y] x 68]},
...}, ...}``; other keys are ignored. The frame key is the image's name (``00000.png``) and is 0-based: the
index's frame number is key + 1 (FrameIndex frames are 1-based). Valence and arousal are in [-10, 10]
and divided by 10.

A frame whose key is not digits, whose valence/arousal is not a number in [-10, 10], or whose landmarks
are not 68 (x, y) number pairs is a bad line (DataError naming the JSON file, the frame and the value;
counted with skip_bad_labels); a JSON file that does not parse, or lacks "frames", is a DataError.
Missing and unreadable frame images are counted ("no_image", "unreadable_image"), landmarks with the
eyes at one point too ("degenerate_landmarks").

Faces: aligned crops from the landmarks (edge.align: keypoints_from_landmarks68 -> face_frame ->
aligned_crop), 112x112 JPEGs under work_dir as ``<clip>/<frame>.jpg``; a marker per clip records its
JSON's size and mtime (frames changed without their JSON are not noticed: delete the clip's marker).
Split rule (common.py), the group being the clip: validation = clips whose crc32 of the clip name mod 10
== 0. Each clip is a video (its folder path relative to PATH), frames numbered as above.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from edge.errors import EdgeError
from emenet_tf.data.index import FrameIndex
from emenet_tf.data.readers import common, crops
from emenet_tf.errors import DataError

NAME = "afew_va"
VA_SCALE = 10.0
SKIP_REASONS = {
    "no_image": "annotated frames without an image",
    "unreadable_image": "frame images OpenCV cannot read",
    "degenerate_landmarks": "frames whose landmarks put the eyes at one point",
}
HOW_TO_SPLIT = "AFEW-VA needs at least two clips"


def clips(path: str) -> list[str]:
    """The clips under ``path``: folder paths relative to it ('001' or '01/001'), sorted."""
    found = []
    for entry in sorted(os.listdir(path)):
        folder = os.path.join(path, entry)
        if entry.startswith(".") or not os.path.isdir(folder):
            continue
        if os.path.isfile(os.path.join(folder, f"{entry}.json")):
            found.append(entry)
            continue
        for sub in sorted(os.listdir(folder)):
            if os.path.isfile(os.path.join(folder, sub, f"{sub}.json")):
                found.append(f"{entry}/{sub}")
    return found


def check_path(path: str) -> None:
    """A folder with at least one clip (``<clip>/<clip>.json``)."""
    if not os.path.isdir(path) or not clips(path):
        raise DataError("not an AFEW-VA folder: no <clip>/<clip>.json in it or one level down", path)


def read(path: str, work_dir: str, skip_bad_labels: bool = False) -> dict[str, FrameIndex]:
    """The reader protocol (data.sources): {"train", "validation"} of the AFEW-VA folder at ``path``."""
    check_path(path)
    pending = common.PendingSkips(SKIP_REASONS)
    rows = []  # (clip, frame number, crop path, valence, arousal)
    for clip in clips(path):
        rows += _clip(path, clip, work_dir, pending.of(clip), skip_bad_labels)
    splits = common.group_splits([r[0] for r in rows], path, HOW_TO_SPLIT)
    return common.build_splits(
        work_dir,
        NAME,
        path,
        [splits[r[0]] for r in rows],
        pending.resolve(splits),
        [r[2] for r in rows],
        [r[0] for r in rows],
        np.array([r[1] for r in rows], np.int32),
        va=np.array([r[3:] for r in rows], np.float32).reshape(-1, 2),
        va_mask=np.ones((len(rows), 2), np.float32),
    )


def _load(json_path: str) -> dict:
    try:
        with open(json_path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read ({err})", json_path) from None
    except ValueError as err:
        raise DataError(f"not valid JSON ({err})", json_path) from None
    if not isinstance(data, dict) or not isinstance(data.get("frames"), dict):
        raise DataError('no "frames" object: not an AFEW-VA annotation file', json_path)
    return data["frames"]


def _clip(path: str, clip: str, work_dir: str, skips, skip_bad_labels: bool) -> list:
    """The rows of one clip whose crop exists; bad frames raise or are counted."""
    folder = os.path.join(path, clip)
    json_path = os.path.join(folder, f"{os.path.basename(clip)}.json")
    frames, seen = [], {}
    for key, record in sorted(_load(json_path).items()):
        frame = _frame(key, record, json_path)
        if not isinstance(frame, DataError) and int(key) in seen:
            frame = DataError(f"frame {key} is frame {seen[int(key)]} again", json_path, value=key)
        if isinstance(frame, DataError):
            common.bad_line(frame, skips, skip_bad_labels)
        else:
            seen[int(key)] = key
            frames.append(frame)
    has = common.existing(folder, [f"{key}.png" for key, *_ in frames])
    prep = crops.Preparation(work_dir, f"{clip}/.prepared.json", [json_path])
    rows = []
    for (key, valence, arousal, landmarks), present in zip(frames, has, strict=True):
        rel = f"{clip}/{key}.jpg"
        if not present:
            skips.add("no_image", 1, [f"{clip}/{key}.png"])
            continue
        if prep.needs(rel):
            _crop(prep, rel, os.path.join(folder, f"{key}.png"), landmarks)
        failed = prep.failure(rel)
        if failed is not None:
            skips.add(failed[0], 1, [failed[1]])
            continue
        rows.append((clip, int(key) + 1, rel, valence / VA_SCALE, arousal / VA_SCALE))
    prep.finish()
    return rows


def _frame(key: str, record, json_path: str):
    """(key, valence, arousal, landmarks (68, 2)) of one frame record, or a DataError naming the value."""
    if not (isinstance(key, str) and key.isdigit() and key.isascii()):
        return DataError("frame names must be digits (00000)", json_path, value=key)
    if not isinstance(record, dict):
        return DataError(f"frame {key}: not an object", json_path, value=record)
    values = []
    for name in ("valence", "arousal"):
        v = record.get(name)
        ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        if not (ok and -VA_SCALE <= v <= VA_SCALE):
            return DataError(f"frame {key}: {name} must be a number in [-10, 10]", json_path, value=v)
        values.append(float(v))
    try:
        landmarks = np.asarray(record.get("landmarks"), np.float64)
    except (TypeError, ValueError):
        landmarks = np.zeros(0)
    if landmarks.shape != (68, 2) or not np.all(np.isfinite(landmarks)):
        shown = str(record.get("landmarks"))[:60]
        return DataError(f"frame {key}: landmarks must be 68 [x, y] number pairs", json_path, value=shown)
    return key, values[0], values[1], landmarks


def _crop(prep: crops.Preparation, rel: str, source: str, landmarks: np.ndarray) -> None:
    image = crops.read_rgb(source)
    if image is None:
        prep.fail(rel, "unreadable_image", source)
        return
    try:
        frame = crops.landmark_frame(landmarks)
    except EdgeError:
        prep.fail(rel, "degenerate_landmarks", source)
        return
    prep.write(rel, crops.crop(image, frame))
