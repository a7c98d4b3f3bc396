"""Evaluation plots (matplotlib, Agg): reliability diagrams, risk-coverage curves, OOD histograms.

Each figure is written atomically as a PNG beside metrics.json. Inputs are the aligned
per-method arrays of ``evaluation.collect_predictions`` and the evaluation rows.
"""

from __future__ import annotations

import os

import numpy as np

from emenet_tf import metrics
from emenet_tf.io import atomic_path
from emenet_tf.uncertainty import normalised_entropy


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def featured(methods: dict, generations: int) -> list[str]:
    """The few methods worth a panel: first and last single, last ensemble, the Dirichlet student (its
    density score), the two baselines."""
    last = generations - 1
    names = ["gen0_single", f"gen{last}_single", f"gen{last}_ensemble", "dirichlet_density"]
    names += ["temperature_scaling", "mc_dropout"]
    return [n for i, n in enumerate(names) if n in methods and n not in names[:i]]


def _save(fig, path: str) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
    _pyplot().close(fig)


def reliability(path: str, panels: dict, title: str) -> None:
    """One reliability diagram per method: accuracy per confidence bin against the diagonal."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.3), squeeze=False)
    for ax, (name, (conf, correct)) in zip(axes[0], panels.items(), strict=True):
        bins = metrics.reliability_bins(conf, correct)
        width = 1.0 / len(bins["centers"])
        ax.bar(bins["centers"], np.nan_to_num(bins["accuracy"]), width=width, edgecolor="k", label="accuracy")
        ax.plot([0, 1], [0, 1], "r--", lw=1)
        ax.set_title(f"{name}\nECE {metrics.ece(conf, correct):.3f}", fontsize=9)
        ax.set_xlabel("confidence")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel("accuracy")
    fig.suptitle(title, y=1.04)
    _save(fig, path)


def risk_coverage(path: str, curves: dict, title: str) -> None:
    """Risk against coverage, one line per method (frames kept in order of rising uncertainty)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, (unc, err) in curves.items():
        c = metrics.risk_coverage_curve(unc, err)
        ax.plot(c["coverage"], c["risk"], label=f"{name} (AURC {c['risk'].mean():.3f})", lw=1.2)
    ax.set_xlabel("coverage")
    ax.set_ylabel("risk (error rate of the kept frames)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    _save(fig, path)


def ood_histograms(path: str, panels: dict) -> None:
    """Histograms of the OOD score, validation faces against OOD images, one panel per method."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.0), squeeze=False)
    for ax, (name, (s_in, s_out)) in zip(axes[0], panels.items(), strict=True):
        both = np.concatenate([s_in, s_out])
        lo, hi = float(both.min()), float(both.max())
        bins = np.linspace(lo, max(hi, lo + 1e-9), 30)
        ax.hist(s_in, bins=bins, alpha=0.6, density=True, label="validation")
        ax.hist(s_out, bins=bins, alpha=0.6, density=True, label="OOD")
        kind = "epistemic" if name.endswith("ensemble") or name == "mc_dropout" else "entropy"
        ax.set_title(f"{name} ({kind})", fontsize=9)
    axes[0][0].legend(fontsize=7)
    _save(fig, path)


def write_all(out_dir: str, methods: dict, index, rows: np.ndarray, generations: int) -> list[str]:
    """Write every plot for ``rows`` of the validation index; return the paths written."""
    names = featured(methods, generations)
    expr_rows = rows[index.expr_mask[rows] > 0]
    au_rows = rows[index.au_mask[rows].sum(axis=1) > 0]
    written = []
    if len(expr_rows):
        y = index.expr[expr_rows]
        panels, curves = {}, {}
        for name in methods:
            p = methods[name]["val"]["expr"][expr_rows]
            curves[name] = (normalised_entropy(p), p.argmax(1) != y)
            if name in names:
                panels[name] = (p.max(1), p.argmax(1) == y)
        written.append(os.path.join(out_dir, "reliability_expr.png"))
        reliability(written[-1], panels, "EXPR reliability (evaluation half)")
        written.append(os.path.join(out_dir, "risk_coverage_expr.png"))
        risk_coverage(written[-1], curves, "EXPR risk-coverage (evaluation half)")
    if len(au_rows):
        keep = index.au_mask[au_rows] > 0
        y = index.au[au_rows][keep]
        panels = {}
        for name in names:
            p = methods[name]["val"]["au"][au_rows][keep]
            panels[name] = (np.maximum(p, 1 - p), (p >= 0.5) == (y > 0.5))
        written.append(os.path.join(out_dir, "reliability_au.png"))
        reliability(written[-1], panels, "AU reliability, all labelled decisions (evaluation half)")
    if all("ood" in methods[n] for n in names):
        panels = {}
        for name in names[1:]:
            ood = methods[name]["ood"]
            panels[name] = (methods[name]["val"]["score"][rows], ood["score"][ood["present"]])
        written.append(os.path.join(out_dir, "ood_histograms.png"))
        ood_histograms(written[-1], panels)
    return written
