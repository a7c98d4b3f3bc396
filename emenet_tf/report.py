"""The evaluation report (report.md): one table per task, the limits and what the run shows.

Everything in it is computed from the metrics dict ``evaluation.evaluate_run`` writes; the claims
of the issue are checked on those numbers and stated plainly, whichever way they come out.
"""

from __future__ import annotations

import json

COLUMNS = {
    "expr": ("f1", "acc", "score", "nll", "ece", "brier", "aurc", "kl_true"),
    "au": ("f1", "acc", "score", "nll", "ece", "brier", "aurc", "kl_true"),
    "va": ("ccc_valence", "ccc_arousal", "score", "nll", "ece", "brier", "aurc", "kl_true"),
    "ood": ("auroc", "aupr"),
}
TITLES = {"expr": "EXPR (7 classes)", "au": "AU (12 Bernoulli)", "va": "VA (valence, arousal; 20 bins each)"}
OOD_AUROC_TARGET = 0.9


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def table(methods: dict, task: str, extra_rows: dict | None = None) -> str:
    """Markdown table of ``task`` with methods as rows; columns nobody has are left out."""
    rows = {**methods, **(extra_rows or {})}
    cols = [c for c in COLUMNS[task] if any(c in r.get(task, {}) for r in rows.values())]
    if not cols:
        return ""
    lines = ["| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(row.get(task, {}).get(c)) for c in cols) + " |")
    return "\n".join(lines)


def metric_value(result: dict, method: str, task: str, metric: str):
    """One number of a metrics.json dict (``result["methods"][method][task][metric]``), None if absent."""
    return result.get("methods", {}).get(method, {}).get(task, {}).get(metric)


ENSEMBLE_SCORES = {  # --ood_score
    "epistemic": "epistemic uncertainty (mutual information)",
    "total": "total uncertainty (normalised entropy of the mean prediction)",
}


def _holds(ok) -> str:
    return "HOLDS" if ok else "DOES NOT HOLD"


def _ood_score(result: dict) -> str:
    return result.get("frames", {}).get("ood_score", "epistemic")


def claims(result: dict, generations: int) -> list[str]:
    """The issue's claims checked on the numbers: one plain sentence each."""
    last = generations - 1
    single, ens = f"gen{last}_single", f"gen{last}_ensemble"
    out = []
    if last == 0:
        out.append(
            "The run has no student generation (--generations 1): the claims about students are not tested."
        )
    for metric in ("nll", "ece"):
        ours = metric_value(result, single, "expr", metric)
        rivals = {b: metric_value(result, b, "expr", metric) for b in ("temperature_scaling", "mc_dropout")}
        rivals = {b: v for b, v in rivals.items() if v is not None}
        if ours is None or not rivals:
            out.append(f"EXPR {metric.upper()}: not measurable (no labelled EXPR frames or no baseline).")
            continue
        ok = all(ours < v for v in rivals.values())
        vs = ", ".join(f"{b} {_fmt(v)}" for b, v in rivals.items())
        out.append(f"{single} has lower EXPR {metric.upper()} ({_fmt(ours)}) than {vs}: {_holds(ok)}.")
    auroc = metric_value(result, ens, "ood", "auroc")
    if auroc is None:
        out.append(f"OOD AUROC of {ens}: not measured (no OOD images).")
    else:
        ok = auroc >= OOD_AUROC_TARGET
        out.append(
            f"{ens} ({_ood_score(result)}) separates OOD images with AUROC {_fmt(auroc)} >= {OOD_AUROC_TARGET}: {_holds(ok)}."
        )
    for metric in ("nll", "kl_true"):
        series = [metric_value(result, f"gen{g}_single", "expr", metric) for g in range(generations)]
        if generations < 2 or any(v is None for v in series):
            if metric == "kl_true" and all(v is None for v in series):
                out.append("KL to the true EXPR distribution: not measured (no synthetic truth).")
            continue
        ok = all(b < a for a, b in zip(series[:-1], series[1:], strict=True))
        path = " -> ".join(_fmt(v) for v in series)
        out.append(f"Single-model EXPR {metric} falls at every generation ({path}): {_holds(ok)}.")
    return out


def render(result: dict, full: dict, scaler, generations: int) -> str:
    """The whole report.md."""
    f = result["frames"]
    parts = [
        "# Evaluation",
        "",
        f"Validation: {f['validation']} frames indexed, {f['predicted']} predicted by every model. They were "
        f"split at random by frame (seed {f['split_seed']}) into a fit half of {f['fit']} frames, used ONLY to "
        f"fit the temperatures of temperature_scaling, and an evaluation half of {f['evaluated']} frames on which "
        f"EVERY row below is measured (labelled there: EXPR {f['expr_labelled']}, AU {f['au_labelled']}, "
        f"VA {f['va_labelled']} frames). "
        + (f"OOD: {f['ood']} images from {f['ood_dir']}." if f["ood"] else "No OOD images: no OOD column."),
        "",
        "## What this run shows (one replicate)",
        "",
        "This is ONE run: its numbers move with the seeds and the CPU's kernels. A claim is shown only "
        "by the replicate study (`python -m emenet_tf.study --replicates 5 --seed 0 --workdir DIR`, its "
        '95% intervals in DIR/claims.md; README, "Results"). The checks below are this run\'s values.',
        "",
        *[f"- {c}" for c in claims(result, generations)],
    ]
    oracle = result.get("limits", {}).get("oracle")
    extra = {"*Bayes (the true distribution)*": oracle} if oracle else None
    for task in ("expr", "au", "va"):
        parts += ["", f"## {TITLES[task]}", "", table(result["methods"], task, extra)]
    if any("ood" in m for m in result["methods"].values()):
        parts += [
            "",
            "## Out of domain (validation faces negative, OOD images positive)",
            "",
            f"Score: {ENSEMBLE_SCORES[_ood_score(result)]} for gen*_ensemble and mc_dropout, epistemic "
            "uncertainty for dirichlet_single (closed form from its concentrations), predictive normalised "
            "entropy for the "
            "others; both the mean of the EXPR value, the mean over the 12 AUs and the mean over valence and "
            "arousal. dirichlet_density: the negative log density of the Dirichlet student's features.",
            "",
            table(result["methods"], "ood"),
        ]
    parts += _limits(result.get("limits", {}))
    parts += ["", "## Temperatures (fit half)", "", "```", json.dumps(scaler.to_dict()), "```"]
    parts += ["", "## Whole validation set", "", _full_note(full)]
    for task in ("expr", "au", "va", "ood"):
        text = table(full["methods"], task)
        if text:
            parts += ["", f"### {TITLES.get(task, 'Out of domain')}", "", text]
    parts += ["", "## Definitions", "", DEFINITIONS]
    return "\n".join(parts) + "\n"


def _limits(limits: dict) -> list[str]:
    if not limits:
        return [
            "",
            "## Limits",
            "",
            "No synthetic truth in the data folder (real data): no limits, no kl_true.",
        ]
    out = ["", "## Bayes limits (synthetic benchmark)", ""]
    exp = limits["expected"]
    out.append(
        f"Expected scores of the true label distribution used as the prediction, on the {exp.get('frames')} "
        "evaluation frames (no sampling noise; NLL in nats): "
        + ", ".join(f"{k} {_fmt(v)}" for k, v in exp.items() if k != "frames")
        + ". The *Bayes* rows of the tables measure the same truth on the sampled labels, with the same code."
    )
    if limits.get("meta_validation"):
        meta = limits["meta_validation"]
        out += [
            "",
            "synthetic_meta.json, whole validation split: " + ", ".join(f"{k} {v}" for k, v in meta.items()),
        ]
    return out


def _full_note(full: dict) -> str:
    return (
        f"All {full['frames']['evaluated']} predicted validation frames. temperature_scaling is left out: half "
        "of these frames fit its temperatures."
    )


DEFINITIONS = """- EXPR: f1 macro over 7 classes, acc, score = 0.67 f1 + 0.33 acc; AU: f1 mean per-AU (threshold 0.5), acc over
  all labelled decisions, score = 0.5 f1 + 0.5 acc; VA: CCC of the bin expectation, score = their mean.
- nll, brier: per labelled frame (EXPR), per labelled decision (AU), per labelled value over its 20 bins (VA).
- ece: 10 equal-width confidence bins (EXPR max probability; AU all decisions flattened, max(p, 1-p); VA bins).
- aurc: area under the risk-coverage curve ranking frames by the normalised entropy of the (mean) prediction
  (total uncertainty for ensembles and MC Dropout). Risk: EXPR 0/1 error, AU mean decision error over the
  frame's labelled AUs, VA mean absolute error of the expectation. Lower is better.
- kl_true: KL(true || predicted) per frame (EXPR), per AU decision (AU), per V/A bin distribution (VA),
  averaged; the true VA bins are the mass of clip(N(mean, std), -1, 1) in each bin."""
