"""Tests of the baselines: Temperature Scaling (against closed forms and simulation) and MC Dropout."""

import numpy as np
import pytest

from emenet_tf import metrics, temperature
from emenet_tf._keras import tf
from emenet_tf.evaluation.methods.mc_dropout import mc_predict


def _sample_categorical(rng, probs):
    cdf = np.cumsum(probs, axis=1)
    return np.minimum((rng.random((len(probs), 1)) > cdf).sum(axis=1), probs.shape[1] - 1)


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)


def test_apply_temperature_matches_softmax_of_scaled_logits():
    z = np.array([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
    np.testing.assert_allclose(temperature.apply_temperature(_softmax(z), 2.5), _softmax(z / 2.5), atol=1e-12)
    np.testing.assert_allclose(
        temperature.apply_temperature(z, 2.5, logits=True), _softmax(z / 2.5), atol=1e-12
    )
    logit = np.array([-3.0, 0.2, 4.0])
    p = 1 / (1 + np.exp(-logit))
    np.testing.assert_allclose(
        temperature.apply_temperature(p, 0.5, "bernoulli"), 1 / (1 + np.exp(-logit / 0.5)), atol=1e-9
    )


def test_temperature_scaling_fixes_an_overconfident_model():
    rng = np.random.default_rng(0)
    base = rng.normal(0.0, 1.0, (8000, 7))
    labels = _sample_categorical(rng, _softmax(base))  # noisy labels from the calibrated model
    overconfident = _softmax(5.0 * base)
    fit, test = slice(0, 4000), slice(4000, None)
    t = temperature.fit_temperature(overconfident[fit], labels[fit])
    assert 4.0 < t < 6.0  # the true temperature is 5
    scaled = temperature.apply_temperature(overconfident[test], t)
    before = metrics.nll_categorical(overconfident[test], labels[test])
    after = metrics.nll_categorical(scaled, labels[test])
    assert after < before - 0.5
    assert after == pytest.approx(metrics.nll_categorical(_softmax(base[test]), labels[test]), abs=0.02)


def test_temperature_one_for_a_calibrated_model():
    rng = np.random.default_rng(1)
    probs = _softmax(rng.normal(0.0, 2.0, (20000, 7)))
    labels = _sample_categorical(rng, probs)
    assert temperature.fit_temperature(probs, labels) == pytest.approx(1.0, abs=0.05)
    q = 1 / (1 + np.exp(-rng.normal(0.0, 3.0, 20000)))
    y = (rng.random(20000) < q).astype(float)
    assert temperature.fit_temperature(q, y, "bernoulli") == pytest.approx(1.0, abs=0.05)


def test_bernoulli_temperature_overconfident_and_mask():
    rng = np.random.default_rng(2)
    logit = rng.normal(0.0, 1.5, 20000)
    y = (rng.random(20000) < 1 / (1 + np.exp(-logit))).astype(float)
    p = 1 / (1 + np.exp(-3.0 * logit))
    assert temperature.fit_temperature(p, y, "bernoulli") == pytest.approx(3.0, rel=0.1)
    # masked entries do not count: labels flipped where the mask is 0 change nothing
    mask = rng.random(20000) < 0.5
    flipped = np.where(mask, y, 1 - y)
    a = temperature.fit_temperature(p, flipped, "bernoulli", mask=mask)
    b = temperature.fit_temperature(p[mask], y[mask], "bernoulli")
    assert a == pytest.approx(b, rel=1e-4)
    assert temperature.fit_temperature(p, y, "bernoulli", mask=np.zeros(20000)) == 1.0


def test_temperature_scaler_fits_each_task():
    rng = np.random.default_rng(3)
    n = 6000
    expr_z = rng.normal(0, 1, (n, 7))
    au_z = rng.normal(0, 1.5, (n, 12))
    va_z = rng.normal(0, 1, (n, 2, 20))
    au_scale = np.linspace(1.0, 4.0, 12)
    pred = {
        "expr": _softmax(4.0 * expr_z),
        "au": 1 / (1 + np.exp(-au_z * au_scale)),
        "va": np.exp(3.0 * va_z) / np.exp(3.0 * va_z).sum(-1, keepdims=True),
        "label_expr": _sample_categorical(rng, _softmax(expr_z)),
        "label_expr_mask": np.ones(n),
        "label_au": (rng.random((n, 12)) < 1 / (1 + np.exp(-au_z))).astype(float),
        "label_au_mask": np.ones((n, 12)),
        "label_va_mask": np.ones((n, 2)),
    }
    centres = np.linspace(-0.95, 0.95, 20)
    va_probs = np.exp(va_z) / np.exp(va_z).sum(-1, keepdims=True)
    bins = np.stack([_sample_categorical(rng, va_probs[:, d]) for d in range(2)], 1)
    pred["label_va"] = centres[bins]
    scaler = temperature.TemperatureScaler.fit(pred)
    assert scaler.expr == pytest.approx(4.0, rel=0.1)
    np.testing.assert_allclose(scaler.au, au_scale, rtol=0.15)
    np.testing.assert_allclose(scaler.va, [3.0, 3.0], rtol=0.1)
    scaled = scaler.apply(pred)
    assert metrics.nll_categorical(scaled["expr"], pred["label_expr"]) < metrics.nll_categorical(
        pred["expr"], pred["label_expr"]
    )
    np.testing.assert_allclose(scaled["va"].sum(-1), 1.0, atol=1e-9)


def _tiny_dataset(n=24, size=32):
    images = np.random.default_rng(0).random((n, size, size, 3)).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices({"image": images, "frame_id": np.arange(n)}).batch(8)


def test_mc_dropout_passes_differ_and_mean_differs_from_deterministic():
    from emenet_tf.inference import predict_dataset
    from emenet_tf.models import build_emenet

    mc = build_emenet("tiny", mc_dropout=True, seed=0)
    det = build_emenet("tiny", mc_dropout=False, seed=0)
    for task in ("au", "expr", "va"):  # random heads give near-uniform outputs: make them decisive
        kernel, bias = mc.get_layer(f"{task}_hidden").get_weights()
        mc.get_layer(f"{task}_hidden").set_weights([kernel * 30.0, bias])
    det.set_weights(mc.get_weights())
    ds = _tiny_dataset()
    pred = mc_predict(mc, ds, passes=4)
    members = pred["members_expr"]
    assert members.shape == (4, 24, 7)
    for k in range(1, 4):
        assert np.abs(members[k] - members[0]).max() > 1e-5  # float32 noise at 1/7 is ~1e-8
    np.testing.assert_allclose(pred["expr"], members.mean(0), atol=1e-6)
    deterministic = predict_dataset(det, ds)
    assert np.abs(pred["expr"] - deterministic["expr"]).max() > 1e-5
    assert np.abs(pred["va"] - deterministic["va"]).max() > 1e-6


def test_mc_predict_refuses_inactive_dropout():
    from emenet_tf.models import build_emenet

    with pytest.raises(RuntimeError, match="not active"):
        mc_predict(build_emenet("tiny", mc_dropout=False, seed=0), _tiny_dataset(), passes=3)
