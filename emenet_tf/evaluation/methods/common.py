"""What every evaluated method shares: its description (data, never a parsed string), aligned arrays, scores.

A method's predictions are ``Predictions``: its ``MethodInfo`` and, per split ("val", "ood"), arrays
aligned to the rows of that split's FrameIndex (``aligned``: nan where the method predicted no
frame, ``present`` marks the rows it did; ``score`` is its OOD score per row). The OOD scores
average per-task scores over the tasks the run trained (``task_mean``), so a head that never saw a
label never enters them.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from edge.uncertainty import bernoulli_entropy, ensemble_uncertainty, normalised_entropy
from emenet_tf.labels import TASKS

# The OOD score of ensembles and MC Dropout, as metrics.json's frames.ood_score records it.
ENSEMBLE_OOD_SCORE = "epistemic"


def generation_method(generation: int, kind: str) -> str:
    """The metrics.json row of a generation's model: ``gen<g>_single`` or ``gen<g>_ensemble``."""
    return f"gen{generation}_{kind}"


@dataclasses.dataclass(frozen=True)
class MethodInfo:
    """One evaluated method: its row name in metrics.json and what it is.

    family: "generation" (gen<g>_single / gen<g>_ensemble), "dirichlet" or "baseline";
    kind: "single", "ensemble", "density", "temperature_scaling" or "mc_dropout";
    generation: the generation its models belong to (None: not a generation's model).
    """

    name: str
    family: str
    kind: str
    generation: int | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Predictions:
    """A method's description and its aligned arrays per split."""

    info: MethodInfo
    splits: dict


def aligned(probs: dict, score: np.ndarray, frame_id: np.ndarray, n: int) -> dict:
    """Arrays indexed by index row (nan where the frame was not predicted) plus ``present``."""
    out = {"present": np.zeros(n, bool)}
    out["present"][frame_id] = True
    for key, value in {**probs, "score": score}.items():
        full = np.full((n,) + value.shape[1:], np.nan)
        full[frame_id] = value
        out[key] = full
    return out


def task_mean(per_task: dict, tasks=TASKS) -> np.ndarray:
    """One score per frame from per-task scores, each trained task weighing the same: the EXPR value
    (N,), the mean over the 12 AUs (N, 12) and the mean over valence and arousal (N, 2), averaged
    over ``tasks``, summed in the order expr, au, va (the order the figures were first made in)."""
    reduce = {"expr": lambda v: v, "au": lambda v: v.mean(axis=-1), "va": lambda v: v.mean(axis=-1)}
    return np.mean([reduce[t](per_task[t]) for t in ("expr", "au", "va") if t in tasks], axis=0)


def entropy_score(probs: dict, tasks=TASKS) -> np.ndarray:
    """Predictive uncertainty per frame: normalised entropies averaged over tasks (``task_mean``)."""
    entropies = {
        "expr": lambda: normalised_entropy(probs["expr"]),
        "au": lambda: bernoulli_entropy(probs["au"]),
        "va": lambda: normalised_entropy(probs["va"]),
    }
    return task_mean({t: entropies[t]() for t in tasks}, tasks)


def epistemic_score(members: dict, tasks=TASKS) -> np.ndarray:
    """Epistemic uncertainty (mutual information) per frame, averaged over tasks (``task_mean``).

    members: {task: (M, N, ...) probabilities of the ensemble members or MC Dropout passes}."""
    kind = {t: "bernoulli" if t == "au" else "categorical" for t in TASKS}
    return task_mean({t: ensemble_uncertainty(members[t], kind[t])["epistemic"] for t in tasks}, tasks)


@dataclasses.dataclass
class Context:
    """What a predictive method needs: the run, how many generations to evaluate, the splits.

    indices: {split: FrameIndex} ("val", and "ood" when there are OOD images); sources: {split: what
    ``temporal_inference.predict_frames`` reads}; tasks: the tasks the run trained; mc_passes: MC
    Dropout's passes.
    """

    run: object
    cfg: object
    generations: int
    indices: dict
    sources: dict
    tasks: tuple
    mc_passes: int = 10

    def size(self, split: str) -> int:
        return len(self.indices[split])
