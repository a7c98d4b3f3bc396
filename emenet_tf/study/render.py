"""The study's outputs for people: claims.md (tables, command, machine, times) and claims.png (a forest plot)."""

from __future__ import annotations

import os
import platform

from emenet_tf.claims import ECE_MARGIN, OOD_AUROC_THRESHOLD
from emenet_tf.io import atomic_path, atomic_write_json, atomic_write_text


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


def fmt(value, digits: int = 4) -> str:
    """A figure to ``digits`` places, "-" for None."""
    return "-" if value is None else f"{value:.{digits}f}"


def fmt_ci(ci) -> str:
    """A 95% interval as [low, high], or why there is none."""
    return "undefined (K=1)" if ci[0] is None else f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def render_markdown(study: dict) -> str:
    """claims.md: the claims table, the NLL / Bayes table, the method means, command, machine, time."""
    k = study["replicates"]
    lines = [
        f"# Replicate study: {k} replicate(s), seed {study['seed']}",
        "",
        "Each value is a paired difference within one replicate (the evaluation half of its validation "
        "split); a claim holds when its whole 95% t-interval over the replicates clears its threshold: "
        f"below 0 for NLL, below +{ECE_MARGIN} for ECE (non-inferiority), below 0 for the mean generation "
        f"step, >= {OOD_AUROC_THRESHOLD} for OOD AUROC. The strict column is the older, stricter form where "
        "there is one (ECE below 0; the worst generation step and every step below 0).",
        "",
        "| claim | task | compared | mean | 95% CI | threshold | holds | strict form holds | per replicate |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in study["claims"]:
        values = ", ".join(fmt(v) for v in c["values"])
        strict = c.get("strict")
        shown = "-" if strict is None else ("yes" if strict["holds"] else "no")
        lines.append(
            f"| {c['name']} | {c['task']} | {c.get('compare', '')} | {fmt(c['mean'])} | {fmt_ci(c['ci95'])} | "
            f"{c['threshold']:g} | {'**yes**' if c['holds'] else 'no'} | {shown} | {values} |"
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
                f"| {c['name']} | {c['task']} | {s['step']} | {fmt(s['mean'])} | {fmt_ci(s['ci95'])} | "
                f"{'yes' if s['holds'] else 'no'} |"
            )
    held = sum(c["holds"] for c in study["claims"])
    expr = [c for c in study["claims"] if c["task"] in ("expr", "ood")]  # the headline claims
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
            lines.append(f"| {method} | {fmt(row['mean'], 3)} | {fmt_ci(row['ci95'])} |")
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
            lines.append(f"| {method} | " + " | ".join(fmt(row.get(t, {}).get(m)) for t, m in cols) + " |")
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
        f"- Seeds (S = {study['seed']}): {study.get('config', {}).get('seed_rule', '')}.",
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


def write_study(workdir: str, study: dict) -> None:
    """claims.json, claims.md and claims.png in ``workdir``, each written atomically."""
    atomic_write_json(os.path.join(workdir, "claims.json"), study)
    atomic_write_text(os.path.join(workdir, "claims.md"), render_markdown(study))
    plot_claims(os.path.join(workdir, "claims.png"), study["claims"])
