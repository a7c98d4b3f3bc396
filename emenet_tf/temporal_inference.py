"""Predictions of temporal EMENets over whole video segments in frame order, state carried and reset.

Evaluation, soft labels and per-epoch validation of a temporal run see every frame once, as the
edge runtime does: each segment (``clips.segments``: a video cut where more than ``max_gap``
frames are missing) runs through the GRU heads in frame order, the state carried over masked
steps and reset to zero every ``reset_every`` seen frames (``clips.chunks``: the run's clip
length ``--temporal``, the condition the heads were trained in), never carried across segments.
Images are read by the per-frame pipeline (a frame whose image fails to decode is named there and
becomes a masked step) and each model's backbone runs once per frame; only the heads run per
segment, so MC Dropout passes (its dropout sits before the GRUs) reuse the embeddings.

``frame_source(cfg, index, batch_size)`` is what ``predict_frames`` takes: the per-frame dataset
for a per-frame run, ``Segments`` for a temporal one; ``predict_frames`` returns
``inference.predict_dataset``'s dict either way.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from emenet_tf._keras import tf
from emenet_tf.config import TrainConfig
from emenet_tf.data import clips, pipeline
from emenet_tf.data.index import FrameIndex
from emenet_tf.inference import predict_dataset, probabilities
from emenet_tf.labels import TASKS
from emenet_tf.models import input_size

_STEPS_PER_CALL = 1 << 15  # segment steps per heads call (padded): bounds memory on long videos


@dataclasses.dataclass(frozen=True)
class Segments:
    """The frames of ``index`` as temporal models see them (``max_gap`` None: every frame alone)."""

    index: FrameIndex
    image_size: int
    batch_size: int
    max_gap: int | None
    bad_images: pipeline.BadImageLog | None = None  # where the images that fail to decode are named
    reset_every: int = 0  # seen frames between state resets (0: never; clips.chunks)


def frame_source(
    cfg: TrainConfig, index: FrameIndex, batch_size: int, independent: bool = False, bad_images=None
):
    """What ``predict_frames`` reads for ``index`` under ``cfg``: per-frame batches, or Segments.

    independent: the frames are unrelated images (e.g. the OOD folder): each is its own segment.
    bad_images: the ``pipeline.BadImageLog`` to name dropped images in (default: a new one).
    """
    size = input_size(cfg.model, cfg.image_size)
    if cfg.temporal:
        max_gap = None if independent else cfg.temporal_max_gap
        return Segments(index, size, batch_size, max_gap, bad_images, reset_every=cfg.temporal)
    return pipeline.make_dataset(index, size, batch_size, training=False, bad_images=bad_images)


def predict_frames(models, source, passes: int = 1, keep_members: bool = False) -> dict:
    """``inference.predict_dataset`` for a per-frame source, ``predict_segments`` for Segments."""
    if isinstance(source, Segments):
        return predict_segments(models, source, passes, keep_members)
    return predict_dataset(models, source, passes, keep_members)


def predict_segments(models, source: Segments, passes: int = 1, keep_members: bool = False) -> dict:
    """Probabilities of temporal models over every segment; ``predict_dataset``'s dict.

    models: a temporal EMENet or a list (an ensemble: probabilities averaged). passes: head passes
    per model (MC Dropout). Rows are the frames whose image decoded, in index order.
    """
    models = models if isinstance(models, (list, tuple)) else [models]
    embeddings, ids = _embeddings([m.frame_net for m in models], source)
    steps = [
        chunk
        for segment in clips.segments(source.index.subset(ids), source.max_gap)
        for chunk in clips.chunks(segment, source.reset_every)
    ]
    per_pass = []
    for model, emb in zip(models, embeddings, strict=True):
        run = _heads_function(model.heads)
        per_pass.extend(_over_segments(run, emb, steps) for _ in range(passes))
    out = {}
    for task in TASKS:
        stacked = np.stack([p[task] for p in per_pass])
        out[task] = stacked.mean(axis=0)
        if keep_members:
            out[f"members_{task}"] = stacked
    index = source.index
    labels = {"au": index.au, "au_mask": index.au_mask, "expr": index.expr, "expr_mask": index.expr_mask}
    labels.update(va=index.va, va_mask=index.va_mask)
    out.update({f"label_{k}": v[ids] for k, v in labels.items()})
    out["frame_id"] = ids
    return out


def _embeddings(frame_nets: list, source: Segments) -> tuple[list[np.ndarray], np.ndarray]:
    """Each backbone's embedding (P, D) of the P frames that decoded, and their index rows (P,)."""
    ds = pipeline.make_dataset(
        source.index, source.image_size, source.batch_size, training=False, bad_images=source.bad_images
    )
    chunks: list[list] = [[] for _ in frame_nets]
    ids = []
    for batch in ds:
        for chunk, net in zip(chunks, frame_nets, strict=True):
            chunk.append(np.asarray(net.predict_on_batch(batch["image"]), np.float32))
        ids.append(batch["frame_id"].numpy())
    if not ids:
        raise ValueError(f"no readable frame in the {source.index.split} split of {source.index.data_dir}")
    return [np.concatenate(c) for c in chunks], np.concatenate(ids)


def _heads_function(heads):
    """The heads as one traced function of (embedding (B, T, D), mask (B, T)) -> probabilities."""
    dim = int(heads.inputs[0].shape[-1])

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None, dim], tf.float32),
            tf.TensorSpec([None, None], tf.float32),
        ],
        reduce_retracing=True,
    )
    def run(embedding, mask):
        return probabilities(heads([embedding, mask], training=False))

    return run


def _over_segments(run, embedding: np.ndarray, steps: list[np.ndarray]) -> dict:
    """{task: (P, ...) probabilities} of one heads pass over every segment (rows of ``embedding``)."""
    out = {}
    order = sorted(range(len(steps)), key=lambda i: -len(steps[i]))
    start = 0
    while start < len(order):
        longest = len(steps[order[start]])
        count = max(1, _STEPS_PER_CALL // longest)
        group = [steps[i] for i in order[start : start + count]]
        start += count
        rows = np.full((len(group), longest), clips.MASKED, np.int64)
        for k, s in enumerate(group):
            rows[k, : len(s)] = s
        present = rows >= 0
        probs = run(embedding[np.maximum(rows, 0)], present.astype(np.float32))
        for task in TASKS:
            value = probs[task].numpy()
            if task not in out:
                out[task] = np.zeros((len(embedding),) + value.shape[2:], np.float32)
            out[task][rows[present]] = value[present]
    return out
