"""The in-memory frame index: one row per frame, every label it has, a mask per task.

This is the contract between the Aff-Wild2 reader (which builds it), the tf.data pipeline and
the distillation step (which attach soft labels to rows by ``frame_id``). It holds only paths
and labels, never images: about 60 bytes of labels a frame plus the path strings.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from emenet_tf.labels import NUM_AU, NUM_EXPR, TASKS


def object_array(values) -> np.ndarray:
    """(N,) object array of ``values`` (strings): indexing it repeats references, 8 bytes a row."""
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


@dataclasses.dataclass
class FrameIndex:
    """Frames of one split, sorted by (video, frame).

    Attributes (N = number of frames):
      data_dir: the folder the paths are relative to (the dataset's, or what its reader wrote; "/"
        for an index over several datasets, whose paths are then absolute without their first "/").
      split: "train" or "validation".
      paths: (N,) str, image path relative to ``data_dir`` ("cropped_aligned/<video>/00001.jpg"),
        with the image file's own name (``1.jpg``, ``00001.JPG`` where the folder has those).
      video: (N,) str, video name (``_left`` / ``_right`` kept as part of the name).
      frame: (N,) int32, 1-based frame number in the video.
      au: (N, 12) float32 in {0, 1}; 0 where missing.
      au_mask: (N, 12) float32, 1 where the AU label is present.
      expr: (N,) int32 in 0..6; 0 where missing.
      expr_mask: (N,) float32, 1 where the EXPR label is present.
      va: (N, 2) float32 in [-1, 1] (valence, arousal); 0 where missing.
      va_mask: (N, 2) float32, 1 where the value is present.
      skipped: counts of what the reader skipped, by reason (affwild2.SKIP_REASONS: e.g.
        "no_image" frames, "bad_line" lines, "no_label_line" images; 0 where none).
      skip_examples: a few examples (paths, "file:line: message", "<video> frame <k>") of each
        reason whose count is not 0.
      source: (N,) str, the ``--data`` dataset of each row, or None when the index holds one dataset.
      expr_dist: (N, 7) float32, an EXPR distribution per row from several annotators (FER+ votes,
        normalised; rows without one: all 0), or None when no row has one.
    """

    data_dir: str
    split: str
    paths: np.ndarray
    video: np.ndarray
    frame: np.ndarray
    au: np.ndarray
    au_mask: np.ndarray
    expr: np.ndarray
    expr_mask: np.ndarray
    va: np.ndarray
    va_mask: np.ndarray
    skipped: dict = dataclasses.field(default_factory=dict)
    skip_examples: dict = dataclasses.field(default_factory=dict)
    source: np.ndarray | None = None
    expr_dist: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.frame.shape[0])

    @property
    def frame_id(self) -> np.ndarray:
        """(N,) int64 row number: the key soft labels are stored and looked up by."""
        return np.arange(len(self), dtype=np.int64)

    def keys(self) -> np.ndarray:
        """(N,) str "video/frame" keys, stable across runs: stored with soft labels to check them."""
        return np.char.add(np.char.add(self.video.astype(str), "/"), self.frame.astype(str))

    @property
    def expr_dist_mask(self) -> np.ndarray:
        """(N,) float32: 1 where the row has an annotator distribution (``expr_dist``)."""
        if self.expr_dist is None:
            return np.zeros(len(self), np.float32)
        return (self.expr_dist.sum(axis=1) > 0).astype(np.float32)

    def labelled_tasks(self) -> tuple[str, ...]:
        """The tasks (labels.TASKS order) at least one row has a label for."""
        present = {"au": self.au_mask.any(), "expr": self.expr_mask.any(), "va": self.va_mask.any()}
        return tuple(t for t in TASKS if present[t])

    def subset(self, rows: np.ndarray) -> FrameIndex:
        """A new index holding only ``rows`` (bool mask or integer positions), order kept."""
        fields = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            fields[f.name] = value[rows] if isinstance(value, np.ndarray) else value
        return FrameIndex(**fields)

    def summary(self) -> dict:
        """What a user wants to see (JSON-ready): frames, videos, labelled frames per task, skips.

        ``skipped`` holds every reason's count, ``skip_examples`` a few examples of each one
        that is not 0.
        """
        return {
            "split": self.split,
            "frames": len(self),
            "videos": int(np.unique(self.video).size) if len(self) else 0,
            "au_labelled": int((self.au_mask.sum(axis=1) > 0).sum()),
            "expr_labelled": int(self.expr_mask.sum()),
            "va_labelled": int((self.va_mask.sum(axis=1) > 0).sum()),
            "tasks": list(self.labelled_tasks()),
            **({"expr_distributions": int(self.expr_dist_mask.sum())} if self.expr_dist is not None else {}),
            "skipped": dict(self.skipped),
            "skip_examples": {reason: list(ex) for reason, ex in self.skip_examples.items()},
        }

    def validate(self) -> None:
        """Check shapes and dtypes agree (a programming error if not)."""
        n = len(self)
        expected = {
            "paths": (n,),
            "video": (n,),
            "frame": (n,),
            "au": (n, NUM_AU),
            "au_mask": (n, NUM_AU),
            "expr": (n,),
            "expr_mask": (n,),
            "va": (n, 2),
            "va_mask": (n, 2),
        }
        optional = {"source": (n,), "expr_dist": (n, NUM_EXPR)}
        expected.update({k: v for k, v in optional.items() if getattr(self, k) is not None})
        for name, shape in expected.items():
            got = getattr(self, name).shape
            if got != shape:
                raise ValueError(f"FrameIndex.{name} has shape {got}, expected {shape}")


def concat(indices: dict[str, FrameIndex]) -> FrameIndex:
    """One index over several datasets' indices of one split, rows in the order given.

    ``indices``: {dataset label: its index}. One dataset: its index as it is. Several: ``source``
    names each row's dataset, videos are prefixed ``"<label>/"`` (keys stay unique across datasets)
    and paths are made absolute (``data_dir`` "/"); skip counts are summed by reason, examples kept.
    """
    if len(indices) == 1:
        return next(iter(indices.values()))
    parts = list(indices.values())
    n = [len(p) for p in parts]

    def joined(name, fill_shape=None):
        values = [getattr(p, name) for p in parts]
        if fill_shape is not None:
            values = [
                np.zeros((len(p), *fill_shape), np.float32) if v is None else v
                for p, v in zip(parts, values, strict=True)
            ]
        return np.concatenate(values)

    labels = list(indices)
    video = np.concatenate(
        [object_array([f"{label}/{v}" for v in p.video.tolist()]) for label, p in indices.items()]
    )
    paths = np.concatenate(
        [object_array([os.path.join(p.data_dir, q).lstrip("/") for q in p.paths.tolist()]) for p in parts]
    )
    source = np.repeat(object_array(labels), n)
    skipped, examples = {}, {}
    for label, p in indices.items():
        for reason, count in p.skipped.items():
            skipped[reason] = skipped.get(reason, 0) + count
        for reason, ex in p.skip_examples.items():
            examples.setdefault(reason, []).extend(f"{label}: {e}" for e in ex)
    any_dist = any(p.expr_dist is not None for p in parts)
    return FrameIndex(
        data_dir="/",
        split=parts[0].split,
        paths=paths,
        video=video,
        frame=joined("frame"),
        au=joined("au"),
        au_mask=joined("au_mask"),
        expr=joined("expr"),
        expr_mask=joined("expr_mask"),
        va=joined("va"),
        va_mask=joined("va_mask"),
        skipped=skipped,
        skip_examples=examples,
        source=source,
        expr_dist=joined("expr_dist", (NUM_EXPR,)) if any_dist else None,
    )


def resample(index: FrameIndex, seed: int, share: float) -> FrameIndex:
    """The rows of a seeded random ``share`` of ``index``'s videos (identities), order kept: the
    replicate study's resample of the training identities (at least one video is kept)."""
    videos = np.unique(index.video.astype(str))
    keep = max(1, int(round(share * len(videos))))
    chosen = np.random.default_rng(seed).choice(videos, size=keep, replace=False)
    return index.subset(np.isin(index.video.astype(str), chosen))
