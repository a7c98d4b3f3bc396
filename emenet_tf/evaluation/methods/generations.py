"""Every finished generation's member 0 (``gen<g>_single``) and its ensemble mean (``gen<g>_ensemble``).

Each model sees each split once: a member's probabilities serve its single row and the ensemble
mean alike. The single model's OOD score is its predictive entropy, the ensemble's its epistemic
uncertainty (mutual information), both averaged over the trained tasks.
"""

from __future__ import annotations

import gc

from emenet_tf.evaluation.methods.common import (
    Context,
    MethodInfo,
    Predictions,
    aligned,
    entropy_score,
    epistemic_score,
    generation_method,
)
from emenet_tf.labels import TASKS
from emenet_tf.temporal_inference import predict_frames


def predict(ctx: Context) -> list[Predictions]:
    out = []
    for g in range(ctx.generations):
        models = [ctx.run.load_member(ctx.cfg, g, k) for k in range(ctx.cfg.ensemble_size)]
        single = Predictions(MethodInfo(generation_method(g, "single"), "generation", "single", g), {})
        ensemble = Predictions(MethodInfo(generation_method(g, "ensemble"), "generation", "ensemble", g), {})
        for split, source in ctx.sources.items():
            pred = predict_frames(models, source, keep_members=True)
            members = {t: pred[f"members_{t}"] for t in TASKS}
            first = {t: members[t][0] for t in TASKS}
            mean = {t: pred[t] for t in TASKS}
            n = ctx.size(split)
            single.splits[split] = aligned(first, entropy_score(first, ctx.tasks), pred["frame_id"], n)
            ensemble.splits[split] = aligned(mean, epistemic_score(members, ctx.tasks), pred["frame_id"], n)
        out += [single, ensemble]
        del models
        gc.collect()
    return out
