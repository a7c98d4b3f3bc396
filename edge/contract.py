"""The exported-model contract, in one place: signature, input name, output names and their shapes.

Read by the edge runtime and written by the exporter ``emenet_tf/export/`` (which may import
``edge``; the reverse never happens). Described in docs/ARCHITECTURE.md, "Exported models".
"""

FORMAT = "emenet-tflite/1"
SIGNATURE = "serving_default"
INPUT_NAME = "image"

# Every output's shape after the batch axis (the batch is 1 in an exported model), in terms of
# E (expressions), A (action units) and B (VA bins) - the lengths of the metadata's expr_names,
# au_names and va_bin_centres. Entropies are normalised to [0, 1].
_SINGLE_SHAPES = {
    "expr_probs": ("E",),
    "expr_entropy": (1,),
    "au_probs": ("A",),
    "au_entropy": ("A",),
    "valence": (1,),
    "arousal": (1,),
    "valence_entropy": (1,),
    "arousal_entropy": (1,),
    "va_probs": (2, "B"),
}
# An ensemble's outputs above are over the mean probabilities (entropy = total); it adds the
# decomposition total = aleatoric + epistemic per task.
_ENSEMBLE_EXTRA_SHAPES = {
    "expr_aleatoric": (1,),
    "expr_epistemic": (1,),
    "au_aleatoric": ("A",),
    "au_epistemic": ("A",),
    "va_aleatoric": (2,),
    "va_epistemic": (2,),
}
# A Dirichlet student (one network distilled from an ensemble, EnD^2) has an ensemble's outputs -
# over its mean prediction, the decomposition in closed form from its concentrations - and its own
# OOD score: the negative log density of its features (higher: less like the training faces).
_DIRICHLET_EXTRA_SHAPES = {"ood_score": (1,)}
# Outputs without a fixed range (every other output is a probability, an entropy in [0, 1] or a
# value in [-1, 1]): compared relative to their own scale, never at an absolute tolerance.
UNBOUNDED_OUTPUTS = ("ood_score",)
# A stream model (a temporal EMENet exported one frame per call; metadata key "state") also takes
# the state its previous call returned, one float32 tensor (1, size) per task head, and returns the
# next one under these names; a stream starts from zeros. An ensemble's state holds its members'
# states side by side (size = members x GRU units).
STATE_INPUTS = ("h_au", "h_expr", "h_va")
STATE_OUTPUTS = ("next_h_au", "next_h_expr", "next_h_va")
SINGLE_OUTPUTS = tuple(_SINGLE_SHAPES)
ENSEMBLE_EXTRA_OUTPUTS = tuple(_ENSEMBLE_EXTRA_SHAPES)
ENSEMBLE_OUTPUTS = SINGLE_OUTPUTS + ENSEMBLE_EXTRA_OUTPUTS
DIRICHLET_EXTRA_OUTPUTS = tuple(_DIRICHLET_EXTRA_SHAPES)
KINDS = ("single", "ensemble", "dirichlet")


def output_shapes(kind: str, num_expr: int, num_au: int, num_va_bins: int) -> dict:
    """The outputs a ``single``, ``ensemble`` or ``dirichlet`` model has: name -> shape (1, ...)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    sizes = {"E": num_expr, "A": num_au, "B": num_va_bins}
    table = dict(_SINGLE_SHAPES)
    if kind in ("ensemble", "dirichlet"):
        table.update(_ENSEMBLE_EXTRA_SHAPES)
    if kind == "dirichlet":
        table.update(_DIRICHLET_EXTRA_SHAPES)
    return {name: (1,) + tuple(sizes.get(d, d) for d in dims) for name, dims in table.items()}


def state_shapes(size: int) -> dict:
    """A stream model's state tensors: name -> shape, inputs and outputs alike (1, size)."""
    return {name: (1, int(size)) for name in STATE_INPUTS + STATE_OUTPUTS}
