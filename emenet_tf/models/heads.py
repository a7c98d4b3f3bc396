"""The three task heads of EMENet: shared feature -> AU, EXPR and VA logits.

Each head is Dense(hidden) + ReLU -> Dense(out), applied per frame. The paper's heads were GRUs,
but built without ``batch_first`` they recurred over the batch, not over time, so the released
model was in effect per-frame; these Dense heads are the per-frame equivalent, much smaller.
"""

from __future__ import annotations

from emenet_tf._keras import keras, tf
from emenet_tf.labels import NUM_AU, NUM_EXPR, NUM_VA_BINS
from emenet_tf.models.blocks import SeedSequence


def dense_head(x, hidden: int, outputs: int, task: str, seeds: SeedSequence, out_name: str | None = None):
    """Dense(hidden, relu) named ``{task}_hidden`` -> Dense(outputs) named ``out_name or task``."""
    x = keras.layers.Dense(
        hidden, activation="relu", kernel_initializer=seeds.glorot(), name=f"{task}_hidden"
    )(x)
    return keras.layers.Dense(outputs, kernel_initializer=seeds.glorot(), name=out_name or task)(x)


class StopGradient(keras.layers.Layer):
    """Identity forward, no gradient backward (the precision heads read the features, never shape them)."""

    def call(self, inputs):
        return tf.stop_gradient(inputs)


PRECISION_TASKS = {"au": NUM_AU, "expr": 1, "va": 2}  # log-precision outputs per task
PRECISION_LAYERS = ("precision_hidden",) + tuple(f"{t}_precision" for t in PRECISION_TASKS)


def precision_heads(feature, hidden: int, seeds: SeedSequence) -> dict:
    """The Dirichlet student's log-precisions log alpha_0: ``au_precision`` (B, 12) (one Beta per AU),
    ``expr_precision`` (B, 1), ``va_precision`` (B, 2): one shared Dense(hidden) + ReLU
    (``precision_hidden``; one, not three: the export's latency budget) and a Dense per task, on the
    feature with its gradient stopped: the backbone and the mean heads learn as the paper's student."""
    held = StopGradient(name="precision_features")(feature)
    x = keras.layers.Dense(
        hidden, activation="relu", kernel_initializer=seeds.glorot(), name="precision_hidden"
    )(held)
    return {
        f"{t}_precision": keras.layers.Dense(n, kernel_initializer=seeds.glorot(), name=f"{t}_precision")(x)
        for t, n in PRECISION_TASKS.items()
    }


def task_heads(feature, hidden: int, seeds: SeedSequence, dirichlet: bool = False) -> dict:
    """Feature (B, D) -> {"au": (B, 12), "expr": (B, 7), "va": (B, 2, 20)} logits.

    VA: Dense(40) (``va_logits``) reshaped to (2, 20) (``va``): valence bins, then arousal bins.
    dirichlet: also the ``precision_heads`` of a Dirichlet student, whose concentrations are
    alpha = softmax(logits) * exp(precision) (``emenet_tf.distributions.log_concentration``).
    """
    au = dense_head(feature, hidden, NUM_AU, "au", seeds)
    expr = dense_head(feature, hidden, NUM_EXPR, "expr", seeds)
    va = dense_head(feature, hidden, 2 * NUM_VA_BINS, "va", seeds, out_name="va_logits")
    va = keras.layers.Reshape((2, NUM_VA_BINS), name="va")(va)
    heads = {"au": au, "expr": expr, "va": va}
    return {**heads, **precision_heads(feature, hidden, seeds)} if dirichlet else heads
