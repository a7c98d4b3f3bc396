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


def digamma_tf(x):
    """psi(x) for x > 0 with builtin ops only: the shift and series of ``edge.uncertainty.digamma``.

    In float32 the absolute error is float32 rounding (~1e-6 for x in [1, 1e6]).
    """
    x = tf.convert_to_tensor(x)
    shift = tf.add_n([1.0 / (x + float(i)) for i in range(DIGAMMA_SHIFT)])
    y = x + float(DIGAMMA_SHIFT)
    inv2 = 1.0 / (y * y)
    series = tf.zeros_like(y)
    for c in reversed(DIGAMMA_SERIES):  # Horner in 1 / y^2
        series = (series + c) * inv2
    return tf.math.log(y) - 0.5 / y - series - shift


def dirichlet_uncertainty_tf(concentration) -> dict:
    """TF twin of ``edge.uncertainty.dirichlet_uncertainty``: (..., K) alpha -> the same dict keys."""
    return dirichlet_uncertainties_tf({"alpha": concentration})["alpha"]


def dirichlet_uncertainties_tf(concentrations: dict) -> dict:
    """``dirichlet_uncertainty_tf`` of several (B, ..., K) tensors at once: {name: dict}.

    One ``digamma_tf`` runs over all of them (concatenated per batch row): in a TFLite graph every
    op costs its dispatch, and the series is ~20 ops, so the three tasks of a Dirichlet student
    share one instead of six.
    """
    alphas = {k: tf.convert_to_tensor(v) for k, v in concentrations.items()}
    for alpha in alphas.values():
        if alpha.shape[-1] is None or alpha.shape[-1] < 2 or alpha.shape.rank < 2:
            raise ValueError(
                f"concentration needs a batch axis and a static class axis >= 2, got {alpha.shape}"
            )
    sums = {k: tf.reduce_sum(a, axis=-1, keepdims=True) for k, a in alphas.items()}
    parts = [t for k in alphas for t in (alphas[k], sums[k])]
    flat = [tf.reshape(t, [-1, int(np.prod(t.shape[1:]))]) for t in parts]
    psi = tf.split(digamma_tf(tf.concat(flat, axis=1) + 1.0), [f.shape[1] for f in flat], axis=1)
    psi = [tf.reshape(p, [-1, *t.shape[1:]]) for p, t in zip(psi, parts, strict=True)]
    out = {}
    for i, (name, alpha) in enumerate(alphas.items()):
        mean_probs = alpha / sums[name]
        total = normalised_entropy_tf(mean_probs)
        expected = -tf.reduce_sum(mean_probs * (psi[2 * i] - psi[2 * i + 1]), axis=-1)
        aleatoric = expected / tf.cast(math.log(alpha.shape[-1]), alpha.dtype)
        epistemic = tf.maximum(total - aleatoric, tf.zeros_like(total))
        out[name] = {"total": total, "aleatoric": aleatoric, "epistemic": epistemic, "mean_probs": mean_probs}
    return out
