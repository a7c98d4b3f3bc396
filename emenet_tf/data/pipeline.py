"""tf.data input pipeline: parallel JPEG decode, resize, augmentation, batching, soft labels.

Batches are dicts (see docs/ARCHITECTURE.md): ``image`` float32 in [0, 1], the per-task labels
and masks from the ``FrameIndex``, ``frame_id`` (the row in the index) and, when soft labels are
given, ``soft_<key>`` for each of their arrays: ``soft_au``, ``soft_expr``, ``soft_va`` (the teacher
ensemble's mean probabilities) and, for a Dirichlet student, ``soft_member_<task>_logits``
(``MEMBER_LOGITS``: every teacher member's logits, (B, M, ...), float16 as stored).

A corrupt or unreadable JPEG never stops training: files without JPEG start/end markers are
dropped and reported by path (``BadImageLog``); anything the decoder still rejects is dropped by
``ignore_errors`` with TensorFlow's warning.
"""

from __future__ import annotations

import threading

import numpy as np
from absl import logging

from emenet_tf._keras import tf
from emenet_tf.data.index import FrameIndex

AUTOTUNE = tf.data.AUTOTUNE
JITTER = 0.3  # brightness / contrast / saturation factors drawn from [1 - JITTER, 1 + JITTER]
# Soft-label keys of the teacher members' logits (frame axis first: (N, M, ...)), by task: AU
# log-odds (N, M, 12), EXPR and VA log-probabilities (N, M, 7) and (N, M, 2, 20).
MEMBER_LOGITS = {"au": "member_au_logits", "expr": "member_expr_logits", "va": "member_va_logits"}


class BadImageLog:
    """Thread-safe record of images the pipeline dropped, by path."""

    def __init__(self):
        self._lock = threading.Lock()
        self.paths: list[str] = []

    def report(self, path) -> bool:
        path = path.numpy().decode() if hasattr(path, "numpy") else str(path)
        with self._lock:
            if path not in self.paths:
                self.paths.append(path)
                logging.warning("Skipping unreadable or corrupt image: %s", path)
        return False

    def __len__(self) -> int:
        return len(self.paths)


def _index_tensors(index: FrameIndex, soft_labels: dict | None) -> dict:
    tensors = {
        "path": index.paths,
        "au": index.au.astype(np.float32),
        "au_mask": index.au_mask.astype(np.float32),
        "expr": index.expr.astype(np.int32),
        "expr_mask": index.expr_mask.astype(np.float32),
        "va": index.va.astype(np.float32),
        "va_mask": index.va_mask.astype(np.float32),
        "frame_id": index.frame_id,
    }
    for key, value in (soft_labels or {}).items():
        array = np.asarray(value)
        array = array if array.dtype == np.float16 else array.astype(np.float32)  # float16 stays compact
        if array.shape[0] != len(index):
            raise ValueError(f"soft labels for {key} have {array.shape[0]} rows, index has {len(index)}")
        tensors[f"soft_{key}"] = array
    return tensors


def _decode(example: dict, data_dir: str, image_size: int, bad_images: BadImageLog) -> dict:
    path = tf.strings.join([data_dir, example["path"]], separator="/")
    raw = tf.io.read_file(path)
    looks_like_jpeg = tf.logical_and(
        tf.equal(tf.strings.substr(raw, 0, 2), b"\xff\xd8"),
        tf.strings.length(raw) > 4,
    )
    ok = tf.cond(
        looks_like_jpeg,
        lambda: tf.constant(True),
        lambda: tf.py_function(bad_images.report, [path], tf.bool),
    )
    ok.set_shape(())

    def decode():
        image = tf.io.decode_jpeg(raw, channels=3, dct_method="INTEGER_ACCURATE")
        image = tf.image.resize(image, (image_size, image_size), method="area", antialias=True)
        return tf.cast(image, tf.float32) / 255.0

    image = tf.cond(ok, decode, lambda: tf.zeros((image_size, image_size, 3), tf.float32))
    out = {k: v for k, v in example.items() if k != "path"}
    out["image"] = image
    out["_ok"] = ok
    return out


def augment_image(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Horizontal flip and brightness / contrast / saturation jitter (stateless, seeded)."""
    seeds = tf.random.experimental.stateless_split(seed, num=4)
    image = tf.image.stateless_random_flip_left_right(image, seeds[0])
    lo, hi = 1.0 - JITTER, 1.0 + JITTER
    brightness = tf.random.stateless_uniform((), seeds[1], lo, hi)
    image = image * brightness
    image = tf.image.stateless_random_contrast(image, lo, hi, seeds[2])
    image = tf.image.stateless_random_saturation(image, lo, hi, seeds[3])
    return tf.clip_by_value(image, 0.0, 1.0)


def make_dataset(
    index: FrameIndex,
    image_size: int,
    batch_size: int,
    training: bool,
    soft_labels: dict | None = None,
    seed: int = 0,
    augment: bool | None = None,
    shuffle_buffer: int = 10_000,
    drop_remainder: bool | None = None,
    bad_images: BadImageLog | None = None,
    repeat: bool = False,
) -> tf.data.Dataset:
    """Batched dataset over ``index``.

    Training: shuffled (reshuffled each epoch), augmented unless ``augment=False``, last partial
    batch dropped. Evaluation: index order, no augmentation, every frame kept.
    """
    if len(index) == 0:
        raise ValueError(f"no frames in the {index.split} split of {index.data_dir}")
    augment = training if augment is None else augment
    drop_remainder = training if drop_remainder is None else drop_remainder
    bad_images = bad_images if bad_images is not None else BadImageLog()
    tensors = _index_tensors(index, soft_labels)
    data_dir = index.data_dir.rstrip("/") or "/"
    ds = tf.data.Dataset.from_tensor_slices(tensors)
    if training:
        ds = ds.shuffle(min(shuffle_buffer, len(index)), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.map(
        lambda ex: _decode(ex, data_dir, image_size, bad_images),
        num_parallel_calls=AUTOTUNE,
        deterministic=True,
    )
    ds = ds.ignore_errors(log_warning=True)
    ds = ds.filter(lambda ex: ex["_ok"])
    if augment:
        rng = tf.data.Dataset.random(seed=seed).batch(2)
        ds = tf.data.Dataset.zip((ds, rng)).map(
            lambda ex, s: {**ex, "image": augment_image(ex["image"], s)},
            num_parallel_calls=AUTOTUNE,
            deterministic=True,
        )
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    # The validity flag is dropped once per batch: a per-frame map costs ~10% of decode throughput.
    ds = ds.map(lambda batch: {k: v for k, v in batch.items() if k != "_ok"})
    return ds.prefetch(AUTOTUNE)


def steps_per_epoch(index: FrameIndex, batch_size: int) -> int:
    """Full training batches in one pass over the index (at least 1)."""
    return max(1, len(index) // batch_size)
