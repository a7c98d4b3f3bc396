"""Normalised entropies and the ensemble decomposition as TensorFlow ops, for the exported graphs.

The ops are plain ones that convert to TFLite builtins (MAXIMUM, LOG, MUL, SUM, MEAN, SUB,
DIV): p log p is computed as p * log(max(p, eps)) with eps = 1e-12, so p = 0 gives exactly 0
and no sampling op appears. The numpy implementation (``edge.uncertainty``, re-exported
here) is the reference; these functions match it to float32 precision.

  H(p)      = -sum_k p_k log p_k,  normalised by log(C) (categorical) or log(2) (Bernoulli)
  total     = H(mean_m p_m);  aleatoric = mean_m H(p_m);  epistemic = max(total - aleatoric, 0)
  Dirichlet(alpha): total = H(alpha / alpha_0); aleatoric = -sum_k (alpha_k / alpha_0)
            (psi(alpha_k + 1) - psi(alpha_0 + 1)); psi is ``digamma_tf``, the same shifted
            asymptotic series as ``edge.uncertainty.digamma`` in ADD / DIV / MUL / LOG ops
            (tf.math.digamma is not a TFLite builtin).
"""

import math

import numpy as np

from edge.uncertainty import (  # noqa: F401  (re-exported: one implementation of the math)
    DIGAMMA_SERIES,
    DIGAMMA_SHIFT,
    KINDS,
    bernoulli_entropy,
    digamma,
    dirichlet_uncertainty,
    ensemble_uncertainty,
    entropy,
    normalised_entropy,
    va_expectation,
)
from emenet_tf._keras import tf

EPS = 1e-12


def _xlogx_tf(p):
    """Elementwise p * log(max(p, eps)): 0 at p = 0, builtins only."""
    return p * tf.math.log(tf.maximum(p, tf.cast(EPS, p.dtype)))


def entropy_tf(probs, axis: int = -1):
    """Entropy in nats along ``axis``: -sum_k p_k log p_k."""
    probs = tf.convert_to_tensor(probs)
    return -tf.reduce_sum(_xlogx_tf(probs), axis=axis)


def normalised_entropy_tf(probs, axis: int = -1):
    """Entropy divided by log(C), C = the (static) size of ``axis``: in [0, 1]."""
    probs = tf.convert_to_tensor(probs)
    num = probs.shape[axis]
    if num is None or num < 2:
        raise ValueError(f"normalised entropy needs a static class axis of size >= 2, got {probs.shape}")
    return entropy_tf(probs, axis=axis) / tf.cast(math.log(num), probs.dtype)


def bernoulli_entropy_tf(p, normalised: bool = True):
    """Elementwise Bernoulli entropy -(p log p + (1-p) log(1-p)); divided by log 2 if normalised."""
    p = tf.convert_to_tensor(p)
    h = -(_xlogx_tf(p) + _xlogx_tf(1.0 - p))
    return h / tf.cast(math.log(2.0), p.dtype) if normalised else h


def ensemble_uncertainty_tf(member_probs, kind: str = "categorical") -> dict:
    """TF twin of ``edge.uncertainty.ensemble_uncertainty``: member axis first, same dict keys."""
    probs = tf.convert_to_tensor(member_probs)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    min_rank = 2 if kind == "categorical" else 1
    if probs.shape.rank is None or probs.shape.rank < min_rank:
        raise ValueError(f"member_probs must be (M, ...) of known rank >= {min_rank}, got {probs.shape}")
    ent = normalised_entropy_tf if kind == "categorical" else bernoulli_entropy_tf
    mean_probs = tf.reduce_mean(probs, axis=0)
    total = ent(mean_probs)
    aleatoric = tf.reduce_mean(ent(probs), axis=0)
    epistemic = tf.maximum(total - aleatoric, tf.zeros_like(total))
    return {"total": total, "aleatoric": aleatoric, "epistemic": epistemic, "mean_probs": mean_probs}


# The graph's arguments are alpha + 1 >= 1: two shifts leave a series error < 3e-8 there (numpy's
# digamma takes three for x down to 1e-3); each shift is two ops.
GRAPH_DIGAMMA_SHIFT = 2


def digamma_tf(x, shift: int = DIGAMMA_SHIFT):
    """psi(x) for x > 0 with builtin ops only: the shift and series of ``edge.uncertainty.digamma``.

    In float32 the absolute error is float32 rounding (~1e-6 for x in [1, 1e6]); with
    ``shift=GRAPH_DIGAMMA_SHIFT`` valid for x >= 1 only.
    """
    x = tf.convert_to_tensor(x)
    shifts = [1.0 / (x + float(i)) for i in range(shift)]
    y = x + float(shift)
    inv2 = 1.0 / (y * y)
    series = tf.zeros_like(y)
    for c in reversed(DIGAMMA_SERIES):  # Horner in 1 / y^2
        series = (series + c) * inv2
    return tf.math.log(y) - 0.5 / y - series - tf.add_n(shifts)


def dirichlet_uncertainty_tf(concentration) -> dict:
    """TF twin of ``edge.uncertainty.dirichlet_uncertainty``: (B, ..., K) alpha -> the same dict keys."""
    alpha = tf.convert_to_tensor(concentration)
    alpha0 = tf.reduce_sum(alpha, axis=-1, keepdims=True)
    return dirichlet_uncertainties_tf({"alpha": (alpha / alpha0, alpha0)})["alpha"]


def dirichlet_uncertainties_tf(dirichlets: dict) -> dict:
    """The decomposition of several Dirichlets at once: {name: (mean (B, ..., K), alpha_0 (B, ..., 1))}
    -> {name: {"total", "aleatoric", "epistemic", "mean_probs"}}, alpha = mean * alpha_0.

    Written for a TFLite graph, where every op costs its dispatch (~0.1 us, more than the math
    here): all the Dirichlets (G of them, N classes in all) go through ONE digamma series and
    per-Dirichlet sums are one product with a constant (N, G) 0/1 matrix S, using sum_k mean_k = 1:
      aleatoric = psi(alpha_0 + 1) - sum_k mean_k psi(alpha_k + 1);  total = -sum_k mean_k log mean_k.
    Measured on the demo model's int8 graph: ~55 ops instead of ~90, 2-3 us of ~50.
    """
    means, precisions, groups = [], [], []
    for mean, precision in dirichlets.values():
        mean, precision = tf.convert_to_tensor(mean), tf.convert_to_tensor(precision)
        if mean.shape.rank is None or mean.shape.rank < 2 or mean.shape[-1] is None or mean.shape[-1] < 2:
            raise ValueError(
                f"a Dirichlet mean needs a batch axis and a static class axis >= 2, got {mean.shape}"
            )
        num, count = int(mean.shape[-1]), int(np.prod(mean.shape[1:-1]))
        means.append(tf.reshape(mean, [-1, count * num]))
        precisions.append(tf.reshape(precision, [-1, count]))
        groups.append((mean.shape[1:-1], num, count))
    sizes = np.repeat([num for _, num, count in groups], [count for _, _, count in groups])
    segments = tf.constant(np.repeat(np.eye(len(sizes)), sizes, axis=0), tf.float32)  # S (N, G)
    probs, alpha0 = tf.concat(means, axis=1), tf.concat(precisions, axis=1)
    alpha = probs * tf.matmul(alpha0, segments, transpose_b=True)
    psi = digamma_tf(tf.concat([alpha, alpha0], axis=1) + 1.0, GRAPH_DIGAMMA_SHIFT)
    n = int(sizes.sum())
    scale = tf.constant(1.0 / np.log(sizes), tf.float32)
    aleatoric = (psi[:, n:] - tf.matmul(probs * psi[:, :n], segments)) * scale
    total = -tf.matmul(_xlogx_tf(probs), segments) * scale
    epistemic = tf.maximum(total - aleatoric, tf.zeros_like(total))
    out, start = {}, 0
    for (name, (mean, _)), (shape, _, count) in zip(dirichlets.items(), groups, strict=True):
        parts = {"total": total, "aleatoric": aleatoric, "epistemic": epistemic}
        out[name] = {k: tf.reshape(v[:, start : start + count], [-1, *shape]) for k, v in parts.items()}
        out[name]["mean_probs"] = tf.convert_to_tensor(mean)
        start += count
    return out
