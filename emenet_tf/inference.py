"""Run an EMENet over a dataset and collect probabilities (numpy) with the labels beside them."""

from __future__ import annotations

import numpy as np

from edge.uncertainty import KINDS
from emenet_tf._keras import tf

LABEL_KEYS = ("au", "au_mask", "expr", "expr_mask", "va", "va_mask", "frame_id")
_FLOOR = 1e-38  # about the smallest normal float32: log p of an underflowed softmax entry
_BERNOULLI_EPS = 1e-7  # float32 resolution of a sigmoid near 0 and 1


def probabilities(logits: dict) -> dict:
    """Logits dict -> probabilities: AU sigmoid (B,12), EXPR softmax (B,7), VA bin softmax (B,2,20)."""
    return {
        "au": tf.sigmoid(tf.cast(logits["au"], tf.float32)),
        "expr": tf.nn.softmax(tf.cast(logits["expr"], tf.float32), axis=-1),
        "va": tf.nn.softmax(tf.cast(logits["va"], tf.float32), axis=-1),
    }


def to_logits(probs, kind: str = "categorical") -> np.ndarray:
    """Logits that reproduce ``probs``: log p (categorical, last axis) or log(p / (1 - p)) (Bernoulli)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    p = np.asarray(probs, np.float64)
    if kind == "categorical":
        return np.log(np.maximum(p, _FLOOR))
    p = np.clip(p, _BERNOULLI_EPS, 1.0 - _BERNOULLI_EPS)
    return np.log(p) - np.log1p(-p)


def predict_dataset(models, dataset, passes: int = 1, keep_members: bool = False) -> dict:
    """Probabilities of one model or the mean over an ensemble, for every batch of ``dataset``.

    models: a Keras model or a list of them (an ensemble; probabilities are averaged).
    passes: forward passes per model (MC Dropout uses > 1 with a model whose dropout is active).
    keep_members: also return ``members_<task>`` arrays of shape (M * passes, N, ...).
    Returns numpy arrays: ``au`` (N,12), ``expr`` (N,7), ``va`` (N,2,20), the batch labels and
    masks (``label_au``, ``label_expr``, ...) and ``frame_id``.
    """
    models = models if isinstance(models, (list, tuple)) else [models]
    chunks: dict[str, list] = {}

    for batch in dataset:
        per_member = []
        for model in models:
            for _ in range(passes):
                per_member.append(probabilities(_forward(model, batch["image"])))
        for task in ("au", "expr", "va"):
            stacked = np.stack([p[task].numpy() for p in per_member])
            chunks.setdefault(task, []).append(stacked.mean(axis=0))
            if keep_members:
                chunks.setdefault(f"members_{task}", []).append(stacked)
        for key in LABEL_KEYS:
            if key in batch:
                name = key if key == "frame_id" else f"label_{key}"
                chunks.setdefault(name, []).append(batch[key].numpy())
    if not chunks:
        raise ValueError("the dataset yielded no batches")
    out = {}
    for key, parts in chunks.items():
        out[key] = np.concatenate(parts, axis=1 if key.startswith("members_") else 0)
    return out


def _forward(model, images):
    """Inference-mode logits through the model's own cached predict function (one trace per model)."""
    return model.predict_on_batch(images)
