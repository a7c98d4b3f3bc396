"""The exported graph: image -> the members' logits -> the contract's named, post-processed outputs.

The post-processing (softmax, sigmoid, normalised entropies, VA expectations and, for an
ensemble, the total / aleatoric / epistemic decomposition of ``emenet_tf.uncertainty``) is
written in plain float ops so that the int8 models can keep it float (see ``_softmax``).
A Dirichlet student (``ExportModule(..., density=...)``): the same outputs over its mean, the
decomposition in closed form from its concentrations (``dirichlet_uncertainty_tf``: the digamma
series in builtin ops) and ``ood_score``, its feature density (``emenet_tf.density``).
"""

from __future__ import annotations

import numpy as np

from edge.contract import INPUT_NAME, SIGNATURE
from emenet_tf import distributions
from emenet_tf._keras import tf
from emenet_tf.uncertainty import dirichlet_uncertainties_tf, ensemble_uncertainty_tf

MEMBER_SCOPE = "member"  # name scope of each member's layers: the int8 part of the graph
DENSITY_FEATURES = "density_features"  # a Dirichlet student's extra output in the export graph
_KINDS = (("expr", "categorical"), ("au", "bernoulli"), ("va", "categorical"))


def contract_outputs(member_logits: list[dict]) -> dict:
    """The contract's named outputs from the logits of one model (a list of 1) or of M members.

    The outputs are the ensemble decomposition over the members' probabilities (for one model
    the mean is the model itself and the entropy its own): expr_probs (B,7), expr_entropy (B,1),
    au_probs (B,12), au_entropy (B,12), valence/arousal (B,1) = sum_k p_k c_k over the bin
    centres, valence_entropy/arousal_entropy (B,1), va_probs (B,2,20); with M > 1 also
    {expr,au,va}_{aleatoric,epistemic} of shapes (B,1), (B,12), (B,2). Entropies are normalised.
    """
    probs = [_probabilities(logits) for logits in member_logits]
    parts = {task: ensemble_uncertainty_tf(tf.stack([p[task] for p in probs]), kind) for task, kind in _KINDS}
    return _named(parts, decomposition=len(probs) > 1)


def dirichlet_outputs(outputs: dict, density) -> dict:
    """The contract's outputs of a Dirichlet student from its raw outputs (logits, ``<task>_precision``
    and ``density_features``): its mean prediction, the closed-form decomposition, ``ood_score``.

    The Dirichlet of each task has mean p, the float-op probabilities of ``_probabilities`` (AU:
    (p, 1 - p)), and precision exp(s): the concentrations of ``distributions.log_concentration``,
    built without LOG_SOFTMAX / LOGISTIC, whose int8 output grids the quantizer would impose.
    """
    probs = _probabilities(outputs)
    probs["au"] = tf.stack([probs["au"], 1.0 - probs["au"]], axis=-1)
    dirichlets = {}
    for task, _ in _KINDS:
        precision = tf.exp(tf.cast(outputs[f"{task}_precision"], tf.float32))
        dirichlets[task] = (probs[task], tf.reshape(precision, [-1, *probs[task].shape[1:-1], 1]))
    parts = dirichlet_uncertainties_tf(dirichlets)
    parts["au"]["mean_probs"] = parts["au"]["mean_probs"][..., 0]
    out = _named(parts, decomposition=True)
    out["ood_score"] = density.score_tf(tf.cast(outputs[DENSITY_FEATURES], tf.float32))[:, None]
    return out


def _named(parts: dict, decomposition: bool) -> dict:
    """The contract's names from {task: {mean_probs, total, aleatoric, epistemic}}."""
    va_probs = parts["va"]["mean_probs"]
    va_value = distributions.va_expectation(va_probs)  # (B, 2)
    va_entropy = parts["va"]["total"]  # (B, 2)
    out = {
        "expr_probs": parts["expr"]["mean_probs"],
        "expr_entropy": parts["expr"]["total"][:, None],
        "au_probs": parts["au"]["mean_probs"],
        "au_entropy": parts["au"]["total"],
        "valence": va_value[:, :1],
        "arousal": va_value[:, 1:],
        "valence_entropy": va_entropy[:, :1],
        "arousal_entropy": va_entropy[:, 1:],
        "va_probs": va_probs,
    }
    if decomposition:
        for task, _ in _KINDS:
            for part in ("aleatoric", "epistemic"):
                value = parts[task][part]
                out[f"{task}_{part}"] = value[:, None] if task == "expr" else value
    return out


def _softmax(logits):
    """softmax = exp(z - max z) / sum exp(z - max z), spelled out in EXP/SUM/DIV/MUL ops.

    TFLite's SOFTMAX and LOGISTIC have fixed int8 output ranges, and the int8 quantizer
    round-trips their outputs through int8 (steps of 1/256) even when deny-listed; these plain
    float ops stay float. Same values as ``emenet_tf.inference.probabilities`` (float parity).
    """
    e = tf.exp(logits - tf.reduce_max(logits, axis=-1, keepdims=True))
    return e * tf.math.reciprocal(tf.reduce_sum(e, axis=-1, keepdims=True))  # e / sum: fused back


def _sigmoid(logits):
    """sigmoid(z) = 1 / (1 + e) for z >= 0 and e / (1 + e) for z < 0, with e = exp(-|z|).

    ``1 / (1 + exp(-z))`` is fused into TFLite's LOGISTIC, whose int8 output (steps of 1/256,
    0.5 exact) the quantizer keeps even when deny-listed: p in (0.498, 0.5) then rounds to 0.5
    and flips the AU decision p >= 0.5. These ops stay float.
    """
    e = tf.exp(-tf.abs(logits))
    r = tf.math.reciprocal(1.0 + e)
    return tf.where(logits >= 0.0, r, e * r)


def _probabilities(logits: dict) -> dict:
    """AU sigmoid, EXPR and VA-bin softmax, as float ops (see ``_softmax`` and ``_sigmoid``)."""
    return {
        "au": _sigmoid(tf.cast(logits["au"], tf.float32)),
        "expr": _softmax(tf.cast(logits["expr"], tf.float32)),
        "va": _softmax(tf.cast(logits["va"], tf.float32)),
    }


class ExportModule(tf.Module):
    """One model or an ensemble sharing the input; ``serve``: image (1,S,S,3) -> named outputs.

    density: a ``GaussianDensity`` makes it a Dirichlet student's graph (one member, built with
    ``dirichlet=True``), whose member also returns the density's features.
    """

    state = None  # a per-frame model carries no state (see export.stream.StreamModule)

    def __init__(self, members: list, image_size: int, density=None):
        super().__init__()
        self.density = density
        if density is not None:
            if len(members) != 1:
                raise ValueError(f"a Dirichlet student's graph has one member, got {len(members)}")
            members = [_with_features(members[0], density.layers)]
        self.members = list(members)
        self.image_size = int(image_size)
        spec = tf.TensorSpec((1, self.image_size, self.image_size, 3), tf.float32, name=INPUT_NAME)
        self.serve = tf.function(self._serve, input_signature=[spec])

    @property
    def kind(self) -> str:
        if self.density is not None:
            return "dirichlet"
        return "ensemble" if len(self.members) > 1 else "single"

    def member_logits(self, image) -> list[dict]:
        """Logits of every member; their ops live under ``member<k>/`` (the int8 part of the graph)."""
        out = []
        for k, member in enumerate(self.members):
            with tf.name_scope(f"{MEMBER_SCOPE}{k}"):
                out.append(member(image, training=False))
        return out

    def _serve(self, image):
        return self.outputs(self.member_logits(image))

    def outputs(self, member_outputs: list[dict]) -> dict:
        """The contract's outputs from the members' raw outputs."""
        if self.density is not None:
            return dirichlet_outputs(member_outputs[0], self.density)
        return contract_outputs(member_outputs)

    def save(self, saved_dir: str) -> None:
        """A SavedModel with the one signature of the contract (what the converter reads)."""
        tf.saved_model.save(self, saved_dir, signatures={SIGNATURE: self.serve})

    def keras_outputs(self, images: np.ndarray, starts=None, batch_size: int = 64) -> dict:
        """The reference outputs of the Keras members on ``images`` (N,S,S,3), batched: numpy arrays
        (``starts``: streams only)."""
        chunks = []
        for start in range(0, len(images), batch_size):
            x = tf.constant(images[start : start + batch_size])
            out = self.outputs([m(x, training=False) for m in self.members])
            chunks.append({k: v.numpy() for k, v in out.items()})
        return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def _with_features(net, layers):
    """A Keras model with ``net``'s outputs plus its density features (``DENSITY_FEATURES``)."""
    from emenet_tf._keras import keras
    from emenet_tf.density import feature_tensor

    return keras.Model(
        net.input, {**net.output, DENSITY_FEATURES: feature_tensor(net, layers)}, name=net.name
    )


def keras_outputs(members: list, images: np.ndarray, batch_size: int = 64, density=None) -> dict:
    """The contract's outputs computed in Keras (batched) on ``images`` (N,S,S,3): numpy arrays.

    density: the members are one Dirichlet student (see ``ExportModule``).
    """
    return ExportModule(members, images.shape[1], density).keras_outputs(images, batch_size=batch_size)
