"""TFP task distributions against numpy: shapes, entropies, log-probs and VA expectations."""

import numpy as np
import pytest

from emenet_tf import labels
from emenet_tf.distributions import (
    au_beta,
    dirichlet,
    expr_distribution,
    log_concentration,
    va_distribution,
    va_expectation,
)


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture
def rng():
    return np.random.default_rng(1)


def test_expr_distribution_entropy_and_probs(rng):
    z = rng.normal(size=(5, 7)).astype(np.float32)
    d = expr_distribution(z)
    assert d.batch_shape == (5,) and d.event_shape == ()
    p = _softmax(z.astype(np.float64))
    np.testing.assert_allclose(d.probs_parameter().numpy(), p, rtol=1e-5)
    np.testing.assert_allclose(d.entropy().numpy(), -(p * np.log(p)).sum(-1), rtol=1e-5)


def test_va_distribution_is_per_dimension_over_bins(rng):
    z = rng.normal(size=(3, 2, 20)).astype(np.float32)
    d = va_distribution(z)
    assert d.batch_shape == (3, 2) and d.event_shape == ()
    p = _softmax(z.astype(np.float64))
    np.testing.assert_allclose(d.entropy().numpy(), -(p * np.log(p)).sum(-1), rtol=1e-5)
    expected = (p * labels.va_bin_centres()).sum(-1)
    np.testing.assert_allclose(va_expectation(d.probs_parameter()).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_va_expectation_hand_values():
    centres = labels.va_bin_centres()
    one_hot = np.eye(20, dtype=np.float32)[[0, 19, 10]]
    np.testing.assert_allclose(va_expectation(one_hot).numpy(), [-0.95, 0.95, 0.05], atol=1e-6)
    uniform = np.full((1, 2, 20), 1 / 20, np.float32)
    np.testing.assert_allclose(va_expectation(uniform).numpy(), [[0.0, 0.0]], atol=1e-6)
    assert centres[0] == pytest.approx(-0.95) and centres[-1] == pytest.approx(0.95)


def test_dirichlet_student_concentrations_keep_the_mean_and_take_the_precision(rng):
    z = rng.normal(size=(4, 2, 20)).astype(np.float32)
    s = rng.normal(size=(4, 2)).astype(np.float32) * 3
    alpha = np.exp(log_concentration(z, s).numpy().astype(np.float64))
    np.testing.assert_allclose(
        alpha / alpha.sum(-1, keepdims=True), _softmax(z.astype(np.float64)), rtol=1e-5
    )
    np.testing.assert_allclose(alpha.sum(-1), np.exp(s), rtol=1e-5)
    d = dirichlet(log_concentration(z, s))
    assert d.batch_shape == (4, 2) and d.event_shape == (20,)
    # EXPR: one precision per frame, given as (B, 1)
    e = log_concentration(z[:, 0, :7], s[:, :1]).numpy()
    np.testing.assert_allclose(np.exp(e).sum(-1), np.exp(s[:, 0]), rtol=1e-5)


def test_au_beta_mean_is_the_sigmoid(rng):
    z = rng.normal(size=(3, 12)).astype(np.float32) * 4
    s = rng.normal(size=(3, 12)).astype(np.float32)
    log_ab = log_concentration(z, s, bernoulli=True)
    assert log_ab.shape == (3, 12, 2)
    beta = au_beta(log_ab)
    np.testing.assert_allclose(beta.mean().numpy(), 1 / (1 + np.exp(-z.astype(np.float64))), rtol=1e-5)
    np.testing.assert_allclose(
        (beta.concentration1 + beta.concentration0).numpy(), np.exp(s.astype(np.float64)), rtol=1e-5
    )
