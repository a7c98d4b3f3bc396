"""Evaluation metrics in numpy: recognition (F1, accuracy, ABAW2 scores, CCC) and uncertainty.

Uncertainty metrics: NLL, ECE and reliability bins, Brier, risk-coverage and AURC, out-of-domain
AUROC / AUPR, KL to a true distribution. Everything is vectorised numpy (no sklearn, no scipy),
returns Python floats (or dicts of floats / arrays), and never divides by zero: an empty
denominator gives 0 for F1 and nan for a mean over nothing, without warnings.

Masks: recognition metrics for EXPR and VA take arrays already filtered to present labels
(``va_scores`` also accepts a mask); AU and Bernoulli metrics take an optional (N, 12) mask
and use only the present entries.
"""

import numpy as np

from emenet_tf.labels import va_to_bin

PROB_EPS = 1e-12


# ---------------------------------------------------------------- helpers


def _div(num, den, empty=0.0):
    """num / den elementwise, ``empty`` where den == 0, without warnings."""
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    safe = np.where(den == 0, 1.0, den)
    return np.where(den == 0, empty, num / safe)


def _same_length(name, *arrays):
    lengths = {len(a) for a in arrays}
    if len(lengths) != 1:
        raise ValueError(f"{name}: inputs differ in length: {[len(a) for a in arrays]}")


def _mask_or_ones(mask, shape):
    if mask is None:
        return np.ones(shape, np.float64)
    mask = np.asarray(mask, np.float64)
    if mask.shape != shape:
        raise ValueError(f"mask shape {mask.shape} does not match labels {shape}")
    return mask


def _class_labels(labels, num_classes, name="labels"):
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)][0]
        raise ValueError(f"{name} must lie in 0..{num_classes - 1}, got {bad!r}")
    return labels.astype(np.int64)


# ---------------------------------------------------------------- recognition


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """(C, C) counts, rows = true class, columns = predicted class."""
    y_true = _class_labels(y_true, num_classes, "y_true").ravel()
    y_pred = _class_labels(y_pred, num_classes, "y_pred").ravel()
    _same_length("confusion_matrix", y_true, y_pred)
    counts = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def f1_per_class(y_true, y_pred, num_classes: int) -> np.ndarray:
    """(C,) F1 = 2 TP / (2 TP + FP + FN) per class; 0 for a class never true nor predicted."""
    cm = confusion_matrix(y_true, y_pred, num_classes)
    tp = np.diag(cm).astype(np.float64)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    return _div(2.0 * tp, 2.0 * tp + fp + fn)


def macro_f1(y_true, y_pred, num_classes: int) -> float:
    """Unweighted mean of the per-class F1 over all ``num_classes`` classes."""
    return float(np.mean(f1_per_class(y_true, y_pred, num_classes)))


def accuracy(y_true, y_pred) -> float:
    """Fraction of equal entries; nan for empty input."""
    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    _same_length("accuracy", y_true, y_pred)
    return float(_div(np.sum(y_true == y_pred), y_true.size, empty=np.nan))


def expr_score(y_true, y_pred, num_classes: int = 7) -> float:
    """ABAW2 expression score: 0.67 * macro-F1 + 0.33 * accuracy."""
    return 0.67 * macro_f1(y_true, y_pred, num_classes) + 0.33 * accuracy(y_true, y_pred)


def au_scores(y_true, probs, threshold: float = 0.5, mask=None) -> dict:
    """ABAW2 AU score from (N, A) labels in {0, 1} and probabilities; prediction = p >= threshold.

    Per AU, F1 counts only present entries (mask 1); an AU with no present entry gets F1 nan and
    is left out of the mean. Returns dict: ``f1`` (mean per-AU F1), ``acc`` (over all present AU
    decisions), ``score`` = 0.5 f1 + 0.5 acc, ``f1_per_au`` (A,) array.
    """
    y_true = np.asarray(y_true, np.float64)
    probs = np.asarray(probs, np.float64)
    if y_true.shape != probs.shape or y_true.ndim != 2:
        raise ValueError(f"au_scores: labels {y_true.shape} and probs {probs.shape} must both be (N, A)")
    mask = _mask_or_ones(mask, y_true.shape)
    y_true = np.where(mask > 0, y_true, 0.0)  # missing markers (-1) never reach the counts
    pred = (probs >= threshold).astype(np.float64)
    tp = np.sum(mask * pred * y_true, axis=0)
    fp = np.sum(mask * pred * (1.0 - y_true), axis=0)
    fn = np.sum(mask * (1.0 - pred) * y_true, axis=0)
    present = mask.sum(axis=0)
    f1 = np.where(present > 0, _div(2.0 * tp, 2.0 * tp + fp + fn), np.nan)
    mean_f1 = float(np.mean(f1[present > 0])) if np.any(present > 0) else float("nan")
    acc = float(_div(np.sum(mask * (pred == y_true)), mask.sum(), empty=np.nan))
    return {"f1": mean_f1, "acc": acc, "score": 0.5 * mean_f1 + 0.5 * acc, "f1_per_au": f1}


def ccc(x, y) -> float:
    """Concordance correlation: 2 cov(x, y) / (var x + var y + (mean x - mean y)^2), population moments.

    Equals 2 rho sx sy / (sx^2 + sy^2 + (mx - my)^2). Two identical constants give 1 (the
    denominator is 0 only then); empty input gives nan.
    """
    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    _same_length("ccc", x, y)
    if x.size == 0:
        return float("nan")
    mx, my = x.mean(), y.mean()
    cov = np.mean((x - mx) * (y - my))
    den = np.mean((x - mx) ** 2) + np.mean((y - my) ** 2) + (mx - my) ** 2
    return float(_div(2.0 * cov, den, empty=1.0))


def va_scores(true, pred, mask=None) -> dict:
    """ABAW2 VA score from (N, 2) valence/arousal: dict ``ccc_valence``, ``ccc_arousal``, ``score`` (mean)."""
    true, pred = np.asarray(true, np.float64), np.asarray(pred, np.float64)
    if true.shape != pred.shape or true.ndim != 2 or true.shape[1] != 2:
        raise ValueError(f"va_scores: true {true.shape} and pred {pred.shape} must both be (N, 2)")
    keep = _mask_or_ones(mask, true.shape) > 0
    cv = ccc(true[keep[:, 0], 0], pred[keep[:, 0], 0])
    ca = ccc(true[keep[:, 1], 1], pred[keep[:, 1], 1])
    return {"ccc_valence": cv, "ccc_arousal": ca, "score": 0.5 * (cv + ca)}


# ---------------------------------------------------------------- likelihood and calibration


def _onehot_probs(probs, labels):
    probs = np.asarray(probs, np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probs must be (N, C), got shape {probs.shape}")
    labels = _class_labels(labels, probs.shape[1])
    _same_length("categorical metric", probs, labels)
    return probs, labels


def nll_categorical(probs, labels) -> float:
    """Mean over rows of -log p_y (p clipped at 1e-12)."""
    probs, labels = _onehot_probs(probs, labels)
    p_y = probs[np.arange(len(labels)), labels]
    return float(_div(-np.sum(np.log(np.maximum(p_y, PROB_EPS))), len(labels), empty=np.nan))


def _present(probs, labels, mask):
    """Flattened (p, y) of the present Bernoulli decisions."""
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels, np.float64)
    if probs.shape != labels.shape:
        raise ValueError(f"probs {probs.shape} and labels {labels.shape} differ in shape")
    keep = _mask_or_ones(mask, labels.shape) > 0
    return probs[keep], labels[keep]


def nll_bernoulli(probs, labels, mask=None) -> float:
    """Mean over present decisions of -(y log p + (1-y) log(1-p)) (p clipped to [1e-12, 1-1e-12])."""
    p, y = _present(probs, labels, mask)
    p = np.clip(p, PROB_EPS, 1.0 - PROB_EPS)
    nll = -(y * np.log(p) + (1.0 - y) * np.log(1.0 - p))
    return float(_div(nll.sum(), nll.size, empty=np.nan))


def reliability_bins(confidences, correct, n_bins: int = 10) -> dict:
    """Equal-width confidence bins over [0, 1]: bin b holds [b/n, (b+1)/n), the last also holds 1.

    Returns dict of (n_bins,) arrays: ``centers``, ``accuracy`` and ``confidence`` (means in the
    bin, nan where empty) and ``counts``.
    """
    conf = np.asarray(confidences, np.float64).ravel()
    corr = np.asarray(correct, np.float64).ravel()
    _same_length("reliability_bins", conf, corr)
    idx = np.clip(np.floor(conf * n_bins).astype(np.int64), 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins)
    return {
        "centers": (np.arange(n_bins) + 0.5) / n_bins,
        "accuracy": _div(np.bincount(idx, weights=corr, minlength=n_bins), counts, empty=np.nan),
        "confidence": _div(np.bincount(idx, weights=conf, minlength=n_bins), counts, empty=np.nan),
        "counts": counts,
    }


def ece(confidences, correct, n_bins: int = 10) -> float:
    """Expected calibration error: sum_b (n_b / N) |acc_b - conf_b| over equal-width bins."""
    bins = reliability_bins(confidences, correct, n_bins)
    counts = bins["counts"]
    gap = np.abs(bins["accuracy"] - bins["confidence"])
    total = counts.sum()
    if total == 0:
        return float("nan")
    return float(np.sum(counts[counts > 0] * gap[counts > 0]) / total)


def ece_categorical(probs, labels, n_bins: int = 10) -> float:
    """ECE with confidence = max_k p_k and correct = (argmax == label)."""
    probs, labels = _onehot_probs(probs, labels)
    return ece(probs.max(axis=1), probs.argmax(axis=1) == labels, n_bins)


def ece_bernoulli(probs, labels, mask=None, n_bins: int = 10) -> float:
    """ECE over all present decisions flattened: confidence max(p, 1-p), correct ((p >= 0.5) == y)."""
    p, y = _present(probs, labels, mask)
    return ece(np.maximum(p, 1.0 - p), (p >= 0.5) == (y > 0.5), n_bins)


def brier_categorical(probs, labels) -> float:
    """Mean over rows of sum_k (p_k - onehot(y)_k)^2 (in [0, 2])."""
    probs, labels = _onehot_probs(probs, labels)
    onehot = np.eye(probs.shape[1])[labels]
    return float(_div(np.sum((probs - onehot) ** 2), len(labels), empty=np.nan))


def brier_bernoulli(probs, labels, mask=None) -> float:
    """Mean over present decisions of (p - y)^2 (in [0, 1]; half the two-class categorical Brier)."""
    p, y = _present(probs, labels, mask)
    return float(_div(np.sum((p - y) ** 2), p.size, empty=np.nan))


def kl_categorical(p_true, p_pred) -> float:
    """Mean over rows of KL(p_true || p_pred) = sum_k p_true log(p_true / p_pred); 0 log 0 = 0."""
    p_true, p_pred = np.asarray(p_true, np.float64), np.asarray(p_pred, np.float64)
    if p_true.shape != p_pred.shape:
        raise ValueError(f"kl_categorical: shapes differ: {p_true.shape} vs {p_pred.shape}")
    safe_true = np.maximum(p_true, PROB_EPS)
    terms = np.where(p_true > 0, p_true * (np.log(safe_true) - np.log(np.maximum(p_pred, PROB_EPS))), 0.0)
    rows = terms.sum(axis=-1)
    return float(_div(rows.sum(), rows.size, empty=np.nan))


def cross_entropy(p_true, p_pred) -> float:
    """Mean over rows of -sum_k p_true log p_pred (p_pred clipped at PROB_EPS): the NLL of a label
    distribution, e.g. annotators' votes; it equals entropy(p_true) + KL(p_true || p_pred)."""
    p_true, p_pred = np.asarray(p_true, np.float64), np.asarray(p_pred, np.float64)
    if p_true.shape != p_pred.shape:
        raise ValueError(f"cross_entropy: shapes differ: {p_true.shape} vs {p_pred.shape}")
    rows = -(p_true * np.log(np.maximum(p_pred, PROB_EPS))).sum(axis=-1)
    return float(_div(rows.sum(), rows.size, empty=np.nan))


def mean_entropy(p) -> float:
    """Mean over rows of -sum_k p log p in nats (0 log 0 = 0): the floor of ``cross_entropy`` to p."""
    p = np.asarray(p, np.float64)
    rows = -np.where(p > 0, p * np.log(np.maximum(p, PROB_EPS)), 0.0).sum(axis=-1)
    return float(_div(rows.sum(), rows.size, empty=np.nan))


def nll_va_bins(probs, values, mask=None) -> float:
    """Mean -log p(bin of the true value) over present entries; probs (N, 2, K), values and mask (N, 2)."""
    probs = np.asarray(probs, np.float64)
    values = np.asarray(values, np.float64)
    if probs.shape[:-1] != values.shape:
        raise ValueError(f"nll_va_bins: probs {probs.shape} do not match values {values.shape}")
    keep = _mask_or_ones(mask, values.shape) > 0
    bins = va_to_bin(values, probs.shape[-1])
    p_true = np.take_along_axis(probs, bins[..., None], axis=-1)[..., 0]
    nll = -np.log(np.maximum(p_true[keep], PROB_EPS))
    return float(_div(nll.sum(), nll.size, empty=np.nan))


# ---------------------------------------------------------------- selective prediction


def risk_coverage_curve(uncertainty, error) -> dict:
    """Risk of keeping the k most certain samples, k = 1..N (stable sort: ties keep input order).

    Returns dict of (N,) arrays: ``coverage`` = k / N, ``risk`` = mean error of those k,
    ``threshold`` = the k-th smallest uncertainty.
    """
    unc = np.asarray(uncertainty, np.float64).ravel()
    err = np.asarray(error, np.float64).ravel()
    _same_length("risk_coverage_curve", unc, err)
    order = np.argsort(unc, kind="stable")
    k = np.arange(1, unc.size + 1)
    return {"coverage": k / unc.size, "risk": np.cumsum(err[order]) / k, "threshold": unc[order]}


def aurc(uncertainty, error) -> float:
    """Area under the risk-coverage curve (Geifman et al. 2019): mean over k of the risk; nan if empty."""
    risk = risk_coverage_curve(uncertainty, error)["risk"]
    return float(risk.mean()) if risk.size else float("nan")


# ---------------------------------------------------------------- out-of-domain detection


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given the mean of the ranks they span (as scipy.stats.rankdata)."""
    order = np.argsort(values, kind="stable")
    sorted_vals = values[order]
    new_group = np.concatenate([[True], sorted_vals[1:] != sorted_vals[:-1]])
    group = np.cumsum(new_group) - 1
    starts = np.flatnonzero(new_group)
    ends = np.concatenate([starts[1:], [values.size]])
    mean_rank = (starts + 1 + ends) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(values.size, np.float64)
    ranks[order] = mean_rank[group]
    return ranks


def _ood_inputs(scores_in, scores_out):
    s_in = np.asarray(scores_in, np.float64).ravel()
    s_out = np.asarray(scores_out, np.float64).ravel()
    if s_in.size == 0 or s_out.size == 0:
        raise ValueError(f"need in- and out-of-domain scores, got {s_in.size} and {s_out.size}")
    return s_in, s_out


def auroc(scores_in, scores_out) -> float:
    """P(score_out > score_in) + 0.5 P(equal): Mann-Whitney U / (n_in n_out); OOD is the positive class."""
    s_in, s_out = _ood_inputs(scores_in, scores_out)
    ranks = _average_ranks(np.concatenate([s_in, s_out]))
    n_out = s_out.size
    u = ranks[s_in.size :].sum() - n_out * (n_out + 1) / 2.0
    return float(u / (s_in.size * n_out))


def aupr(scores_in, scores_out) -> float:
    """Average precision with OOD positive: sum_t (R_t - R_{t-1}) P_t over distinct score thresholds."""
    s_in, s_out = _ood_inputs(scores_in, scores_out)
    scores = np.concatenate([s_in, s_out])
    positive = np.concatenate([np.zeros(s_in.size), np.ones(s_out.size)])
    order = np.argsort(-scores, kind="stable")
    scores, positive = scores[order], positive[order]
    last_of_tie = np.flatnonzero(np.concatenate([scores[1:] != scores[:-1], [True]]))
    tp = np.cumsum(positive)[last_of_tie]
    precision = tp / (last_of_tie + 1)
    recall = tp / s_out.size
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))
