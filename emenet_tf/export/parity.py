"""Parity of an exported model with its reference: the figures, the targets and what a model misses.

Targets (checked at export; a model that misses one is not written unless ``allow_degraded``):
float TFLite vs Keras max abs diff <= 1e-4 on every bounded output (probabilities, entropies,
valence / arousal) and, on the unbounded ones (``edge.contract.UNBOUNDED_OUTPUTS``: the Dirichlet
student's ood_score, a negative log density), max abs diff <= 1e-4 of their scale (the largest
|value| of the reference, at least 1); int8 vs its float reference on
validation frames: EXPR top-1 agreement >= 0.99, mean abs diff of the EXPR normalised entropy
<= 0.02, AU decision (p >= 0.5) agreement >= 0.99.
"""

from __future__ import annotations

import numpy as np

from edge.contract import UNBOUNDED_OUTPUTS

TARGETS = {
    "float_max_abs_diff": 1e-4,  # at most, on the bounded outputs
    "float_max_rel_diff": 1e-4,  # at most, on the unbounded outputs, relative to their scale
    "expr_top1_agreement": 0.99,  # at least
    "expr_entropy_mean_abs_diff": 0.02,  # at most
    "au_decision_agreement": 0.99,  # at least
}
MARGIN_EPS = 0.05  # top-1 agreement is also reported where the reference's top-1 margin exceeds this


def on_uint8_grid(images: np.ndarray) -> np.ndarray:
    """Images in [0, 1] rounded to multiples of 1/255: what a uint8 camera frame delivers.

    Parity compares the float and int8 models on the same frames; the edge runtime feeds both
    uint8 pixels / 255, so the frames are put on that grid first (otherwise the int8 model's
    uint8 input rounding alone flips ~1% of the near-tie EXPR decisions of an underconfident model).
    """
    return (np.round(np.clip(images, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def float_parity(tflite: dict, reference: dict) -> dict:
    """Float TFLite vs Keras: the max abs difference of every output; the gate's two figures, the
    largest over the bounded outputs (``float_max_abs_diff``) and, over the unbounded ones, the
    largest relative to the output's scale max(1, max |reference|) (``float_max_rel_diff``).

    float32 kernels differ in the last bits from one CPU to another and between Keras and TFLite,
    so an output of size s differs by about s x 1e-6: an absolute tolerance that suits values in
    [0, 1] fails a log density of size 1000 for no fault of the export."""
    per_output = {k: float(np.max(np.abs(tflite[k] - reference[k]))) for k in reference}
    bounded = [v for k, v in per_output.items() if k not in UNBOUNDED_OUTPUTS]
    out = {"float_max_abs_diff": max(bounded, default=0.0), "per_output_max_abs_diff": per_output}
    unbounded = [k for k in per_output if k in UNBOUNDED_OUTPUTS]
    if unbounded:
        out["float_max_rel_diff"] = max(
            per_output[k] / max(1.0, float(np.max(np.abs(reference[k])))) for k in unbounded
        )
    return out


def _top_classes(probs: np.ndarray) -> np.ndarray:
    """(N, C) bool: the classes whose probability equals the row's largest (several on a tie)."""
    return probs == probs.max(axis=-1, keepdims=True)


def _mean_abs_diff(a, b) -> float:
    return float(np.mean(np.abs(a - b)))


def int8_parity(quant: dict, ref: dict) -> dict:
    """Agreement of an int8 model with its reference on the same frames.

    expr_top1_agreement: share of frames whose EXPR top class agrees. Where a model's largest
    probabilities tie exactly (int8 logits make exact ties common: which of the tied classes
    argmax names is arbitrary), the frame agrees when the two models share a top class. Also
    reported restricted to frames whose reference top-1 margin (p1 - p2) exceeds MARGIN_EPS
    (near-ties flip on rounding).
    expr_entropy_mean_abs_diff: mean |H_int8 - H_ref| of the normalised EXPR entropy.
    au_decision_agreement: share of (frame, AU) decisions p >= 0.5 that agree; also reported
    where the reference's |p - 0.5| exceeds MARGIN_EPS / 2. The targets apply to the unrestricted figures.
    """
    top1 = (_top_classes(quant["expr_probs"]) & _top_classes(ref["expr_probs"])).any(-1)
    sorted_ref = np.sort(ref["expr_probs"], axis=-1)
    clear = sorted_ref[:, -1] - sorted_ref[:, -2] > MARGIN_EPS
    au_agree = (quant["au_probs"] >= 0.5) == (ref["au_probs"] >= 0.5)
    au_clear = np.abs(ref["au_probs"] - 0.5) > MARGIN_EPS / 2
    va = ("valence", "arousal")
    out = {
        "frames": int(len(top1)),
        "expr_top1_agreement": float(top1.mean()),
        "expr_top1_agreement_clear_margin": float(top1[clear].mean()) if clear.any() else None,
        "clear_margin_frames": int(clear.sum()),
        "expr_entropy_mean_abs_diff": _mean_abs_diff(quant["expr_entropy"], ref["expr_entropy"]),
        "au_decision_agreement": float(au_agree.mean()),
        "au_decision_agreement_clear_margin": float(au_agree[au_clear].mean()) if au_clear.any() else None,
        "au_clear_margin_decisions": int(au_clear.sum()),
        "au_entropy_mean_abs_diff": _mean_abs_diff(quant["au_entropy"], ref["au_entropy"]),
        "va_mean_abs_diff": _mean_abs_diff(
            np.concatenate([quant[k] for k in va]), np.concatenate([ref[k] for k in va])
        ),
    }
    if "expr_epistemic" in ref:
        out["expr_epistemic_mean_abs_diff"] = _mean_abs_diff(quant["expr_epistemic"], ref["expr_epistemic"])
    if "ood_score" in ref:
        out.update(_ood_parity(quant["ood_score"][:, 0], ref["ood_score"][:, 0]))
    return out


def _ood_parity(quant: np.ndarray, ref: np.ndarray) -> dict:
    """A Dirichlet model's ood_score: mean abs diff (also relative to the reference's spread) and
    agreement of the OOD decision at the reference's OOD_QUANTILE threshold (as calibrated)."""
    from emenet_tf.export.metadata import OOD_QUANTILE

    limit = np.quantile(ref, OOD_QUANTILE)
    return {
        "ood_score_mean_abs_diff": _mean_abs_diff(quant, ref),
        "ood_score_mean_abs_diff_per_std": _mean_abs_diff(quant, ref) / max(float(np.std(ref)), 1e-12),
        "ood_decision_agreement": float(np.mean((quant > limit) == (ref > limit))),
    }


# The task each int8 target measures: a head whose task the run's data never labelled is not held to it
# (its untrained outputs sit near ties, which int8 rounding flips for no fault of the export).
TARGET_TASKS = {
    "expr_top1_agreement": "expr",
    "expr_entropy_mean_abs_diff": "expr",
    "au_decision_agreement": "au",
}


def parity_failures(figures: dict, untrained=()) -> list[str]:
    """The targets a model's figures miss, as readable strings (empty: all met); the targets of the
    ``untrained`` tasks are not checked."""
    failures = []
    for name, target in TARGETS.items():
        if name not in figures or TARGET_TASKS.get(name) in untrained:
            continue
        value = figures[name]
        at_most = name.endswith("diff")
        if not ((value <= target) if at_most else (value >= target)):  # NaN fails too
            failures.append(f"{name} = {value:.6g} ({'>' if at_most else '<'} target {target})")
    return failures
