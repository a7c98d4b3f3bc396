"""tf.data input pipeline: parallel JPEG decode, resize, augmentation, batching, soft labels.

Batches are dicts (see docs/ARCHITECTURE.md): ``image`` float32 in [0, 1], the per-task labels
and masks from the ``FrameIndex``, ``frame_id`` (the row in the index) and, when soft labels are
given, ``soft_<key>`` for each of their arrays: ``soft_au``, ``soft_expr``, ``soft_va`` (the teacher
ensemble's mean probabilities) and, for a Dirichlet student, ``soft_member_<task>_logits``
(``MEMBER_LOGITS``: every teacher member's logits, (B, M, ...), float16 as stored).

A frame whose image cannot be read or decoded (missing, not a JPEG, truncated, corrupt) never
stops a run, and is never lost silently: ``ignore_errors`` drops it and the dataset's
``BadImageLog`` (``ds.bad_images``) names its path and the reason, with one warning per image.
How a dropped frame is found: frames travel as ids, each with its position in the stream and the
ids of its block of _BLOCK neighbours; a check once per batch finds the gaps in the positions and
looks the missing frames up in the blocks of the frames around the gap, then gathers the labels.
A finite stream ends with a marker (frame_id -1, never decoded) so that a drop at its very end
leaves a gap too. Cost: a few percent of decode CPU time (benchmarks/decode_bench.py); Python
runs only when a gap is found.
"""

from __future__ import annotations

import os
import re
import threading

import numpy as np
from absl import logging

from emenet_tf._keras import tf
from emenet_tf.data.index import FrameIndex

AUTOTUNE = tf.data.AUTOTUNE
JITTER = 0.3  # brightness / contrast / saturation factors drawn from [1 - JITTER, 1 + JITTER]
_BLOCK = 64  # frames per block of the drop check; a run of more failures loses the names, not the count
_MAX_WARNINGS = 20  # bad images logged one line each per log; the rest are counted, not logged
# Soft-label keys of the teacher members' logits (frame axis first: (N, M, ...)), by task: AU
# log-odds (N, M, 12), EXPR and VA log-probabilities (N, M, 7) and (N, M, 2, 20).
MEMBER_LOGITS = {"au": "member_au_logits", "expr": "member_expr_logits", "va": "member_va_logits"}


class BadImageLog:
    """Images a dataset dropped: path -> reason, first seen first. Thread-safe; read it after iterating.

    An image dropped again (another epoch) is counted once. ``unnamed`` counts drops that could
    not be identified (a whole block of _BLOCK consecutive frames failed), once per pass.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self.reasons: dict[str, str] = {}
        self.unnamed = 0

    @property
    def paths(self) -> list[str]:
        return list(self.reasons)

    def add(self, path: str, reason: str) -> None:
        """Record ``path`` (once) and log it, one line, while under _MAX_WARNINGS."""
        with self._lock:
            if path in self.reasons:
                return
            self.reasons[path] = reason
            n = len(self.reasons)
        if n <= _MAX_WARNINGS:
            logging.warning("Skipping unreadable or corrupt image %s: %s", path, reason)
        elif n == _MAX_WARNINGS + 1:
            logging.warning(
                "More than %d unreadable or corrupt images: the rest are counted, not logged", n - 1
            )

    def add_unnamed(self, count: int) -> None:
        with self._lock:
            self.unnamed += count
        logging.warning("Skipping %d unreadable images that could not be named (a run of failures)", count)

    def __len__(self) -> int:
        return len(self.reasons) + self.unnamed

    def summary(self, examples: int = 5) -> dict:
        """JSON-ready: {"bad_images": count, "unnamed": count, "examples": ["path: reason", ...]}."""
        with self._lock:
            shown = [f"{path}: {why}" for path, why in list(self.reasons.items())[:examples]]
            return {
                "bad_images": len(self.reasons) + self.unnamed,
                "unnamed": self.unnamed,
                "examples": shown,
            }


def describe_bad_image(path: str) -> str:
    """Why the image at ``path`` cannot be used, in a few words (run only for dropped frames)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return f"cannot read it: {e.strerror or e}"
    if not data:
        return "empty file"
    if not data.startswith(b"\xff\xd8"):
        try:
            tf.io.decode_image(data, channels=3, expand_animations=False)
        except tf.errors.OpError:
            return "not an image TensorFlow decodes (JPEG, PNG, BMP or GIF)"
        return "read or decode failed while iterating, though the file decodes now"
    try:
        tf.io.decode_jpeg(data, channels=3)
    except tf.errors.OpError as e:
        decoder = re.sub(r"\{\{.*?\}\}|\[Op:.*|\s+", " ", e.message).strip()
        if not data.rstrip(b"\x00").endswith(b"\xff\xd9"):  # zero padding after the marker is common
            return f"truncated JPEG (no FF D9 end marker; decoder: {decoder})"
        return f"corrupt JPEG (decoder: {decoder})"
    return "read or decode failed while iterating, though the file decodes now"


class _DropNamer:
    """Names the frames missing between consecutive survivors; tf.data calls it on a gap only."""

    def __init__(self, paths: np.ndarray, data_dir: str, log: BadImageLog):
        self.paths, self.data_dir, self.log = paths, data_dir, log

    def __call__(self, seq, prev, blocks, last_block) -> bool:
        """Name the frames at positions strictly between prev[i] and seq[i], for each i."""
        seq, prev, blocks, last_block = (t.numpy() for t in (seq, prev, blocks, last_block))
        unnamed = 0
        for i in np.flatnonzero(seq - prev > 1):
            # A dropped frame is in the block of the survivor before the gap or of the one after it.
            known = {prev[i] // _BLOCK: last_block if i == 0 else blocks[i - 1], seq[i] // _BLOCK: blocks[i]}
            for position in range(prev[i] + 1, seq[i]):
                block = known.get(position // _BLOCK)
                if block is None:
                    unnamed += 1
                else:
                    self._name(block[position % _BLOCK])
        if unnamed:
            self.log.add_unnamed(unnamed)
        return True

    def _name(self, frame_id: int) -> None:
        path = os.path.join(self.data_dir, self.paths[frame_id])
        if path not in self.log.reasons:  # describe once: it reads the file
            self.log.add(path, describe_bad_image(path))


def label_tensors(index: FrameIndex, soft_labels: dict | None) -> dict:
    """{batch key: (N, ...) tensor} of every label a batch gathers by frame_id."""
    arrays = {
        "au": index.au.astype(np.float32),
        "au_mask": index.au_mask.astype(np.float32),
        "expr": index.expr.astype(np.int32),
        "expr_mask": index.expr_mask.astype(np.float32),
        "va": index.va.astype(np.float32),
        "va_mask": index.va_mask.astype(np.float32),
    }
    if index.expr_dist is not None:  # annotators' EXPR distributions (FER+ votes): rows without one 0
        arrays["expr_dist"] = index.expr_dist.astype(np.float32)
    for key, value in (soft_labels or {}).items():
        array = np.asarray(value)
        array = array if array.dtype == np.float16 else array.astype(np.float32)  # float16 stays compact
        if array.shape[0] != len(index):
            raise ValueError(f"soft labels for {key} have {array.shape[0]} rows, index has {len(index)}")
        arrays[f"soft_{key}"] = array
    return {key: tf.convert_to_tensor(array) for key, array in arrays.items()}


def _with_blocks(ids: tf.data.Dataset) -> tf.data.Dataset:
    """Frame ids -> {"frame_id", "_seq": position in the stream, "_block": the ids of its block}."""

    def tag(block_number, block):
        n = tf.shape(block)[0]
        seq = block_number * _BLOCK + tf.range(n, dtype=tf.int64)
        padded = tf.pad(block, [[0, _BLOCK - n]], constant_values=-1)
        return {"frame_id": block, "_seq": seq, "_block": tf.tile(padded[None], [n, 1])}

    return ids.batch(_BLOCK).enumerate().map(tag).unbatch()


def decode_image_bytes(data: tf.Tensor) -> tf.Tensor:
    """(H, W, 3) uint8 RGB of an image file's bytes: JPEG (the datasets' format, decoded with the
    accurate DCT) or PNG, BMP, GIF (first frame) as a folder of photographs may hold them."""
    return tf.cond(
        tf.strings.substr(data, 0, 2) == b"\xff\xd8",
        lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False),
    )


def decode_frame(example: dict, paths: tf.Tensor, data_dir: str, image_size: int) -> dict:
    """Add the frame's image: read, decode, resize (raises on a bad file; ignore_errors drops it)."""

    def load():
        path = tf.strings.join([data_dir, tf.gather(paths, example["frame_id"])], separator="/")
        image = decode_image_bytes(tf.io.read_file(path))
        image = tf.image.resize(image, (image_size, image_size), method="area", antialias=True)
        return tf.cast(image, tf.float32) / 255.0

    def blank():  # the end marker has no image
        return tf.zeros((image_size, image_size, 3), tf.float32)

    return {**example, "image": tf.cond(example["frame_id"] >= 0, load, blank)}


def _checked_batches(ds: tf.data.Dataset, namer: _DropNamer, labels: dict, finite: bool) -> tf.data.Dataset:
    """Batches with their labels, after ``namer`` has named the frames missing before each one.

    Runs once per batch: finds the gaps ignore_errors left in ``_seq``, drops the bookkeeping and
    (finite streams) the end marker, and gathers every label by frame_id.
    """

    def check(state, batch):
        last_seq, last_block = state
        seq, ids = batch["_seq"], batch["frame_id"]
        prev = tf.concat([[last_seq], seq[:-1]], 0)
        named = tf.cond(
            tf.reduce_any(seq - prev > 1),
            lambda: tf.py_function(namer, [seq, prev, batch["_block"], last_block], tf.bool),
            lambda: tf.constant(False),
        )
        with tf.control_dependencies([named]):
            out = {"image": batch["image"], "frame_id": tf.identity(ids)}
        if finite:
            real = ids >= 0
            out = tf.cond(
                tf.reduce_all(real),
                lambda: out,
                lambda: {k: tf.boolean_mask(v, real) for k, v in out.items()},
            )
        out.update({key: tf.gather(tensor, out["frame_id"]) for key, tensor in labels.items()})
        return (seq[-1], batch["_block"][-1]), out

    start = (tf.constant(-1, tf.int64), tf.fill([_BLOCK], tf.constant(-1, tf.int64)))
    return ds.scan(start, check)


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
    weights: dict | None = None,
) -> tf.data.Dataset:
    """Batched dataset over ``index``; its ``bad_images`` attribute is the BadImageLog it fills.

    Training: shuffled (reshuffled each epoch), augmented unless ``augment=False``, last partial
    batch dropped. Evaluation: index order, no augmentation, every readable frame kept.
    bad_images: the log to fill (e.g. one per run); a new one when None.
    weights: {dataset label: w} for an index over several datasets (``index.source``), an endless
    training stream only: a dataset of N frames is drawn in proportion to w N (each one shuffled
    and repeated on its own); all weights 1 (or None): one shuffle over every frame.
    """
    if len(index) == 0:
        raise ValueError(f"no frames in the {index.split} split of {index.data_dir}")
    augment = training if augment is None else augment
    drop_remainder = training if drop_remainder is None else drop_remainder
    bad_images = bad_images if bad_images is not None else BadImageLog()
    labels = label_tensors(index, soft_labels)
    paths = tf.convert_to_tensor(index.paths.tolist(), tf.string)
    data_dir = index.data_dir.rstrip("/") or "/"
    if weights and index.source is not None and repeat and training and set(weights.values()) != {1.0}:
        ds = _weighted_frame_ids(index.source, weights, shuffle_buffer, seed)
    else:
        ds = _frame_ids(len(index), training, shuffle_buffer, seed, repeat)
    # deterministic=True everywhere: the drop check relies on the stream keeping its order.
    ds = _with_blocks(ds).map(
        lambda ex: decode_frame(ex, paths, data_dir, image_size),
        num_parallel_calls=AUTOTUNE,
        deterministic=True,
    )
    ds = ds.ignore_errors()
    if augment:
        ds = _augmented(ds, seed)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder and repeat)
    ds = _checked_batches(ds, _DropNamer(index.paths, data_dir, bad_images), labels, finite=not repeat)
    if not repeat:
        ds = _without_short_batches(ds, batch_size if drop_remainder else 1)
    ds = ds.prefetch(AUTOTUNE)
    ds.bad_images = bad_images
    return ds


def _frame_ids(n: int, training: bool, shuffle_buffer: int, seed: int, repeat: bool) -> tf.data.Dataset:
    """The stream of frame ids: shuffled when training; endless, or ended by the marker -1."""
    ds = tf.data.Dataset.range(n)
    if training:
        ds = ds.shuffle(min(shuffle_buffer, n), seed=seed, reshuffle_each_iteration=True)
    return ds.repeat() if repeat else ds.concatenate(tf.data.Dataset.from_tensors(tf.constant(-1, tf.int64)))


def _weighted_frame_ids(source: np.ndarray, weights: dict, shuffle_buffer: int, seed: int) -> tf.data.Dataset:
    """An endless stream of frame ids drawing dataset ``label`` with probability w N / sum(w N)."""
    labels = [label for label in dict.fromkeys(source.tolist())]
    rows = [np.flatnonzero(source == label) for label in labels]
    mass = np.array([weights.get(label, 1.0) * len(r) for label, r in zip(labels, rows, strict=True)])
    streams = [
        tf.data.Dataset.from_tensor_slices(r.astype(np.int64))
        .shuffle(min(shuffle_buffer, len(r)), seed=seed + k, reshuffle_each_iteration=True)
        .repeat()
        for k, r in enumerate(rows)
    ]
    return tf.data.Dataset.sample_from_datasets(streams, weights=(mass / mass.sum()).tolist(), seed=seed)


def _augmented(ds: tf.data.Dataset, seed: int) -> tf.data.Dataset:
    rng = tf.data.Dataset.random(seed=seed).batch(2)
    return tf.data.Dataset.zip((ds, rng)).map(
        lambda ex, s: {**ex, "image": augment_image(ex["image"], s)},
        num_parallel_calls=AUTOTUNE,
        deterministic=True,
    )


def _without_short_batches(ds: tf.data.Dataset, smallest: int) -> tf.data.Dataset:
    """Drop the last batch if under ``smallest`` (removing the end marker may leave it empty or short)."""
    ds = ds.filter(lambda batch: tf.shape(batch["frame_id"])[0] >= smallest)
    if smallest == 1:
        return ds
    return ds.map(lambda batch: {k: tf.ensure_shape(v, [smallest, *v.shape[1:]]) for k, v in batch.items()})


def steps_per_epoch(index: FrameIndex, batch_size: int) -> int:
    """Full training batches in one pass over the index (at least 1)."""
    return max(1, len(index) // batch_size)
