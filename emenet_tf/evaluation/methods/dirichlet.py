"""The Dirichlet student: ``dirichlet_single`` (OOD score: its closed-form epistemic uncertainty) and
``dirichlet_density`` (the same predictions; OOD score: its feature density, ``emenet_tf.density``).

Its mean prediction is alpha / alpha_0 of its concentrations (AU: a Beta per AU, P(1) = a / (a + b)).
Present only when the run has a finished Dirichlet student of its last generation.
"""

from __future__ import annotations

import os

import numpy as np
from absl import logging

from emenet_tf.density import GaussianDensity, predict_features
from emenet_tf.distributions import dirichlet_log_concentrations
from emenet_tf.evaluation.methods.common import Context, MethodInfo, Predictions, aligned, task_mean
from emenet_tf.labels import TASKS
from emenet_tf.rundir import DIRICHLET
from emenet_tf.uncertainty import dirichlet_uncertainty


def dirichlet_predictions(outputs: dict, tasks=TASKS) -> tuple[dict, np.ndarray]:
    """A Dirichlet student's mean probabilities and its epistemic score (averaged over ``tasks`` by
    ``task_mean``) from its raw outputs (logits and log-precisions)."""
    log_alpha = dirichlet_log_concentrations(outputs)
    parts = {t: dirichlet_uncertainty(np.exp(log_alpha[t].numpy().astype(np.float64))) for t in TASKS}
    probs = {t: parts[t]["mean_probs"] for t in TASKS}
    probs["au"] = probs["au"][..., 0]  # Beta(a, b) per AU: P(1) = a / (a + b)
    return probs, task_mean({t: parts[t]["epistemic"] for t in tasks}, tasks)


def predict(ctx: Context) -> list[Predictions]:
    run, cfg = ctx.run, ctx.cfg
    if not cfg.dirichlet_student or ctx.generations != cfg.generations:  # its teacher is the last generation
        return []
    if not run.dirichlet_done(cfg) or not os.path.exists(run.density_path(cfg)):
        logging.warning(
            "%s is unfinished: no dirichlet rows (run train.py to finish it)", run.dirichlet_dir(cfg)
        )
        return []
    net = run.load_member(cfg, run.dirichlet_generation(cfg), DIRICHLET)
    density = GaussianDensity.load(run.density_path(cfg))
    single = Predictions(MethodInfo("dirichlet_single", "dirichlet", "single"), {})
    by_density = Predictions(MethodInfo("dirichlet_density", "dirichlet", "density"), {})
    for split, source in ctx.sources.items():
        pred = predict_features(net, source, density.layers)
        probs, epistemic = dirichlet_predictions(pred["outputs"], ctx.tasks)
        n = ctx.size(split)
        single.splits[split] = aligned(probs, epistemic, pred["frame_id"], n)
        by_density.splits[split] = aligned(probs, density.score(pred["features"]), pred["frame_id"], n)
    return [single, by_density]
