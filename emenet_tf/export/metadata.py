"""The metadata JSON beside each exported model: the contract's fields and the calibrated thresholds."""

from __future__ import annotations

import numpy as np

from edge.contract import FORMAT, output_shapes
from emenet_tf.labels import AU_NAMES, EXPR_NAMES, NUM_AU, NUM_EXPR, NUM_VA_BINS, va_bin_centres

EXPR_COVERAGE = 0.8  # expr_entropy threshold: accept the 80% most certain validation predictions
OOD_QUANTILE = 0.95  # ood_epistemic / ood thresholds: ~5% false OOD alarms on in-domain validation


def calibrate_thresholds(outputs: dict, expr_labels: np.ndarray, expr_mask: np.ndarray, untrained=()) -> dict:
    """Uncertainty thresholds of one model from its own outputs on validation frames.

    expr_entropy: the EXPR_COVERAGE quantile of the normalised EXPR entropy (predictions below it
    are accepted: 80% coverage); the EXPR error of the accepted and of all labelled frames is
    stated in "target". ood_epistemic (ensemble and Dirichlet): the OOD_QUANTILE quantile of the
    in-domain expr_epistemic, so about 5% of in-domain faces raise a false OOD alarm. ood (Dirichlet
    only): the same quantile of its ood_score (the score its OOD decision uses). A model whose
    expression head never saw a label (``untrained``) has no expression thresholds (null).
    """
    if "expr" in untrained:
        ood = float(np.quantile(outputs["ood_score"][:, 0], OOD_QUANTILE)) if "ood_score" in outputs else None
        target = "no expression thresholds: the training data had no EXPR label"
        if ood is not None:
            target += (
                f"; ood: {OOD_QUANTILE:.0%} quantile of ood_score (feature density) on in-domain validation"
            )
        return {"expr_entropy": None, "ood_epistemic": None, "ood": ood, "target": target}
    entropy = outputs["expr_entropy"][:, 0]
    threshold = float(np.quantile(entropy, EXPR_COVERAGE))
    labelled = expr_mask > 0
    wrong = outputs["expr_probs"].argmax(-1) != expr_labels
    accepted = labelled & (entropy <= threshold)
    risk = f"{wrong[accepted].mean():.3f}" if accepted.any() else "n/a"
    overall = f"{wrong[labelled].mean():.3f}" if labelled.any() else "n/a"
    target = (
        f"expr_entropy: {EXPR_COVERAGE:.0%} coverage quantile of the validation EXPR normalised entropy "
        f"({len(entropy)} frames); EXPR error of the accepted labelled frames {risk} vs {overall} overall"
    )
    ood_epistemic = ood = None
    if "expr_epistemic" in outputs:
        ood_epistemic = float(np.quantile(outputs["expr_epistemic"][:, 0], OOD_QUANTILE))
        target += (
            f"; ood_epistemic: {OOD_QUANTILE:.0%} quantile of expr_epistemic on in-domain validation "
            f"(about {1 - OOD_QUANTILE:.0%} false OOD alarms)"
        )
    if "ood_score" in outputs:
        ood = float(np.quantile(outputs["ood_score"][:, 0], OOD_QUANTILE))
        target += "; ood: the same quantile of ood_score (feature density), the OOD score of this model"
    elif ood_epistemic is not None:
        target += "; the OOD score is expr_epistemic"
    return {"expr_entropy": threshold, "ood_epistemic": ood_epistemic, "ood": ood, "target": target}


def metadata(
    kind: str, members: int, spec: dict, thresholds: dict, state: dict | None = None, untrained=()
) -> dict:
    """The ``M.json`` beside a model, in the schema of docs/ARCHITECTURE.md.

    state: a stream model's state block (``stream.StreamModule.state``), None for a per-frame model.
    untrained: the tasks whose heads never saw a label (the edge leaves them out of its results);
    written only when there are any.
    """
    centres = va_bin_centres(NUM_VA_BINS)
    extra = {} if state is None else {"state": state}
    if untrained:
        extra["untrained"] = list(untrained)
    return {
        "format": FORMAT,
        "kind": kind,
        "members": int(members),
        "input": spec,
        "outputs": list(output_shapes(kind, NUM_EXPR, NUM_AU, NUM_VA_BINS)),
        "expr_names": list(EXPR_NAMES),
        "au_names": list(AU_NAMES),
        "va_bin_centres": [float(c) for c in centres],
        "thresholds": thresholds,
        **extra,
    }
