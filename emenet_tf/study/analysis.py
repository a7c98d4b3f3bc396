"""From the replicates' metrics.json to claims.json: every claim of ``emenet_tf.claims`` with its interval.

A claim's per-replicate value is ``claims.value`` (a paired difference within a replicate, the mean
generation step, or a figure itself); over the K replicates its mean and 95% t-interval are
reported (``statistics``) and it holds when the whole interval clears its threshold. Claims with a
stricter old form (ECE below 0; the worst generation step and every step below 0) report it under
``strict``, labelled, beside the claim. ``nll_over_bayes``: each method's EXPR NLL over the Bayes
limit of the same replicate; ``method_means``: every figure's mean over the replicates.
"""

from __future__ import annotations

import numpy as np

from emenet_tf import claims as claims_lib
from emenet_tf.claims import metric_value
from emenet_tf.study.statistics import summary, t_interval


def compute_claims(results: list[dict], generations: int, tasks) -> list[dict]:
    """The claims over the replicates' metrics dicts (``eval/metrics.json`` contents), in order.

    generations: the generations every replicate evaluated; tasks: the tasks they trained. A claim no
    replicate has a figure for (e.g. kl_true on real data, MC Dropout without dropout) is left out.
    """
    with_dirichlet = any(metric_value(r, claims_lib.DIRICHLET, "ood", "auroc") is not None for r in results)
    out = []
    for claim in claims_lib.claims_for(generations, tasks, with_dirichlet):
        values = [claims_lib.value(claim, r, generations) for r in results]
        if all(v is None for v in values):
            continue
        row = {
            "name": claim.name,
            "task": claim.task,
            "metric": claim.metric,
            **summary(values, claim.threshold, claim.direction),
        }
        row["compare"] = claim.compare
        if claim.kind == "mean_step":
            row.update(_steps(claim, results, generations))
        elif claim.strict_threshold is not None:
            strict = summary(values, claim.strict_threshold, claim.direction)
            row["strict"] = {
                "form": f"the whole interval {claim.direction} {claim.strict_threshold:g}",
                "holds": strict["holds"],
            }
        out.append(row)
    return out


def _steps(claim, results: list[dict], generations: int) -> dict:
    """Each generation step's interval, and the old strict form: the worst step per replicate (and every
    step) below 0."""
    per_replicate = [claims_lib.steps(claim, r, generations) for r in results]
    steps = []
    for g in range(generations - 1):
        values = [s[g] for s in per_replicate]
        steps.append({"step": f"gen{g}->gen{g + 1}", **summary(values, 0.0, "below")})
    worst = [None if any(v is None for v in s) else max(s) for s in per_replicate]
    strict = summary(worst, claim.strict_threshold, "below")
    return {
        "steps": steps,
        "strict": {
            "form": "the worst step per replicate below 0, and every step below 0",
            "values": strict["values"],
            "mean": strict["mean"],
            "ci95": strict["ci95"],
            "holds": bool(strict["holds"] and all(s["holds"] for s in steps)),
        },
    }


def bayes_nll(result: dict, task: str = "expr"):
    """The Bayes limit of ``task``'s NLL: the truth measured on the sampled labels (oracle), else expected."""
    limits = result.get("limits") or {}
    value = (limits.get("oracle") or {}).get(task, {}).get("nll")
    if value is None and task == "expr":
        value = (limits.get("expected") or {}).get("expr_nll")
    return value


def nll_over_bayes(results: list[dict], task: str = "expr") -> dict:
    """{method: {values, mean, ci95}}: each method's NLL over the Bayes limit, per replicate."""
    methods = list(results[0].get("methods", {})) if results else []
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


def summarise(
    results: list[dict], generations: int, tasks, seed: int, config: dict, run_info: dict | None = None
) -> dict:
    """The claims.json dict of replicates' metrics."""
    return {
        "replicates": len(results),
        "seed": seed,
        "config": config,
        "claims": compute_claims(results, generations, tasks),
        "nll_over_bayes": nll_over_bayes(results),
        "method_means": method_means(results),
        "run": run_info or {},
    }
