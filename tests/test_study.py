"""The replicate study: t-intervals and holds against hand-computed numbers, the claims on fabricated
metrics.json files, and (slow) a K = 2 study on tiny settings through the command line."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from emenet_tf.labels import TASKS
from emenet_tf.study import analysis, runner, statistics
from emenet_tf.study.render import write_study

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# t_{0.975, df} from tables: df 1 -> 12.7062, df 2 -> 4.3027, df 4 -> 2.7764
T975 = {1: 12.706204736, 2: 4.302652730, 4: 2.776445105}


def test_t_interval_hand_computed():
    # [1, 2, 3]: mean 2, s = 1, half = 4.3027 / sqrt(3) = 2.48414
    mean, lo, hi = statistics.t_interval([1.0, 2.0, 3.0])
    assert mean == pytest.approx(2.0)
    assert lo == pytest.approx(2.0 - T975[2] / math.sqrt(3), abs=1e-6)
    assert hi == pytest.approx(2.0 + 2.484137, abs=1e-5)
    # [0, 2]: mean 1, s = sqrt(2), half = 12.7062 * sqrt(2) / sqrt(2)
    mean, lo, hi = statistics.t_interval([0.0, 2.0])
    assert (mean, lo, hi) == pytest.approx((1.0, 1.0 - T975[1], 1.0 + T975[1]), abs=1e-6)
    # five values -0.10 .. -0.14: mean -0.12, s = 0.0158114, half = 2.7764 * 0.0158114 / sqrt(5) = 0.019632
    mean, lo, hi = statistics.t_interval([-0.10, -0.11, -0.12, -0.13, -0.14])
    assert mean == pytest.approx(-0.12)
    assert hi == pytest.approx(-0.12 + 0.019632, abs=1e-5)


def test_t_interval_one_value_has_no_interval():
    assert statistics.t_interval([0.5]) == (0.5, None, None)
    assert statistics.t_interval([]) == (None, None, None)


def test_holds_logic():
    assert statistics.holds((-0.3, -0.01), 0.0, "below")
    assert not statistics.holds((-0.3, 0.01), 0.0, "below")
    assert not statistics.holds((-0.3, 0.0), 0.0, "below")  # the interval must lie strictly below
    assert statistics.holds((0.9, 0.97), 0.9, "at_least")
    assert not statistics.holds((0.89, 0.97), 0.9, "at_least")
    assert not statistics.holds((None, None), 0.0, "below")
    with pytest.raises(ValueError):
        statistics.holds((0, 1), 0.0, "above")
    # [-0.10, -0.12, -0.14]: mean -0.12, s 0.02, hi = -0.12 + 4.3027 * 0.02 / sqrt(3) = -0.07032 < 0
    summary = statistics.summary([-0.10, -0.12, -0.14], 0.0, "below")
    assert summary["holds"] and summary["ci95"][1] == pytest.approx(-0.070317, abs=1e-5)
    # [-0.1, -0.2, -0.3]: hi = -0.2 + 0.248414 > 0
    assert not statistics.summary([-0.1, -0.2, -0.3], 0.0, "below")["holds"]
    single = statistics.summary([-5.0], 0.0, "below")
    assert not single["holds"] and single["ci95"] == [None, None] and "K = 1" in single["note"]


def _row(nll, ece, kl=None):
    row = {"nll": nll, "ece": ece, "acc": 0.5}
    if kl is not None:
        row["kl_true"] = kl
    return row


def fake_metrics(shift: float, auroc: float, g2_nll: float = 1.0) -> dict:
    """A metrics.json of a 3-generation run: students better than the baselines by ``shift``."""
    methods = {}
    nll = {"gen0_single": 1.2, "gen1_single": 1.1, "gen2_single": g2_nll}
    for g in range(3):
        single = nll[f"gen{g}_single"] + shift
        methods[f"gen{g}_single"] = {t: _row(single, 0.05, single - 0.6) for t in TASKS}
        methods[f"gen{g}_ensemble"] = {t: _row(single - 0.05, 0.1, single - 0.65) for t in TASKS}
        methods[f"gen{g}_single"]["ood"] = {"auroc": 0.7, "aupr": 0.5}
        methods[f"gen{g}_ensemble"]["ood"] = {"auroc": auroc, "aupr": 0.8}
    methods["dirichlet_density"] = {"ood": {"auroc": auroc + 0.03, "aupr": 0.9}}
    methods["temperature_scaling"] = {t: _row(1.2, 0.06, 0.6) for t in TASKS}
    methods["mc_dropout"] = {t: _row(1.25, 0.07, 0.65) for t in TASKS}
    limits = {"oracle": {"expr": {"nll": 0.5}}, "expected": {"expr_nll": 0.49}}
    return {"methods": methods, "limits": limits, "frames": {"evaluated": 100}}


def test_claims_on_fabricated_metrics_files(tmp_path):
    shifts, aurocs = [0.0, 0.01, -0.01], [0.93, 0.95, 0.94]
    for r, (s, a) in enumerate(zip(shifts, aurocs, strict=True)):
        path = tmp_path / f"rep{r}" / "eval" / "metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(fake_metrics(s, a)))
    results = runner.load_results(str(tmp_path), 3)
    out = analysis.summarise(results, 3, TASKS, seed=7, config={"epochs": 6})
    write_study(str(tmp_path), out)
    saved = json.loads((tmp_path / "claims.json").read_text())
    assert saved["replicates"] == 3 and saved["seed"] == 7 and saved["config"] == {"epochs": 6}
    claims = {(c["name"], c["task"]): c for c in saved["claims"]}
    names = {
        "student_nll_below_temperature_scaling",
        "student_nll_below_mc_dropout",
        "student_ece_noninferior_temperature_scaling",
        "student_ece_noninferior_mc_dropout",
        "nll_falls_each_generation",
        "kl_true_falls_each_generation",
    }
    assert set(claims) == {(n, t) for n in names for t in TASKS} | {
        ("ensemble_ood_auroc_at_least_0.9", "ood"),
        ("dirichlet_ood_auroc_at_least_0.9", "ood"),
        ("dirichlet_ood_auroc_above_ensemble", "ood"),
    }
    for c in saved["claims"]:
        assert set(c) >= {"name", "task", "metric", "values", "mean", "ci95", "holds"}
        assert len(c["values"]) == 3 and len(c["ci95"]) == 2
    c = claims[("student_nll_below_temperature_scaling", "expr")]
    assert c["values"] == pytest.approx([-0.2, -0.19, -0.21]) and c["holds"]
    assert c["mean"] == pytest.approx(-0.2)
    assert c["ci95"][1] == pytest.approx(-0.2 + T975[2] * 0.01 / math.sqrt(3), abs=1e-6)
    # ECE: student 0.05 vs TS 0.06 in every replicate: zero spread, the point interval is below 0
    ece = claims[("student_ece_noninferior_temperature_scaling", "au")]
    assert ece["holds"] and ece["threshold"] == 0.01 and ece["strict"]["holds"]
    # every generation step is -0.1: the mean step and the worst step are -0.1 too
    gen = claims[("nll_falls_each_generation", "va")]
    assert gen["values"] == pytest.approx([-0.1] * 3) and gen["holds"] and gen["strict"]["holds"]
    assert [s["step"] for s in gen["steps"]] == ["gen0->gen1", "gen1->gen2"]
    ood = claims[("ensemble_ood_auroc_at_least_0.9", "ood")]
    assert ood["values"] == pytest.approx(aurocs) and ood["threshold"] == 0.9
    assert ood["ci95"][0] == pytest.approx(0.94 - T975[2] * 0.01 / math.sqrt(3), abs=1e-6) and ood["holds"]
    above = claims[("dirichlet_ood_auroc_above_ensemble", "ood")]
    assert above["values"] == pytest.approx([0.03] * 3) and above["holds"]  # +0.03 in every replicate
    ratio = saved["nll_over_bayes"]["temperature_scaling"]
    assert ratio["mean"] == pytest.approx(2.4) and ratio["values"] == pytest.approx([2.4] * 3)
    md = (tmp_path / "claims.md").read_text()
    assert "| student_nll_below_temperature_scaling | expr |" in md and "95% CI" in md
    assert (tmp_path / "claims.png").stat().st_size > 1000


def test_the_generation_claims_are_judged_on_the_mean_step():
    """gen0 -> gen1 falls by 0.1, gen1 -> gen2 rises by 0.05 in every replicate: the mean step, -0.025,
    holds; the old strict form (the worst step, and every step, below 0) does not, and says so."""
    results = [fake_metrics(s, 0.8, g2_nll=1.15) for s in (0.0, 0.01, 0.02)]
    claims = {(c["name"], c["task"]): c for c in analysis.compute_claims(results, 3, TASKS)}
    gen = claims[("nll_falls_each_generation", "expr")]
    assert gen["values"] == pytest.approx([-0.025] * 3) and gen["holds"]
    assert gen["strict"]["values"] == pytest.approx([0.05] * 3) and not gen["strict"]["holds"]
    assert gen["steps"][0]["holds"] and not gen["steps"][1]["holds"]
    assert not claims[("ensemble_ood_auroc_at_least_0.9", "ood")]["holds"]
    # ECE non-inferiority: +0.005 worse than TS in every replicate holds within the 0.01 margin only
    for r in results:
        for g in range(3):
            r["methods"][f"gen{g}_single"]["expr"]["ece"] = 0.065
    ece = {c["name"]: c for c in analysis.compute_claims(results, 3, TASKS) if c["task"] == "expr"}
    noninferior = ece["student_ece_noninferior_temperature_scaling"]
    assert noninferior["values"] == pytest.approx([0.005] * 3) and noninferior["holds"]
    assert not noninferior["strict"]["holds"]


def test_one_replicate_holds_nothing_and_says_why():
    claims = analysis.compute_claims([fake_metrics(0.0, 0.99)], 3, TASKS)
    assert claims and not any(c["holds"] for c in claims)
    assert all(c["ci95"] == [None, None] and "K = 1" in c["note"] for c in claims)


def test_no_student_claims_without_students():
    result = fake_metrics(0.0, 0.95)
    result["methods"] = {
        k: v for k, v in result["methods"].items() if k.startswith("gen0") or not k.startswith("gen")
    }
    del result["methods"]["dirichlet_density"]
    names = {c["name"] for c in analysis.compute_claims([result, result], 1, TASKS)}
    assert names == {"ensemble_ood_auroc_at_least_0.9"}


def test_claims_of_an_expr_only_run_name_only_expr_and_ood():
    results = [fake_metrics(s, 0.95) for s in (0.0, 0.01)]
    tasks = {c["task"] for c in analysis.compute_claims(results, 3, ("expr",))}
    assert tasks == {"expr", "ood"}


def test_study_wall_time_covers_every_invocation(tmp_path):
    """A replicate killed and resumed: the ledger keeps the killed invocation's time (up to its last
    update) and the total covers both invocations."""
    path = str(tmp_path / "replicate_time.json")
    (tmp_path / "replicate_time.json").write_text(
        json.dumps({"invocations": [{"wall_s": 100.0, "cpu_s": 80.0}]})
    )
    with runner.Stopwatch(path, every=0.05) as watch:
        import time

        time.sleep(0.2)
        assert json.loads(open(path).read())["invocations"][-1]["wall_s"] > 0.0  # written while running
    totals = watch.totals()
    assert totals["invocations"] == 2 and totals["wall_s"] >= 100.2 and totals["cpu_s"] >= 80.0


@pytest.mark.slow
def test_study_command_k2_tiny(tmp_path):
    work = str(tmp_path / "study")
    cmd = [
        sys.executable, "-m", "emenet_tf.study", "--replicates=2", "--seed=5", f"--workdir={work}",
        "--model=tiny", "--ensemble_size=2", "--generations=2", "--epochs=1", "--steps_per_epoch=2",
        "--batch_size=16", "--verbose=0", "--synthetic_train_videos=3", "--synthetic_val_videos=2",
        "--synthetic_frames_per_video=30",
    ]  # fmt: skip
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    saved = json.loads(open(os.path.join(work, "claims.json")).read())
    assert saved["replicates"] == 2 and saved["seed"] == 5
    assert saved["config"]["model"] == "tiny" and saved["config"]["epochs"] == 1
    assert {c["task"] for c in saved["claims"]} == {"expr", "au", "va", "ood"}
    for c in saved["claims"]:
        assert set(c) >= {"name", "task", "metric", "values", "mean", "ci95", "holds"}
        assert len(c["values"]) == 2 and isinstance(c["holds"], bool)
    for r in range(2):
        rep = json.loads(open(os.path.join(work, f"rep{r}", "replicate.json")).read())
        assert rep["synthetic_seed"] == 5 + r and rep["seed"] == runner.SEED_STRIDE * (5 + r)
        assert rep["invocations"] == 1 and rep["wall_s"] > 0
        cfg = json.loads(open(os.path.join(work, f"rep{r}", "config.json")).read())
        assert cfg["synthetic"]["seed"] == 5 + r and cfg["ensemble_size"] == 2
        assert not os.path.exists(os.path.join(work, f"rep{r}", "export"))
    for name in ("claims.md", "claims.png"):
        assert os.path.getsize(os.path.join(work, name)) > 0
    # A rerun skips the finished replicates and writes the same claims
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-4000:]
    assert json.loads(open(os.path.join(work, "claims.json")).read())["claims"] == saved["claims"]
    # Other settings in the same workdir are refused
    other = subprocess.run(
        [*cmd, "--epochs=2"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert other.returncode == 2 and "other settings: --epochs=2 (the run has 1)" in other.stderr
    assert "Traceback" not in other.stderr
    assert len([line for line in other.stderr.splitlines() if "error" in line]) == 1, other.stderr


def test_compare_studies_names_the_settings_that_differ(tmp_path):
    """benchmarks/compare_studies.py says which settings two paired studies differ in; a field an
    older run's config.json lacks counts as its default, and per-replicate fields never count."""
    import importlib.util

    from emenet_tf.config import TrainConfig

    spec = importlib.util.spec_from_file_location(
        "compare_studies",
        os.path.join(os.path.dirname(os.path.dirname(__file__)), "research", "compare_studies.py"),
    )
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)
    for name, values in (
        ("a", {"seed": 1}),
        ("b", {"seed": 2, "temporal": 8, "dirichlet_student": False, "synthetic": {"degraded_frames": 0.3}}),
    ):
        os.makedirs(tmp_path / name / "rep0")
        config = TrainConfig(workdir=str(tmp_path / name / "rep0"), **values).to_dict()
        if name == "a":  # written before the benchmark's settings had their own block
            config.update(synthetic_seed=0, synthetic_train_videos=64, synthetic_val_videos=18)
            del config["synthetic"]
        with open(tmp_path / name / "rep0" / "config.json", "w") as f:
            json.dump(config, f)
    said = compare.settings_that_differ(str(tmp_path / "a"), str(tmp_path / "b"), 0)
    assert said == "dirichlet_student: True -> False; synthetic_degraded_frames: 0.0 -> 0.3; temporal: 0 -> 8"
    assert compare.settings_that_differ(str(tmp_path / "a"), str(tmp_path / "a"), 0) == ""


def test_replicates_on_a_real_dataset_resample_its_training_identities(tmp_path):
    """On data with one fixed split, replicate r trains on a seeded share of the training identities
    (S + r) besides its own training seed; on the benchmark, its own benchmark instead."""
    from emenet_tf.config import TrainConfig
    from emenet_tf.data import sources
    from emenet_tf.data.index import FrameIndex, resample

    real = TrainConfig(workdir="w", data=f"ferplus:{tmp_path}")
    cfg = runner.replicate_config(real, 7, 2, str(tmp_path / "study"))
    assert cfg.train_resample_seed == 9 and cfg.seed == runner.SEED_STRIDE * 9
    assert "--train_resample_seed S + r" in runner.study_config(real)["seed_rule"]
    assert not any(k.startswith("synthetic_") for k in runner.study_config(real))
    bench = runner.replicate_config(TrainConfig(workdir="w"), 7, 2, str(tmp_path / "s"))
    assert bench.train_resample_seed is None and bench.synthetic.seed == 9
    n = 200
    index = FrameIndex(
        data_dir="/d", split="train", paths=np.array([f"{i}.jpg" for i in range(n)]),
        video=np.array([f"person{i // 4}" for i in range(n)], dtype=object), frame=np.ones(n, np.int32),
        au=np.zeros((n, 12), np.float32), au_mask=np.zeros((n, 12), np.float32),
        expr=np.zeros(n, np.int32), expr_mask=np.ones(n, np.float32),
        va=np.zeros((n, 2), np.float32), va_mask=np.zeros((n, 2), np.float32),
    )  # fmt: skip
    kept = resample(index, 9, sources.RESAMPLE_SHARE)
    people = set(kept.video.tolist())
    assert len(people) == 40 and len(kept) == 160  # 80% of 50 identities, every frame of each kept one
    assert set(resample(index, 9, sources.RESAMPLE_SHARE).video.tolist()) == people  # seeded
    assert set(resample(index, 10, sources.RESAMPLE_SHARE).video.tolist()) != people
