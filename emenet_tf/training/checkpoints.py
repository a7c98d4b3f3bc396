"""A member's epochs on disk: one checkpoint per epoch with everything a resume needs, the best epoch, the logs.

``MemberState`` (last completed epoch, best score and epoch, the best weights) is saved with the
model and optimizer in ONE ``tf.train.CheckpointManager`` checkpoint per epoch by ``EpochEnd``,
which also scores the epoch on validation (``abaw_scores``) and writes history.jsonl and
TensorBoard. TensorFlow replaces the checkpoint's state file atomically after the data is written,
so a run killed at any moment resumes from the last completed epoch; history lines of later epochs
are dropped on resume (``truncate_history``).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil

from absl import logging

from emenet_tf import metrics
from emenet_tf._keras import keras, tf
from emenet_tf.errors import TrainingError, WriteError
from emenet_tf.io import atomic_write_text, describe_os_error, short_reason
from emenet_tf.labels import va_bin_centres
from emenet_tf.rundir import HISTORY, TEMPORARY_PREFIX, TENSORBOARD
from emenet_tf.temporal_inference import predict_frames
from emenet_tf.uncertainty import va_expectation


def abaw_scores(pred: dict) -> dict:
    """ABAW2 recognition scores of predictions against the labels that are present."""
    out = {}
    expr_rows = pred["label_expr_mask"] > 0
    if expr_rows.any():
        y = pred["label_expr"][expr_rows]
        out["expr_score"] = metrics.expr_score(y, pred["expr"][expr_rows].argmax(-1))
    au_mask = pred["label_au_mask"] > 0
    if au_mask.any():
        out["au_score"] = metrics.au_scores(pred["label_au"], pred["au"], mask=au_mask)["score"]
    va_rows = pred["label_va_mask"].min(axis=1) > 0
    if va_rows.sum() > 1:
        values = va_expectation(pred["va"], va_bin_centres(pred["va"].shape[-1]))
        out["va_score"] = metrics.va_scores(pred["label_va"][va_rows], values[va_rows])["score"]
    out["score"] = float(sum(out.values()))
    return {k: float(v) for k, v in out.items()}


class MemberState(tf.Module):
    """What a resume needs besides the model and optimizer, kept in the same checkpoint.

    ``epoch`` (last completed), ``best_score`` / ``best_epoch`` and a copy of the model's weights
    at its best epoch: one ``CheckpointManager.save`` writes all of it at once, so a kill at any
    moment leaves either the previous epoch's checkpoint or this one, never a mix.
    """

    def __init__(self, net: keras.Model):
        super().__init__(name="member_state")
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.best_score = tf.Variable(-math.inf, dtype=tf.float64, trainable=False)
        self.best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.best_weights = [tf.Variable(w, trainable=False) for w in net.weights]

    def keep_best(self, net: keras.Model, score: float, epoch: int) -> None:
        self.best_score.assign(score)
        self.best_epoch.assign(epoch)
        for copy, weight in zip(self.best_weights, net.weights, strict=True):
            copy.assign(weight)

    def restore_best(self, net: keras.Model) -> None:
        for weight, copy in zip(net.weights, self.best_weights, strict=True):
            weight.assign(copy)


class EpochEnd(keras.callbacks.Callback):
    """After each epoch: validation ABAW scores, logs, the best weights kept, one checkpoint saved."""

    def __init__(
        self, member_dir: str, net, manager: tf.train.CheckpointManager, state: MemberState, val_source
    ):
        super().__init__()
        self.member_dir, self.net, self.manager, self.state, self.val_source = (
            member_dir,
            net,
            manager,
            state,
            val_source,
        )
        self.writer = tf.summary.create_file_writer(os.path.join(member_dir, TENSORBOARD))

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        loss = float(logs.get("loss", 0.0))
        if not math.isfinite(loss):
            raise TrainingError(
                f"{self.member_dir}: the training loss became {loss} in epoch {epoch + 1} "
                "(learning rate too high for this model?); the member is not marked finished"
            )
        scores = abaw_scores(predict_frames(self.net, self.val_source)) if self.val_source is not None else {}
        record = {"epoch": epoch + 1, "lr": float(_current_lr(self.model.optimizer))}
        record.update({f"train/{k}": float(v) for k, v in logs.items() if not k.startswith("val_")})
        record.update({f"validation/{k}": v for k, v in scores.items()})
        with self.writer.as_default(step=epoch + 1):
            for name, value in record.items():
                if name != "epoch":
                    tf.summary.scalar(name, value)
        history = os.path.join(self.member_dir, HISTORY)
        try:
            self.writer.flush()
            with open(history, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as err:
            raise WriteError(f"{history}: cannot write ({describe_os_error(err)})") from None
        score = scores.get("score", -loss)
        if math.isfinite(score) and score > float(self.state.best_score.numpy()):
            self.state.keep_best(self.net, score, epoch + 1)
        self.state.epoch.assign(epoch + 1)
        try:
            self.manager.save(checkpoint_number=epoch + 1)
        except tf.errors.OpError as err:
            # "{{function_node ...}} ...; No space left on device [Op:...]" -> "No space left on device"
            first = re.sub(r"\{\{.*?\}\}\s*", "", (err.message.strip().splitlines() or [""])[0])
            reason = first.rsplit("; ", 1)[-1].split(" [Op:")[0] or type(err).__name__
            raise WriteError(f"{self.manager.directory}: cannot write the checkpoint ({reason})") from None
        logging.info("%s epoch %d: %s", self.member_dir, epoch + 1, json.dumps(record))


def readable_checkpoint(folder: str) -> str | None:
    """The latest checkpoint in ``folder`` if every tensor of it reads back, else None.

    A checkpoint cut short (a kill during its save, a disk fault) is not trusted: its folder is
    removed with one warning line naming it and the reason, so the member starts again from its
    start (only one checkpoint is kept: there is no earlier good one to fall back to).
    """
    latest = tf.train.latest_checkpoint(folder) if os.path.isdir(folder) else None
    if latest is None:
        return None
    try:
        reader = tf.train.load_checkpoint(latest)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except (tf.errors.OpError, ValueError, IndexError, OSError, RuntimeError) as err:
        reason = short_reason(err)
        logging.warning("%s is unreadable (%s): the member starts again from its first epoch", latest, reason)
        shutil.rmtree(folder, ignore_errors=True)
        return None
    return latest


def remove_stale_temporaries(folder: str) -> None:
    """Delete half-written files a killed run left in ``folder`` (never read: nothing points at them)."""
    if not os.path.isdir(folder):
        return
    for name in os.listdir(folder):
        if name.startswith(TEMPORARY_PREFIX):
            path = os.path.join(folder, name)
            shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)


def truncate_history(path: str, last_epoch: int) -> None:
    """Drop history lines of epochs after the last completed one (a run killed mid-epoch)."""
    if not os.path.exists(path):
        return
    kept = []
    with open(path) as f:
        for line in f:
            try:
                if json.loads(line)["epoch"] <= last_epoch:
                    kept.append(line if line.endswith("\n") else line + "\n")
            except (ValueError, KeyError):  # a line torn by the kill
                continue
    atomic_write_text(path, "".join(kept))


def _current_lr(optimizer):
    lr = optimizer.learning_rate
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
        lr = lr(optimizer.iterations)
    return keras.backend.get_value(lr)
