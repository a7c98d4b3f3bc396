"""What one training step minimises: the per-task losses of a batch, hard, soft or both.

``LossSetup`` holds what the step needs besides the batch (class weights, task weights, which tasks
the run trains, whether it distils); ``task_losses`` gives the per-task scalars. Only the trained
tasks (those the training data labels) have a loss: a head whose task no dataset labels is never
taught, not even by a teacher's soft labels (they would be untrained noise).
"""

from __future__ import annotations

import dataclasses

from emenet_tf import distributions, losses
from emenet_tf._keras import tf
from emenet_tf.config import TrainConfig
from emenet_tf.data import pipeline
from emenet_tf.labels import TASKS


@dataclasses.dataclass(frozen=True)
class LossSetup:
    """What the train step needs besides the batch: class weights, task weights, label mode, tasks."""

    au_pos_weight: tuple
    expr_class_weight: tuple
    au_weight: float = 1.0
    expr_weight: float = 1.0
    va_weight: float = 1.0
    va_ccc_weight: float = 1.0
    va_ce_weight: float = 1.0
    soft: bool = False  # train on soft labels (distillation)
    hard_label_weight: float = 0.0  # with soft: weight of the ground-truth losses added
    dirichlet: bool = False  # with soft: a Dirichlet student (its precisions learn every member)
    tasks: tuple = TASKS  # the tasks trained (those the training data labels)

    @classmethod
    def from_config(
        cls, cfg: TrainConfig, weights: dict, soft: bool, dirichlet: bool = False, tasks=TASKS
    ) -> LossSetup:
        return cls(
            au_pos_weight=tuple(weights["au_pos_weight"]),
            expr_class_weight=tuple(weights["expr_class_weight"]),
            au_weight=cfg.au_weight,
            expr_weight=cfg.expr_weight,
            va_weight=cfg.va_weight,
            va_ccc_weight=cfg.va_ccc_weight,
            va_ce_weight=cfg.va_ce_weight,
            soft=soft,
            hard_label_weight=cfg.hard_label_weight,
            dirichlet=dirichlet,
            tasks=tuple(t for t in TASKS if t in tasks),
        )

    def task_weights(self) -> dict:
        return {"au": self.au_weight, "expr": self.expr_weight, "va": self.va_weight}


def task_losses(setup: LossSetup, batch: dict, logits: dict) -> dict:
    """Per-task losses (scalars) of one batch: hard, soft, or soft + hard_label_weight * hard, for the
    trained tasks. A Dirichlet student's logits are its mean prediction: the hard and soft losses
    apply to them."""
    logits = {k: tf.cast(v, tf.float32) for k, v in logits.items()}
    out = {}
    if not setup.soft or setup.hard_label_weight > 0:
        out = hard_losses(setup, batch, logits)
    if setup.soft:
        soft = (
            dirichlet_losses(setup, batch, logits) if setup.dirichlet else soft_losses(setup, batch, logits)
        )
        out = {k: soft[k] + setup.hard_label_weight * out[k] if k in out else soft[k] for k in soft}
    return out


def hard_losses(setup: LossSetup, batch: dict, logits: dict) -> dict:
    """The ground-truth losses of the trained tasks (EXPR from annotators' distributions where the
    batch has them: ``expr_dist``)."""
    parts = {
        "au": lambda: losses.au_bce(batch["au"], batch["au_mask"], logits["au"], setup.au_pos_weight),
        "expr": lambda: losses.expr_ce(
            batch["expr"], batch["expr_mask"], logits["expr"], setup.expr_class_weight, batch.get("expr_dist")
        ),
        "va": lambda: losses.va_loss(
            batch["va"], batch["va_mask"], logits["va"], setup.va_ccc_weight, setup.va_ce_weight
        ),
    }
    return {t: parts[t]() for t in TASKS if t in setup.tasks}


def soft_losses(setup: LossSetup, batch: dict, logits: dict) -> dict:
    """The paper's students: cross-entropy / KL to the teacher ensemble's mean probabilities."""
    parts = {
        "au": lambda: losses.au_soft_ce(batch["soft_au"], logits["au"]),
        "expr": lambda: losses.expr_kl(batch["soft_expr"], logits["expr"]),
        "va": lambda: losses.va_kl(batch["soft_va"], logits["va"], ccc_weight=setup.va_ccc_weight),
    }
    return {t: parts[t]() for t in TASKS if t in setup.tasks}


def dirichlet_losses(setup: LossSetup, batch: dict, outputs: dict) -> dict:
    """A Dirichlet student: the paper's soft losses teach its mean (logits), the distribution
    distillation of every teacher member (``losses.dirichlet_loss``) its precisions.

    The mean inside the Dirichlet term is held (stop_gradient) and the precision heads read
    stop-gradient features, so that term changes neither the backbone nor the mean heads (when it
    could, it swamped the mean losses: EXPR top-1 fell from 0.58 to 0.15-0.50 on the demo runs).
    """
    held = {**outputs, **{t: tf.stop_gradient(outputs[t]) for t in TASKS}}
    log_alpha = distributions.dirichlet_log_concentrations(held)
    mean = soft_losses(setup, batch, outputs)
    members = {t: batch[f"soft_{key}"] for t, key in pipeline.MEMBER_LOGITS.items()}
    return {t: mean[t] + losses.dirichlet_loss(members[t], log_alpha[t], bernoulli=t == "au") for t in mean}
