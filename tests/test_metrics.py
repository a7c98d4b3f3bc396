"""Tests of the numpy metrics against hand computation, brute force and closed forms."""

import math

import numpy as np
import pytest

from emenet_tf import metrics as m

# Any RuntimeWarning (division by zero, log of 0, mean of empty) fails a test.
pytestmark = pytest.mark.filterwarnings("error")


# ---------------------------------------------------------------- recognition


def test_f1_known_confusion():
    # true 0 0 0 1 1 2 / pred 0 0 1 1 2 2, 4 classes (class 3 never true nor predicted)
    # class 0: TP 2 FP 0 FN 1 -> 4/5; class 1: TP 1 FP 1 FN 1 -> 2/4; class 2: TP 1 FP 1 FN 0 -> 2/3
    y_true, y_pred = [0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2]
    np.testing.assert_allclose(m.f1_per_class(y_true, y_pred, 4), [0.8, 0.5, 2 / 3, 0.0])
    macro = (0.8 + 0.5 + 2 / 3) / 4
    assert m.macro_f1(y_true, y_pred, 4) == pytest.approx(macro)
    assert m.accuracy(y_true, y_pred) == pytest.approx(4 / 6)
    assert m.expr_score(y_true, y_pred, 4) == pytest.approx(0.67 * macro + 0.33 * 4 / 6)
    np.testing.assert_array_equal(
        m.confusion_matrix(y_true, y_pred, 4), [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    )


def test_f1_class_never_predicted_is_zero():
    # class 1 is true once and never predicted: TP 0 -> F1 0; class 0: TP 1 FP 1 -> 2/3
    np.testing.assert_allclose(m.f1_per_class([0, 1], [0, 0], 2), [2 / 3, 0.0])


def test_perfect_and_constant_expression_predictors():
    y = np.array([0, 1, 2, 3, 4, 5, 6, 0, 4, 4])
    assert m.expr_score(y, y) == pytest.approx(1.0)
    # always "Happiness" (4): F1_4 = 2*3 / (2*3 + 7 + 0) = 6/13, others 0; accuracy 3/10
    assert m.expr_score(y, np.full(10, 4)) == pytest.approx(0.67 * (6 / 13) / 7 + 0.33 * 0.3)


def test_recognition_rejects_out_of_range_labels():
    with pytest.raises(ValueError, match="0..6"):
        m.f1_per_class([0, 7], [0, 1], 7)
    with pytest.raises(ValueError, match="length"):
        m.accuracy([0, 1], [0])


def test_au_scores_by_hand():
    # pred (p >= 0.5): [[1,0],[0,1],[1,1],[0,0]]
    # AU0: TP row0, FN row1, FP row2 -> F1 2/4; AU1: TP row1, FP row2 (0.5), FN row3 -> F1 2/4
    # correct decisions: row0 x2, row1 AU1, row3 AU0 -> 4/8
    y = np.array([[1, 0], [1, 1], [0, 0], [0, 1]])
    p = np.array([[0.9, 0.2], [0.4, 0.6], [0.7, 0.5], [0.1, 0.3]])
    out = m.au_scores(y, p)
    assert (out["f1"], out["acc"], out["score"]) == pytest.approx((0.5, 0.5, 0.5))
    # mask out row2 AU0 (label written as missing): AU0 -> TP 1 FN 1 -> 2/3; acc 4/7
    mask = np.ones_like(p)
    mask[2, 0] = 0
    y_missing = y.copy()
    y_missing[2, 0] = -1
    out = m.au_scores(y_missing, p, mask=mask)
    np.testing.assert_allclose(out["f1_per_au"], [2 / 3, 0.5])
    assert out["f1"] == pytest.approx(7 / 12)
    assert out["acc"] == pytest.approx(4 / 7)
    assert out["score"] == pytest.approx(0.5 * 7 / 12 + 0.5 * 4 / 7)


def test_au_scores_match_per_au_binary_f1_on_random_masked_data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=(200, 12))
    p = rng.uniform(size=(200, 12))
    mask = rng.uniform(size=(200, 12)) < 0.7
    out = m.au_scores(y, p, mask=mask)
    f1 = [m.f1_per_class(y[mask[:, a], a], (p[mask[:, a], a] >= 0.5).astype(int), 2)[1] for a in range(12)]
    np.testing.assert_allclose(out["f1_per_au"], f1)
    assert out["acc"] == pytest.approx(np.mean((p[mask] >= 0.5) == y[mask]))


def test_au_scores_absent_au_is_left_out():
    y = np.array([[1, 0], [0, 1]])
    p = np.array([[0.9, 0.9], [0.1, 0.9]])
    out = m.au_scores(y, p, mask=np.array([[1, 0], [1, 0]]))
    assert np.isnan(out["f1_per_au"][1])
    assert out["f1"] == pytest.approx(1.0) and out["acc"] == pytest.approx(1.0)


def test_ccc_closed_form():
    # x = 1 2 3, y = 2 4 6: var x 2/3, var y 8/3, cov 4/3, means 2 and 4
    # CCC = 2 (4/3) / (2/3 + 8/3 + 4) = (8/3) / (22/3) = 4/11
    assert m.ccc([1, 2, 3], [2, 4, 6]) == pytest.approx(4 / 11)
    x = np.array([-1.0, 0.0, 1.0])
    assert m.ccc(x, x) == pytest.approx(1.0)
    assert m.ccc(x, -x) == pytest.approx(-1.0)
    assert m.ccc(x, np.full(3, 0.3)) == 0.0  # constant prediction: no covariance
    assert m.ccc([0.2, 0.2], [0.2, 0.2]) == 1.0
    assert math.isnan(m.ccc([], []))


def test_ccc_matches_rho_form_on_random_data():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=50), rng.normal(size=50) * 0.5 + 0.3
    rho = np.corrcoef(x, y)[0, 1]
    sx, sy = x.std(), y.std()
    assert m.ccc(x, y) == pytest.approx(2 * rho * sx * sy / (sx**2 + sy**2 + (x.mean() - y.mean()) ** 2))


def test_va_scores_with_mask():
    true = np.array([[1.0, 0.5], [2.0, -5.0], [3.0, 0.1]])
    pred = np.array([[2.0, 0.5], [4.0, 0.9], [6.0, 0.1]])
    mask = np.array([[1, 1], [1, 0], [1, 1]])
    out = m.va_scores(true, pred, mask)
    assert out["ccc_valence"] == pytest.approx(4 / 11)
    assert out["ccc_arousal"] == pytest.approx(1.0)
    assert out["score"] == pytest.approx((4 / 11 + 1) / 2)


# ---------------------------------------------------------------- likelihood, calibration, Brier


def test_nll_and_brier_categorical_by_hand():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
    labels = np.array([0, 2])
    assert m.nll_categorical(probs, labels) == pytest.approx(-(math.log(0.7) + math.log(0.1)) / 2)
    # row 0: 0.09 + 0.04 + 0.01 = 0.14; row 1: 0.01 + 0.64 + 0.81 = 1.46; mean 0.8
    assert m.brier_categorical(probs, labels) == pytest.approx(0.8)
    # p_y = 0 is clipped at 1e-12, no warning
    assert m.nll_categorical([[1.0, 0.0]], [1]) == pytest.approx(-math.log(1e-12))
    assert m.nll_categorical([[1.0, 0.0]], [0]) == 0.0
    assert m.brier_categorical([[0.0, 1.0]], [1]) == 0.0


def test_nll_and_brier_bernoulli_by_hand():
    p = np.array([[0.8, 0.3], [0.6, 1.0]])
    y = np.array([[1, 0], [1, 0]])
    mask = np.array([[1, 1], [0, 0]])
    assert m.nll_bernoulli(p, y, mask) == pytest.approx(-(math.log(0.8) + math.log(0.7)) / 2)
    assert m.brier_bernoulli(p, y, mask) == pytest.approx((0.04 + 0.09) / 2)
    # unmasked: adds -log 0.6 and -log(1e-12) (p = 1, y = 0); Brier adds 0.16 and 1
    want = -(math.log(0.8) + math.log(0.7) + math.log(0.6) + math.log(1e-12)) / 4
    assert m.nll_bernoulli(p, y) == pytest.approx(want)
    assert m.brier_bernoulli(p, y) == pytest.approx((0.04 + 0.09 + 0.16 + 1.0) / 4)


def test_ece_by_hand():
    # bin 9: conf 0.92, 0.96 (mean 0.94), correct 1, 0 (acc 0.5): gap 0.44, n 2
    # bin 6: conf 0.62, 0.66 (mean 0.64), correct 1, 1 (acc 1.0): gap 0.36, n 2
    # ECE = (2 * 0.44 + 2 * 0.36) / 4 = 0.40
    conf, correct = [0.92, 0.96, 0.62, 0.66], [1, 0, 1, 1]
    assert m.ece(conf, correct) == pytest.approx(0.40)
    bins = m.reliability_bins(conf, correct)
    np.testing.assert_array_equal(bins["counts"], [0, 0, 0, 0, 0, 0, 2, 0, 0, 2])
    np.testing.assert_allclose(bins["centers"], np.arange(0.05, 1.0, 0.1))
    assert bins["accuracy"][9] == pytest.approx(0.5) and bins["confidence"][6] == pytest.approx(0.64)
    assert np.isnan(bins["accuracy"][0]) and np.isnan(bins["confidence"][5])
    # 3 samples, 5 bins: 0.3 -> bin 1 (wrong: gap 0.3), 1.0 -> last bin (right: gap 0), 0.5 -> bin 2 (right: 0.5)
    assert m.ece([0.3, 1.0, 0.5], [0, 1, 1], n_bins=5) == pytest.approx((0.3 + 0.0 + 0.5) / 3)


def test_ece_perfectly_calibrated_is_zero():
    assert m.ece([0.75] * 4, [1, 1, 1, 0]) == pytest.approx(0.0)
    assert m.ece([1.0, 1.0], [1, 1]) == 0.0
    assert math.isnan(m.ece([], []))


def test_ece_categorical_and_bernoulli_reduce_to_ece():
    # the same four (confidence, correct) pairs as test_ece_by_hand
    probs = np.array([[0.92, 0.05, 0.03], [0.02, 0.96, 0.02], [0.2, 0.18, 0.62], [0.66, 0.3, 0.04]])
    assert m.ece_categorical(probs, [0, 0, 2, 0]) == pytest.approx(0.40)
    # Bernoulli: conf max(p, 1-p) = 0.92, 0.96, 0.62, 0.66; correct (p >= 0.5) == y
    p = np.array([[0.92, 0.04, 0.5], [0.38, 0.66, 0.5]])
    y = np.array([[1, 1, -1], [0, 1, -1]])
    mask = np.array([[1, 1, 0], [1, 1, 0]])
    assert m.ece_bernoulli(p, y, mask) == pytest.approx(0.40)


def test_kl_categorical():
    assert m.kl_categorical([[1.0, 0.0]], [[0.5, 0.5]]) == pytest.approx(math.log(2))
    # 0.5 log(0.5/0.25) + 0.5 log(0.5/0.75) = 0.5 log 2 + 0.5 log(2/3); the second row is 0
    want = (0.5 * math.log(2) + 0.5 * math.log(2 / 3) + 0.0) / 2
    assert m.kl_categorical([[0.5, 0.5], [0.2, 0.8]], [[0.25, 0.75], [0.2, 0.8]]) == pytest.approx(want)


def test_nll_va_bins():
    probs = np.full((2, 2, 20), 1 / 20)
    probs[0, 0] = 0.5 / 19
    probs[0, 0, 0] = 0.5  # value -1.0 is in bin 0
    probs[0, 1] = 0.75 / 19
    probs[0, 1, 10] = 0.25  # value 0.05 -> floor(1.05 / 2 * 20) = bin 10
    values = np.array([[-1.0, 0.05], [1.0, -5.0]])  # 1.0 -> last bin (uniform row); -5 missing
    mask = np.array([[1, 1], [1, 0]])
    want = -(math.log(0.5) + math.log(0.25) + math.log(1 / 20)) / 3
    assert m.nll_va_bins(probs, values, mask) == pytest.approx(want)


# ---------------------------------------------------------------- risk-coverage


def test_risk_coverage_and_aurc_by_hand():
    # sorted by uncertainty: errors 0 (0.1), 1 (0.2), 0 (0.3), 1 (0.4)
    # risk at k = 1..4: 0, 1/2, 1/3, 2/4; AURC = (0 + 1/2 + 1/3 + 1/2) / 4 = 1/3
    unc, err = [0.1, 0.4, 0.2, 0.3], [0, 1, 1, 0]
    curve = m.risk_coverage_curve(unc, err)
    np.testing.assert_allclose(curve["coverage"], [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(curve["risk"], [0, 1 / 2, 1 / 3, 1 / 2])
    np.testing.assert_allclose(curve["threshold"], [0.1, 0.2, 0.3, 0.4])
    assert m.aurc(unc, err) == pytest.approx(1 / 3)


def test_aurc_ties_are_stable_and_oracle_is_best():
    assert m.aurc([0.5, 0.5], [1, 0]) == pytest.approx((1 + 0.5) / 2)  # input order kept
    assert m.aurc([0.5, 0.5], [0, 1]) == pytest.approx((0 + 0.5) / 2)
    rng = np.random.default_rng(2)
    err = (rng.uniform(size=100) < 0.3).astype(float)
    oracle = m.aurc(err + rng.uniform(size=100) * 0.1, err)
    worst = m.aurc(-err, err)
    # oracle: k-th risk = max(0, k - 70) / k for 30 errors
    n_err = int(err.sum())
    k = np.arange(1, 101)
    assert oracle == pytest.approx(np.mean(np.maximum(0, k - (100 - n_err)) / k))
    assert oracle < m.aurc(rng.uniform(size=100), err) < worst
    assert math.isnan(m.aurc([], []))


# ---------------------------------------------------------------- out-of-domain


def _brute_auroc(s_in, s_out):
    total = 0.0
    for a in s_in:
        for b in s_out:
            total += 1.0 if b > a else (0.5 if b == a else 0.0)
    return total / (len(s_in) * len(s_out))


def _brute_ap(s_in, s_out):
    scores = list(s_in) + list(s_out)
    labels = [0] * len(s_in) + [1] * len(s_out)
    ap, prev_recall = 0.0, 0.0
    for t in sorted(set(scores), reverse=True):
        flagged = [lab for s, lab in zip(scores, labels, strict=True) if s >= t]
        precision = sum(flagged) / len(flagged)
        recall = sum(flagged) / len(s_out)
        ap += (recall - prev_recall) * precision
        prev_recall = recall
    return ap


def test_auroc_by_hand():
    assert m.auroc([0.3, 0.3, 0.3], [0.3, 0.3]) == 0.5
    assert m.auroc([0.1, 0.2], [0.5, 0.9, 0.7]) == 1.0
    assert m.auroc([0.5, 0.9], [0.1, 0.2]) == 0.0
    # pairs (in, out): (0,1) 1, (0,2) 1, (1,1) 0.5, (1,2) 1 -> 3.5 / 4
    assert m.auroc([0, 1], [1, 2]) == pytest.approx(0.875)
    with pytest.raises(ValueError, match="out-of-domain"):
        m.auroc([], [1.0])


def test_auroc_matches_pairwise_count_with_ties():
    rng = np.random.default_rng(3)
    s_in, s_out = rng.integers(0, 6, size=40), rng.integers(2, 9, size=25)  # many ties
    assert m.auroc(s_in, s_out) == pytest.approx(_brute_auroc(s_in, s_out))
    s_in, s_out = rng.normal(size=30), rng.normal(size=20) + 0.5
    assert m.auroc(s_in, s_out) == pytest.approx(_brute_auroc(s_in, s_out))


def test_aupr_by_hand_and_brute_force():
    # descending: 0.8 (+) P 1 R 1/2; 0.4 (-) P 1/2 R 1/2; 0.35 (+) P 2/3 R 1; 0.1 (-) P 1/2 R 1
    # AP = 1/2 * 1 + 0 + 1/2 * 2/3 = 5/6
    assert m.aupr([0.1, 0.4], [0.35, 0.8]) == pytest.approx(5 / 6)
    assert m.aupr([0.1, 0.2], [0.5, 0.9]) == pytest.approx(1.0)
    assert m.aupr([0.3] * 3, [0.3] * 2) == pytest.approx(2 / 5)  # all tied: one threshold
    rng = np.random.default_rng(4)
    for s_in, s_out in [
        (rng.integers(0, 5, size=30), rng.integers(1, 7, size=15)),
        (rng.normal(size=25), rng.normal(size=35) + 0.3),
    ]:
        assert m.aupr(s_in, s_out) == pytest.approx(_brute_ap(s_in, s_out))


# ---------------------------------------------------------------- empty input, no warnings


def test_empty_inputs_give_nan_without_warnings():
    assert math.isnan(m.accuracy([], []))
    np.testing.assert_array_equal(m.f1_per_class([], [], 3), [0.0, 0.0, 0.0])
    assert math.isnan(m.nll_categorical(np.zeros((0, 3)), []))
    assert math.isnan(m.brier_bernoulli(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2, 2))))
    out = m.au_scores(np.zeros((2, 2)), np.zeros((2, 2)), mask=np.zeros((2, 2)))
    assert math.isnan(out["f1"]) and math.isnan(out["acc"])
