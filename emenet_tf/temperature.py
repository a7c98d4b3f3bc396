"""Temperature Scaling (Guo et al. 2017): one temperature per task output, fit on held-out labelled data.

It rescales a trained model's logits by 1 / T, with T fit by minimising the NLL on held-out
labelled data. It works from probabilities as well as logits:
  categorical: softmax(log p / T) = softmax(z / T)   (log p = z - logsumexp(z))
  Bernoulli:   sigmoid(logit(p) / T),  logit(p) = log(p / (1 - p))
One temperature for EXPR, one per AU (12), one for valence and one for arousal (20-bin
categoricals). Each is fit alone by a bounded 1-d search over log T (scipy minimize_scalar).
The evaluation's baseline (``evaluation.methods.temperature_scaling``) and the teachers'
calibration (``calibration``) both use it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.optimize import minimize_scalar

from emenet_tf.inference import to_logits
from emenet_tf.labels import NUM_AU, va_to_bin

KINDS = ("categorical", "bernoulli")
T_BOUNDS = (0.05, 20.0)  # search range of T; a fit at a bound means the model is badly off


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def apply_temperature(values, temperature, kind: str = "categorical", logits: bool = False) -> np.ndarray:
    """Probabilities after temperature scaling: softmax(z / T) over the last axis, or sigmoid(z / T).

    values: probabilities (``logits=False``) or logits. temperature: a number, or an array that
    broadcasts against the logits (one T per AU column, one per VA dimension). Returns float64.
    """
    z = np.asarray(values, np.float64) if logits else to_logits(values, kind)
    if kind == "categorical":
        return np.exp(_log_softmax(z / temperature))
    _check_kind(kind)
    return 1.0 / (1.0 + np.exp(-z / temperature))


def _nll_fn(z: np.ndarray, labels: np.ndarray, kind: str):
    """NLL(log T) of the selected examples, for the 1-d search."""
    if kind == "categorical":
        rows = np.arange(len(labels))

        def nll(log_t):
            return -_log_softmax(z / np.exp(log_t))[rows, labels].mean()

    else:

        def nll(log_t):
            u = z / np.exp(log_t)
            return (np.logaddexp(0.0, u) - labels * u).mean()  # softplus(u) - y u

    return nll


def fit_temperature(values, labels, kind: str = "categorical", mask=None, logits: bool = False) -> float:
    """The T > 0 minimising the mean NLL of ``labels`` under ``apply_temperature(values, T)``.

    categorical: values (N, C), labels (N,) ints in 0..C-1, mask (N,) selects the rows used.
    bernoulli: values and labels (in {0, 1}) of any one shape, mask of that shape; every
      selected entry shares the one T (fit per AU by passing one column at a time).
    Returns 1.0 when no example is selected. T is searched over log T in log(T_BOUNDS).
    """
    _check_kind(kind)
    z = np.asarray(values, np.float64) if logits else to_logits(values, kind)
    labels = np.asarray(labels)
    if kind == "categorical":
        if z.ndim != 2 or labels.shape != z.shape[:1]:
            raise ValueError(
                f"categorical: values must be (N, C) and labels (N,), got {z.shape} and {labels.shape}"
            )
    elif labels.shape != z.shape:
        raise ValueError(f"bernoulli: values {z.shape} and labels {labels.shape} differ in shape")
    keep = np.ones(labels.shape, bool) if mask is None else np.asarray(mask) > 0
    if keep.shape != labels.shape:
        raise ValueError(f"mask shape {keep.shape} does not match labels {labels.shape}")
    if not keep.any():
        return 1.0
    labels = labels[keep].astype(np.int64 if kind == "categorical" else np.float64)
    nll = _nll_fn(z[keep], labels, kind)
    bounds = (np.log(T_BOUNDS[0]), np.log(T_BOUNDS[1]))
    result = minimize_scalar(nll, bounds=bounds, method="bounded", options={"xatol": 1e-5})
    return float(np.exp(result.x))


@dataclasses.dataclass
class TemperatureScaler:
    """Temperatures of the three tasks: ``expr`` (one), ``au`` (12), ``va`` (2: valence, arousal)."""

    expr: float = 1.0
    au: tuple = (1.0,) * NUM_AU
    va: tuple = (1.0, 1.0)

    @classmethod
    def fit(cls, pred: dict, rows=None) -> TemperatureScaler:
        """Fit on the labelled examples of ``rows`` (bool mask or positions; None: all) of ``pred``.

        pred: probabilities ``expr`` (N,7), ``au`` (N,12), ``va`` (N,2,K) and labels with masks
        ``label_expr``, ``label_expr_mask``, ``label_au``, ``label_au_mask``, ``label_va``,
        ``label_va_mask`` (as ``inference.predict_dataset`` returns them).
        """
        sel = np.arange(len(pred["expr"])) if rows is None else rows
        expr = fit_temperature(
            pred["expr"][sel], pred["label_expr"][sel], "categorical", mask=pred["label_expr_mask"][sel]
        )
        au = tuple(
            fit_temperature(
                pred["au"][sel, k], pred["label_au"][sel, k], "bernoulli", mask=pred["label_au_mask"][sel, k]
            )
            for k in range(pred["au"].shape[1])
        )
        num_bins = pred["va"].shape[-1]
        bins = va_to_bin(pred["label_va"][sel], num_bins)
        va = tuple(
            fit_temperature(pred["va"][sel, d], bins[:, d], "categorical", mask=pred["label_va_mask"][sel, d])
            for d in range(2)
        )
        return cls(expr=expr, au=au, va=va)

    def apply(self, probs: dict) -> dict:
        """Scaled copies of the ``expr``, ``au`` and ``va`` probabilities; other keys are passed through."""
        out = dict(probs)
        out["expr"] = apply_temperature(probs["expr"], self.expr, "categorical")
        out["au"] = apply_temperature(probs["au"], np.asarray(self.au), "bernoulli")  # one T per AU column
        out["va"] = apply_temperature(probs["va"], np.asarray(self.va)[:, None], "categorical")  # per V, A
        return out

    def to_dict(self) -> dict:
        return {
            "expr": float(self.expr),
            "au": [float(t) for t in self.au],
            "va": [float(t) for t in self.va],
        }
