"""The feature-density OOD score: the fit against scipy's Gaussian densities, numpy == TF, save/load."""

import math

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from emenet_tf.density import JITTER, GaussianDensity


@pytest.fixture
def data():
    """Three classes of 6-d features with class means apart and one shared, anisotropic covariance,
    far from the origin (as an untrained BatchNorm's outputs can be)."""
    rng = np.random.default_rng(0)
    classes = rng.integers(0, 3, 600)
    means = 100.0 + rng.normal(0, 3, (3, 6))
    mix = rng.normal(size=(6, 6)) * np.geomspace(0.01, 2, 6)
    return means[classes] + rng.normal(size=(600, 6)) @ mix, classes


def test_score_is_the_negative_log_mixture_density_per_feature(data):
    z, classes = data
    density = GaussianDensity.fit(z, classes, layers=("a", "b"))
    mu = np.stack([z[classes == k].mean(0) for k in range(3)])
    centred = z - mu[classes]
    cov = centred.T @ centred / len(z)
    cov += JITTER * np.trace(cov) / 6 * np.eye(6)
    pi = np.bincount(classes) / len(z)
    x = np.concatenate([z[:50], 100.0 + np.random.default_rng(1).normal(0, 20, (10, 6))])
    logs = [math.log(pi[k]) + multivariate_normal(mu[k], cov).logpdf(x) for k in range(3)]
    np.testing.assert_allclose(density.score(x), -logsumexp(logs, axis=0) / 6, rtol=1e-9, atol=1e-9)
    assert density.score(x[50:]).min() > density.score(x[:50]).max()  # far points score higher
    assert density.layers == ("a", "b")


def test_tf_score_matches_numpy_near_and_far(data):
    """float32 graph ops == float64 numpy near the training features and far from them. Uncentred,
    with |u|^2 - 2 u.v + |v|^2, the near scores (~1) came out of differences of ~1e8: float32 kept
    none of their digits (the reason for the centre m and the explicit difference)."""
    z, classes = data
    density = GaussianDensity.fit(z, classes)
    x = z[:100].astype(np.float32)
    # float32 rounding of features ~100 (6e-6) whitened by up to ~1 / 0.01: ~1e-3 in u, the score
    # moves by ~|u - v| 1e-3 / D: 1e-3 absolute holds with room
    np.testing.assert_allclose(density.score_tf(x).numpy(), density.score(x.astype(np.float64)), atol=1e-3)
    far = (100.0 + np.random.default_rng(2).normal(0, 1000, (20, 6))).astype(np.float32)
    got, want = density.score_tf(far).numpy(), density.score(far.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-5)  # scores ~1e6: float32 relative precision


def test_save_load_round_trip_and_bad_fit(tmp_path, data):
    z, classes = data
    density = GaussianDensity.fit(z, classes, layers=("block1", "block2"))
    path = str(tmp_path / "density.npz")
    density.save(path)
    again = GaussianDensity.load(path)
    assert again.layers == ("block1", "block2")
    np.testing.assert_array_equal(again.score(z[:10]), density.score(z[:10]))
    # a class with one frame gets no Gaussian; no class with two frames: one-line ValueError
    lone = GaussianDensity.fit(z[:101], np.r_[np.zeros(100, int), 1])
    assert lone.v.shape == (1, 6)
    with pytest.raises(ValueError, match="no class has 2 frames"):
        GaussianDensity.fit(z[:3], np.arange(3))
