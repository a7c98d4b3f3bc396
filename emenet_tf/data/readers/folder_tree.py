"""The ``folder:DIR`` layout of the folder reader: class sub-folders (Keras' image_dataset_from_directory).

DIR/<class>/.../<image>, class folders named like the expression names (case-insensitive), or DIR/train/
with validation/, val/ or test/ beside it; see ``readers.folder`` for the rules. Each image is its own
video, frame 1.
"""

from __future__ import annotations

import os

import numpy as np

from emenet_tf.data.index import FrameIndex
from emenet_tf.data.readers import common, labelmaps
from emenet_tf.data.readers.folder import NAME, SKIP_REASONS, SPLIT_FOLDERS


def read_tree(path: str, skip_bad_labels: bool) -> dict[str, FrameIndex]:
    pending = common.PendingSkips(SKIP_REASONS)
    folders = _split_folders(_subfolders(path))
    ruled = folders is None or "validation" not in folders.values()
    found = []  # (relative path, expr, split or None: by the rule)
    if folders is None:
        found += _scan_classes(path, "", None, pending)
    else:
        for name, split in folders.items():
            if split == "train" and ruled:
                found += _scan_classes(path, name, None, pending)
            elif split == "other":
                for f in _files(path, name)[0]:
                    pending.add("validation", "test_split", 1, [f])
            elif split == "not_split":
                for f in sum(_files(path, name), []):
                    pending.add("train", "unknown_class", 1, [f])
            else:
                found += _scan_classes(path, name, split, pending)
        _loose(path, "", pending)
    found = _one_per_video(found, pending)
    rel = [f for f, _, _ in found]
    if ruled:
        how = "put the class folders in train/ and validation/"
        key = [common.stem(r) for r in rel]
        splits = common.group_splits(key, path, how)
    else:
        splits = {s: s for s in common.SPLITS}
        key = [s for _, _, s in found]
    return common.build_splits(
        path,
        NAME,
        path,
        [splits[k] for k in key],
        pending.resolve(splits),
        rel,
        expr=np.array([e for _, e, _ in found], np.int32),
        expr_mask=np.ones(len(rel), np.float32),
    )


def _one_per_video(found: list, pending) -> list:
    """``found`` without the images whose path differs from an earlier one's by the extension only (a.jpg,
    a.png: one video, 'a'); those are counted ("same_name")."""
    kept, seen = [], {}
    for item in found:
        key = common.stem(item[0])
        if key in seen:
            pending.add(item[2] or key, "same_name", 1, [f"{item[0]} (kept: {seen[key]})"])
        else:
            seen[key] = item[0]
            kept.append(item)
    return kept


def _split_folders(names: list[str]) -> dict | None:
    """{top folder: "train" / "validation" / "other" (a further held-out split, left out) /
    "not_split" (another folder beside the split folders)}, or None when DIR has no train/ folder."""
    by_kind = {k.lower(): k for k in names}
    if "train" not in by_kind:
        return None
    held_out = [by_kind[k] for k in ("validation", "val", "test") if k in by_kind]
    out = {}
    for name in names:
        key = name.lower()
        if key == "train":
            out[name] = "train"
        elif held_out and name == held_out[0]:
            out[name] = "validation"
        else:
            out[name] = "other" if key in SPLIT_FOLDERS else "not_split"
    return out


def _subfolders(path: str) -> list[str]:
    with os.scandir(path) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def _scan_classes(root: str, prefix: str, split: str | None, pending) -> list:
    """(relative path, expr, split) of each image in the class folders of root/prefix; counts the rest,
    each under its split (``split``) or, by the rule (``split`` None), its group (the path's stem)."""
    found = []
    for name in _subfolders(os.path.join(root, prefix)):
        cls = None if name.strip().isdigit() else labelmaps.folder_class(name)
        images, others = _files(root, f"{prefix}/{name}" if prefix else name)
        for f in others:
            pending.add(split or common.stem(f), "not_image", 1, [f])
        if isinstance(cls, int):
            found += [(f, cls, split) for f in images]
            continue
        for f in images:
            pending.add(split or common.stem(f), cls or "unknown_class", 1, [f])
    _loose(root, prefix, pending)
    return found


def _files(root: str, rel_dir: str) -> tuple[list, list]:
    """(image paths, other file paths) under root/rel_dir at any depth, relative to root, sorted."""
    images, others = [], []
    for folder, dirs, files in os.walk(os.path.join(root, rel_dir)):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = os.path.relpath(folder, root).replace(os.sep, "/")
        for name in sorted(files):
            if not name.startswith("."):
                (images if common.is_image_name(name) else others).append(f"{rel}/{name}")
    return images, others


def _loose(root: str, prefix: str, pending) -> None:
    """Count the files directly in root/prefix (outside any class folder), in train's skips."""
    with os.scandir(os.path.join(root, prefix)) as entries:
        names = sorted(e.name for e in entries if e.is_file() and not e.name.startswith("."))
    for name in names:
        pending.add(None, "loose_file", 1, [f"{prefix}/{name}" if prefix else name])
