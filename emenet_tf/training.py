"""Training of one ensemble member: losses in a Keras train step, checkpoints, resume, best epoch.

A member lives in ``<workdir>/gen<g>/member<k>/`` (paths: ``emenet_tf.rundir``):
  ckpt/                 tf.train.CheckpointManager: model, optimizer and ``MemberState`` (last
                        completed epoch, best score and epoch, the best weights) in one checkpoint
  history.jsonl         one line of train/ and validation/ figures per epoch
  tensorboard/          the same figures as TensorBoard scalars
  best.weights.h5       weights of the best epoch by validation ABAW score (written at the end)
  done.json             written last: a finished member is skipped on a rerun; ckpt/ is then removed
The checkpoint's state file is replaced atomically by TensorFlow after the data is written, so a
run killed at any moment resumes from the last completed epoch; history lines of later epochs
are dropped on resume.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import tempfile

import numpy as np
from absl import logging

from emenet_tf import distributions, locks, losses, metrics
from emenet_tf._keras import keras, tf
from emenet_tf.config import TrainConfig
from emenet_tf.data import clips, pipeline
from emenet_tf.data.index import FrameIndex
from emenet_tf.errors import ConfigError, TrainingError, WriteError
from emenet_tf.io import atomic_save_weights, atomic_write_json, atomic_write_text, describe_os_error
from emenet_tf.labels import TASKS, va_bin_centres
from emenet_tf.models import input_size, load_backbone_weights
from emenet_tf.models import temporal as tm
from emenet_tf.models.heads import PRECISION_LAYERS
from emenet_tf.rundir import (
    BEST_WEIGHTS,
    CHECKPOINTS,
    DIRICHLET,
    HISTORY,
    LOCK,
    TEMPORARY_PREFIX,
    TENSORBOARD,
    RunDir,
    member_net,
)
from emenet_tf.temporal_inference import frame_source, predict_frames
from emenet_tf.uncertainty import va_expectation


@dataclasses.dataclass(frozen=True)
class LossSetup:
    """What the train step needs besides the batch: class weights, task weights, label mode."""

    au_pos_weight: tuple
    expr_class_weight: tuple
    au_weight: float = 1.0
    expr_weight: float = 1.0
    va_weight: float = 1.0
    va_ccc_weight: float = 1.0
    va_ce_weight: float = 1.0
    soft: bool = False  # train on soft labels (distillation)
    hard_label_weight: float = 0.0  # with soft: weight of the ground-truth losses added
    dirichlet: str | None = None  # with soft: a Dirichlet student's target (config.DIRICHLET_TARGETS)

    @classmethod
    def from_config(cls, cfg: TrainConfig, weights: dict, soft: bool, dirichlet: bool = False) -> LossSetup:
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
            dirichlet=cfg.dirichlet_target if dirichlet else None,
        )


def task_losses(setup: LossSetup, batch: dict, logits: dict) -> dict:
    """Per-task losses (scalars) of one batch: hard, soft, or soft + hard_label_weight * hard.

    A Dirichlet student's logits are its mean prediction: the hard and soft losses apply to them.
    """
    logits = {k: tf.cast(v, tf.float32) for k, v in logits.items()}
    out = {}
    if not setup.soft or setup.hard_label_weight > 0:
        out["au"] = losses.au_bce(batch["au"], batch["au_mask"], logits["au"], setup.au_pos_weight)
        out["expr"] = losses.expr_ce(
            batch["expr"], batch["expr_mask"], logits["expr"], setup.expr_class_weight
        )
        out["va"] = losses.va_loss(
            batch["va"], batch["va_mask"], logits["va"], setup.va_ccc_weight, setup.va_ce_weight
        )
    if setup.soft:
        soft = (
            dirichlet_losses(setup, batch, logits) if setup.dirichlet else soft_losses(setup, batch, logits)
        )
        out = {k: soft[k] + setup.hard_label_weight * out[k] if k in out else soft[k] for k in soft}
    return out


def soft_losses(setup: LossSetup, batch: dict, logits: dict) -> dict:
    """The paper's students: cross-entropy / KL to the teacher ensemble's mean probabilities."""
    return {
        "au": losses.au_soft_ce(batch["soft_au"], logits["au"]),
        "expr": losses.expr_kl(batch["soft_expr"], logits["expr"]),
        "va": losses.va_kl(batch["soft_va"], logits["va"], ccc_weight=setup.va_ccc_weight),
    }


def dirichlet_losses(setup: LossSetup, batch: dict, outputs: dict) -> dict:
    """A Dirichlet student: the paper's soft losses teach its mean (logits), the distribution
    distillation of every teacher member (``losses.dirichlet_loss``) its precisions.

    The mean inside the Dirichlet term is held (stop_gradient) and the precision heads read
    stop-gradient features, so that term changes neither the backbone nor the mean heads. Measured
    on the demo runs: when the Dirichlet likelihood may move them, it swamps the mean losses (top-1
    0.58 -> 0.15-0.50, NLL up), whether it moves the mean or only the precision.
    """
    held = {**outputs, **{t: tf.stop_gradient(outputs[t]) for t in ("au", "expr", "va")}}
    log_alpha = distributions.dirichlet_log_concentrations(held)
    mean = soft_losses(setup, batch, outputs)
    members = {t: batch[f"soft_{key}"] for t, key in pipeline.MEMBER_LOGITS.items()}
    target = setup.dirichlet
    return {
        t: mean[t] + losses.dirichlet_loss(members[t], log_alpha[t], target, bernoulli=t == "au")
        for t in mean
    }


class MultitaskTrainer(keras.Model):
    """Wraps an EMENet so ``fit`` trains it on batch dicts with masked multitask losses."""

    def __init__(self, net: keras.Model, setup: LossSetup, **kwargs):
        super().__init__(**kwargs)
        self.net = net
        self.setup = setup
        self.trackers = {name: keras.metrics.Mean(name=name) for name in ("loss", "au", "expr", "va")}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, inputs, training=False):
        return self.net(inputs, training=training)

    def _forward(self, batch, training):
        """(labels, logits) the losses compare, one row per frame."""
        return batch, self.net(batch["image"], training=training)

    def _total(self, batch, training):
        batch, logits = self._forward(batch, training)
        parts = task_losses(self.setup, batch, logits)
        weights = {"au": self.setup.au_weight, "expr": self.setup.expr_weight, "va": self.setup.va_weight}
        total = tf.add_n([weights[k] * v for k, v in parts.items()])
        if self.net.losses:
            total += tf.add_n(self.net.losses)
        return total, parts

    def train_step(self, batch):
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            total, parts = self._total(batch, training=True)
            scaled = total / replicas
            if isinstance(self.optimizer, keras.mixed_precision.LossScaleOptimizer):
                scaled = self.optimizer.get_scaled_loss(scaled)
        grads = tape.gradient(scaled, self.net.trainable_variables)
        if isinstance(self.optimizer, keras.mixed_precision.LossScaleOptimizer):
            grads = self.optimizer.get_unscaled_gradients(grads)
        self.optimizer.apply_gradients(zip(grads, self.net.trainable_variables, strict=True))
        return self._update(total, parts)

    def test_step(self, batch):
        total, parts = self._total(batch, training=False)
        return self._update(total, parts)

    def _update(self, total, parts):
        self.trackers["loss"].update_state(total)
        for name, value in parts.items():
            self.trackers[name].update_state(value)
        return {name: m.result() for name, m in self.trackers.items()}


class TemporalTrainer(MultitaskTrainer):
    """Trains a temporal EMENet on clip batches (``clips.make_clip_dataset``).

    A batch is a clip batch or a dict of them (``training_data``: {"clips": clips of T frames,
    "frames": single frames}). The backbone runs once, in one call, on the present frames of all
    of them: padding and missing frames never enter the BatchNorm statistics, and the statistics
    see every part. The GRU heads run over each part's clips (masked steps carry the state); the
    per-frame losses of ``task_losses`` apply to all present frames at once.

    ``residual`` heads (the per-frame heads plus a Dense on the GRU): the single frames train the
    backbone and the per-frame heads as a per-frame run trains an EMENet; the clips train the GRU
    and its Dense alone, on the clips' embeddings and per-frame logits held (stop_gradient), so the
    GRU learns what earlier frames add to the per-frame part, warm after a clip's first frame as in
    inference. Trained end to end on both parts, the per-frame part co-adapted with the GRU and was
    far weaker on its own; the clips' embeddings computed in inference mode instead (BatchNorm from
    the single frames alone) scored lower (docs/RESEARCH.md, section 14).
    """

    def __init__(self, net: keras.Model, setup: LossSetup, **kwargs):
        super().__init__(net, setup, **kwargs)
        self.frames, self.heads = tm.frame_net(net), tm.heads_net(net)
        residual = tm.head_kind(net) == "residual"
        self.residual = (tm.frame_heads(net), tm.residual_parts(net)) if residual else None

    def _logits(self, part: str | None, embedding, mask, training):
        """The logits of one batch part (``part``: its key, None for a plain clip batch)."""
        if self.residual is None or part is None:
            return self.heads([embedding, mask], training=training)
        single, both = self.residual
        if part == "frames":
            return single(embedding, training=training)
        out = both([tf.stop_gradient(embedding), mask], training=training)
        return {t: tf.stop_gradient(out[f"{t}_frame"]) + out[f"{t}_recurrent"] for t in TASKS}

    def _forward(self, batch, training):
        names = [None] if "image" in batch else sorted(batch)
        parts = [batch] if "image" in batch else [batch[k] for k in names]
        where = [tf.cast(tf.where(tf.reshape(p["frame_mask"] > 0, [-1])), tf.int32) for p in parts]
        images = [tf.gather_nd(_frames_of(p["image"]), w) for p, w in zip(parts, where, strict=True)]
        embeddings = tf.split(
            self.frames(tf.concat(images, 0), training=training), [tf.shape(i)[0] for i in images]
        )
        labels, logits = [], []
        for name, part, rows, embedding in zip(names, parts, where, embeddings, strict=True):
            mask = part["frame_mask"]
            dense = tf.scatter_nd(rows, embedding, tf.stack([tf.size(mask), tf.shape(embedding)[1]]))
            dense = tf.reshape(dense, tf.concat([tf.shape(mask), tf.shape(embedding)[1:]], 0))
            out = self._logits(name, dense, mask, training)
            labels.append({k: tf.gather_nd(_frames_of(v), rows) for k, v in part.items() if k not in _INPUTS})
            logits.append({k: tf.gather_nd(_frames_of(v), rows) for k, v in out.items()})
        return _concat(labels), _concat(logits)


_INPUTS = ("image", "frame_mask")


def _frames_of(value):
    """(B, T, ...) -> (B * T, ...)."""
    return tf.reshape(value, tf.concat([[-1], tf.shape(value)[2:]], 0))


def _concat(dicts: list) -> dict:
    return {k: tf.concat([d[k] for d in dicts], 0) for k in dicts[0]}


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


def remove_stale_temporaries(folder: str) -> None:
    """Delete half-written files a killed run left in ``folder`` (never read: nothing points at them)."""
    if not os.path.isdir(folder):
        return
    for name in os.listdir(folder):
        if name.startswith(TEMPORARY_PREFIX):
            path = os.path.join(folder, name)
            shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)


def _truncate_history(path: str, last_epoch: int) -> None:
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


def make_optimizer(cfg: TrainConfig, steps: int) -> keras.optimizers.Optimizer:
    """Adam with the paper's step decay: x lr_decay_factor every lr_decay_epochs epochs."""
    boundaries = [steps * cfg.lr_decay_epochs * k for k in range(1, cfg.epochs // cfg.lr_decay_epochs + 1)]
    values = [cfg.learning_rate * cfg.lr_decay_factor**k for k in range(len(boundaries) + 1)]
    schedule = (
        keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values) if boundaries else values[0]
    )
    return keras.optimizers.Adam(learning_rate=schedule)


def make_strategy(name: str) -> tf.distribute.Strategy:
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ConfigError(
                "--strategy=multi_worker needs the TF_CONFIG environment variable (cluster and task)"
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ConfigError(f"unknown strategy {name!r}")


def train_member(
    cfg: TrainConfig,
    generation: int,
    member: int | str,
    train_index: FrameIndex,
    val_index: FrameIndex | None,
    class_weights: dict,
    soft_labels: dict | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> str:
    """Train (or resume, or skip if done) one member; return the path of its best weights.

    The member's folder is locked while it trains: a second process on the same member refuses
    with one line naming the holder (locks.LockHeld). Under MultiWorkerMirroredStrategy only the
    chief writes the member's folder; the other workers keep their checkpoints in a temporary one.
    """
    run = RunDir(cfg.workdir)
    best_path = run.best_weights_path(generation, member)
    if run.is_done(generation, member):
        logging.info("gen %d member %s is done; skipping", generation, member)
        return best_path
    strategy = strategy or make_strategy(cfg.strategy)
    out_dir = run.member_dir(generation, member)
    if not is_chief(strategy):  # the same steps (and collective reads) as the chief, in a scratch folder
        with tempfile.TemporaryDirectory(prefix="emenet-worker-") as scratch:
            net, state, _ = _fit_member(
                cfg, generation, member, scratch, train_index, val_index, class_weights, soft_labels, strategy
            )
            _save_best(net, state, os.path.join(scratch, BEST_WEIGHTS))
        return best_path
    os.makedirs(out_dir, exist_ok=True)
    with locks.hold(os.path.join(out_dir, LOCK), f"{out_dir} (generation {generation} member {member})"):
        if run.is_done(generation, member):  # finished by the process that held the lock before
            return best_path
        remove_stale_temporaries(out_dir)
        net, state, bad_images = _fit_member(
            cfg, generation, member, out_dir, train_index, val_index, class_weights, soft_labels, strategy
        )
        _save_best(net, state, best_path)
        done = {
            "best_epoch": int(state.best_epoch.numpy()),
            "best_score": float(state.best_score.numpy()),
            "dropped_images": bad_images.summary(),  # frames of this run's data the pipeline could not use
        }
        atomic_write_json(run.done_path(generation, member), done)
        shutil.rmtree(os.path.join(out_dir, CHECKPOINTS), ignore_errors=True)
    return best_path


def _save_best(net: keras.Model, state: MemberState, path: str) -> None:
    """Put the best epoch's weights back into ``net`` and write them to ``path``."""
    state.restore_best(net)
    atomic_save_weights(net, path)


def _fit_member(
    cfg, generation, member, out_dir, train_index, val_index, class_weights, soft_labels, strategy
):
    """Build, restore the latest checkpoint in ``out_dir`` if any, and fit to ``cfg.epochs``."""
    seed = cfg.member_seed(generation, member)
    keras.utils.set_random_seed(seed)
    bad_images = pipeline.BadImageLog()  # every frame the pipeline drops, named, for done.json
    train_ds, steps = training_data(cfg, train_index, soft_labels, seed, bad_images)
    steps = cfg.steps_per_epoch or steps
    val_source = None
    if val_index is not None and len(val_index):
        val_source = frame_source(cfg, val_index, cfg.batch_size, bad_images=bad_images)
    with strategy.scope():
        dirichlet = member == DIRICHLET
        net = member_net(cfg, seed=seed, dirichlet=dirichlet)
        if dirichlet:
            start_from_student(net, RunDir(cfg.workdir).load_member(cfg, generation - 1, 0))
        state = MemberState(net)
        kind = TemporalTrainer if cfg.temporal else MultitaskTrainer
        setup = LossSetup.from_config(cfg, class_weights, soft=soft_labels is not None, dirichlet=dirichlet)
        trainer = kind(net, setup)
        trainer.compile(optimizer=make_optimizer(cfg, steps))
        ckpt = tf.train.Checkpoint(net=net, optimizer=trainer.optimizer, state=state)
        manager = tf.train.CheckpointManager(ckpt, os.path.join(out_dir, CHECKPOINTS), max_to_keep=1)
        if manager.latest_checkpoint:
            ckpt.restore(manager.latest_checkpoint)
            logging.info("gen %d member %s: resuming after epoch %d", generation, member, int(state.epoch))
        elif cfg.backbone_weights:
            loaded = load_backbone_weights(tm.frame_net(net) if cfg.temporal else net, cfg.backbone_weights)
            logging.info("loaded %d backbone layers from %s", len(loaded), cfg.backbone_weights)
    initial_epoch = int(state.epoch.numpy())
    _truncate_history(os.path.join(out_dir, HISTORY), initial_epoch)
    if initial_epoch < cfg.epochs:
        trainer.fit(
            train_ds,
            epochs=cfg.epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps,
            callbacks=[EpochEnd(out_dir, net, manager, state, val_source)],
            verbose=cfg.verbose,
        )
    if int(state.best_epoch.numpy()) == 0:
        raise TrainingError(f"{out_dir}: no epoch gave a finite validation score; nothing to keep")
    return net, state, bad_images


def start_from_student(net: keras.Model, student: keras.Model) -> None:
    """A Dirichlet student starts as the paper's student (member 0 of its teacher generation, the
    one exported as ``student``): that model's weights in every layer of the same name, all of them
    frozen but the precision heads (``PRECISION_LAYERS``), which alone learn.

    So its mean prediction - and its in-domain NLL, ECE and int8 conversion - are the paper
    student's, and one int8 model adds the ensemble's epistemic uncertainty and an OOD score to
    it. Measured against a fresh student trained beside the precision heads (docs/ARCHITECTURE.md):
    the same OOD AUROC, and the fresh backbone needed one more float stage in int8.
    """
    for layer in student.layers:
        if layer.weights:
            net.get_layer(layer.name).set_weights(layer.get_weights())
    for layer in net.layers:
        layer.trainable = layer.name in PRECISION_LAYERS


def training_data(cfg: TrainConfig, index: FrameIndex, soft_labels: dict | None, seed: int, bad_images=None):
    """(endless training dataset, steps per epoch): batches of ``--batch_size`` frames, and for a
    temporal run also ``cfg.clips_per_batch()`` clips of ``cfg.temporal`` frames in each batch.
    bad_images: the ``pipeline.BadImageLog`` every dropped image is named in.

    Temporal batches are {"frames": single frames (clips of 1: a stream's first frame, zero
    state), "clips": clips}: the single frames give the backbone and its BatchNorm statistics as
    many independent images per step as a per-frame run (measured: clips alone, 8 per batch,
    trained far worse than 64 frames: neighbouring frames are nearly the same image), the clips
    teach the GRUs to carry evidence over time. An epoch passes every frame once alone and about
    once (stride T) in a clip: twice the backbone work of a per-frame epoch, the same steps.
    """
    size = input_size(cfg.model, cfg.image_size)
    steps = pipeline.steps_per_epoch(index, cfg.batch_size)
    if not cfg.temporal:
        ds = pipeline.make_dataset(
            index, size, cfg.batch_size, True, soft_labels, seed=seed, augment=cfg.augment, repeat=True,
            bad_images=bad_images,
        )  # fmt: skip
        return ds, steps
    parts = {}
    for i, (part, (length, stride, per_batch)) in enumerate(
        {
            "frames": (1, 1, cfg.batch_size),
            "clips": (cfg.temporal, cfg.clip_stride(), cfg.clips_per_batch()),
        }.items()
    ):
        table = clips.clip_table(index, length, stride, cfg.temporal_max_gap)
        part_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])  # own order and jitter
        parts[part] = clips.make_clip_dataset(
            index, table, size, per_batch, True, soft_labels, seed=part_seed, augment=cfg.augment, repeat=True,
            bad_images=bad_images,
        )  # fmt: skip
        logging.info("%s: %d clips of %d frame(s), %d per batch", part, len(table), length, per_batch)
    return tf.data.Dataset.zip(parts), steps


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run folder: always, except a non-chief multi-worker task."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief
