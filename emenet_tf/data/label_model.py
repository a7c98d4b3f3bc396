"""The label model of the synthetic benchmark: the TRUE label distribution of a face, and its Bayes limits.

The generative story, per video:
  1. an identity (face shape, skin, eye spacing, brows, lips, hair, background: ``render``);
  2. a sequence of segments (expression, intensity) with smooth transitions: a 12-d AU intensity
     track a(t) in [0, 1]^12 (frames in a transition blend two expressions): ``au_track``;
  3. each frame is rendered from a(t) plus nuisance jitter (pose, scale, light, noise): ``render``;
  4. the TRUE distribution is a deterministic function of a(t) alone (``true_distribution``),
     hence of what is rendered: the label noise is aleatoric and a perfect model could learn it;
  5. the WRITTEN label is one sample of it, as if one annotator labelled the frame (``sample_labels``).

Ambiguity model (EXPR): with prototypes P_e (12-d, e = 1..6) and the fitted intensity
s_e = max(0, a.P_e / |P_e|^2), the annotator's logits are z_0 = -GAMMA_N |a|^2 (Neutral) and
z_e = BETA (min(s_e, 1.2) - C) - GAMMA |a - min(s_e, 1) P_e|^2; p = (1 - EPS) softmax(z) + EPS / 7.
Weak expressions sit near the Neutral boundary, blends sit between two prototypes: both are
genuinely ambiguous. AU: q_k = EPS_AU / 2 + (1 - EPS_AU) sigmoid((a_k - AU_THRESHOLD) / AU_NOISE).
VA: mean = sum_e p_e min(s_e, 1) VA_e; std = VA_STD_MIN + VA_STD_SPAN H(p) / log 7; the label is
clip(N(mean, std), -1, 1), whose distribution over the VA bins is ``va_true_bins``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from edge.uncertainty import bernoulli_entropy, entropy, normalised_entropy
from emenet_tf.labels import AU_INDEX, NUM_AU, NUM_EXPR, NUM_VA_BINS, va_bin_edges


def _prototypes() -> np.ndarray:
    """(7, 12) AU intensity of each expression at full intensity (Neutral = 0)."""
    table = {
        1: {"AU4": 1.0, "AU7": 0.8, "AU23": 0.8, "AU24": 0.6},  # Anger
        2: {"AU4": 0.5, "AU10": 1.0, "AU15": 0.6},  # Disgust
        3: {"AU1": 1.0, "AU2": 0.7, "AU4": 0.7, "AU7": 0.6, "AU25": 1.0},  # Fear
        4: {"AU6": 0.8, "AU12": 1.0, "AU25": 0.5},  # Happiness
        5: {"AU1": 0.9, "AU4": 0.7, "AU15": 1.0},  # Sadness
        6: {"AU1": 1.0, "AU2": 1.0, "AU25": 0.8, "AU26": 1.0},  # Surprise
    }
    protos = np.zeros((NUM_EXPR, NUM_AU))
    for e, aus in table.items():
        for name, value in aus.items():
            protos[e, AU_INDEX[name]] = value
    return protos


PROTOTYPES = _prototypes()
# AUs a segment may leave out (each kept with probability OPTIONAL_KEEP): "anger AU23/24" etc.
OPTIONAL_AUS = {1: ("AU23", "AU24"), 2: ("AU4", "AU15"), 4: ("AU25",), 6: ("AU25",)}
OPTIONAL_KEEP = 0.6
# (valence, arousal) of each expression at full intensity.
VA_PROTOTYPES = np.array(
    [[0.0, 0.0], [-0.65, 0.65], [-0.6, 0.35], [-0.55, 0.7], [0.7, 0.4], [-0.6, -0.45], [0.15, 0.7]]
)
# Share of segments per expression, skewed like Aff-Wild2 (low-intensity segments add Neutral).
# Rare classes are also forced once in every 12th video (FORCED), so that even a split of six
# videos holds each of them: effective shares of segment frames ~ .33 .06 .05 .04 .28 .13 .11.
SEGMENT_FREQS = np.array([0.33, 0.03, 0.015, 0.005, 0.30, 0.17, 0.15])
FORCED = {0: 3, 2: 2, 4: 1}  # video index % 12 -> expression of one of its first two segments

BETA, C, GAMMA, GAMMA_N, EPS = 8.0, 0.45, 8.0, 4.0, 0.1
AU_THRESHOLD, AU_NOISE, EPS_AU = 0.3, 0.07, 0.02
VA_STD_MIN, VA_STD_SPAN = 0.07, 0.18


def true_distribution(au_intensity: np.ndarray) -> dict:
    """The TRUE label distribution of frames rendered with AU intensities ``au_intensity`` (N, 12).

    Returns float32 arrays: expr_probs (N, 7), au_probs (N, 12), va_mean (N, 2), va_std (N, 2).
    The formulas are in the module docstring.
    """
    a = np.asarray(au_intensity, np.float64)
    protos = PROTOTYPES[1:]
    fit = np.maximum(a @ protos.T / (protos**2).sum(axis=1), 0.0)  # (N, 6)
    resid = ((a[:, None, :] - np.minimum(fit, 1.0)[:, :, None] * protos[None]) ** 2).sum(axis=2)
    neutral = -GAMMA_N * (a**2).sum(axis=1, keepdims=True)
    logits = np.concatenate([neutral, BETA * (np.minimum(fit, 1.2) - C) - GAMMA * resid], 1)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p = (1.0 - EPS) * p / p.sum(axis=1, keepdims=True) + EPS / NUM_EXPR
    q = EPS_AU / 2 + (1.0 - EPS_AU) / (1.0 + np.exp(-(a - AU_THRESHOLD) / AU_NOISE))
    va_mean = (p[:, 1:, None] * np.minimum(fit, 1.0)[:, :, None] * VA_PROTOTYPES[None, 1:]).sum(axis=1)
    va_std = np.repeat((VA_STD_MIN + VA_STD_SPAN * normalised_entropy(p))[:, None], 2, axis=1)
    return {
        "expr_probs": p.astype(np.float32),
        "au_probs": q.astype(np.float32),
        "va_mean": va_mean.astype(np.float32),
        "va_std": va_std.astype(np.float32),
    }


def sample_labels(rng: np.random.Generator, truth: dict) -> dict:
    """One annotator's labels drawn from ``truth``: expr (N,) int, au (N, 12) int, va (N, 2) float.

    EXPR ~ Categorical(expr_probs); AU_k ~ Bernoulli(au_probs_k); VA ~ clip(N(mean, std), -1, 1),
    rounded to 3 decimals.
    """
    p = truth["expr_probs"].astype(np.float64)
    cdf = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
    expr = np.minimum((rng.random((len(p), 1)) > cdf).sum(axis=1), NUM_EXPR - 1)
    au = (rng.random(truth["au_probs"].shape) < truth["au_probs"]).astype(np.int64)
    va = truth["va_mean"] + truth["va_std"] * rng.standard_normal(truth["va_mean"].shape)
    return {"expr": expr, "au": au, "va": np.round(np.clip(va, -1.0, 1.0), 3)}


def _smoothstep(t: np.ndarray) -> np.ndarray:
    return t * t * (3.0 - 2.0 * t)


def _segment_target(rng: np.random.Generator, expr: int | None = None) -> tuple[int, np.ndarray]:
    """One segment: its expression and its 12-d AU target (prototype x intensity + stray AUs)."""
    drawn = int(rng.choice(NUM_EXPR, p=SEGMENT_FREQS))
    expr = drawn if expr is None else expr
    intensity = 0.25 + 0.75 * rng.beta(2.0, 1.5)
    target = intensity * PROTOTYPES[expr] * rng.uniform(0.8, 1.1, NUM_AU)
    for name in OPTIONAL_AUS.get(expr, ()):
        if rng.random() > OPTIONAL_KEEP:
            target[AU_INDEX[name]] = 0.0
    stray = rng.random(NUM_AU) < 0.08
    target = np.where(stray, np.maximum(target, rng.uniform(0.1, 0.45, NUM_AU)), target)
    return expr, np.clip(target, 0.0, 1.0)


def au_track(
    rng: np.random.Generator, n_frames: int, force: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A smooth AU intensity track (n_frames, 12) and the segment expression of each frame.

    Segments hold 15-50 frames (intensity breathing +-10 %), transitions take 6-16 frames and
    blend the two targets with a smoothstep. ``force``: the expression of segment 0 or 1.
    """
    rows, exprs, prev = [], [], None
    forced_at = int(rng.integers(0, 2))
    total, k = 0, 0
    while total < n_frames:
        expr, target = _segment_target(rng, force if k == forced_at else None)
        k += 1
        if prev is not None:
            n_tr = int(rng.integers(6, 17))
            w = _smoothstep((np.arange(n_tr) + 0.5) / n_tr)[:, None]
            rows.append((1.0 - w) * prev + w * target)
            exprs.append(np.full(n_tr, expr))
            total += n_tr
        n_hold = int(rng.integers(15, 51))
        breathe = 1.0 + 0.1 * np.sin(2 * np.pi * np.arange(n_hold) / rng.uniform(20, 50) + rng.uniform(0, 7))
        rows.append(np.clip(target[None] * breathe[:, None], 0.0, 1.0))
        exprs.append(np.full(n_hold, expr))
        total += n_hold
        prev = target
    return np.concatenate(rows)[:n_frames], np.concatenate(exprs)[:n_frames]


def va_true_bins(mean, std, num_bins: int = NUM_VA_BINS) -> np.ndarray:
    """(..., num_bins) bin probabilities of clip(N(mean, std), -1, 1): the tails fall in the end bins.

    P(bin k) = Phi((e_{k+1} - mean) / std) - Phi((e_k - mean) / std) over the inner edges of
    ``va_bin_edges``, with Phi(e_0) = 0 and Phi(e_K) = 1 (clipping). ``mean``, ``std``: same shape.
    """
    inner = va_bin_edges(num_bins)[1:-1].astype(np.float64)
    mean, std = np.asarray(mean, np.float64)[..., None], np.asarray(std, np.float64)[..., None]
    cdf = ndtr((inner - mean) / std)
    zeros, ones = np.zeros(cdf.shape[:-1] + (1,)), np.ones(cdf.shape[:-1] + (1,))
    return np.diff(np.concatenate([zeros, cdf, ones], axis=-1), axis=-1)


# Bins far from the mean hold probabilities down to exactly 0; va_nll_binned floors them at this, as
# the benchmark always has (it adds < 1e-10 nats; dropping it would change synthetic_meta.json).
VA_BIN_FLOOR = 1e-12


def bayes_limits(truth: dict) -> dict:
    """What a perfect model of the truth scores on labels sampled from it (expected values).

    expr_accuracy = mean_i max_k p_ik; expr_nll = mean_i H(p_i) (nats);
    au_accuracy = mean_ik max(q_ik, 1 - q_ik); au_nll = mean_ik H_bernoulli(q_ik) (nats, per AU);
    va_nll_binned = mean entropy of the 20-bin label distribution (nats, per value);
    va_ccc = per dimension 2 var(m) / (2 var(m) + mean(std^2)) (clipping ignored), mean of V and A.
    """
    p = np.asarray(truth["expr_probs"], np.float64)
    q = np.asarray(truth["au_probs"], np.float64)
    m, s = np.asarray(truth["va_mean"], np.float64), np.asarray(truth["va_std"], np.float64)
    var_m, noise = m.var(axis=0), (s**2).mean(axis=0)
    va_bins = np.clip(va_true_bins(m, s), VA_BIN_FLOOR, 1.0)
    return {
        "frames": int(len(p)),
        "expr_accuracy": float(p.max(axis=1).mean()),
        "expr_nll": float(entropy(p).mean()),
        "expr_median_max_prob": float(np.median(p.max(axis=1))),
        "au_accuracy": float(np.maximum(q, 1 - q).mean()),
        "au_nll": float(bernoulli_entropy(q, normalised=False).mean()),
        "va_nll_binned": float(entropy(va_bins).mean()) if len(m) else float("nan"),
        "va_ccc": float(np.mean(2 * var_m / (2 * var_m + noise))),
    }
