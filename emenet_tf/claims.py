"""The package's claims and their thresholds, defined once: the study tests them, report.md checks one run.

Each claim is a number per run (a replicate), computed from its metrics.json:
  student_nll_below_<baseline>        NLL(last single student) - NLL(baseline); holds when the whole
                                      95% interval over replicates lies below 0 (strictly better)
  student_ece_noninferior_<baseline>  ECE(student) - ECE(baseline); holds when the whole interval lies
                                      below +ECE_MARGIN (non-inferiority, margin fixed before the
                                      studies that test it); the strict form (below 0) is printed beside
  <metric>_falls_each_generation      the MEAN step over generations of metric(gen g+1 single) -
                                      metric(gen g single), for nll and kl_true; holds when the whole
                                      interval lies below 0; each step's interval is printed, and the
                                      old strict form (the worst step and every step below 0) beside
  ensemble_ood_auroc_at_least_0.9     the last student ensemble's OOD AUROC; the whole interval >= 0.9
  dirichlet_ood_auroc_at_least_0.9    the Dirichlet student's (density score) OOD AUROC, the same
  dirichlet_ood_auroc_above_ensemble  its AUROC minus the ensemble's; the whole interval >= 0
for the baselines temperature_scaling and mc_dropout and the tasks the runs trained. Method names
are built from the number of generations (``generation_method``), never parsed out of a name.
"""

from __future__ import annotations

import dataclasses

from emenet_tf.evaluation.methods.common import generation_method
from emenet_tf.labels import TASKS

BASELINES = ("temperature_scaling", "mc_dropout")
ECE_MARGIN = 0.01  # non-inferiority margin of the ECE claims (decided after the K = 8 study)
OOD_AUROC_THRESHOLD = 0.9
DIRICHLET = "dirichlet_density"


@dataclasses.dataclass(frozen=True)
class Claim:
    """One claim: its name, task, metric, how its per-run value is formed and when it holds.

    kind: "difference" (``method`` minus ``other``), "value" (``method``'s own figure) or
    "mean_step" (the mean over generations of the step gen g -> g+1 of the single models).
    The claim holds when the whole 95% interval is ``direction`` ("below" / "at_least")
    ``threshold``; ``strict_threshold`` (if any) is the old, stricter form printed beside it.
    """

    name: str
    task: str
    metric: str
    kind: str
    method: str | None
    other: str | None
    threshold: float
    direction: str
    strict_threshold: float | None = None

    @property
    def compare(self) -> str:
        if self.kind == "mean_step":
            return "mean step: mean over g of gen<g+1>_single - gen<g>_single"
        if self.kind == "value":
            return f"{self.method} {self.metric.upper()} (not a difference)"
        return f"{self.method} - {self.other}"


def claims_for(generations: int, tasks=TASKS, with_dirichlet: bool = True) -> list[Claim]:
    """The claims of runs with ``generations`` generations, in order (tasks in ``labels.TASKS`` order)."""
    student = generation_method(generations - 1, "single")
    out = []
    for task in (t for t in TASKS if t in tasks):
        if generations >= 2:
            for baseline in BASELINES:
                out.append(
                    Claim(
                        f"student_nll_below_{baseline}",
                        task,
                        "nll",
                        "difference",
                        student,
                        baseline,
                        0.0,
                        "below",
                    )
                )
            for baseline in BASELINES:
                out.append(
                    Claim(
                        f"student_ece_noninferior_{baseline}", task, "ece", "difference", student, baseline,
                        ECE_MARGIN, "below", strict_threshold=0.0,
                    )
                )  # fmt: skip
            for metric in ("nll", "kl_true"):
                out.append(
                    Claim(
                        f"{metric}_falls_each_generation",
                        task,
                        metric,
                        "mean_step",
                        None,
                        None,
                        0.0,
                        "below",
                        0.0,
                    )
                )
    ensemble = generation_method(generations - 1, "ensemble")
    auroc = f"at_least_{OOD_AUROC_THRESHOLD}"
    out.append(
        Claim(
            f"ensemble_ood_auroc_{auroc}",
            "ood",
            "auroc",
            "value",
            ensemble,
            None,
            OOD_AUROC_THRESHOLD,
            "at_least",
        )
    )
    if with_dirichlet:
        out.append(
            Claim(
                f"dirichlet_ood_auroc_{auroc}",
                "ood",
                "auroc",
                "value",
                DIRICHLET,
                None,
                OOD_AUROC_THRESHOLD,
                "at_least",
            )
        )
        out.append(
            Claim(
                "dirichlet_ood_auroc_above_ensemble",
                "ood",
                "auroc",
                "difference",
                DIRICHLET,
                ensemble,
                0.0,
                "at_least",
            )
        )
    return out


def metric_value(result: dict, method: str, task: str, metric: str):
    """One number of a metrics.json dict (``result["methods"][method][task][metric]``), None if absent."""
    return result.get("methods", {}).get(method, {}).get(task, {}).get(metric)


def steps(claim: Claim, result: dict, generations: int) -> list:
    """A mean_step claim's steps in one run: metric(gen g+1 single) - metric(gen g single), g = 0..G-2."""
    values = [
        metric_value(result, generation_method(g, "single"), claim.task, claim.metric)
        for g in range(generations)
    ]
    return [
        None if a is None or b is None else float(b) - float(a)
        for a, b in zip(values[:-1], values[1:], strict=True)
    ]


def value(claim: Claim, result: dict, generations: int):
    """The claim's number in one run (None when a figure it needs is missing)."""
    if claim.kind == "mean_step":
        found = steps(claim, result, generations)
        return None if not found or any(v is None for v in found) else sum(found) / len(found)
    a = metric_value(result, claim.method, claim.task, claim.metric)
    if claim.kind == "value":
        return a
    b = metric_value(result, claim.other, claim.task, claim.metric)
    return None if a is None or b is None else float(a) - float(b)


def passes(number, threshold: float, direction: str) -> bool:
    """Whether ``number`` lies ``direction`` ("below": <, "at_least": >=) ``threshold``."""
    if number is None:
        return False
    if direction == "below":
        return bool(number < threshold)
    if direction == "at_least":
        return bool(number >= threshold)
    raise ValueError(f"direction must be 'below' or 'at_least', got {direction!r}")
