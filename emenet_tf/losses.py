"""Training losses of EMENet: hard labels (generation 0) and soft labels (distillation).

Every loss takes tensors, returns a float32 scalar and honours a mask: a masked label contributes
exactly zero to the loss and to its gradient. Masked entries are replaced with ``tf.where``
before any arithmetic, so NaN or garbage in masked rows cannot leak; the loss is a mean over the
present labels and is 0 when none is present.
"""

from __future__ import annotations

import numpy as np

from emenet_tf._keras import tf
from emenet_tf.distributions import (
    au_beta,
    dirichlet,
    expr_distribution,
    tfd,
    va_distribution,
    va_expectation,
)
from emenet_tf.labels import NUM_AU, NUM_EXPR, NUM_VA_BINS, VA_BIN_EDGE_TOLERANCE

AU_POS_WEIGHT_CLIP = (1.0, 50.0)
EXPR_CLASS_WEIGHT_CLIP = (0.05, 20.0)
# Ensemble distribution distillation: each member's probabilities are pulled towards the centre
# of the simplex, p' = (1 - s) p + s / K, so log p' >= log(s / K) stays finite (EnD^2's "central
# smoothing"; 1e-3 as in Malinin et al.'s code).
DIRICHLET_SMOOTHING = 1e-3


def _present(mask, ref, rank: int):
    """Bool mask shaped like the first ``rank`` axes of ``ref`` (None: all present; a mask of
    lower rank is broadcast over the trailing axes, e.g. a per-frame mask over 12 AUs)."""
    shape = tf.shape(ref)[:rank]
    if mask is None:
        return tf.ones(shape, tf.bool)
    mask = tf.convert_to_tensor(mask)
    mask = mask if mask.dtype == tf.bool else tf.cast(mask, tf.float32) > 0
    for _ in range(rank - mask.shape.rank):
        mask = mask[..., None]
    return tf.broadcast_to(mask, shape)


def _clean(x, present, fill=0.0):
    """``x`` where present, ``fill`` elsewhere (present broadcast over x's trailing axes)."""
    x = tf.convert_to_tensor(x)
    while present.shape.rank < x.shape.rank:
        present = present[..., None]
    return tf.where(tf.broadcast_to(present, tf.shape(x)), x, tf.cast(fill, x.dtype))


def _masked_mean(values, present):
    """Mean of ``values`` over the present entries; 0 when none is."""
    total = tf.reduce_sum(tf.where(present, values, tf.zeros_like(values)))
    return tf.math.divide_no_nan(total, tf.reduce_sum(tf.cast(present, tf.float32)))


def ccc(x, y, weights=None):
    """Weighted concordance correlation coefficient over axis 0 (one per column).

    CCC = 2 cov(x, y) / (var x + var y + (mean x - mean y)^2) = 2 rho sx sy / (sx^2 + sy^2 +
    (mx - my)^2), with weighted means, (biased) variances and covariance. Rows of weight 0 are
    ignored (also when x or y holds NaN there); a column with no weight or a zero denominator
    gives 0.
    """
    x = tf.cast(tf.convert_to_tensor(x), tf.float32)
    y = tf.cast(tf.convert_to_tensor(y), tf.float32)
    w = tf.ones_like(x) if weights is None else tf.broadcast_to(tf.cast(weights, tf.float32), tf.shape(x))
    present = w > 0
    w = tf.where(present, w, 0.0)
    x, y = tf.where(present, x, 0.0), tf.where(present, y, 0.0)
    total = tf.reduce_sum(w, axis=0)

    def wmean(v):
        return tf.math.divide_no_nan(tf.reduce_sum(w * v, axis=0), total)

    mx, my = wmean(x), wmean(y)
    dx, dy = x - mx, y - my
    cov = wmean(dx * dy)
    denominator = wmean(dx * dx) + wmean(dy * dy) + tf.square(mx - my)
    return tf.math.divide_no_nan(2.0 * cov, denominator)


def _mean_one_minus_ccc(pred, target, present):
    """(B, D) values -> mean over the columns that have a present row of (1 - CCC)."""
    has = tf.reduce_any(present, axis=0)
    terms = tf.where(has, 1.0 - ccc(pred, target, tf.cast(present, tf.float32)), 0.0)
    return tf.math.divide_no_nan(tf.reduce_sum(terms), tf.reduce_sum(tf.cast(has, tf.float32)))


def va_to_bin(values, num_bins: int = NUM_VA_BINS):
    """Index (int32) of the VA bin holding each value in [-1, 1]: ``labels.va_to_bin`` in TF."""
    values = tf.cast(values, tf.float32)
    idx = tf.cast(tf.floor((values + 1.0) / 2.0 * num_bins + VA_BIN_EDGE_TOLERANCE), tf.int32)
    return tf.clip_by_value(idx, 0, num_bins - 1)


# ----------------------------------------------------------------------------- hard labels


def au_bce(labels, mask, logits, pos_weight=None):
    """Weighted binary cross-entropy over the present AU labels.

    Per entry: -(q_j y log sigmoid(z) + (1 - y) log(1 - sigmoid(z))), q_j = pos_weight[j] (~
    negatives / positives of AU j; None: 1); averaged over the present (frame, AU) entries.
    labels, mask, logits: (B, 12).
    """
    logits = tf.cast(logits, tf.float32)
    present = _present(mask, logits, 2)
    labels = _clean(tf.cast(labels, tf.float32), present)
    logits = _clean(logits, present)
    q = tf.ones([NUM_AU], tf.float32) if pos_weight is None else tf.cast(pos_weight, tf.float32)
    per_entry = tf.nn.weighted_cross_entropy_with_logits(labels, logits, q)
    return _masked_mean(per_entry, present)


def expr_ce(labels, mask, logits, class_weight=None, dist=None):
    """Class-weighted cross-entropy over the frames with an EXPR label.

    loss = sum_i w_{y_i} CE_i / sum_i w_{y_i} over present frames i (class_weight None: plain
    mean). labels (B,) int class index, mask (B,), logits (B, 7).
    dist: (B, 7) annotator distributions (FER+ votes; rows without one all 0) or None. A row with a
    distribution v is learnt from it instead of its single label: CE_i = -sum_k v_k log q_k with
    weight sum_k v_k w_k (its expected class weight), whatever its mask says.
    """
    logits = tf.cast(logits, tf.float32)
    present = _present(mask, logits, 1)
    if dist is not None:
        voted = tf.reduce_sum(tf.cast(dist, tf.float32), axis=-1) > 0
        hard_sum, hard_weight = _expr_ce_terms(labels, present & ~voted, logits, class_weight)
        soft_sum, soft_weight = _expr_votes_terms(dist, voted, logits, class_weight)
        return tf.math.divide_no_nan(hard_sum + soft_sum, hard_weight + soft_weight)
    total, weight = _expr_ce_terms(labels, present, logits, class_weight)
    return tf.math.divide_no_nan(total, weight)


def _expr_ce_terms(labels, present, logits, class_weight):
    """(sum_i w_{y_i} CE_i, sum_i w_{y_i}) over the present rows of single-label cross-entropy."""
    labels = tf.convert_to_tensor(labels)
    labels = tf.cast(tf.where(present, labels, tf.zeros_like(labels)), tf.int32)
    labels = tf.clip_by_value(labels, 0, NUM_EXPR - 1)
    logits = _clean(logits, present)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
    w = tf.ones([NUM_EXPR], tf.float32) if class_weight is None else tf.cast(class_weight, tf.float32)
    w = tf.where(present, tf.gather(w, labels), 0.0)
    return tf.reduce_sum(w * ce), tf.reduce_sum(w)


def _expr_votes_terms(dist, voted, logits, class_weight):
    """(sum_i w_i CE_i, sum_i w_i) over the voted rows: CE_i = -sum_k v_k log q_k, w_i = sum_k v_k w_k."""
    dist = _clean(tf.cast(dist, tf.float32), voted)
    ce = tf.nn.softmax_cross_entropy_with_logits(dist, _clean(logits, voted))
    w = tf.ones([NUM_EXPR], tf.float32) if class_weight is None else tf.cast(class_weight, tf.float32)
    w = tf.where(voted, tf.reduce_sum(dist * w, axis=-1), 0.0)
    return tf.reduce_sum(w * ce), tf.reduce_sum(w)


def va_loss(values, mask, logits, ccc_weight: float = 1.0, ce_weight: float = 1.0):
    """Valence / arousal loss on the binned outputs.

    loss = ccc_weight * mean_{d in V, A} (1 - CCC(E_d, v_d)) + ce_weight * CE(bin(v), logits),
    where E = sum_k softmax(logits)_k c_k is the expectation over the bin centres, the CCC is
    taken over the batch's present rows of each dimension (a dimension with none is left out of
    the mean), and the CE is the mean cross-entropy of the bin holding the true value
    (``va_to_bin``) over the present (frame, dimension) entries. The CCC term drives the value,
    the CE term shapes the bin distribution the uncertainty is read from.
    values, mask: (B, 2); logits (B, 2, 20).
    """
    logits = tf.cast(logits, tf.float32)
    present = _present(mask, logits, 2)
    values = _clean(tf.cast(values, tf.float32), present)
    logits = _clean(logits, present)
    expectation = va_expectation(tf.nn.softmax(logits, axis=-1))
    ccc_term = _mean_one_minus_ccc(expectation, values, present)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(va_to_bin(values), logits)
    return ccc_weight * ccc_term + ce_weight * _masked_mean(ce, present)


# ----------------------------------------------------------------------------- soft labels


def au_soft_ce(target_probs, logits, mask=None):
    """Bernoulli cross-entropy to soft AU targets (the teacher ensemble's mean sigmoid).

    Per entry: -(p log sigmoid(z) + (1 - p) log(1 - sigmoid(z))), averaged over present entries
    (it includes the teacher's entropy, so its minimum is not 0). mask: (B,), (B, 12) or None.
    """
    logits = tf.cast(logits, tf.float32)
    present = _present(mask, logits, 2)
    targets = _clean(tf.cast(target_probs, tf.float32), present)
    per_entry = tf.nn.sigmoid_cross_entropy_with_logits(targets, _clean(logits, present))
    return _masked_mean(per_entry, present)


def expr_kl(teacher_probs, logits, mask=None):
    """KL(teacher || student) between EXPR Categoricals, averaged over present frames.

    KL = sum_k p_k (log p_k - log q_k), q = softmax(logits); p_k = 0 terms count 0.
    teacher_probs, logits: (B, 7); mask: (B,) or None.
    """
    logits = tf.cast(logits, tf.float32)
    present = _present(mask, logits, 1)
    teacher = _clean(tf.cast(teacher_probs, tf.float32), present, 1.0 / NUM_EXPR)
    kl = tfd.Categorical(probs=teacher).kl_divergence(expr_distribution(_clean(logits, present)))
    return _masked_mean(kl, present)


def va_kl(teacher_probs, logits, mask=None, ccc_weight: float = 1.0):
    """Distillation loss for VA: KL on the bin distributions plus 1 - CCC on the expectations.

    loss = mean over present (frame, d) of KL(p_d || q_d) + ccc_weight * mean_d (1 - CCC(E_q, E_p)),
    p = teacher bin probabilities, q = softmax(logits), E = expectation over the bin centres.
    teacher_probs, logits: (B, 2, 20); mask: (B,), (B, 2) or None.
    """
    logits = tf.cast(logits, tf.float32)
    present = _present(mask, logits, 2)
    teacher = _clean(tf.cast(teacher_probs, tf.float32), present, 1.0 / NUM_VA_BINS)
    logits = _clean(logits, present)
    kl = tfd.Categorical(probs=teacher).kl_divergence(va_distribution(logits))
    student_value = va_expectation(tf.nn.softmax(logits, axis=-1))
    ccc_term = _mean_one_minus_ccc(student_value, va_expectation(teacher), present)
    return _masked_mean(kl, present) + ccc_weight * ccc_term


# ----------------------------------------------------------------------------- distribution distillation


def member_probs(member_logits, bernoulli: bool = False, smoothing: float = DIRICHLET_SMOOTHING):
    """Teacher members' logits (B, M, ..., K), or AU logits (B, M, 12) with ``bernoulli``, ->
    centrally smoothed probabilities (B, M, ..., K) (AU: (B, M, 12, 2) = (p, 1 - p))."""
    z = tf.cast(member_logits, tf.float32)
    if bernoulli:
        z = tf.stack([z, tf.zeros_like(z)], axis=-1)  # softmax([z, 0]) = (sigmoid z, 1 - sigmoid z)
    probs = tf.nn.softmax(z, axis=-1)
    num = probs.shape[-1]
    return (1.0 - smoothing) * probs + smoothing / num


def dirichlet_loss(member_logits, log_alpha, bernoulli: bool = False, mask=None):
    """Distribution-distillation loss of one task, per simplex dimension, averaged over present frames.

    EnD^2: -mean_m log Dir(p_m; alpha) / (K - 1) over each member's smoothed probabilities p_m (AU:
    -log Beta(p_m; a, b)). Dividing by the simplex dimension K - 1 puts the 7-class, 20-bin and Beta
    terms on one scale.
    member_logits: (B, M, ..., K) teacher logits, or (B, M, 12) with ``bernoulli``.
    log_alpha: the student's (B, ..., K) log-concentrations (AU: (B, 12, 2)).
    mask: (B,) frames to count, or None.
    """
    present = _present(mask, log_alpha, 1)
    log_alpha = _clean(tf.cast(log_alpha, tf.float32), present)
    probs = member_probs(_clean(tf.cast(member_logits, tf.float32), present), bernoulli)
    if bernoulli:
        per = -tf.reduce_mean(au_beta(log_alpha[:, None]).log_prob(probs[..., 0]), axis=1)
    else:
        per = -tf.reduce_mean(dirichlet(log_alpha[:, None]).log_prob(probs), axis=1)
    per = per / float(log_alpha.shape[-1] - 1)
    while per.shape.rank > 1:  # mean over the AUs / the V and A dimensions
        per = tf.reduce_mean(per, axis=-1)
    return _masked_mean(per, present)


# ----------------------------------------------------------------------------- weights


def class_weights(index, power: float = 1.0) -> dict:
    """Loss weights from a FrameIndex's present labels (numpy; JSON-serialisable result).

    au_pos_weight[j] = negatives_j / positives_j clipped to AU_POS_WEIGHT_CLIP (no positive:
    the upper clip). expr_class_weight[k] = 1 / count_k normalised to mean 1 over the classes
    that occur, then clipped to EXPR_CLASS_WEIGHT_CLIP (a class that never occurs: the upper
    clip). ``power`` raises both ratios before normalising and clipping: 1 is the paper's
    inverse frequency, 0.5 the square root, 0 no weighting (all weights 1).
    Weighted cross-entropy is minimised by p_k proportional to w_k q_k, not by the label
    distribution q itself, so any power > 0 trades calibration for rare-class recall.
    Returns {"au_pos_weight": [12], "expr_class_weight": [7], "power": p, "counts": {...}}.
    """
    au_mask = np.asarray(index.au_mask, np.float64) > 0
    au = np.asarray(index.au, np.float64)
    pos = np.sum(au_mask & (au > 0.5), axis=0)
    neg = np.sum(au_mask & (au <= 0.5), axis=0)
    lo, hi = AU_POS_WEIGHT_CLIP
    au_w = np.full(NUM_AU, hi)
    np.divide(neg, pos, out=au_w, where=pos > 0)
    au_w = np.clip(au_w**power, lo, hi)

    expr_present = np.asarray(index.expr_mask, np.float64) > 0
    expr_counts = np.bincount(np.asarray(index.expr)[expr_present].astype(np.int64), minlength=NUM_EXPR)
    lo, hi = EXPR_CLASS_WEIGHT_CLIP
    expr_w = np.full(NUM_EXPR, hi**power)
    seen = expr_counts > 0
    if seen.any():
        inverse = (1.0 / expr_counts[seen]) ** power
        expr_w[seen] = inverse / inverse.mean()
    expr_w = np.clip(expr_w, lo, hi)
    return {
        "au_pos_weight": [float(v) for v in au_w],
        "expr_class_weight": [float(v) for v in expr_w],
        "power": float(power),
        "counts": {
            "frames": int(len(index)),
            "au_positive": [int(v) for v in pos],
            "au_negative": [int(v) for v in neg],
            "expr": [int(v) for v in expr_counts],
        },
    }
