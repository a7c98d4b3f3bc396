"""Clips for the temporal model: segments of one video in frame order, windows of T frames, tf.data.

Gaps. A video's frames (FrameIndex rows, sorted by video and frame) are cut into segments: a new
segment starts where more than ``max_gap`` frame numbers are missing between two indexed frames
(the face was lost for longer than that) or the video changes. A segment is a timeline of
consecutive frame numbers; a missing frame inside it (a gap of at most ``max_gap``) is a masked
step: no image, ``frame_mask`` 0, every task mask 0; the GRU carries its state over it unchanged
(Keras RNN masking), exactly as the edge runtime carries a face's state over up to ``max_gap``
frames without that face. Two segments are never joined, neither in a clip nor in evaluation.

Resets. The GRU heads are trained on clips of T steps, each from a zero state, so evaluation (and
the edge runtime) runs a segment in chunks of T seen frames (``chunks``), the state reset to zero
at each chunk's first frame: the condition the heads were trained in. Carried over whole segments
(hundreds of frames) the state drifted where training never took it (research/RESEARCH.md, section 9,
measured with ``benchmarks/temporal_headroom.py``).

Windows. A segment of L steps gives windows of T steps starting at 0, stride, 2 stride, ... and,
if those miss its end, one more ending at its last step; a segment shorter than T gives one window
padded at the end with masked steps. A clip table is (C, T) int64 index rows, -1 for a masked step.

The dataset. Clips are shuffled, flattened into frames (a header element per clip, then its
frames), decoded in parallel with ``pipeline``'s decoder, and put back together in order. An
image that fails to decode becomes a masked step and is named in the dataset's ``BadImageLog``
with its reason, like the per-frame pipeline does; augmentation (``pipeline.augment_image``) is
drawn once per clip, so all its frames are flipped and jittered alike. Batches hold ``image``
(B, T, S, S, 3), ``frame_mask`` (B, T), ``frame_id`` (B, T) (-1 where masked), and every label,
mask and soft label of the per-frame pipeline with a T axis after the batch axis.
"""

from __future__ import annotations

import os

import numpy as np

from emenet_tf._keras import tf
from emenet_tf.data import pipeline
from emenet_tf.data.index import FrameIndex

MASKED = -1  # the index row of a masked step in a clip table
_FLUSH = -1  # clip row of the final header that emits the last clip of a finite stream


def segment_bounds(video: np.ndarray, frame: np.ndarray, max_gap: int | None) -> list[tuple[int, int]]:
    """[(first row, end row)) of each segment of rows sorted by (video, frame).

    A segment ends where the video changes or more than ``max_gap`` frame numbers are missing
    before the next row; ``max_gap=None`` makes every row a segment of its own.
    """
    n = len(frame)
    if n == 0:
        return []
    if max_gap is None:
        return [(i, i + 1) for i in range(n)]
    frame = np.asarray(frame, np.int64)
    video = np.asarray(video)
    breaks = (video[1:] != video[:-1]) | (np.diff(frame) - 1 > max_gap)
    starts = np.concatenate([[0], np.flatnonzero(breaks) + 1])
    ends = np.concatenate([starts[1:], [n]])
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def timeline(frame: np.ndarray, first: int, end: int) -> np.ndarray:
    """(L,) index rows of one segment's consecutive frame numbers, MASKED where a frame is missing."""
    numbers = np.asarray(frame[first:end], np.int64)
    steps = np.full(int(numbers[-1] - numbers[0] + 1), MASKED, np.int64)
    steps[numbers - numbers[0]] = np.arange(first, end)
    return steps


def segments(index: FrameIndex, max_gap: int | None) -> list[np.ndarray]:
    """The timelines of every segment of ``index`` (see the module docstring)."""
    return [timeline(index.frame, a, b) for a, b in segment_bounds(index.video, index.frame, max_gap)]


def chunks(steps: np.ndarray, every: int) -> list[np.ndarray]:
    """A segment's timeline cut where the state is reset: each chunk starts at a seen step and holds
    ``every`` seen steps (the last one fewer; masked steps stay with the chunk before them).
    ``every`` 0: the whole timeline, the state never reset."""
    if every <= 0:
        return [steps]
    seen = np.flatnonzero(steps != MASKED)
    starts = seen[::every]
    return [steps[a:b] for a, b in zip(starts, [*starts[1:], len(steps)], strict=True)]


def window_starts(length: int, size: int, stride: int) -> list[int]:
    """Starts of the windows of ``size`` steps over ``length`` steps; the last one ends at the end."""
    starts = list(range(0, max(length - size, 0) + 1, stride))
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts


def clip_table(index: FrameIndex, size: int, stride: int, max_gap: int) -> np.ndarray:
    """(C, size) int64: the windows of every segment of ``index``, MASKED for masked steps."""
    if size < 1 or stride < 1:
        raise ValueError(f"clip size and stride must be >= 1, got {size} and {stride}")
    rows = []
    for steps in segments(index, max_gap):
        padded = np.concatenate([steps, np.full(max(size - len(steps), 0), MASKED, np.int64)])
        rows.extend(padded[s : s + size] for s in window_starts(len(steps), size, stride))
    return np.stack(rows) if rows else np.zeros((0, size), np.int64)


# ----------------------------------------------------------------------------- tf.data


def _flatten(serial, row, table: tf.Tensor) -> tf.data.Dataset:
    """One clip -> its header (pos -1) and its present frames (pos 0..T-1), in order."""
    clip = tf.gather(table, tf.maximum(row, 0))
    clip = tf.where(row >= 0, clip, tf.constant(MASKED, tf.int64))  # the flush header has no frames
    ids = tf.concat([[tf.constant(MASKED, tf.int64)], clip], 0)
    pos = tf.range(-1, tf.shape(ids)[0] - 1)
    items = {
        "serial": tf.fill(tf.shape(ids), serial),
        "row": tf.fill(tf.shape(ids), row),
        "pos": pos,
        "frame_id": ids,
    }
    return tf.data.Dataset.from_tensor_slices(items).filter(lambda e: (e["pos"] < 0) | (e["frame_id"] >= 0))


def _assemble(size: int, image_size: int):
    """scan function: frames into their clip's buffer; a header emits the previous clip."""

    def empty(row):
        return (
            row,
            tf.fill([size], tf.constant(MASKED, tf.int64)),
            tf.zeros([size, image_size, image_size, 3], tf.float32),
        )

    def step(state, e):
        row, ids, images = state

        def header():
            return empty(e["row"]), (row >= 0, row, ids, images)

        def frame():
            at = [[e["pos"]]]
            new = (
                row,
                tf.tensor_scatter_nd_update(ids, at, [e["frame_id"]]),
                tf.tensor_scatter_nd_update(images, at, [e["image"]]),
            )
            return new, (tf.constant(False), row, ids, images)

        return tf.cond(e["pos"] < 0, header, frame)

    return empty(tf.constant(_FLUSH, tf.int64)), step


class _ClipDropNamer:
    """Names the frames a clip expected but did not get (their images failed to decode)."""

    def __init__(self, paths: np.ndarray, data_dir: str, log: pipeline.BadImageLog):
        self.paths, self.data_dir, self.log = paths, data_dir, log

    def __call__(self, lost_ids) -> bool:
        for frame_id in np.unique(lost_ids.numpy()):
            path = os.path.join(self.data_dir, self.paths[frame_id])
            if path not in self.log.reasons:
                self.log.add(path, pipeline.describe_bad_image(path))
        return True


def _labelled(batch: dict, table: tf.Tensor, labels: dict, namer: _ClipDropNamer) -> dict:
    """Name lost frames, then gather every label by frame id; masked steps get zero masks."""
    expected = tf.gather(table, batch["row"])
    lost = (expected >= 0) & (batch["frame_id"] < 0)
    named = tf.cond(
        tf.reduce_any(lost),
        lambda: tf.py_function(namer, [tf.boolean_mask(expected, lost)], tf.bool),
        lambda: tf.constant(False),
    )
    with tf.control_dependencies([named]):
        ids = tf.identity(batch["frame_id"])
    present = ids >= 0
    out = {"image": batch["image"], "frame_id": ids, "frame_mask": tf.cast(present, tf.float32)}
    for key, tensor in labels.items():
        value = tf.gather(tensor, tf.maximum(ids, 0))
        keep = tf.reshape(
            present, tf.concat([tf.shape(present), tf.ones([value.shape.rank - 2], tf.int32)], 0)
        )
        out[key] = tf.where(keep, value, tf.zeros_like(value))
    return out


def make_clip_dataset(
    index: FrameIndex,
    table: np.ndarray,
    image_size: int,
    clips_per_batch: int,
    training: bool,
    soft_labels: dict | None = None,
    seed: int = 0,
    augment: bool | None = None,
    bad_images: pipeline.BadImageLog | None = None,
    repeat: bool = False,
) -> tf.data.Dataset:
    """Batches of clips (rows of ``table``, see ``clip_table``); its ``bad_images`` is the log it fills.

    Training: clips shuffled each pass, augmented unless ``augment=False``, last partial batch
    dropped. Otherwise table order, no augmentation, every clip kept.
    """
    if len(table) == 0:
        raise ValueError(f"no clips in the {index.split} split of {index.data_dir}")
    augment = training if augment is None else augment
    bad_images = bad_images if bad_images is not None else pipeline.BadImageLog()
    size = int(table.shape[1])
    table_t = tf.constant(table, tf.int64)
    labels = pipeline.label_tensors(index, soft_labels)
    paths = tf.convert_to_tensor(index.paths.tolist(), tf.string)
    data_dir = index.data_dir.rstrip("/") or "/"
    clips = tf.data.Dataset.range(len(table))
    if training:
        clips = clips.shuffle(len(table), seed=seed, reshuffle_each_iteration=True)
    clips = (
        clips.repeat()
        if repeat
        else clips.concatenate(tf.data.Dataset.from_tensors(tf.constant(_FLUSH, tf.int64)))
    )
    frames = clips.enumerate().flat_map(lambda serial, row: _flatten(serial, row, table_t))
    frames = frames.map(
        lambda e: pipeline.decode_frame(e, paths, data_dir, image_size),
        num_parallel_calls=pipeline.AUTOTUNE,
        deterministic=True,
    ).ignore_errors()
    if augment:
        frames = frames.map(
            lambda e: {
                **e,
                "image": pipeline.augment_image(e["image"], tf.stack([tf.cast(seed, tf.int64), e["serial"]])),
            },
            num_parallel_calls=pipeline.AUTOTUNE,
            deterministic=True,
        )
    start, step = _assemble(size, image_size)
    ds = frames.scan(start, step).filter(lambda ready, row, ids, images: ready)
    ds = ds.map(lambda ready, row, ids, images: {"row": row, "frame_id": ids, "image": images})
    ds = ds.batch(clips_per_batch, drop_remainder=training)
    namer = _ClipDropNamer(index.paths, data_dir, bad_images)
    ds = ds.map(lambda b: _labelled(b, table_t, labels, namer)).prefetch(pipeline.AUTOTUNE)
    ds.bad_images = bad_images
    return ds
