"""TFP task distributions against numpy: shapes, entropies, log-probs and VA expectations."""

import numpy as np
import pytest

from emenet_tf import labels
from emenet_tf.distributions import expr_distribution, va_distribution, va_expectation


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
