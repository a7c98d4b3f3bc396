"""TFP distributions over the tasks, built from EMENet's logits where they are used (the losses).

EXPR: a 7-way Categorical; VA: a 20-bin Categorical for valence and one for arousal (batch shape
(B, 2)), whose value is the expectation over the bin centres ``labels.va_bin_centres()``:
E[v] = sum_k p_k c_k.
"""

from __future__ import annotations

from emenet_tf._keras import tf

# isort: split
# TFP is imported after emenet_tf._keras, which selects Keras 2 before TensorFlow loads.
import tensorflow_probability as tfp

from emenet_tf.labels import NUM_VA_BINS, va_bin_centres

tfd = tfp.distributions


def expr_distribution(logits) -> tfp.distributions.Distribution:
    """(B, 7) logits -> Categorical, batch (B,)."""
    return tfd.Categorical(logits=tf.convert_to_tensor(logits, tf.float32))


def va_distribution(logits) -> tfp.distributions.Distribution:
    """(B, 2, 20) logits -> Categorical over the bins, batch (B, 2) (valence, arousal)."""
    return tfd.Categorical(logits=tf.convert_to_tensor(logits, tf.float32))


def va_expectation(probs):
    """(..., 20) bin probabilities -> (...) value: sum_k p_k c_k over the bin centres c_k."""
    centres = tf.constant(va_bin_centres(NUM_VA_BINS), tf.float32)
    return tf.reduce_sum(tf.convert_to_tensor(probs, tf.float32) * centres, axis=-1)
