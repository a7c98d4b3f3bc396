"""Replicate study: K independent runs and the issue's claims as paired differences with 95% intervals.

  python -m emenet_tf.study --replicates K --seed S --workdir DIR [any train.py flag]

Replicates. Replicate r (r = 0..K-1) is a full run (every generation, then the evaluation; no
export) in ``DIR/rep<r>/``. Everything random in it derives from S + r:
  the synthetic benchmark is generated with --synthetic_seed S + r (its own faces, identities,
  sampled labels and OOD images), and training uses --seed 100000 (S + r) (member k of generation g
  then uses 100000 (S + r) + k + 1000 g, so no two replicates share a member seed).
With S = 0, replicate 0 is exactly ``python train.py --seed 0 --synthetic_seed 0 --noexport`` with
the same flags. An explicit --synthetic_seed is ignored (a warning says so). Every TrainConfig flag
of train.py (``emenet_tf.cli.flags``, presets included) is accepted and passed to each replicate;
--member is refused (whole generations), and a replicate is evaluated, never exported. Rerunning
the command skips finished replicates (``rep<r>/replicate.json``) and resumes a killed one through
train.py's resume; a replicate folder holding a run with other settings is refused by the run's
own config check (``run.prepare``).

Claims (``claims.json``, ``claims.md``, ``claims.png``), computed from every replicate's
``eval/metrics.json`` (the evaluation half of validation). A claim is a paired difference within a
replicate, e.g. NLL(gen<G-1>_single) - NLL(temperature_scaling); over the K replicates its mean
and a 95% t-interval (mean +- t_{0.975, K-1} s / sqrt(K), scipy.stats.t) are reported, and it
holds when the whole interval lies below zero. For the OOD claim the values are the AUROCs of the
last-generation student ensemble and it holds when the whole interval is >= 0.9. With K = 1 no
interval exists: ``ci95`` is [null, null] and no claim holds (``note`` says why).

Per task (expr, au, va):
  student_nll_below_temperature_scaling, student_nll_below_mc_dropout,
  student_ece_below_temperature_scaling, student_ece_below_mc_dropout
      gen<G-1>_single minus the baseline;
  nll_falls_each_generation, kl_true_falls_each_generation
      single models (member 0). One claim per task whose per-replicate value is the WORST step,
      max over g of (metric(gen<g+1>_single) - metric(gen<g>_single)); every step is also reported
      on its own under ``steps`` (values, mean, ci95, holds). The claim holds only when the
      worst-step interval AND every step's interval lie below zero.
and ensemble_ood_auroc_at_least_0.9 (task "ood"). With a Dirichlet student (``--dirichlet_student``,
issue 11): dirichlet_ood_auroc_at_least_0.9 (its feature-density score, ``dirichlet_density``) and
dirichlet_ood_auroc_above_ensemble (dirichlet_density AUROC minus the last student ensemble's: holds
when the whole interval is >= 0).
``nll_over_bayes``: each method's EXPR NLL divided by the Bayes limit of the same replicate (the
true distribution measured on the same sampled labels: metrics.json limits.oracle.expr.nll), with
its mean and 95% interval.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import shlex
import sys
import time

import numpy as np
from absl import app, flags, logging

from emenet_tf.cli.flags import config_from_flags, define_config_flags
from emenet_tf.config import TrainConfig
from emenet_tf.errors import ConfigError, DataError, RunError, TrainingError
from emenet_tf.io import atomic_path, atomic_write_json, atomic_write_text, read_json
from emenet_tf.report import metric_value
from emenet_tf.rundir import RunDir

TASKS = ("expr", "au", "va")
BASELINES = ("temperature_scaling", "mc_dropout")
OOD_AUROC_THRESHOLD = 0.9
SEED_STRIDE = 100_000  # training seed of replicate r: SEED_STRIDE * (S + r)
LEVEL = 0.95
# Config fields that are not the study's settings: per replicate (folder, seeds) or per invocation.
PER_INVOCATION = ("workdir", "member", "verbose", "strategy", "seed", "synthetic_seed")
REPLICATE = "replicate.json"  # in rep<r>/: written when the replicate is trained and evaluated
DEFAULT_WORKDIR = "runs/study"


# ---------------------------------------------------------------- statistics


def t_interval(values, level: float = LEVEL) -> tuple[float | None, float | None, float | None]:
    """(mean, lo, hi) of the t-interval mean +- t_{(1+level)/2, K-1} s / sqrt(K) (s: ddof 1).

    K = 1: (mean, None, None): one value has no spread. K = 0: (None, None, None).
    """
    from scipy import stats

    x = np.asarray([v for v in values if v is not None], np.float64)
    if x.size == 0:
        return None, None, None
    mean = float(x.mean())
    if x.size < 2:
        return mean, None, None
    half = float(stats.t.ppf(0.5 + level / 2.0, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return mean, mean - half, mean + half


def holds(ci95, threshold: float, direction: str) -> bool:
    """``below``: the whole interval < threshold; ``at_least``: the whole interval >= threshold."""
    lo, hi = ci95
    if lo is None or hi is None:
        return False
    if direction == "below":
        return bool(hi < threshold)
    if direction == "at_least":
        return bool(lo >= threshold)
    raise ValueError(f"direction must be 'below' or 'at_least', got {direction!r}")


def _summary(values, threshold: float, direction: str) -> dict:
    mean, lo, hi = t_interval(values)
    out = {
        "values": [None if v is None else float(v) for v in values],
        "mean": mean,
        "ci95": [lo, hi],
        "threshold": threshold,
        "direction": direction,
        "holds": holds((lo, hi), threshold, direction) and all(v is not None for v in values),
    }
    if any(v is None for v in values):
        out["note"] = "a replicate lacks this metric: the claim does not hold"
    elif len(values) < 2:
        out["note"] = "K = 1: a 95% interval needs at least 2 replicates, so the claim does not hold"
    return out


# ---------------------------------------------------------------- claims


def _diff(a, b):
    return None if a is None or b is None else float(a) - float(b)


def generations_of(results: list[dict]) -> int:
    """G: the number of generations every replicate evaluated (gen<g>_single present in all)."""
    counts = []
    for result in results:
        gens = {int(n[3:].split("_")[0]) for n in result.get("methods", {}) if n.startswith("gen")}
        g = 0
        while g in gens:
            g += 1
        counts.append(g)
    return min(counts) if counts else 0


def compute_claims(results: list[dict]) -> list[dict]:
    """The claims over the replicates' metrics dicts (``eval/metrics.json`` contents), in order."""
    generations = generations_of(results)
    last = generations - 1
    student = f"gen{last}_single"
    claims = []

    def add(name, task, metric, values, threshold=0.0, direction="below", **extra):
        claims.append(
            {"name": name, "task": task, "metric": metric, **_summary(values, threshold, direction), **extra}
        )

    for task in TASKS:
        if generations >= 2:
            for metric in ("nll", "ece"):
                for baseline in BASELINES:
                    values = [
                        _diff(metric_value(r, student, task, metric), metric_value(r, baseline, task, metric))
                        for r in results
                    ]
                    if all(v is None for v in values):
                        continue  # e.g. a run without dropout has no mc_dropout row
                    add(
                        f"student_{metric}_below_{baseline}",
                        task,
                        metric,
                        values,
                        compare=f"{student} - {baseline}",
                    )
            for metric in ("nll", "kl_true"):
                steps = []
                for g in range(last):
                    values = [
                        _diff(
                            metric_value(r, f"gen{g + 1}_single", task, metric),
                            metric_value(r, f"gen{g}_single", task, metric),
                        )
                        for r in results
                    ]
                    steps.append({"step": f"gen{g}->gen{g + 1}", **_summary(values, 0.0, "below")})
                if all(v is None for s in steps for v in s["values"]):
                    continue  # kl_true exists on the synthetic benchmark only
                worst = [
                    None if any(s["values"][i] is None for s in steps) else max(s["values"][i] for s in steps)
                    for i in range(len(results))
                ]
                add(
                    f"{metric}_falls_each_generation",
                    task,
                    metric,
                    worst,
                    compare="worst step: max over g of gen<g+1>_single - gen<g>_single",
                    steps=steps,
                )
                claim = claims[-1]
                claim["holds"] = bool(claim["holds"] and all(s["holds"] for s in steps))
    ensemble = f"gen{last}_ensemble"
    values = [metric_value(r, ensemble, "ood", "auroc") for r in results]
    if generations >= 1 and not all(v is None for v in values):
        add(
            f"ensemble_ood_auroc_at_least_{OOD_AUROC_THRESHOLD}",
            "ood",
            "auroc",
            values,
            threshold=OOD_AUROC_THRESHOLD,
            direction="at_least",
            compare=f"{ensemble} AUROC (not a difference)",
        )
    density = [metric_value(r, "dirichlet_density", "ood", "auroc") for r in results]
    if not all(v is None for v in density):
        add(
            f"dirichlet_ood_auroc_at_least_{OOD_AUROC_THRESHOLD}",
            "ood",
            "auroc",
            density,
            threshold=OOD_AUROC_THRESHOLD,
            direction="at_least",
            compare="dirichlet_density AUROC (not a difference)",
        )
        add(
            "dirichlet_ood_auroc_above_ensemble",
            "ood",
            "auroc",
            [_diff(d, e) for d, e in zip(density, values, strict=True)],
            threshold=0.0,
            direction="at_least",
            compare=f"dirichlet_density - {ensemble} AUROC",
        )
    return claims


def bayes_nll(result: dict, task: str = "expr"):
    """The Bayes limit of ``task``'s NLL: the truth measured on the sampled labels (oracle), else expected."""
    limits = result.get("limits") or {}
    value = (limits.get("oracle") or {}).get(task, {}).get("nll")
    if value is None and task == "expr":
        value = (limits.get("expected") or {}).get("expr_nll")
    return value


def nll_over_bayes(results: list[dict], task: str = "expr") -> dict:
    """{method: {values, mean, ci95}}: each method's NLL over the Bayes limit, per replicate."""
    methods = [m for m in results[0].get("methods", {})] if results else []
    out = {}
    for method in methods:
        values = []
        for r in results:
            nll, limit = metric_value(r, method, task, "nll"), bayes_nll(r, task)
            values.append(None if nll is None or not limit else float(nll) / float(limit))
        if all(v is None for v in values):
            continue
        mean, lo, hi = t_interval(values)
        out[method] = {"values": values, "mean": mean, "ci95": [lo, hi]}
    return out


def method_means(results: list[dict]) -> dict:
    """{method: {task: {metric: mean over replicates}}} of every number in metrics.json."""
    out: dict = {}
    for method in results[0].get("methods", {}) if results else []:
        for task, row in results[0]["methods"][method].items():
            for metric in row:
                values = [metric_value(r, method, task, metric) for r in results]
                values = [v for v in values if v is not None]
                if values:
                    out.setdefault(method, {}).setdefault(task, {})[metric] = float(np.mean(values))
    return out


# ---------------------------------------------------------------- outputs


def machine() -> dict:
    """CPU model (from /proc/cpuinfo), cores usable by this process and in the machine."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"cpu": model, "cores": usable, "cpu_count": os.cpu_count(), "platform": platform.platform()}


def _fmt(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ci(ci) -> str:
    return "undefined (K=1)" if ci[0] is None else f"[{_fmt(ci[0])}, {_fmt(ci[1])}]"


def render_markdown(study: dict) -> str:
    """claims.md: the claims table, the NLL / Bayes table, the method means, command, machine, time."""
    k = study["replicates"]
    lines = [
        f"# Replicate study: {k} replicate(s), seed {study['seed']}",
        "",
        "Each value is a paired difference within one replicate (the evaluation half of its validation "
        "split); a claim holds when its whole 95% t-interval over the replicates lies below zero (the OOD "
        f"claim: the whole AUROC interval >= {OOD_AUROC_THRESHOLD}). Generation claims: the worst step per "
        "replicate, and every step must hold too (steps listed below the table).",
        "",
        "| claim | task | compared | mean | 95% CI | holds | per replicate |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in study["claims"]:
        values = ", ".join(_fmt(v) for v in c["values"])
        lines.append(
            f"| {c['name']} | {c['task']} | {c.get('compare', '')} | {_fmt(c['mean'])} | {_ci(c['ci95'])} | "
            f"{'**yes**' if c['holds'] else 'no'} | {values} |"
        )
    notes = sorted({c["note"] for c in study["claims"] if c.get("note")})
    lines += [""] + [f"Note: {n}." for n in notes]
    steps = [(c, s) for c in study["claims"] for s in c.get("steps", [])]
    if steps:
        lines += [
            "",
            "Generation steps:",
            "",
            "| claim | task | step | mean | 95% CI | holds |",
            "|---|---|---|---|---|---|",
        ]
        for c, s in steps:
            lines.append(
                f"| {c['name']} | {c['task']} | {s['step']} | {_fmt(s['mean'])} | {_ci(s['ci95'])} | "
                f"{'yes' if s['holds'] else 'no'} |"
            )
    held = sum(c["holds"] for c in study["claims"])
    expr = [c for c in study["claims"] if c["task"] in ("expr", "ood")]
    lines += [
        "",
        f"{held} of {len(study['claims'])} claims hold; EXPR and OOD: {sum(c['holds'] for c in expr)} of {len(expr)}.",
    ]
    if study.get("nll_over_bayes"):
        lines += [
            "",
            "## EXPR NLL as a multiple of the Bayes limit",
            "",
            "The Bayes limit: the true label distribution of the synthetic benchmark scored on the same sampled "
            "labels of the same evaluation frames (metrics.json limits.oracle.expr.nll).",
            "",
            "| method | mean | 95% CI |",
            "|---|---|---|",
        ]
        for method, row in study["nll_over_bayes"].items():
            lines.append(f"| {method} | {_fmt(row['mean'], 3)} | {_ci(row['ci95'])} |")
    means = study.get("method_means", {})
    if means:
        cols = [
            ("expr", "nll"),
            ("expr", "ece"),
            ("expr", "acc"),
            ("expr", "kl_true"),
            ("au", "nll"),
            ("va", "nll"),
            ("ood", "auroc"),
        ]
        lines += [
            "",
            "## Means over the replicates",
            "",
            "| method | " + " | ".join(f"{t} {m}" for t, m in cols) + " |",
            "|---" * (len(cols) + 1) + "|",
        ]
        for method, row in means.items():
            lines.append(f"| {method} | " + " | ".join(_fmt(row.get(t, {}).get(m)) for t, m in cols) + " |")
    run = study.get("run", {})
    mach = run.get("machine", {})
    lines += [
        "",
        "## How it was produced",
        "",
        f"- Command: `{run.get('command', '')}`",
        f"- Machine: {mach.get('cpu', '?')}, {mach.get('cores', '?')} usable core(s) "
        f"(of {mach.get('cpu_count', '?')}); {mach.get('platform', '')}",
        f"- Wall time of this invocation: {_minutes(run.get('wall_s'))}; per replicate (the invocation that "
        "finished it): "
        + ", ".join(f"rep{i} {_minutes(t)}" for i, t in enumerate(run.get("replicate_wall_s", [])))
        + "; CPU time (user + system, independent of other load) per replicate: "
        + ", ".join(f"rep{i} {_minutes(t)}" for i, t in enumerate(run.get("replicate_cpu_s", []))),
        f"- Seeds: replicate r uses --synthetic_seed {study['seed']} + r and --seed {SEED_STRIDE} x ({study['seed']} + r).",
        "",
    ]
    return "\n".join(lines)


def _minutes(seconds) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f} min"


def plot_claims(path: str, claims: list[dict]) -> None:
    """Forest plot: per claim its replicate values (dots), mean (diamond) and 95% interval (bar),
    one panel per metric, the threshold as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, list[dict]] = {}
    for c in claims:
        groups.setdefault(c["metric"], []).append(c)
    if not groups:
        return
    heights = [max(1.6, 0.38 * len(g) + 0.9) for g in groups.values()]
    fig, axes = plt.subplots(len(groups), 1, figsize=(8.5, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})  # fmt: skip
    for ax, (metric, group) in zip(axes[:, 0], groups.items(), strict=True):
        for y, c in enumerate(group):
            color = "tab:green" if c["holds"] else "tab:red"
            values = [v for v in c["values"] if v is not None]
            ax.scatter(values, [y] * len(values), s=14, color="0.45", zorder=3)
            if c["ci95"][0] is not None:
                ax.plot(c["ci95"], [y, y], color=color, lw=3, alpha=0.7, zorder=2)
            if c["mean"] is not None:
                ax.scatter([c["mean"]], [y], marker="D", s=36, color=color, zorder=4)
        thresholds = sorted({c["threshold"] for c in group})
        for t in thresholds:
            ax.axvline(t, color="k", ls="--", lw=1)
        ax.set_yticks(range(len(group)))
        ax.set_yticklabels([f"{c['name']} [{c['task']}]" for c in group], fontsize=7)
        ax.invert_yaxis()
        kind = "AUROC" if metric == "auroc" else f"paired difference of {metric}"
        ax.set_title(f"{kind}: dots replicates, diamond mean, bar 95% CI (green holds)", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)


def summarise(results: list[dict], seed: int, config: dict, run_info: dict | None = None) -> dict:
    """The claims.json dict of replicates' metrics."""
    return {
        "replicates": len(results),
        "seed": seed,
        "config": config,
        "claims": compute_claims(results),
        "nll_over_bayes": nll_over_bayes(results),
        "method_means": method_means(results),
        "run": run_info or {},
    }


def write_study(workdir: str, study: dict) -> None:
    """claims.json, claims.md and claims.png in ``workdir``, each written atomically."""
    atomic_write_json(os.path.join(workdir, "claims.json"), study)
    atomic_write_text(os.path.join(workdir, "claims.md"), render_markdown(study))
    plot_claims(os.path.join(workdir, "claims.png"), study["claims"])


# ---------------------------------------------------------------- running the replicates


def replicate_config(base: TrainConfig, seed: int, r: int, workdir: str) -> TrainConfig:
    """The TrainConfig of replicate ``r``: its own folder, synthetic seed S + r, training seed."""
    return dataclasses.replace(
        base,
        workdir=os.path.join(workdir, f"rep{r}"),
        seed=SEED_STRIDE * (seed + r),
        synthetic_seed=seed + r,
        member=None,
    )


def run_replicate(cfg: TrainConfig) -> dict:
    """Train and evaluate one replicate (resuming), unless ``replicate.json`` says it is finished.

    A replicate folder holding a run with other settings is refused by the run itself
    (``run.prepare``: the saved config.json must agree).
    """
    from emenet_tf import run as run_lib

    folder = RunDir(cfg.workdir)
    done_path = folder.path(REPLICATE)
    if os.path.exists(done_path) and os.path.exists(folder.metrics_path):
        run_lib.saved_config(cfg)  # skipped, yet refused if it was run with other settings
        info = read_json(done_path)
        if info.get("generations") == cfg.generations:  # else: extended by generations, go on
            return info
    resumed = os.path.exists(folder.config_path)
    start, cpu_start = time.time(), _cpu_seconds()
    result = run_lib.run(cfg, evaluate=True, export=False)
    if "metrics" not in result:
        raise RunError(f"{cfg.workdir}: only {result['generations_complete']} generation(s) complete")
    info = {
        "wall_s": time.time() - start,
        "cpu_s": _cpu_seconds() - cpu_start,  # user + system CPU of this process: load-independent cost
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "resumed": resumed,
        "seed": cfg.seed,
        "synthetic_seed": cfg.synthetic_seed,
        "generations": cfg.generations,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    atomic_write_json(done_path, info)
    _free_memory()
    return info


def _cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _free_memory() -> None:
    import gc

    from emenet_tf._keras import keras

    keras.backend.clear_session()
    gc.collect()


def load_results(workdir: str, replicates: int) -> list[dict]:
    return [read_json(RunDir(os.path.join(workdir, f"rep{r}")).metrics_path) for r in range(replicates)]


def study_config(base: TrainConfig) -> dict:
    """The settings every replicate shares: the config less its folder, seeds and run-time fields."""
    config = {k: v for k, v in base.to_dict().items() if k not in PER_INVOCATION}
    config["seed_rule"] = f"--synthetic_seed S + r, --seed {SEED_STRIDE} (S + r)"
    return config


def run_study(base: TrainConfig, replicates: int, seed: int, workdir: str, command: str = "") -> dict:
    """Run (or resume) every replicate of the study in ``workdir``, then write the claims."""
    if replicates < 1:
        raise ConfigError(f"--replicates must be >= 1, got {replicates}")
    start = time.time()
    walls, cpus = [], []
    for r in range(replicates):
        cfg = replicate_config(base, seed, r, workdir)
        logging.info("study: replicate %d/%d in %s (--synthetic_seed %d --seed %d)",
                     r + 1, replicates, cfg.workdir, cfg.synthetic_seed, cfg.seed)  # fmt: skip
        info = run_replicate(cfg)
        walls.append(info.get("wall_s"))
        cpus.append(info.get("cpu_s"))
    run_info = {
        "command": command,
        "machine": machine(),
        "wall_s": time.time() - start,
        "replicate_wall_s": walls,
        "replicate_cpu_s": cpus,
        "python": sys.version.split()[0],
    }
    study = summarise(load_results(workdir, replicates), seed, study_config(base), run_info)
    write_study(workdir, study)
    return study


# ---------------------------------------------------------------- command line


def define_flags() -> None:
    """train.py's TrainConfig flags (one definition) plus --replicates."""
    define_config_flags()
    flags.DEFINE_integer(
        "replicates", 5, "Independent replicates K (each its own data and seeds).", lower_bound=1
    )


def main(argv) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    FLAGS = flags.FLAGS
    if FLAGS["synthetic_seed"].present:
        logging.warning("--synthetic_seed is ignored: replicate r generates its data with seed S + r")
    if FLAGS["member"].present:
        raise app.UsageError("--member is not for a study: each replicate trains whole generations")
    workdir = os.path.abspath(FLAGS.workdir if FLAGS["workdir"].present else DEFAULT_WORKDIR)
    try:
        base = config_from_flags(workdir=workdir)
        from emenet_tf import run

        run.check_paths(base)
        command = "python -m emenet_tf.study " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        study = run_study(base, FLAGS.replicates, FLAGS.seed, workdir, command)
    except (ConfigError, DataError, RunError, TrainingError, FileNotFoundError) as e:
        print(f"study: error: {e}", file=sys.stderr)
        return 2
    held = sum(c["holds"] for c in study["claims"])
    print(f"study: {held} of {len(study['claims'])} claims hold; see {os.path.join(workdir, 'claims.md')}")
    for c in study["claims"]:
        print(f"  {c['name']:45s} {c['task']:5s} mean {_fmt(c['mean'])} CI {_ci(c['ci95'])} "
              f"{'HOLDS' if c['holds'] else 'does not hold'}")  # fmt: skip
    return 0


def run_main() -> None:
    """``python -m emenet_tf.study`` (and the ``emenet-study`` console script)."""
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run_main()
