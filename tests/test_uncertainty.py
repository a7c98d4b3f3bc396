"""Tests of the entropy / ensemble-decomposition math: numpy by hand, TF and TFLite against numpy."""

import math
import subprocess
import sys

import numpy as np
import pytest

from edge import uncertainty as unp

LOG2 = math.log(2.0)


def _random_probs(rng, shape, with_extremes=True):
    """Softmax-ish rows on the last axis; some rows exactly one-hot and some entries exactly 0."""
    logits = rng.normal(size=shape) * 2.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    if with_extremes:
        flat = probs.reshape(-1, shape[-1])
        flat[0] = 0.0
        flat[0, 0] = 1.0  # one-hot row
        flat[1, :2] = 0.0  # two exact zeros, renormalised
        flat[1] /= flat[1].sum()
    return probs.astype(np.float32)


def _random_bernoulli(rng, shape):
    p = rng.uniform(size=shape).astype(np.float32)
    flat = p.reshape(-1)
    flat[:3] = [0.0, 1.0, 0.5]
    return p


# ---------------------------------------------------------------- numpy, by hand


def test_entropy_hand_values():
    # H([1/2, 1/4, 1/4]) = 1/2 log 2 + 2 * 1/4 log 4 = 1.5 log 2
    assert unp.entropy([0.5, 0.25, 0.25]) == pytest.approx(1.5 * LOG2)
    assert unp.normalised_entropy([0.5, 0.25, 0.25]) == pytest.approx(1.5 * LOG2 / math.log(3))
    # 0 log 0 = 0: a zero class adds nothing, a one-hot row has entropy 0, no warning
    with np.errstate(all="raise"):
        assert unp.entropy([0.5, 0.5, 0.0]) == pytest.approx(LOG2)
        assert unp.entropy([0.0, 1.0, 0.0]) == 0.0
    np.testing.assert_allclose(unp.normalised_entropy(np.full((3, 7), 1 / 7)), np.ones(3))


def test_entropy_axis():
    probs = np.array([[[0.5, 0.5], [1.0, 0.0]]])  # (1, 2, 2)
    np.testing.assert_allclose(unp.normalised_entropy(probs, axis=-1), [[1.0, 0.0]])
    # along axis 1: columns [0.5, 1.0] and [0.5, 0.0] (not distributions, just the formula)
    expected = -(0.5 * math.log(0.5)) / LOG2
    np.testing.assert_allclose(unp.normalised_entropy(probs, axis=1), [[expected, expected]])


def test_normalised_entropy_needs_two_classes():
    with pytest.raises(ValueError, match="at least 2 classes"):
        unp.normalised_entropy(np.ones((4, 1)))


def test_bernoulli_entropy_hand_values():
    # H(1/4) = -(1/4 log 1/4 + 3/4 log 3/4) = 0.5623351 nats = 0.8112781 bits
    with np.errstate(all="raise"):
        h = unp.bernoulli_entropy([0.0, 0.25, 0.5, 1.0])
    np.testing.assert_allclose(h, [0.0, 0.8112781, 1.0, 0.0], atol=1e-7)
    assert unp.bernoulli_entropy(0.5, normalised=False) == pytest.approx(LOG2)
    assert unp.bernoulli_entropy(0.25, normalised=False) == pytest.approx(0.5623351, abs=1e-7)


def test_ensemble_disagreeing_confident_members_is_all_epistemic():
    out = unp.ensemble_uncertainty(np.array([[1.0, 0.0], [0.0, 1.0]]), "categorical")
    np.testing.assert_allclose(out["mean_probs"], [0.5, 0.5])
    assert out["total"] == pytest.approx(1.0)
    assert out["aleatoric"] == pytest.approx(0.0)
    assert out["epistemic"] == pytest.approx(1.0)


def test_ensemble_agreeing_uncertain_members_is_all_aleatoric():
    out = unp.ensemble_uncertainty(np.full((3, 4, 7), 1 / 7), "categorical")
    assert out["total"].shape == (4,)
    np.testing.assert_allclose(out["total"], 1.0)
    np.testing.assert_allclose(out["aleatoric"], 1.0)
    np.testing.assert_allclose(out["epistemic"], 0.0, atol=1e-12)


def test_ensemble_bernoulli_hand_values():
    # members p = 0 and p = 1: mean 0.5 -> total 1, each member certain -> aleatoric 0
    # members p = 0.25 and p = 0.75: total H(0.5) = 1, aleatoric H(0.25) = 0.8112781
    members = np.array([[0.0, 0.25], [1.0, 0.75]])
    out = unp.ensemble_uncertainty(members, "bernoulli")
    np.testing.assert_allclose(out["total"], [1.0, 1.0])
    np.testing.assert_allclose(out["aleatoric"], [0.0, 0.8112781], atol=1e-7)
    np.testing.assert_allclose(out["epistemic"], [1.0, 1.0 - 0.8112781], atol=1e-7)


def test_ensemble_epistemic_is_mean_kl_to_the_mean():
    # Mutual information identity: H(mean p) - mean H(p_m) = mean_m KL(p_m || mean p)
    rng = np.random.default_rng(0)
    members = _random_probs(rng, (5, 6, 7)).astype(np.float64)
    out = unp.ensemble_uncertainty(members, "categorical")
    mean = members.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.where(members > 0, members * np.log(members / mean), 0.0).sum(axis=-1)
    np.testing.assert_allclose(out["epistemic"], kl.mean(axis=0) / math.log(7), atol=1e-10)
    assert np.all(out["total"] <= 1.0 + 1e-12) and np.all(out["aleatoric"] >= 0.0)


def test_single_member_has_zero_epistemic():
    rng = np.random.default_rng(1)
    members = _random_probs(rng, (1, 5, 2, 20))
    out = unp.ensemble_uncertainty(members, "categorical")
    assert out["total"].shape == (5, 2)
    np.testing.assert_array_equal(out["epistemic"], 0.0)
    np.testing.assert_allclose(out["total"], unp.normalised_entropy(members[0]))
    np.testing.assert_allclose(out["total"], out["aleatoric"])


def test_ensemble_rejects_bad_kind_and_shape():
    with pytest.raises(ValueError, match="kind"):
        unp.ensemble_uncertainty(np.ones((2, 3)) / 3, "gaussian")
    with pytest.raises(ValueError, match="member_probs"):
        unp.ensemble_uncertainty(np.ones(3) / 3, "categorical")


def test_va_expectation():
    centres = np.linspace(-0.95, 0.95, 20)
    probs = np.zeros((2, 2, 20))
    probs[0, 0, 3] = 1.0  # exactly bin 3
    probs[0, 1, [0, 19]] = 0.5  # symmetric -> 0
    probs[1, 0, [10, 11]] = [0.25, 0.75]  # 0.25 * 0.05 + 0.75 * 0.15 = 0.125
    probs[1, 1] = 1 / 20
    np.testing.assert_allclose(
        unp.va_expectation(probs, centres), [[centres[3], 0.0], [0.125, 0.0]], atol=1e-12
    )
    with pytest.raises(ValueError, match="centres"):
        unp.va_expectation(probs, centres[:10])


def test_edge_module_does_not_import_tensorflow():
    code = "import sys, edge.uncertainty; print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'emenet_tf')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- TF twin against numpy


@pytest.fixture(scope="module")
def tfu():
    from emenet_tf import uncertainty

    return uncertainty


def test_tf_module_reexports_numpy(tfu):
    assert tfu.normalised_entropy is unp.normalised_entropy
    assert tfu.ensemble_uncertainty is unp.ensemble_uncertainty
    assert tfu.va_expectation is unp.va_expectation


def test_tf_entropies_match_numpy(tfu):
    rng = np.random.default_rng(2)
    probs = _random_probs(rng, (8, 7))
    np.testing.assert_allclose(tfu.entropy_tf(probs).numpy(), unp.entropy(probs), atol=1e-5)
    np.testing.assert_allclose(
        tfu.normalised_entropy_tf(probs).numpy(), unp.normalised_entropy(probs), atol=1e-6
    )
    np.testing.assert_allclose(
        tfu.normalised_entropy_tf(probs, axis=0).numpy(), unp.normalised_entropy(probs, axis=0), atol=1e-6
    )
    p = _random_bernoulli(rng, (4, 12))
    for normalised in (True, False):
        np.testing.assert_allclose(
            tfu.bernoulli_entropy_tf(p, normalised).numpy(), unp.bernoulli_entropy(p, normalised), atol=1e-6
        )
    assert np.all(np.isfinite(tfu.bernoulli_entropy_tf(p).numpy()))


@pytest.mark.parametrize("members", [1, 5])
@pytest.mark.parametrize(
    "kind,shape", [("categorical", (3, 7)), ("categorical", (3, 2, 20)), ("bernoulli", (3, 12))]
)
def test_tf_ensemble_matches_numpy(tfu, members, kind, shape):
    rng = np.random.default_rng(members * 10 + len(shape))
    full = (members,) + shape
    probs = _random_probs(rng, full) if kind == "categorical" else _random_bernoulli(rng, full)
    got = {k: v.numpy() for k, v in tfu.ensemble_uncertainty_tf(probs, kind).items()}
    want = unp.ensemble_uncertainty(probs, kind)
    assert set(got) == set(want)
    for key in want:
        assert got[key].shape == want[key].shape, key
        np.testing.assert_allclose(got[key], want[key], atol=2e-6, err_msg=key)
    assert np.all(got["epistemic"] >= 0.0)
    if members == 1:
        np.testing.assert_array_equal(got["epistemic"], 0.0)


def test_tf_rejects_unknown_class_axis(tfu):
    from emenet_tf._keras import tf

    with pytest.raises(ValueError, match="class axis"):
        tfu.normalised_entropy_tf(tf.ones((3, 1)))
    with pytest.raises(ValueError, match="kind"):
        tfu.ensemble_uncertainty_tf(np.ones((2, 3), np.float32), "dirichlet")


def _builtins_runner(graph, folder):
    """The signature runner of ``graph`` (a tf.function with an input signature) saved in ``folder``
    and converted with TFLITE_BUILTINS only: conversion fails if any op needs Flex."""
    from ai_edge_litert.interpreter import Interpreter

    from emenet_tf._keras import tf

    module = tf.Module()
    module.graph = graph
    tf.saved_model.save(module, str(folder), signatures={"serving_default": graph})
    converter = tf.lite.TFLiteConverter.from_saved_model(str(folder))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return Interpreter(model_content=converter.convert()).get_signature_runner("serving_default")


def test_tf_ensemble_converts_to_tflite_builtins(tfu, tmp_path):
    """The decomposition converts with TFLITE_BUILTINS only and the interpreter matches numpy."""
    from emenet_tf._keras import tf

    @tf.function(
        input_signature=[tf.TensorSpec((3, 1, 7), tf.float32), tf.TensorSpec((3, 1, 12), tf.float32)]
    )
    def graph(expr, au):
        e = tfu.ensemble_uncertainty_tf(expr, "categorical")
        a = tfu.ensemble_uncertainty_tf(au, "bernoulli")
        return {"expr_total": e["total"], "expr_epistemic": e["epistemic"], "au_aleatoric": a["aleatoric"]}

    runner = _builtins_runner(graph, tmp_path)
    rng = np.random.default_rng(3)
    expr, au = _random_probs(rng, (3, 1, 7)), _random_bernoulli(rng, (3, 1, 12))
    got = runner(expr=expr, au=au)
    e, a = unp.ensemble_uncertainty(expr, "categorical"), unp.ensemble_uncertainty(au, "bernoulli")
    np.testing.assert_allclose(got["expr_total"], e["total"], atol=1e-5)
    np.testing.assert_allclose(got["expr_epistemic"], e["epistemic"], atol=1e-5)
    np.testing.assert_allclose(got["au_aleatoric"], a["aleatoric"], atol=1e-5)


# ---------------------------------------------------------------- Dirichlet (distribution-distilled student)


def _random_concentrations(rng, shape):
    """Concentrations over six decades (1e-3 .. 1e3): flat, peaked and near-certain Dirichlets."""
    return np.exp(rng.uniform(np.log(1e-3), np.log(1e3), size=shape))


def test_digamma_matches_scipy():
    from scipy.special import digamma

    x = np.geomspace(1e-3, 1e6, 20001)
    # float64 series after 3 shifts: truncation error < 3e-8 over this range, 1.1e-9 for x >= 1
    np.testing.assert_allclose(unp.digamma(x), digamma(x), rtol=0, atol=1e-7)
    np.testing.assert_allclose(unp.digamma(x[x >= 1]), digamma(x[x >= 1]), rtol=0, atol=1e-8)
    assert unp.digamma(1.0) == pytest.approx(-0.5772156649015329, abs=1e-8)  # -Euler's constant
    assert np.all(np.isnan(unp.digamma([0.0, -1.0, np.nan])))


def test_dirichlet_decomposition_matches_scipy_closed_form():
    from scipy.special import digamma

    alpha = _random_concentrations(np.random.default_rng(4), (50, 7))
    a0 = alpha.sum(-1, keepdims=True)
    mean = alpha / a0
    total = -(mean * np.log(mean)).sum(-1) / math.log(7)
    aleatoric = -(mean * (digamma(alpha + 1) - digamma(a0 + 1))).sum(-1) / math.log(7)
    out = unp.dirichlet_uncertainty(alpha)
    np.testing.assert_allclose(out["mean_probs"], mean, atol=1e-12)
    np.testing.assert_allclose(out["total"], total, atol=1e-10)
    np.testing.assert_allclose(out["aleatoric"], aleatoric, atol=1e-8)
    np.testing.assert_allclose(out["epistemic"], np.maximum(total - aleatoric, 0), atol=1e-8)
    assert np.all(out["epistemic"] >= 0) and np.all(out["total"] <= 1 + 1e-12)


def test_dirichlet_aleatoric_is_expected_entropy_of_samples():
    """E_{p ~ Dir(alpha)}[H(p)] by Monte Carlo with TFP's Dirichlet (the formula itself, not a copy)."""
    from emenet_tf.distributions import tfd

    alpha = np.array([[0.5, 2.0, 5.0], [30.0, 30.0, 30.0], [0.2, 0.2, 0.2]])
    samples = tfd.Dirichlet(alpha).sample(200_000, seed=7).numpy().astype(np.float64)
    mc = unp.normalised_entropy(samples).mean(axis=0)
    # 200k samples: standard error of the mean entropy < 1e-3 for these alphas
    np.testing.assert_allclose(unp.dirichlet_uncertainty(alpha)["aleatoric"], mc, atol=3e-3)


def test_dirichlet_epistemic_vanishes_when_members_agree():
    # every member predicting the same p: the distilled Dirichlet has alpha = p * alpha_0 with a
    # huge alpha_0, and its mutual information (K - 1) / (2 alpha_0) / log K -> 0
    p = np.array([0.7, 0.2, 0.05, 0.05])
    for alpha0 in (1e3, 1e6):
        out = unp.dirichlet_uncertainty(p * alpha0)
        # the leading term of the expansion in 1 / alpha_0; the next is O(alpha_0^-2) (5% at 1e3)
        assert out["epistemic"] == pytest.approx(3 / (2 * alpha0 * math.log(4)), rel=0.05)
        assert out["total"] == pytest.approx(unp.normalised_entropy(p), abs=1e-12)
    # a flat, low-precision Dirichlet (members spread over the simplex) is mostly epistemic
    assert unp.dirichlet_uncertainty(np.full(4, 0.1))["epistemic"] > 0.5


def test_beta_is_the_two_class_dirichlet():
    # Beta(a, b) as [..., (a, b)]: mean a / (a + b); Beta(1, 1) (uniform p) has E[H(p)] = 1/2 nat
    out = unp.dirichlet_uncertainty(np.array([[1.0, 1.0], [3.0, 1.0]]))
    np.testing.assert_allclose(out["mean_probs"][:, 0], [0.5, 0.75])
    assert out["aleatoric"][0] == pytest.approx(0.5 / LOG2, abs=1e-8)  # digamma series: < 1.1e-9 for x >= 1
    np.testing.assert_allclose(out["total"], unp.bernoulli_entropy([0.5, 0.75]), atol=1e-12)


def test_dirichlet_rejects_bad_concentrations():
    with pytest.raises(ValueError, match="> 0"):
        unp.dirichlet_uncertainty(np.array([1.0, 0.0, 2.0]))
    with pytest.raises(ValueError, match="at least 2 classes"):
        unp.dirichlet_uncertainty(np.ones((3, 1)))


def test_tf_digamma_matches_numpy_and_tf(tfu):
    from emenet_tf._keras import tf

    # the graph only needs x >= 1 (psi(alpha + 1)); float32 log and division: ~2e-6 absolute
    x = np.geomspace(1.0, 1e6, 5001).astype(np.float32)
    got = tfu.digamma_tf(x).numpy()
    np.testing.assert_allclose(got, unp.digamma(x.astype(np.float64)), atol=1e-5)
    np.testing.assert_allclose(got, tf.math.digamma(x).numpy(), atol=1e-5)


@pytest.mark.parametrize("shape", [(6, 7), (6, 2, 20), (6, 12, 2)])
def test_tf_dirichlet_matches_numpy_and_tfp(tfu, shape):
    from emenet_tf._keras import tf

    alpha = _random_concentrations(np.random.default_rng(len(shape) + shape[-1]), shape).astype(np.float32)
    got = {k: v.numpy() for k, v in tfu.dirichlet_uncertainty_tf(alpha).items()}
    want = unp.dirichlet_uncertainty(alpha)
    for key in want:  # float32 entropies of near-certain rows: rounding ~1e-6
        assert got[key].shape == want[key].shape, key
        np.testing.assert_allclose(got[key], want[key], atol=1e-5, err_msg=key)
    # the aleatoric term with TFP's own digamma (tf.math.digamma), in float64
    a = tf.constant(alpha, tf.float64)
    a0 = tf.reduce_sum(a, -1, keepdims=True)
    tfp_aleatoric = -tf.reduce_sum(a / a0 * (tf.math.digamma(a + 1) - tf.math.digamma(a0 + 1)), -1)
    np.testing.assert_allclose(got["aleatoric"], tfp_aleatoric.numpy() / math.log(shape[-1]), atol=1e-5)


def test_tf_dirichlet_converts_to_tflite_builtins(tfu, tmp_path):
    """The closed-form decomposition (with the series digamma) converts to builtins; TFLite == numpy."""
    from emenet_tf._keras import tf

    @tf.function(input_signature=[tf.TensorSpec((4, 7), tf.float32), tf.TensorSpec((4, 12, 2), tf.float32)])
    def graph(expr, au):
        e, a = tfu.dirichlet_uncertainty_tf(tf.exp(expr)), tfu.dirichlet_uncertainty_tf(tf.exp(au))
        return {
            "expr_epistemic": e["epistemic"],
            "expr_aleatoric": e["aleatoric"],
            "au_epistemic": a["epistemic"],
        }

    runner = _builtins_runner(graph, tmp_path)
    rng = np.random.default_rng(5)
    expr, au = np.log(_random_concentrations(rng, (4, 7))), np.log(_random_concentrations(rng, (4, 12, 2)))
    got = runner(expr=expr.astype(np.float32), au=au.astype(np.float32))
    e, a = unp.dirichlet_uncertainty(np.exp(expr)), unp.dirichlet_uncertainty(np.exp(au))
    np.testing.assert_allclose(got["expr_epistemic"], e["epistemic"], atol=1e-4)
    np.testing.assert_allclose(got["expr_aleatoric"], e["aleatoric"], atol=1e-4)
    np.testing.assert_allclose(got["au_epistemic"], a["epistemic"], atol=1e-4)


def test_tf_several_dirichlets_at_once_match_numpy(tfu):
    """The graph's batched form (one digamma, per-Dirichlet sums by a 0/1 matrix) == numpy per task."""
    rng = np.random.default_rng(6)
    alphas = {"expr": (3, 7), "au": (3, 12, 2), "va": (3, 2, 20)}
    alphas = {k: _random_concentrations(rng, v).astype(np.float32) for k, v in alphas.items()}
    given = {k: (a / a.sum(-1, keepdims=True), a.sum(-1, keepdims=True)) for k, a in alphas.items()}
    got = tfu.dirichlet_uncertainties_tf(given)
    for name, alpha in alphas.items():
        want = unp.dirichlet_uncertainty(alpha)
        for key in want:  # float32 digamma and entropies: ~1e-6
            assert got[name][key].shape == want[key].shape, (name, key)
            np.testing.assert_allclose(got[name][key].numpy(), want[key], atol=1e-5, err_msg=f"{name} {key}")
