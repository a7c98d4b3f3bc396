"""Tests of the synthetic benchmark's label model: the true distribution, label sampling, VA bins, Bayes limits."""

import math

import numpy as np
import pytest
from scipy import stats
from scipy.special import ndtr

from emenet_tf.data import label_model
from emenet_tf.labels import NUM_AU, NUM_EXPR, NUM_VA_BINS, va_bin_edges, va_to_bin


def test_sample_labels_matches_probabilities_closely():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, (20000, NUM_AU)) * (rng.random((20000, NUM_AU)) < 0.4)
    truth = label_model.true_distribution(a)
    labels = label_model.sample_labels(np.random.default_rng(1), truth)
    freq = np.bincount(labels["expr"], minlength=NUM_EXPR) / len(a)
    np.testing.assert_allclose(freq, truth["expr_probs"].mean(axis=0), atol=0.01)
    np.testing.assert_allclose(labels["au"].mean(axis=0), truth["au_probs"].mean(axis=0), atol=0.01)
    resid = (labels["va"] - truth["va_mean"]) / truth["va_std"]
    inside = np.all(np.abs(truth["va_mean"]) < 0.6, axis=1)  # clipping bites rarely there
    assert abs(resid[inside].mean()) < 0.03 and abs(resid[inside].std() - 1.0) < 0.03
    assert np.all(np.abs(labels["va"]) <= 1.0) and np.allclose(labels["va"], np.round(labels["va"], 3))


def test_true_distribution_is_ambiguous_where_it_should_be():
    protos = label_model.PROTOTYPES
    truth = label_model.true_distribution(
        np.stack([protos[0], protos[4], protos[6], 0.15 * protos[4], 0.5 * protos[4] + 0.5 * protos[5]])
    )
    p = truth["expr_probs"]
    assert p[0].argmax() == 0 and p[1].argmax() == 4 and p[2].argmax() == 6
    assert p[0].max() > 0.75 and p[1].max() > 0.85 and p[2].max() > 0.85
    assert p[3].argmax() == 0 and p[3].max() < 0.8 and p[3, 4] > p[3, 1:4].max()  # weak smile
    assert p[4].max() < 0.6 and min(p[4, 4], p[4, 5]) > 0.15  # blend: happiness / sadness
    assert truth["va_mean"][1, 0] > 0.5 and abs(truth["va_mean"][0]).max() < 1e-6
    assert truth["au_probs"][0].max() < 0.05 and truth["au_probs"][1][6] > 0.95  # AU12 in a smile


def test_va_std_grows_with_the_expression_entropy():
    a = np.random.default_rng(2).uniform(0, 1, (500, NUM_AU))
    truth = label_model.true_distribution(a)
    p = truth["expr_probs"].astype(np.float64)
    h = -(p * np.log(p)).sum(axis=1) / math.log(NUM_EXPR)
    expected = label_model.VA_STD_MIN + label_model.VA_STD_SPAN * h
    # the truth is float32 rounded from float64 and p is re-read from float32: 1e-6 covers both
    np.testing.assert_allclose(truth["va_std"], np.stack([expected, expected], 1), atol=1e-6)


def _bins_closed_form(mean: float, std: float) -> np.ndarray:
    """clip(N(mean, std), -1, 1) over the bins by scipy.stats: cdf differences, tails in the end bins."""
    edges = va_bin_edges().astype(np.float64)
    cdf = stats.norm.cdf(edges, loc=mean, scale=std)
    cdf[0], cdf[-1] = 0.0, 1.0
    return np.diff(cdf)


def test_va_true_bins_against_scipy_norm():
    mean = np.array([[0.0, 0.95], [-0.33, 0.5], [1.4, -1.2]])
    std = np.array([[0.1, 0.2], [0.07, 0.25], [0.3, 0.1]])
    bins = label_model.va_true_bins(mean, std)
    assert bins.shape == (3, 2, NUM_VA_BINS)
    # float64 throughout; ndtr and norm.cdf agree to ~1e-16, so 1e-12 leaves room on any CPU
    np.testing.assert_allclose(bins.sum(-1), 1.0, atol=1e-12)
    assert bins.min() >= 0.0
    for i in range(3):
        for d in range(2):
            np.testing.assert_allclose(bins[i, d], _bins_closed_form(mean[i, d], std[i, d]), atol=1e-12)
    # valence N(0, 0.1): bin 10 is [0, 0.1): mass Phi(1) - Phi(0)
    assert bins[0, 0, 10] == pytest.approx(ndtr(1.0) - 0.5, abs=1e-7)  # edges are float32
    # arousal N(0.95, 0.2) clipped at 1: the last bin [0.9, 1] holds everything above 0.9
    assert bins[0, 1, -1] == pytest.approx(1.0 - ndtr(-0.25), abs=1e-7)
    # means beyond [-1, 1]: the clipped tail lands in the end bin
    assert bins[2, 0, -1] == pytest.approx(stats.norm.sf(0.9, 1.4, 0.3), abs=1e-7)
    assert bins[2, 1, 0] == pytest.approx(stats.norm.cdf(-0.9, -1.2, 0.1), abs=1e-7)
    assert bins[2, 1, 0] > 0.99


def test_va_true_bins_matches_binned_samples():
    rng = np.random.default_rng(3)
    mean, std = 0.82, 0.15
    samples = np.clip(mean + std * rng.standard_normal(400_000), -1.0, 1.0)
    freq = np.bincount(va_to_bin(samples), minlength=NUM_VA_BINS) / len(samples)
    # binomial sd of a frequency <= 0.5 / sqrt(4e5) = 8e-4: 4e-3 is five of them
    np.testing.assert_allclose(freq, label_model.va_true_bins(mean, std), atol=4e-3)


def test_bayes_limits_against_hand_computation():
    p = np.array([[0.5, 0.5, 0, 0, 0, 0, 0], [1.0, 0, 0, 0, 0, 0, 0]], np.float32)
    q = np.array([[0.5] * NUM_AU, [0.0] * NUM_AU], np.float32)
    truth = {
        "expr_probs": p,
        "au_probs": q,
        "va_mean": np.array([[0.5, 0.0], [-0.5, 0.0]]),
        "va_std": np.array([[0.5, 0.5], [0.5, 0.5]]),
    }
    lim = label_model.bayes_limits(truth)
    assert lim["frames"] == 2
    assert lim["expr_accuracy"] == pytest.approx(0.75)
    assert lim["expr_nll"] == pytest.approx(np.log(2) / 2, abs=1e-6)
    assert lim["au_accuracy"] == pytest.approx(0.75)
    assert lim["au_nll"] == pytest.approx(np.log(2) / 2, abs=1e-6)
    # var(m) = (0.25, 0), mean std^2 = 0.25: ccc = (2 * .25 / (.5 + .25) + 0) / 2 = 1 / 3
    assert lim["va_ccc"] == pytest.approx(1.0 / 3.0)
    # mean over the four (frame, dimension) values of the entropy of their binned distribution
    ent = [stats.entropy(_bins_closed_form(m, 0.5)) for m in (0.5, 0.0, -0.5, 0.0)]
    assert lim["va_nll_binned"] == pytest.approx(np.mean(ent), abs=1e-9)  # the 1e-12 floor adds < 1e-9


def test_bayes_limits_of_a_certain_truth_are_perfect():
    truth = {
        "expr_probs": np.eye(NUM_EXPR)[[1, 4]],
        "au_probs": np.ones((2, NUM_AU)),
        "va_mean": np.array([[0.05, -0.55], [0.65, 0.25]]),  # bin centres
        "va_std": np.full((2, 2), 1e-3),
    }
    lim = label_model.bayes_limits(truth)
    assert lim["expr_accuracy"] == 1.0 and lim["au_accuracy"] == 1.0
    assert lim["expr_nll"] == 0.0 and lim["au_nll"] == 0.0
    assert lim["va_nll_binned"] == pytest.approx(0.0, abs=1e-9)  # 19 bins at the 1e-12 floor: 5e-10
