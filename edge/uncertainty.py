"""Entropies and the ensemble uncertainty decomposition in numpy: the one implementation of this math.

Runs on the edge (numpy only, no scipy, no TensorFlow) and serves evaluation in ``emenet_tf`` too.
All computation is in float64; 0 log 0 is taken as 0. Normalised entropies lie in [0, 1]:
H / log(C) for a categorical over C classes, H / log(2) for a Bernoulli.

Ensemble decomposition over M members with probabilities p_m (Depeweg et al. 2018):
  total     = H(mean_m p_m)
  aleatoric = mean_m H(p_m)
  epistemic = total - aleatoric   (the mutual information, >= 0; clipped at 0 for float error)

The same decomposition in closed form for a Dirichlet over the class probabilities (a
distribution-distilled student, EnD^2; a Beta is the Dirichlet with K = 2), alpha_0 = sum_k alpha_k:
  total     = H(alpha / alpha_0)
  aleatoric = E_{p ~ Dir(alpha)}[H(p)] = -sum_k (alpha_k / alpha_0) (psi(alpha_k + 1) - psi(alpha_0 + 1))
  epistemic = total - aleatoric   (the mutual information between the label and p)
numpy has no digamma psi, so ``digamma`` is written here (shift, then the asymptotic series).
"""

import numpy as np

KINDS = ("categorical", "bernoulli")


def _xlogx(p: np.ndarray) -> np.ndarray:
    """Elementwise p log p with 0 log 0 = 0 (and 0 for p <= 0)."""
    p = np.asarray(p, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = p * np.log(p)
    return np.where(p > 0.0, out, 0.0)


def entropy(probs, axis: int = -1) -> np.ndarray:
    """Shannon entropy in nats along ``axis``: H(p) = -sum_k p_k log p_k."""
    return -np.sum(_xlogx(probs), axis=axis)


def _num_classes(probs: np.ndarray, axis: int) -> int:
    num = np.shape(probs)[axis]
    if num < 2:
        raise ValueError(f"normalised entropy needs at least 2 classes on axis {axis}, got {num}")
    return num


def normalised_entropy(probs, axis: int = -1) -> np.ndarray:
    """Entropy divided by its maximum log(C) (C = size of ``axis``): in [0, 1]."""
    probs = np.asarray(probs, np.float64)
    return entropy(probs, axis=axis) / np.log(_num_classes(probs, axis))


def bernoulli_entropy(p, normalised: bool = True) -> np.ndarray:
    """Elementwise entropy of Bernoulli(p): -(p log p + (1-p) log(1-p)); divided by log 2 if normalised."""
    p = np.asarray(p, np.float64)
    h = -(_xlogx(p) + _xlogx(1.0 - p))
    return h / np.log(2.0) if normalised else h


def ensemble_uncertainty(member_probs, kind: str = "categorical") -> dict:
    """Total / aleatoric / epistemic uncertainty of an ensemble, each normalised to [0, 1].

    Args:
      member_probs: (M, ...) probabilities, member axis first. For ``kind="categorical"`` the
        last axis holds the classes; for ``kind="bernoulli"`` every element is P(1).
      kind: "categorical" or "bernoulli".

    Returns:
      dict with ``total``, ``aleatoric``, ``epistemic`` (shape ``member_probs.shape[1:-1]`` for
      categorical, ``member_probs.shape[1:]`` for bernoulli) and ``mean_probs`` (the ensemble's
      probabilities, shape ``member_probs.shape[1:]``). With M = 1, epistemic is 0.
    """
    probs = np.asarray(member_probs, np.float64)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    min_ndim = 2 if kind == "categorical" else 1
    if probs.ndim < min_ndim or probs.shape[0] < 1:
        raise ValueError(f"member_probs must be (M, ...) with M >= 1 for {kind}, got shape {probs.shape}")
    if kind == "categorical":
        ent = normalised_entropy
    else:
        ent = bernoulli_entropy
    mean_probs = probs.mean(axis=0)
    total = ent(mean_probs)
    aleatoric = ent(probs).mean(axis=0)
    epistemic = np.maximum(total - aleatoric, 0.0)
    return {"total": total, "aleatoric": aleatoric, "epistemic": epistemic, "mean_probs": mean_probs}


# psi(x) = psi(x + n) - sum_{i<n} 1 / (x + i); then, for y = x + n >= 6,
# psi(y) ~ log y - 1/(2y) - sum_j B_2j / (2j y^2j), B_2j / 2j = 1/12, -1/120, 1/252, -1/240, 1/132.
# With n = 3 (y >= 3) the error is < 3e-8 for every x > 0 and < 1.1e-9 for x >= 1 (the exported
# graph's arguments alpha + 1), far below float32 rounding; each shift is two ops in that graph.
DIGAMMA_SHIFT = 3
DIGAMMA_SERIES = (1 / 12, -1 / 120, 1 / 252, -1 / 240, 1 / 132)


def digamma(x) -> np.ndarray:
    """The digamma function psi(x) = d/dx log Gamma(x) for x > 0 (nan elsewhere), float64.

    Shifted by DIGAMMA_SHIFT with the recurrence, then the asymptotic series: |error| < 3e-8
    (tested against scipy.special.digamma over [1e-3, 1e6]).
    """
    x = np.asarray(x, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = sum(1.0 / (x + i) for i in range(DIGAMMA_SHIFT))
        y = x + DIGAMMA_SHIFT
        inv2 = 1.0 / (y * y)
        series = 0.0
        for c in reversed(DIGAMMA_SERIES):  # Horner in 1 / y^2
            series = (series + c) * inv2
        out = np.log(y) - 0.5 / y - series - shift
    return np.where(x > 0, out, np.nan)


def dirichlet_uncertainty(concentration) -> dict:
    """Total / aleatoric / epistemic uncertainty of Dirichlet(alpha) in closed form, normalised to [0, 1].

    Args:
      concentration: (..., K) alpha > 0, the classes on the last axis (K >= 2; a Beta(a, b) is
        ``[..., (a, b)]`` and its mean_probs[..., 0] is a / (a + b)).

    Returns:
      dict with ``total``, ``aleatoric``, ``epistemic`` (shape ``concentration.shape[:-1]``, each
      divided by log K) and ``mean_probs`` = alpha / alpha_0 (the predictive distribution).
      When every member of the distilled ensemble agreed, alpha_0 is large and epistemic ~ (K - 1)
      / (2 alpha_0 log K) ~ 0.
    """
    alpha = np.asarray(concentration, np.float64)
    num = _num_classes(alpha, -1)
    if not np.all(alpha > 0):
        raise ValueError(f"Dirichlet concentrations must be > 0, got min {np.min(alpha)}")
    alpha0 = alpha.sum(axis=-1, keepdims=True)
    mean_probs = alpha / alpha0
    total = entropy(mean_probs) / np.log(num)
    expected = -np.sum(mean_probs * (digamma(alpha + 1.0) - digamma(alpha0 + 1.0)), axis=-1)
    aleatoric = expected / np.log(num)
    epistemic = np.maximum(total - aleatoric, 0.0)
    return {"total": total, "aleatoric": aleatoric, "epistemic": epistemic, "mean_probs": mean_probs}


def va_expectation(probs, centres) -> np.ndarray:
    """Expected value over bins: E = sum_k p_k c_k on the last axis (probs (..., K), centres (K,))."""
    probs = np.asarray(probs, np.float64)
    centres = np.asarray(centres, np.float64)
    if centres.ndim != 1 or probs.shape[-1] != centres.shape[0]:
        raise ValueError(f"probs last axis {probs.shape} does not match centres {centres.shape}")
    return probs @ centres
