"""Scoring one method's aligned predictions: recognition (ABAW2), uncertainty, OOD, and the limits.

Per task: recognition (ABAW2) and uncertainty (NLL, ECE with 10 bins, Brier, AURC). The AURC ranks
frames by the normalised entropy of the method's (mean) prediction - for an ensemble or MC Dropout
that is the total uncertainty - with errors: EXPR 0/1 misclassification, AU the mean decision
error over the frame's labelled AUs, VA the mean absolute error of the expectation over the
labelled dimensions. VA NLL / ECE / Brier treat valence and arousal as 20-bin categoricals whose
label is the bin of the annotated value. Out of domain: AUROC / AUPR of the method's score,
validation faces negative, OOD images positive. Against a truth: ``kl_true`` (the synthetic
benchmark) and, where annotators' distributions exist (FER+ votes), ``nll_votes`` / ``kl_votes``.
"""

from __future__ import annotations

import math
import os

import numpy as np

from edge.uncertainty import bernoulli_entropy, normalised_entropy, va_expectation
from emenet_tf import metrics
from emenet_tf.data import label_model, synthetic
from emenet_tf.data.index import FrameIndex
from emenet_tf.io import read_json
from emenet_tf.labels import NUM_EXPR, TASKS, va_bin_centres, va_to_bin


def expr_metrics(probs, labels, mask) -> dict:
    """EXPR recognition and uncertainty on the labelled rows."""
    keep = mask > 0
    p, y = probs[keep], labels[keep]
    out = {}
    if keep.any():
        pred = p.argmax(axis=1)
        out = {
            "f1": metrics.macro_f1(y, pred, NUM_EXPR),
            "acc": metrics.accuracy(y, pred),
            "score": metrics.expr_score(y, pred),
            "nll": metrics.nll_categorical(p, y),
            "ece": metrics.ece_categorical(p, y),
            "brier": metrics.brier_categorical(p, y),
            "aurc": metrics.aurc(normalised_entropy(p), pred != y),
        }
    return out


def au_metrics(probs, labels, mask) -> dict:
    """AU recognition and uncertainty over the labelled decisions (flattened for NLL, ECE, Brier)."""
    rows = mask.sum(axis=1) > 0
    out = {}
    if rows.any():
        p, y, m = probs[rows], labels[rows], mask[rows]
        scores = metrics.au_scores(y, p, mask=m)
        wrong = ((p >= 0.5) != (y > 0.5)) * m
        out = {
            "f1": scores["f1"],
            "acc": scores["acc"],
            "score": scores["score"],
            "nll": metrics.nll_bernoulli(p, y, m),
            "ece": metrics.ece_bernoulli(p, y, m),
            "brier": metrics.brier_bernoulli(p, y, m),
            "aurc": metrics.aurc(bernoulli_entropy(p).mean(axis=1), wrong.sum(axis=1) / m.sum(axis=1)),
        }
    return out


def va_metrics(probs, values, mask) -> dict:
    """VA CCC of the bin expectations; NLL / ECE / Brier of the bins as 20-class categoricals."""
    rows = mask.sum(axis=1) > 0
    out = {}
    if rows.sum() > 1:
        p, v, m = probs[rows], values[rows], mask[rows]
        expect = va_expectation(p, va_bin_centres(p.shape[-1]))
        keep = m.reshape(-1) > 0
        flat_p = p.reshape(-1, p.shape[-1])[keep]
        flat_y = va_to_bin(v.reshape(-1)[keep], p.shape[-1])
        error = (np.abs(expect - v) * m).sum(axis=1) / m.sum(axis=1)
        out = {
            **metrics.va_scores(v, expect, mask=m),
            "nll": metrics.nll_va_bins(p, v, m),
            "ece": metrics.ece_categorical(flat_p, flat_y),
            "brier": metrics.brier_categorical(flat_p, flat_y),
            "aurc": metrics.aurc(normalised_entropy(p).mean(axis=1), error),
        }
    return out


def _kl_bernoulli(q, p) -> float:
    """Mean over entries of KL(Bernoulli(q) || Bernoulli(p))."""
    q, p = q.reshape(-1), p.reshape(-1)
    return metrics.kl_categorical(np.stack([q, 1 - q], -1), np.stack([p, 1 - p], -1))


def measure(arrays: dict, index: FrameIndex, rows: np.ndarray, truth: dict | None, tasks=TASKS) -> dict:
    """{task: metric dict} of one method's aligned ``arrays`` on index ``rows``, for the trained ``tasks``.

    With ``truth``: ``kl_true`` per task over the rows that have a truth. Rows with an annotator
    distribution (``index.expr_dist``, e.g. FER+ votes): ``expr`` also has ``nll_votes`` (the votes'
    NLL, -sum_k v_k log p_k) and ``kl_votes`` (KL(votes || prediction)); their floor, the votes' own
    entropy, is in ``votes_floor``.
    """
    scorers = {
        "expr": lambda: expr_metrics(arrays["expr"][rows], index.expr[rows], index.expr_mask[rows]),
        "au": lambda: au_metrics(arrays["au"][rows], index.au[rows], index.au_mask[rows]),
        "va": lambda: va_metrics(arrays["va"][rows], index.va[rows], index.va_mask[rows]),
    }
    out = {task: scorers[task]() for task in TASKS if task in tasks}
    if truth is not None:
        has = rows[truth["has"][rows]]
        if len(has):
            kl = {
                "expr": lambda: metrics.kl_categorical(truth["expr"][has], arrays["expr"][has]),
                "au": lambda: _kl_bernoulli(truth["au"][has], arrays["au"][has]),
                "va": lambda: _kl_bins(truth["va"][has], arrays["va"][has]),
            }
            for task in out:
                out[task]["kl_true"] = kl[task]()
    voted = rows[index.expr_dist_mask[rows] > 0]
    if "expr" in out and len(voted):
        votes, probs = index.expr_dist[voted], arrays["expr"][voted]
        out["expr"]["nll_votes"] = metrics.cross_entropy(votes, probs)
        out["expr"]["kl_votes"] = metrics.kl_categorical(votes, probs)
    return out


def votes_floor(index: FrameIndex, rows: np.ndarray) -> dict:
    """The annotators' own figures on ``rows``: the mean entropy of their vote distributions (the
    lowest ``nll_votes`` any prediction can reach, in nats), their normalised entropy and count."""
    voted = rows[index.expr_dist_mask[rows] > 0]
    if not len(voted):
        return {}
    votes = index.expr_dist[voted]
    return {
        "frames": int(len(voted)),
        "nll_votes": metrics.mean_entropy(votes),
        "normalised_entropy": float(normalised_entropy(votes).mean()),
    }


def _kl_bins(q, p) -> float:
    """Mean over frames and the two VA dimensions of KL(q || p) over the bins."""
    return metrics.kl_categorical(q.reshape(-1, q.shape[-1]), p.reshape(-1, p.shape[-1]))


def ood_metrics(arrays: dict, rows: np.ndarray) -> dict:
    """AUROC / AUPR of the method's score: validation ``rows`` negative, every OOD image positive."""
    s_in = arrays["val"]["score"][rows]
    s_out = arrays["ood"]["score"][arrays["ood"]["present"]]
    return {"auroc": metrics.auroc(s_in, s_out), "aupr": metrics.aupr(s_in, s_out)}


def bayes_limits(truth: dict, index: FrameIndex, rows: np.ndarray, synthetic_dir: str) -> dict:
    """Bayes limits: expected on the evaluation rows (``label_model.bayes_limits``), the truth measured
    as a predictor on their sampled labels (``oracle``), and synthetic_meta.json's for all validation."""
    has = rows[truth["has"][rows]]
    raw = {"expr_probs": truth["expr"][has], "au_probs": truth["au"][has]}
    raw.update(va_mean=truth["va_mean"][has], va_std=truth["va_std"][has])
    out = {"expected": label_model.bayes_limits(raw), "oracle": measure(truth, index, has, truth)}
    try:
        meta = read_json(os.path.join(synthetic_dir, synthetic.META)).get("bayes_limits", {})
        out["meta_validation"] = meta.get("validation", meta)
    except (OSError, ValueError, AttributeError):
        pass  # the benchmark's own summary is a copy of these figures: without it they are still above
    return out


def clean(obj):
    """Python floats everywhere; nan / inf become None (JSON has no nan)."""
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
