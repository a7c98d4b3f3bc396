"""MC Dropout (Gal and Ghahramani 2016): generation 0's member 0 with its head dropout active at inference.

The model is rebuilt with ``mc_dropout=True`` and averaged over ``passes`` stochastic forward passes;
``mc_predict`` checks that the passes really differ (the reference code never switched dropout on).
The OOD score is the epistemic uncertainty (mutual information) of the passes.
"""

from __future__ import annotations

import numpy as np
from absl import logging

from emenet_tf._keras import keras
from emenet_tf.evaluation.methods.common import Context, MethodInfo, Predictions, aligned, epistemic_score
from emenet_tf.inference import predict_dataset
from emenet_tf.labels import TASKS
from emenet_tf.temporal_inference import predict_frames


def mc_predict(model, dataset, passes: int = 10, predict=predict_dataset) -> dict:
    """MC Dropout predictions of ``model`` (built with ``mc_dropout=True``): the mean over ``passes``.

    Returns ``inference.predict_dataset``'s dict with ``members_<task>`` holding the passes
    (passes, N, ...). Raises RuntimeError when every pass is identical: dropout is not active.
    predict: the function that reads ``dataset`` (``temporal_inference.predict_frames`` for a
    temporal model's segments).
    """
    if passes < 2:
        raise ValueError(f"MC Dropout needs at least 2 passes, got {passes}")
    pred = predict(model, dataset, passes=passes, keep_members=True)
    spread = max(float(np.abs(pred[f"members_{t}"] - pred[f"members_{t}"][:1]).max()) for t in TASKS)
    if spread == 0.0:
        raise RuntimeError(
            f"MC Dropout: all {passes} passes of {model.name} are identical; its dropout is not active "
            "at inference (build it with mc_dropout=True and a dropout rate > 0)"
        )
    return pred


def predict(ctx: Context) -> list[Predictions]:
    if ctx.cfg.dropout <= 0:
        logging.warning("the run has --dropout 0: no MC Dropout row")
        return []
    # Its dropout masks come from the global random state: seeded here, so a run's own evaluation
    # and evaluate.py later (another process history) draw the same masks and the same figures.
    keras.utils.set_random_seed(ctx.cfg.seed)
    model = ctx.run.load_member(ctx.cfg, 0, 0, mc_dropout=True)
    out = Predictions(MethodInfo("mc_dropout", "baseline", "mc_dropout", 0), {})
    for split, source in ctx.sources.items():
        pred = mc_predict(model, source, ctx.mc_passes, predict=predict_frames)
        members = {t: pred[f"members_{t}"] for t in TASKS}
        mean = {t: pred[t] for t in TASKS}
        out.splits[split] = aligned(
            mean, epistemic_score(members, ctx.tasks), pred["frame_id"], ctx.size(split)
        )
    return [out]
