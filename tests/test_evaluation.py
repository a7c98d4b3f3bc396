"""Tests of the evaluation: its pieces against hand computation, evaluate.py's errors, and a whole tiny run."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from emenet_tf import evaluation, report
from emenet_tf.calibration import split_halves
from emenet_tf.evaluation import inputs, scoring
from emenet_tf.evaluation.methods.common import entropy_score, epistemic_score

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_scores_against_numpy():
    n = 3
    expr = np.zeros((2, n, 7))
    expr[0, :, 0] = 1.0  # member 0 sure of class 0, member 1 sure of class 1
    expr[1, :, 1] = 1.0
    au = np.full((2, n, 12), 0.5)
    va = np.full((2, n, 2, 20), 1 / 20)
    members = {"expr": expr, "au": au, "va": va}
    # EXPR: total log 2 / log 7, aleatoric 0; AU and VA: identical members -> no epistemic part
    np.testing.assert_allclose(epistemic_score(members), (math.log(2) / math.log(7)) / 3, atol=1e-12)
    # single member 0: EXPR entropy 0, AU entropy 1 (p = 0.5), VA uniform entropy 1 -> mean 2/3
    single = {k: v[0] for k, v in members.items()}
    np.testing.assert_allclose(entropy_score(single), 2 / 3, atol=1e-12)


def test_split_halves_disjoint_seeded():
    present = np.ones(101, bool)
    present[[3, 50]] = False
    fit, ev = split_halves(present, seed=0)
    assert len(fit) == 49 and len(ev) == 50
    assert not set(fit) & set(ev)
    assert set(fit) | set(ev) == set(np.flatnonzero(present))
    again = split_halves(present, seed=0)
    np.testing.assert_array_equal(again[0], fit)
    assert not np.array_equal(split_halves(present, seed=1)[0], fit)


def test_expr_and_va_metrics_by_hand():
    probs = np.array([[0.7, 0.3] + [0.0] * 5, [0.6, 0.4] + [0.0] * 5, [0.2, 0.8] + [0.0] * 5])
    labels = np.array([0, 1, 1])
    out = scoring.expr_metrics(probs, labels, np.array([1.0, 1.0, 0.0]))  # third row unlabelled
    assert out["acc"] == pytest.approx(0.5)
    assert out["nll"] == pytest.approx(-(math.log(0.7) + math.log(0.4)) / 2)
    assert out["brier"] == pytest.approx(((0.3**2 + 0.3**2) + (0.6**2 + 0.6**2)) / 2)
    # row 0 (right) is more certain than row 1 (wrong): risks 0 then 1/2 -> AURC 1/4
    assert out["aurc"] == pytest.approx(0.25)
    # VA: each frame puts all mass in one bin; frame 0 right bin (value in it), frame 1 one bin off
    centres = np.linspace(-0.95, 0.95, 20)
    va = np.zeros((2, 2, 20))
    va[0, :, 10] = 1.0
    va[1, :, 5] = 1.0
    values = np.array([[centres[10], centres[10]], [centres[6], centres[6]]])
    out = scoring.va_metrics(va, values, np.ones((2, 2)))
    assert out["nll"] == pytest.approx((0.0 + 0.0 + 2 * -math.log(1e-12)) / 4, rel=1e-6)
    assert out["brier"] == pytest.approx((0 + 0 + 2 + 2) / 4)
    assert out["ece"] == pytest.approx(0.5)  # all confidence 1, accuracy 1/2
    assert out["aurc"] == pytest.approx((0.0 + 0.05) / 2)  # equal entropies: input order; errors 0, 0.1


def test_ood_index_transcodes_non_jpeg(tmp_path):
    import cv2

    from emenet_tf.data import pipeline

    folder = tmp_path / "ood"
    folder.mkdir()
    image = (np.random.default_rng(0).random((20, 20, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(folder / "a.jpg"), image)
    cv2.imwrite(str(folder / "b.png"), image)
    (folder / "notes.txt").write_text("not an image")
    work = tmp_path / "work"
    work.mkdir()
    index = inputs.ood_index(str(folder), str(work))
    assert len(index) == 2 and index.expr_mask.sum() == 0 and index.au_mask.sum() == 0
    batch = next(iter(pipeline.make_dataset(index, 16, 4, training=False)))
    assert batch["image"].shape == (2, 16, 16, 3)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        inputs.ood_index(str(tmp_path / "empty"), str(work))
    with pytest.raises(ValueError, match="does not exist"):
        inputs.ood_index(str(tmp_path / "nowhere"), str(work))


def _result(single_nll, ts_nll, mc_nll, auroc):
    def row(nll, ece=0.1, kl=None, ood=None):
        r = {"expr": {"nll": nll, "ece": ece}}
        if kl is not None:
            r["expr"]["kl_true"] = kl
        if ood is not None:
            r["ood"] = {"auroc": ood, "aupr": ood}
        return r

    return {
        "methods": {
            "gen0_single": row(1.2, kl=0.5),
            "gen0_ensemble": row(1.1, ood=0.6),
            "gen1_single": row(single_nll, ece=0.05, kl=0.4),
            "gen1_ensemble": row(1.0, ood=auroc),
            "temperature_scaling": row(ts_nll),
            "mc_dropout": row(mc_nll),
        }
    }


def test_claims_state_each_outcome():
    """report.md checks the claims of emenet_tf.claims on one run's numbers, one sentence each."""
    good = report.claim_lines(_result(1.0, 1.1, 1.2, 0.95), generations=2)
    expr = [line for line in good if "[expr]" in line or "[ood]" in line]
    assert len(expr) == 7 and all("HOLDS" in line and "DOES NOT" not in line for line in expr), expr
    assert sum("not measured" in line for line in good) == 12  # AU and VA: no figures in this result
    bad = report.claim_lines(_result(1.15, 1.1, 1.2, 0.85), generations=2)
    (nll_ts,) = [line for line in bad if line.startswith("student_nll_below_temperature_scaling [expr]")]
    assert "+0.0500 < 0: DOES NOT HOLD" in nll_ts
    (ood,) = [line for line in bad if line.startswith("ensemble_ood_auroc_at_least_0.9")]
    assert "+0.8500 >= 0.9: DOES NOT HOLD" in ood
    (ece,) = [line for line in bad if line.startswith("student_ece_noninferior_temperature_scaling [expr]")]
    assert "-0.0500 < 0.01: HOLDS (strict form, < 0: HOLDS)" in ece
    (falls,) = [line for line in bad if line.startswith("nll_falls_each_generation [expr]")]
    assert "-0.0500 < 0: HOLDS" in falls


def _run_cli(*args):
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "evaluate.py"), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )


def test_cli_errors_are_one_line(tmp_path):
    missing = _run_cli()
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1].startswith("evaluate.py: error: --workdir")
    empty = _run_cli(f"--workdir={tmp_path}")
    assert empty.returncode == 2
    lines = [ln for ln in empty.stderr.strip().splitlines() if ln.startswith("evaluate.py")]
    assert len(lines) == 1 and "config.json" in lines[0]
    assert "Traceback" not in empty.stderr


@pytest.mark.slow
def test_evaluate_run_end_to_end(tiny_run, tmp_path):
    out_dir = str(tmp_path / "eval")
    result = evaluation.evaluate_run(tiny_run.workdir, out_dir=out_dir, mc_passes=3)
    assert set(result) == {"methods", "limits", "frames"}
    expected = [
        "gen0_single",
        "gen0_ensemble",
        "gen1_single",
        "gen1_ensemble",
        "dirichlet_single",
        "dirichlet_density",
        "temperature_scaling",
        "mc_dropout",
    ]
    assert list(result["methods"]) == expected
    # the Dirichlet student's two rows: the same predictions, two OOD scores
    single, density = result["methods"]["dirichlet_single"], result["methods"]["dirichlet_density"]
    assert single["expr"] == density["expr"] and single["ood"] != density["ood"]
    # its mean is the (frozen) student's: equal to float32 rounding (another graph around the same layers)
    assert single["expr"] == pytest.approx(result["methods"]["gen1_single"]["expr"], abs=1e-6)
    with open(os.path.join(out_dir, "metrics.json")) as f:
        assert json.load(f) == result
    frames = result["frames"]
    assert frames["fit"] + frames["evaluated"] == frames["predicted"] and frames["ood"] == 20
    for name, row in result["methods"].items():
        assert set(row) == {"expr", "au", "va", "ood"}, name
        assert {"f1", "acc", "score", "nll", "ece", "brier", "aurc", "kl_true"} <= set(row["expr"])
        assert {"f1", "acc", "score", "nll", "ece", "brier", "aurc", "kl_true"} <= set(row["au"])
        assert {"ccc_valence", "ccc_arousal", "score", "nll", "ece", "brier", "aurc"} <= set(row["va"])
        for task in ("expr", "au", "va"):
            assert 0.0 <= row[task]["ece"] <= 1.0
            assert row[task]["nll"] > 0 and row[task]["kl_true"] >= 0
        assert 0.0 <= row["ood"]["auroc"] <= 1.0 and 0.0 <= row["ood"]["aupr"] <= 1.0
    _check_against_an_independent_computation(tiny_run, result)
    # the Bayes limit is what no model beats on KL (0) and what synthetic_meta.json says
    assert result["limits"]["oracle"]["expr"]["kl_true"] == pytest.approx(0.0, abs=1e-9)
    assert 0.0 < result["limits"]["expected"]["expr_accuracy"] <= 1.0
    with open(os.path.join(out_dir, "report.md")) as f:
        text = f.read()
    for heading in (
        "## What this run shows (one replicate)",
        "## EXPR",
        "## AU",
        "## VA",
        "## Out of domain",
    ):
        assert heading in text
    assert "| temperature_scaling |" in text and "| mc_dropout |" in text
    assert "This is ONE run" in text and "python -m emenet_tf.study" in text  # claims need the study
    for png in ("reliability_expr.png", "reliability_au.png", "risk_coverage_expr.png", "ood_histograms.png"):
        with open(os.path.join(out_dir, png), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert not [n for n in os.listdir(out_dir) if n.startswith(".tmp")]


@pytest.mark.slow
def test_mc_dropout_figures_do_not_depend_on_what_ran_before(tiny_run, tmp_path):
    """The run's own evaluation follows training; evaluate.py starts a fresh process: MC Dropout's
    masks must not depend on the random state either leaves, so both give the same figures."""
    from emenet_tf._keras import keras

    first = evaluation.evaluate_run(tiny_run.workdir, out_dir=str(tmp_path / "a"), mc_passes=3)
    keras.utils.set_random_seed(12345)  # the global seed another history leaves (a run's last member)
    second = evaluation.evaluate_run(tiny_run.workdir, out_dir=str(tmp_path / "b"), mc_passes=3)
    assert first["methods"]["mc_dropout"] == second["methods"]["mc_dropout"]


def _check_against_an_independent_computation(cfg, result):
    """gen1_ensemble's EXPR NLL and accuracy, recomputed from the members' own logits with numpy on
    the evaluation half, agree with metrics.json; Temperature Scaling fits its half."""
    from emenet_tf.data import affwild2, pipeline
    from emenet_tf.models import input_size
    from emenet_tf.rundir import RunDir

    run = RunDir(cfg.workdir)
    index = affwild2.load_split(cfg.sources()[0].path, "validation")
    ds = pipeline.make_dataset(index, input_size(cfg.model, cfg.image_size), cfg.batch_size, training=False)
    batches = list(ds)
    frame_id = np.concatenate([b["frame_id"].numpy() for b in batches])
    probs = []
    for k in range(cfg.ensemble_size):
        member = run.load_member(cfg, 1, k)
        z = np.concatenate(
            [np.asarray(member.predict_on_batch(b["image"])["expr"], np.float64) for b in batches]
        )
        e = np.exp(z - z.max(axis=1, keepdims=True))
        probs.append(e / e.sum(axis=1, keepdims=True))
    mean = np.zeros((len(index), 7))
    mean[frame_id] = np.mean(probs, axis=0)
    present = np.zeros(len(index), bool)
    present[frame_id] = True
    _, rows = split_halves(present, seed=0)
    rows = rows[index.expr_mask[rows] > 0]
    p_true = mean[rows, index.expr[rows]]
    nll = float(-np.mean(np.log(np.maximum(p_true, 1e-12))))
    acc = float(np.mean(mean[rows].argmax(1) == index.expr[rows]))
    # float32 logits through the same model on the same batches; numpy float64 after them: 1e-5
    assert result["methods"]["gen1_ensemble"]["expr"]["nll"] == pytest.approx(nll, abs=1e-5)
    assert result["methods"]["gen1_ensemble"]["expr"]["acc"] == pytest.approx(acc, abs=1e-12)
    assert (
        result["methods"]["temperature_scaling"]["expr"]["nll"]
        != result["methods"]["gen0_single"]["expr"]["nll"]
    )
