"""The in-memory frame index: one row per frame, every label it has, a mask per task.

This is the contract between the Aff-Wild2 reader (which builds it), the tf.data pipeline and
the distillation step (which attach soft labels to rows by ``frame_id``). It holds only paths
and labels, never images: about 60 bytes of labels a frame plus the path strings.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from emenet_tf.labels import NUM_AU


@dataclasses.dataclass
class FrameIndex:
    """Frames of one split, sorted by (video, frame).

    Attributes (N = number of frames):
      data_dir: the Aff-Wild2 root the paths are relative to.
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

    def __len__(self) -> int:
        return int(self.frame.shape[0])

    @property
    def frame_id(self) -> np.ndarray:
        """(N,) int64 row number: the key soft labels are stored and looked up by."""
        return np.arange(len(self), dtype=np.int64)

    def keys(self) -> np.ndarray:
        """(N,) str "video/frame" keys, stable across runs: stored with soft labels to check them."""
        return np.char.add(np.char.add(self.video.astype(str), "/"), self.frame.astype(str))

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
        for name, shape in expected.items():
            got = getattr(self, name).shape
            if got != shape:
                raise ValueError(f"FrameIndex.{name} has shape {got}, expected {shape}")
