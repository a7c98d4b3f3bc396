"""Losses against numpy closed forms, with masked rows full of NaN that must change nothing."""

import json

import numpy as np
import pytest

from emenet_tf import labels
from emenet_tf._keras import tf
from emenet_tf.data.index import FrameIndex
from emenet_tf.losses import DIRICHLET_SMOOTHING as SMOOTH
from emenet_tf.losses import (
    au_bce,
    au_soft_ce,
    ccc,
    class_weights,
    dirichlet_loss,
    expr_ce,
    expr_kl,
    va_kl,
    va_loss,
    va_to_bin,
)

B = 6


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _np_ccc(x, y):
    """CCC = 2 rho sx sy / (sx^2 + sy^2 + (mx - my)^2), population statistics."""
    sx, sy = x.std(), y.std()
    rho = np.corrcoef(x, y)[0, 1]
    return 2 * rho * sx * sy / (sx**2 + sy**2 + (x.mean() - y.mean()) ** 2)


def _loss_and_grad(fn, logits):
    logits = tf.constant(logits, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        loss = fn(logits)
    return float(loss), tape.gradient(loss, logits).numpy()


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_ccc_matches_numpy_and_weights_drop_rows(rng):
    x, y = rng.normal(size=10), rng.normal(size=10) + 0.3
    assert float(ccc(x, y)) == pytest.approx(_np_ccc(x, y), rel=1e-5)
    w = np.array([1.0] * 7 + [0.0] * 3)
    x_bad = x.copy()
    x_bad[7:] = np.nan
    assert float(ccc(x_bad, y, w)) == pytest.approx(_np_ccc(x[:7], y[:7]), rel=1e-5)
    assert float(ccc(x, x)) == pytest.approx(1.0, abs=1e-6)
    xc = x - x.mean()
    assert float(ccc(xc, -xc)) == pytest.approx(-1.0, abs=1e-6)  # perfect discordance needs equal means
    assert float(ccc(x, y, np.zeros(10))) == 0.0


def test_va_to_bin_matches_labels():
    values = np.array([-1.0, -0.95, -0.9, -0.0001, 0.0, 0.42, 0.9999, 1.0], np.float32)
    np.testing.assert_array_equal(va_to_bin(values).numpy(), labels.va_to_bin(values))


def test_va_to_bin_is_exact_for_every_three_decimal_label():
    milli = np.arange(-1000, 1001)  # every value an annotation file can hold, in thousandths
    exact = np.minimum((milli + 1000) * 20 // 2000, 19)  # integer arithmetic: no rounding at all
    values = milli / 1000.0
    np.testing.assert_array_equal(labels.va_to_bin(values), exact)
    np.testing.assert_array_equal(va_to_bin(values.astype(np.float32)).numpy(), exact)


def test_au_bce_closed_form_with_masked_nan(rng):
    y = rng.integers(0, 2, (B, 12)).astype(np.float32)
    z = rng.normal(size=(B, 12)).astype(np.float32)
    mask = (rng.random((B, 12)) > 0.3).astype(np.float32)
    mask[0] = 0.0
    q = rng.uniform(1, 5, 12).astype(np.float32)
    p = _sigmoid(z.astype(np.float64))
    per = -(q * y * np.log(p) + (1 - y) * np.log(1 - p))
    expected = (per * mask).sum() / mask.sum()
    y_bad, z_bad = y.copy(), z.copy()
    y_bad[mask == 0], z_bad[mask == 0] = np.nan, np.nan
    loss, grad = _loss_and_grad(lambda t: au_bce(y_bad, mask, t, q), z_bad)
    assert loss == pytest.approx(expected, rel=1e-5)
    assert np.all(grad[mask == 0] == 0.0) and np.all(np.isfinite(grad))
    assert np.any(grad[mask == 1] != 0.0)


def test_expr_ce_weighted_mean_with_masked_garbage(rng):
    y = rng.integers(0, 7, B)
    z = rng.normal(size=(B, 7)).astype(np.float32)
    mask = np.array([1, 0, 1, 1, 0, 1], np.float32)
    w = rng.uniform(0.5, 3, 7).astype(np.float32)
    ce = -_log_softmax(z.astype(np.float64))[np.arange(B), y]
    wy = w[y] * mask
    expected = (wy * ce).sum() / wy.sum()
    y_bad, z_bad = y.copy(), z.copy()
    y_bad[mask == 0], z_bad[mask == 0] = -1, np.nan
    loss, grad = _loss_and_grad(lambda t: expr_ce(y_bad, mask, t, w), z_bad)
    assert loss == pytest.approx(expected, rel=1e-5)
    assert np.all(grad[mask == 0] == 0.0) and np.all(np.isfinite(grad))
    # float labels with NaN where masked are accepted too; no weights -> plain mean.
    y_float = np.where(mask > 0, y, np.nan).astype(np.float32)
    assert float(expr_ce(y_float, mask, z, None)) == pytest.approx((ce * mask).sum() / mask.sum(), rel=1e-5)


def test_expr_ce_learns_vote_distributions_where_a_row_has_one(rng):
    """Rows with annotators' votes (FER+) are learnt from the distribution, weighted by its expected
    class weight; the other rows from their label; masked rows without votes count nothing."""
    y = rng.integers(0, 7, B)
    z = rng.normal(size=(B, 7)).astype(np.float32)
    mask = np.array([1, 0, 1, 1, 0, 1], np.float32)
    dist = np.zeros((B, 7), np.float32)
    dist[2] = rng.dirichlet(np.ones(7))  # a labelled row with votes: the votes win
    dist[4] = rng.dirichlet(np.ones(7))  # an unlabelled row with votes: counted
    w = rng.uniform(0.5, 3, 7).astype(np.float32)
    logq = _log_softmax(z.astype(np.float64))
    voted = dist.sum(1) > 0
    ce = np.where(voted, -(dist * logq).sum(1), -logq[np.arange(B), y])
    weight = np.where(voted, (dist * w).sum(1), w[y] * mask)
    expected = (weight * ce).sum() / weight.sum()
    assert float(expr_ce(y, mask, z, w, dist)) == pytest.approx(expected, rel=1e-5)
    # no votes anywhere: exactly the single-label loss
    none = np.zeros_like(dist)
    assert float(expr_ce(y, mask, z, w, none)) == pytest.approx(float(expr_ce(y, mask, z, w)), rel=1e-6)


def test_va_loss_closed_form_with_masked_nan(rng):
    n = 8
    v = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    z = rng.normal(size=(n, 2, 20)).astype(np.float32)
    mask = np.ones((n, 2), np.float32)
    mask[1, 0] = mask[4, 1] = mask[6, :] = 0.0
    logp = _log_softmax(z.astype(np.float64))
    e = (np.exp(logp) * labels.va_bin_centres()).sum(-1)
    bins = labels.va_to_bin(v)
    ccc_terms, ce_terms = [], []
    for d in range(2):
        m = mask[:, d] > 0
        ccc_terms.append(1 - _np_ccc(e[m, d], v[m, d]))
        ce_terms.extend(-logp[m, d, bins[m, d]])
    expected = 0.7 * np.mean(ccc_terms) + 0.3 * np.mean(ce_terms)
    v_bad, z_bad = v.copy(), z.copy()
    v_bad[mask == 0], z_bad[mask == 0] = np.nan, np.nan
    loss, grad = _loss_and_grad(lambda t: va_loss(v_bad, mask, t, ccc_weight=0.7, ce_weight=0.3), z_bad)
    assert loss == pytest.approx(expected, rel=1e-5)
    assert np.all(grad[mask == 0] == 0.0) and np.all(np.isfinite(grad))


def test_va_loss_leaves_out_a_dimension_with_no_labels(rng):
    v = rng.uniform(-1, 1, (5, 2)).astype(np.float32)
    z = rng.normal(size=(5, 2, 20)).astype(np.float32)
    mask = np.stack([np.ones(5), np.zeros(5)], axis=1).astype(np.float32)
    e = (np.exp(_log_softmax(z.astype(np.float64))) * labels.va_bin_centres()).sum(-1)
    assert float(va_loss(v, mask, z, ce_weight=0.0)) == pytest.approx(1 - _np_ccc(e[:, 0], v[:, 0]), rel=1e-5)


@pytest.mark.parametrize("fn_name", ["au_bce", "expr_ce", "va_loss"])
def test_hard_losses_are_zero_with_zero_gradient_when_all_masked(fn_name, rng):
    shapes = {
        "au_bce": ((B, 12), (B, 12), (B, 12)),
        "expr_ce": ((B,), (B,), (B, 7)),
        "va_loss": ((B, 2), (B, 2), (B, 2, 20)),
    }
    label_shape, mask_shape, logit_shape = shapes[fn_name]
    fn = {"au_bce": au_bce, "expr_ce": expr_ce, "va_loss": va_loss}[fn_name]
    y = np.full(label_shape, np.nan, np.float32)
    z = np.full(logit_shape, np.nan, np.float32)
    loss, grad = _loss_and_grad(lambda t: fn(y, np.zeros(mask_shape, np.float32), t), z)
    assert loss == 0.0
    assert np.all(grad == 0.0)


def test_au_soft_ce_closed_form_with_row_mask(rng):
    p = rng.random((B, 12)).astype(np.float32)
    z = rng.normal(size=(B, 12)).astype(np.float32)
    rows = np.array([1, 1, 0, 1, 0, 1], np.float32)
    s = _sigmoid(z.astype(np.float64))
    per = -(p * np.log(s) + (1 - p) * np.log(1 - s))
    assert float(au_soft_ce(p, z)) == pytest.approx(per.mean(), rel=1e-5)
    p_bad, z_bad = p.copy(), z.copy()
    p_bad[rows == 0], z_bad[rows == 0] = np.nan, np.nan
    loss, grad = _loss_and_grad(lambda t: au_soft_ce(p_bad, t, rows), z_bad)
    assert loss == pytest.approx(per[rows == 1].mean(), rel=1e-5)
    assert np.all(grad[rows == 0] == 0.0) and np.all(np.isfinite(grad))


def test_expr_kl_closed_form_with_zero_probs_and_mask(rng):
    p = rng.dirichlet(np.ones(7), B).astype(np.float32)
    p[0] = [1, 0, 0, 0, 0, 0, 0]  # zero probabilities contribute 0 (0 log 0 = 0)
    z = rng.normal(size=(B, 7)).astype(np.float32)
    mask = np.array([1, 1, 1, 0, 1, 0], np.float32)
    logq = _log_softmax(z.astype(np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.where(p > 0, p * (np.log(p) - logq), 0.0).sum(-1)
    p_bad, z_bad = p.copy(), z.copy()
    p_bad[mask == 0], z_bad[mask == 0] = np.nan, np.nan
    loss, grad = _loss_and_grad(lambda t: expr_kl(p_bad, t, mask), z_bad)
    assert loss == pytest.approx(kl[mask == 1].mean(), rel=1e-5)
    assert np.all(grad[mask == 0] == 0.0) and np.all(np.isfinite(grad))
    assert float(expr_kl(p, np.log(p + 1e-30))) == pytest.approx(0.0, abs=1e-5)


def test_va_kl_closed_form_with_mask(rng):
    n = 7
    p = rng.dirichlet(np.ones(20), (n, 2)).astype(np.float32)
    z = rng.normal(size=(n, 2, 20)).astype(np.float32)
    mask = np.ones((n, 2), np.float32)
    mask[2, 1] = mask[5, :] = 0.0
    logq = _log_softmax(z.astype(np.float64))
    kl = (p * (np.log(p) - logq)).sum(-1)
    c = labels.va_bin_centres()
    e_student, e_teacher = (np.exp(logq) * c).sum(-1), (p * c).sum(-1)
    m = mask > 0
    ccc_term = np.mean([1 - _np_ccc(e_student[m[:, d], d], e_teacher[m[:, d], d]) for d in range(2)])
    expected = kl[m].mean() + 0.5 * ccc_term
    p_bad, z_bad = p.copy(), z.copy()
    p_bad[mask == 0], z_bad[mask == 0] = np.nan, np.nan
    loss, grad = _loss_and_grad(lambda t: va_kl(p_bad, t, mask, ccc_weight=0.5), z_bad)
    assert loss == pytest.approx(expected, rel=1e-5)
    assert np.all(grad[mask == 0] == 0.0) and np.all(np.isfinite(grad))
    # a per-frame mask (B,) covers both dimensions
    rows = mask.min(axis=1)
    assert float(va_kl(p_bad, z_bad, rows, ccc_weight=0.0)) == pytest.approx(kl[rows > 0].mean(), rel=1e-5)


def test_losses_run_inside_tf_function(rng):
    z = tf.constant(rng.normal(size=(B, 2, 20)), tf.float32)
    v = tf.constant(rng.uniform(-1, 1, (B, 2)), tf.float32)
    eager = float(va_loss(v, tf.ones((B, 2)), z))
    assert float(tf.function(va_loss)(v, tf.ones((B, 2)), z)) == pytest.approx(eager, rel=1e-6)


# ----------------------------------------------------------------------------- distribution distillation


def _smoothed(member_logits):
    """Central smoothing of the members' softmax, as the loss does it (numpy oracle)."""
    p = np.exp(_log_softmax(member_logits.astype(np.float64)))
    return (1 - SMOOTH) * p + SMOOTH / p.shape[-1]


def _log_dirichlet(p, alpha):
    """log Dir(p; alpha) over the last axis, from its definition."""
    from scipy.special import gammaln

    return gammaln(alpha.sum(-1)) - gammaln(alpha).sum(-1) + ((alpha - 1) * np.log(p)).sum(-1)


@pytest.mark.parametrize("shape", [(7,), (2, 20)])
def test_dirichlet_nll_of_every_member_closed_form(rng, shape):
    members = rng.normal(size=(B, 3) + shape).astype(np.float32) * 2
    log_alpha = rng.normal(size=(B,) + shape).astype(np.float32)
    p, alpha = _smoothed(members), np.exp(log_alpha.astype(np.float64))
    per = -_log_dirichlet(p, alpha[:, None]).mean(axis=1) / (shape[-1] - 1)
    expected = per.reshape(B, -1).mean(axis=1).mean()
    # log-densities of tens of nats in float32 (lgamma, log): relative 1e-4
    assert float(dirichlet_loss(members, log_alpha)) == pytest.approx(expected, rel=1e-4)


def test_beta_nll_of_every_member_closed_form(rng):
    from scipy.stats import beta as beta_dist

    members = rng.normal(size=(B, 3, 12)).astype(np.float32) * 3  # AU logits
    log_ab = rng.normal(size=(B, 12, 2)).astype(np.float32)
    p = (1 - SMOOTH) * _sigmoid(members.astype(np.float64)) + SMOOTH / 2
    a, b = np.exp(log_ab[..., 0].astype(np.float64)), np.exp(log_ab[..., 1].astype(np.float64))
    expected = -beta_dist.logpdf(p, a[:, None], b[:, None]).mean()
    assert float(dirichlet_loss(members, log_ab, bernoulli=True)) == pytest.approx(expected, rel=1e-4)


def test_dirichlet_loss_masked_frames_count_nothing(rng):
    members = rng.normal(size=(B, 3, 12)).astype(np.float32)
    log_ab = rng.normal(size=(B, 12, 2)).astype(np.float32)
    mask = np.array([1, 0, 1, 1, 0, 1], np.float32)
    keep = dirichlet_loss(members[mask > 0], log_ab[mask > 0], bernoulli=True)
    members[mask == 0], log_ab[mask == 0] = np.nan, np.nan
    loss, grad = _loss_and_grad(lambda t: dirichlet_loss(members, t, bernoulli=True, mask=mask), log_ab)
    assert loss == pytest.approx(float(keep), rel=1e-5)
    assert np.all(grad[mask == 0] == 0.0) and np.all(np.isfinite(grad))


def _index(au, au_mask, expr, expr_mask):
    n = len(expr)
    return FrameIndex(
        data_dir="/d",
        split="train",
        paths=np.array([f"f{i}.jpg" for i in range(n)]),
        video=np.array(["v"] * n),
        frame=np.arange(1, n + 1, dtype=np.int32),
        au=au.astype(np.float32),
        au_mask=au_mask.astype(np.float32),
        expr=expr.astype(np.int32),
        expr_mask=expr_mask.astype(np.float32),
        va=np.zeros((n, 2), np.float32),
        va_mask=np.zeros((n, 2), np.float32),
    )


def test_class_weights_hand_computed():
    # 10 frames; frame 9 has AU labels for AU0..AU2 only (all positive), the rest masked.
    n = 10
    au = np.zeros((n, 12))
    au[:2, 0] = 1
    au[:9, 2] = 1
    au[9, :] = 1
    au_mask = np.ones((n, 12))
    au_mask[9, 3:] = 0
    expr = np.array([0, 0, 0, 0, 4, 4, 1, 2, 6, 6])
    expr_mask = np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 0])  # the last "6" is masked
    out = class_weights(_index(au, au_mask, expr, expr_mask))
    assert json.loads(json.dumps(out)) == out
    au_w = out["au_pos_weight"]
    assert au_w[0] == pytest.approx(7 / 3)  # positives: frames 0, 1, 9; negatives: 2..8
    assert au_w[1] == pytest.approx(9.0)  # one positive (frame 9), nine negatives
    assert au_w[2] == 1.0  # 10 positives, 0 negatives: 0 -> lower clip
    assert au_w[3] == 50.0  # no positive at all: upper clip, not inf
    assert out["counts"]["au_positive"][:4] == [3, 1, 10, 0]
    assert out["counts"]["au_negative"][:4] == [7, 9, 0, 9]
    assert out["counts"]["expr"] == [4, 1, 1, 0, 2, 0, 1]
    inverse = np.array([1 / 4, 1, 1, 1 / 2, 1])  # classes 0, 1, 2, 4, 6
    normalised = inverse / inverse.mean()
    expected = [normalised[0], normalised[1], normalised[2], 20.0, normalised[3], 20.0, normalised[4]]
    np.testing.assert_allclose(out["expr_class_weight"], expected, rtol=1e-6)

    sqrt = class_weights(_index(au, au_mask, expr, expr_mask), power=0.5)
    assert sqrt["au_pos_weight"][1] == pytest.approx(3.0)  # sqrt(9 / 1)
    root = np.sqrt(inverse) / np.sqrt(inverse).mean()
    np.testing.assert_allclose(np.array(sqrt["expr_class_weight"])[[0, 1, 2, 4, 6]], root, rtol=1e-6)
    none = class_weights(_index(au, au_mask, expr, expr_mask), power=0.0)
    assert none["au_pos_weight"] == [1.0] * 12 and none["expr_class_weight"] == [1.0] * 7
