"""Evaluation of a finished run: every generation's single model and ensemble against the baselines.

``evaluate_run(workdir)`` measures, on the validation split, the methods of ``evaluation.methods``:
  gen<g>_single         member 0 of generation g
  gen<g>_ensemble       the mean of all members of generation g
  temperature_scaling   generation-0 member 0, temperatures fit on the fit half of validation
  mc_dropout            generation-0 member 0 with its head dropout active, ``mc_passes`` passes
  dirichlet_single      the Dirichlet student (``gen<G>/dirichlet``, when the run has one): its mean
                        prediction alpha / alpha_0; OOD score its epistemic uncertainty (closed form)
  dirichlet_density     the same predictions; OOD score its feature density (``emenet_tf.density``)
Design (one split for every row): the predicted validation frames are cut at random (seeded, by
frame) into a fit half, used only to fit the temperatures, and an evaluation half on which EVERY
method is measured (``metrics.json``). The same figures over all predicted validation frames
(temperature_scaling left out: half of them fit it) go to ``metrics_full.json``. Only the tasks the
run's training data labelled are measured and enter the OOD scores (``RunDir.trained_tasks``).
With several datasets, ``by_dataset`` holds each one's rows (its evaluation-half frames).
A run whose last generation (or Dirichlet student) is unfinished is refused unless
``allow_partial``: its figures then go to ``<workdir>/eval_partial`` (never over a full evaluation).
"""

from __future__ import annotations

import tempfile

import numpy as np

from emenet_tf import locks
from emenet_tf.calibration import SPLIT_SEED, split_halves
from emenet_tf.errors import ConfigError, RunError
from emenet_tf.evaluation import inputs, scoring, writing
from emenet_tf.evaluation.methods import dirichlet, generations, mc_dropout, temperature_scaling
from emenet_tf.evaluation.methods.common import ENSEMBLE_OOD_SCORE, Context
from emenet_tf.labels import TASKS
from emenet_tf.rundir import RunDir
from emenet_tf.temporal_inference import frame_source

PREDICTIVE = (generations, dirichlet, mc_dropout)  # in the order of metrics.json's rows


def evaluate_run(
    workdir: str,
    ood_dir: str | None = None,
    out_dir: str | None = None,
    mc_passes: int = 10,
    seed: int = SPLIT_SEED,
    batch_size: int | None = None,
    allow_partial: bool = False,
) -> dict:
    """Evaluate every method of the run in ``workdir``; write metrics.json, report.md and plots.

    ood_dir: images for the OOD columns (default: the synthetic benchmark's ``ood/`` when the run
    uses it, else none). out_dir: where the results go (default ``<workdir>/eval``, or
    ``<workdir>/eval_partial`` for a partial evaluation); it must be empty, absent or an earlier
    evaluation. seed: the fit / evaluation split. Returns the content of metrics.json.
    """
    if mc_passes < 2:
        raise ConfigError(f"--mc_passes must be >= 2, got {mc_passes}")
    run = RunDir(workdir)
    with locks.hold(run.eval_lock_path, f"{run.root} (evaluation)"):
        cfg = run.load_config()
        done = inputs.evaluable_generations(run, cfg)
        partial = inputs.unfinished(run, cfg, done)
        if partial and not allow_partial:
            raise RunError(
                f"{run.root}: {partial}; evaluate it when training has finished, or pass --allow_partial "
                f"to evaluate what is finished into {run.path('eval_partial')}"
            )
        out_dir = out_dir or (run.path("eval_partial") if partial else run.eval_dir)
        writing.check_out_dir(out_dir)
        tasks = run.trained_tasks()
        index = inputs.validation_index(run, cfg)
        ood_dir = ood_dir if ood_dir is not None else inputs.default_ood_dir(run, cfg)
        with tempfile.TemporaryDirectory(prefix="emenet-ood-") as work:
            indices = {"val": index}
            if ood_dir is not None:
                indices["ood"] = inputs.ood_index(ood_dir, work)
            # A temporal run reads whole video segments; the OOD images are unrelated, each a segment alone.
            size = batch_size or cfg.batch_size
            frame_sources = {
                s: frame_source(cfg, ix, size, independent=s == "ood") for s, ix in indices.items()
            }
            ctx = Context(run, cfg, done, indices, frame_sources, tasks, mc_passes)
            methods = [p for module in PREDICTIVE for p in module.predict(ctx)]
        present = np.logical_and.reduce([m.splits["val"]["present"] for m in methods])
        fit_rows, eval_rows = split_halves(present, seed)
        by_name = {m.info.name: m for m in methods}
        scaled, scaler = temperature_scaling.fit(by_name["gen0_single"], index, fit_rows, tasks)
        methods.append(scaled)
        truth = inputs.aligned_truth(run, cfg, index)
        result, full = score(methods, index, present, eval_rows, truth, tasks, "ood" in indices)
        if truth is not None:
            result["limits"] = scoring.bayes_limits(truth, index, eval_rows, truth["folder"])
        votes = scoring.votes_floor(index, eval_rows)
        if votes:
            result["limits"]["votes"] = votes
        result["frames"] = inputs.frame_counts(index, present, fit_rows, eval_rows, methods, seed, ood_dir)
        result["frames"]["ood_score"] = ENSEMBLE_OOD_SCORE
        untrained = [t for t in TASKS if t not in tasks]
        result["frames"].update({"untrained": untrained} if untrained else {})
        result["frames"].update({"partial": partial} if partial else {})
        full["frames"] = {**result["frames"], "evaluated": int(present.sum())}
        result, full = scoring.clean(result), scoring.clean(full)
        writing.write_outputs(out_dir, result, full, methods, index, eval_rows, scaler, done)
        return result


def _ordered(methods: list) -> list:
    """The rows of metrics.json: generations (single, ensemble) in order, then the others in a fixed order."""
    rank = {"dirichlet_single": 0, "dirichlet_density": 1, "temperature_scaling": 2, "mc_dropout": 3}
    kind = {"single": 0, "ensemble": 1}
    gens = sorted(
        (m for m in methods if m.info.family == "generation"),
        key=lambda m: (m.info.generation, kind[m.info.kind]),
    )
    others = sorted((m for m in methods if m.info.family != "generation"), key=lambda m: rank[m.info.name])
    return gens + others


def score(methods, index, present, eval_rows, truth, tasks, with_ood: bool) -> tuple[dict, dict]:
    """(metrics.json, metrics_full.json) dicts: every method on the evaluation half (and per dataset),
    and every method but temperature_scaling on all predicted frames."""
    result = {"methods": {}, "limits": {}}
    full = {"methods": {}}
    every = np.flatnonzero(present)
    for m in _ordered(methods):
        name = m.info.name
        result["methods"][name] = _rows(m, index, eval_rows, truth, tasks, with_ood)
        if name != temperature_scaling.INFO.name:
            full["methods"][name] = _rows(m, index, every, truth, tasks, with_ood)
    if index.source is not None:
        result["by_dataset"] = {
            label: {m.info.name: _rows(m, index, eval_rows[index.source[eval_rows] == label], truth, tasks, False)
                    for m in _ordered(methods)}
            for label in dict.fromkeys(index.source.tolist())
        }  # fmt: skip
    return result, full


def _rows(method, index, rows, truth, tasks, with_ood: bool) -> dict:
    out = scoring.measure(method.splits["val"], index, rows, truth, tasks)
    if with_ood:
        out["ood"] = scoring.ood_metrics(method.splits, rows)
    return out
