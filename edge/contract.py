"""The exported-model contract, in one place: signature, input name and output names.

Read by the edge runtime and written by ``emenet_tf/export.py`` (which may import ``edge``; the
reverse never happens). Described in docs/ARCHITECTURE.md, "Exported models".
"""

FORMAT = "emenet-tflite/1"
SIGNATURE = "serving_default"
INPUT_NAME = "image"
SINGLE_OUTPUTS = (
    "expr_probs",
    "expr_entropy",
    "au_probs",
    "au_entropy",
    "valence",
    "arousal",
    "valence_entropy",
    "arousal_entropy",
    "va_probs",
)
ENSEMBLE_EXTRA_OUTPUTS = (
    "expr_aleatoric",
    "expr_epistemic",
    "au_aleatoric",
    "au_epistemic",
    "va_aleatoric",
    "va_epistemic",
)
ENSEMBLE_OUTPUTS = SINGLE_OUTPUTS + ENSEMBLE_EXTRA_OUTPUTS
