"""The evaluation report (report.md): one table per task, the limits and what the run shows.

Everything in it is computed from the metrics dict ``evaluation.evaluate_run`` writes; the claims
(``emenet_tf.claims``, the same definitions the replicate study tests) are checked on this one run's
numbers and stated plainly, whichever way they come out. A task the run's data never labelled is
named as such instead of an empty table.
"""

from __future__ import annotations

import json

from emenet_tf import claims as claims_lib
from emenet_tf.labels import TASKS

COLUMNS = {
    "expr": ("f1", "acc", "score", "nll", "ece", "brier", "aurc", "kl_true", "nll_votes", "kl_votes"),
    "au": ("f1", "acc", "score", "nll", "ece", "brier", "aurc", "kl_true"),
    "va": ("ccc_valence", "ccc_arousal", "score", "nll", "ece", "brier", "aurc", "kl_true"),
    "ood": ("auroc", "aupr"),
}
TITLES = {"expr": "EXPR (7 classes)", "au": "AU (12 Bernoulli)", "va": "VA (valence, arousal; 20 bins each)"}


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def table(methods: dict, task: str, extra_rows: dict | None = None) -> str:
    """Markdown table of ``task`` with methods as rows; columns nobody has are left out."""
    rows = {**methods, **(extra_rows or {})}
    cols = [c for c in COLUMNS[task] if any(c in (r.get(task) or {}) for r in rows.values())]
    if not cols:
        return ""
    lines = ["| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(_fmt((row.get(task) or {}).get(c)) for c in cols) + " |")
    return "\n".join(lines)


def _holds(ok) -> str:
    return "HOLDS" if ok else "DOES NOT HOLD"


def claim_lines(result: dict, generations: int) -> list[str]:
    """The claims checked on this run's numbers: one plain sentence each."""
    tasks = trained(result)
    has_dirichlet = claims_lib.DIRICHLET in result.get("methods", {})
    out = []
    if generations < 2:
        out.append(
            "The run has no student generation (--generations 1): the claims about students are not tested."
        )
    for claim in claims_lib.claims_for(generations, tasks, has_dirichlet):
        number = claims_lib.value(claim, result, generations)
        if number is None:
            out.append(f"{claim.name} [{claim.task}]: not measured on this run.")
            continue
        sign = "<" if claim.direction == "below" else ">="
        ok = claims_lib.passes(number, claim.threshold, claim.direction)
        text = f"{claim.name} [{claim.task}]: {claim.compare} = {number:+.4f} {sign} {claim.threshold:g}: {_holds(ok)}"
        if claim.strict_threshold is not None and claim.strict_threshold != claim.threshold:
            strict = claims_lib.passes(number, claim.strict_threshold, claim.direction)
            text += f" (strict form, {sign} {claim.strict_threshold:g}: {_holds(strict)})"
        out.append(text + ".")
    return out


def trained(result: dict) -> tuple[str, ...]:
    """The tasks the run's data labelled (all three unless metrics.json lists ``frames.untrained``)."""
    untrained = set(result.get("frames", {}).get("untrained", []))
    return tuple(t for t in TASKS if t not in untrained)


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
    ]
    if f.get("partial"):
        parts += ["", f"**Partial evaluation**: {f['partial']}; the rows below are what was finished."]
    parts += [
        "",
        "## What this run shows (one replicate)",
        "",
        "This is ONE run: its numbers move with the seeds and the CPU's kernels. A claim is shown only "
        "by the replicate study (`python -m emenet_tf.study --seed 0 --workdir DIR`, its 95% intervals "
        'in DIR/claims.md; README, "Results"). The checks below are this run\'s values.',
        "",
        *[f"- {c}" for c in claim_lines(result, generations)],
    ]
    oracle = result.get("limits", {}).get("oracle")
    extra = {"*Bayes (the true distribution)*": oracle} if oracle else {}
    votes = result.get("limits", {}).get("votes")
    if votes:
        extra["*the annotators' votes (floor)*"] = {
            "expr": {"nll_votes": votes["nll_votes"], "kl_votes": 0.0}
        }
    for task in TASKS:
        parts += ["", f"## {TITLES[task]}", ""]
        if task in trained(result):
            parts.append(table(result["methods"], task, extra))
        else:
            parts.append(f"No {task.upper()} labels in this run's training data: the {task.upper()} head was not "
                         "trained, is not scored, and is left out of the OOD scores and of the exported results.")  # fmt: skip
    if votes:
        parts += ["", _votes_note(votes)]
    parts += _by_dataset(result)
    if any("ood" in m for m in result["methods"].values()):
        parts += [
            "",
            "## Out of domain (validation faces negative, OOD images positive)",
            "",
            "Score: epistemic uncertainty (mutual information) for gen*_ensemble, mc_dropout and "
            "dirichlet_single (closed form from its concentrations), predictive normalised entropy for the "
            "others; each the mean over the trained tasks of the EXPR value, the mean over the 12 AUs and "
            "the mean over valence and arousal. dirichlet_density: the negative log density of the "
            "Dirichlet student's features.",
            "",
            table(result["methods"], "ood"),
        ]
    parts += _limits(result.get("limits", {}))
    parts += ["", "## Temperatures (fit half)", "", "```", json.dumps(scaler.to_dict()), "```"]
    parts += ["", "## Whole validation set", "", _full_note(full)]
    for task in (*trained(result), "ood"):
        text = table(full["methods"], task)
        if text:
            parts += ["", f"### {TITLES.get(task, 'Out of domain')}", "", text]
    parts += ["", "## Definitions", "", DEFINITIONS]
    return "\n".join(parts) + "\n"


def _votes_note(votes: dict) -> str:
    return (
        f"Against the annotators ({votes['frames']} evaluation frames with vote distributions): nll_votes is "
        "the NLL of the votes, -sum_k v_k log p_k, and kl_votes = KL(votes || prediction) = nll_votes minus "
        f"the votes' own entropy, {votes['nll_votes']:.4f} nats (normalised {votes['normalised_entropy']:.3f}): "
        "no prediction goes below that floor. ece is measured against the majority label."
    )


def _by_dataset(result: dict) -> list[str]:
    """One EXPR / AU / VA table per dataset of a run on several datasets."""
    per = result.get("by_dataset") or {}
    out = []
    for label, methods in per.items():
        out += ["", f"## Dataset {label} (its evaluation-half frames)"]
        for task in trained(result):
            text = table(methods, task)
            out += ["", f"### {TITLES[task]}", "", text or f"No {task.upper()} labels in {label}."]
    return out


def _limits(limits: dict) -> list[str]:
    if not limits.get("expected"):
        return [
            "",
            "## Limits",
            "",
            "No synthetic truth in the data (real data): no Bayes limits, no kl_true.",
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
  averaged; the true VA bins are the mass of clip(N(mean, std), -1, 1) in each bin.
- nll_votes, kl_votes: where annotators' vote distributions exist (FER+), the votes' NLL under the prediction
  and KL(votes || prediction), averaged over those frames."""
