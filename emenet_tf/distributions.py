"""TFP distributions over the tasks, built from EMENet's logits where they are used (the losses).

EXPR: a 7-way Categorical; VA: a 20-bin Categorical for valence and one for arousal (batch shape
(B, 2)), whose value is the expectation over the bin centres ``labels.va_bin_centres()``:
E[v] = sum_k p_k c_k.

A distribution-distilled (Dirichlet) student outputs, besides the usual logits z, a log-precision
s per task (``<task>_precision``): EXPR Dirichlet(alpha) over the 7 class probabilities, one
Beta(a, b) per AU, VA one Dirichlet over the 20 bins per dimension, with alpha = softmax(z) exp(s)
(``log_concentration``): its mean prediction is the plain model's softmax(z).
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


def log_concentration(logits, log_precision, bernoulli: bool = False):
    """A Dirichlet student's log alpha from its mean logits z and log-precision s (TF ops, builtins).

    Categorical: log alpha = log_softmax(z) + s, z (..., K), s (...) or (..., 1). AU
    (``bernoulli``): the Beta of each AU, log (a, b) = (log sigmoid z, log sigmoid -z) + s, shape
    (B, 12, 2). So alpha / alpha_0 is the mean prediction softmax(z) (sigmoid(z)) and alpha_0 = exp(s).
    """
    z = tf.convert_to_tensor(logits, tf.float32)
    if bernoulli:
        log_mean = tf.stack([tf.math.log_sigmoid(z), tf.math.log_sigmoid(-z)], axis=-1)
    else:
        log_mean = tf.nn.log_softmax(z, axis=-1)
    s = tf.reshape(tf.convert_to_tensor(log_precision, tf.float32), [-1, *log_mean.shape[1:-1], 1])
    return log_mean + s


def dirichlet_log_concentrations(outputs: dict) -> dict:
    """{"au": (B, 12, 2), "expr": (B, 7), "va": (B, 2, 20)} log alpha of a Dirichlet student's outputs."""
    return {
        t: log_concentration(outputs[t], outputs[f"{t}_precision"], bernoulli=t == "au")
        for t in ("au", "expr", "va")
    }


def concentration(log_alpha):
    """alpha = exp(log alpha), float32."""
    return tf.exp(tf.convert_to_tensor(log_alpha, tf.float32))


def dirichlet(log_alpha) -> tfp.distributions.Distribution:
    """(..., K) log-concentrations -> Dirichlet over the K class probabilities, batch (...)."""
    return tfd.Dirichlet(concentration=concentration(log_alpha))


def au_beta(log_alpha) -> tfp.distributions.Distribution:
    """(B, 12, 2) log (a, b) -> Beta(a, b) over each AU's P(1), batch (B, 12): mean a / (a + b)."""
    alpha = concentration(log_alpha)
    return tfd.Beta(concentration1=alpha[..., 0], concentration0=alpha[..., 1])
