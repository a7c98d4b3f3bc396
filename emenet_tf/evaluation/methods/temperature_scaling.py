"""Temperature Scaling: generation 0's member 0 with temperatures fit on the validation fit half.

One temperature for EXPR, one per AU, one each for valence and arousal (``emenet_tf.temperature``),
fit on the fit half only; every method, this one included, is measured on the evaluation half.
Its OOD score is the scaled model's predictive entropy over the trained tasks.
"""

from __future__ import annotations

import numpy as np

from emenet_tf.data.index import FrameIndex
from emenet_tf.evaluation.methods.common import MethodInfo, Predictions, entropy_score
from emenet_tf.labels import TASKS
from emenet_tf.temperature import TemperatureScaler

INFO = MethodInfo("temperature_scaling", "baseline", "temperature_scaling", 0)


def fit(
    base: Predictions, index: FrameIndex, fit_rows: np.ndarray, tasks=TASKS
) -> tuple[Predictions, TemperatureScaler]:
    """The temperature-scaled copy of ``base`` (gen0_single) and its temperatures, fit on ``fit_rows``."""
    labels = {
        "label_expr": index.expr,
        "label_expr_mask": index.expr_mask,
        "label_au": index.au,
        "label_au_mask": index.au_mask,
        "label_va": index.va,
        "label_va_mask": index.va_mask,
    }
    scaler = TemperatureScaler.fit({**{t: base.splits["val"][t] for t in TASKS}, **labels}, rows=fit_rows)
    out = Predictions(INFO, {})
    for split, arrays in base.splits.items():
        scaled = scaler.apply({t: arrays[t] for t in TASKS})
        out.splits[split] = {**scaled, "present": arrays["present"], "score": entropy_score(scaled, tasks)}
    return out, scaler
