"""Training of one ensemble member: losses in a Keras train step, checkpoints, resume, best epoch.

A member lives in ``<workdir>/gen<g>/member<k>/``:
  state.json            last completed epoch, best epoch and score (written atomically, last)
  ckpt/epoch_<e>/       model + optimizer checkpoint of epoch e (a directory renamed into place)
  best.weights.h5       weights of the best epoch by validation ABAW score
  history.jsonl         one line of train/ and validation/ figures per epoch
  tensorboard/          the same figures as TensorBoard scalars
  done.json             written last: a finished member is skipped on a rerun
Nothing is read unless ``state.json`` or ``done.json`` points at it, so a run killed at any
moment resumes from the last completed epoch.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

from absl import logging

from emenet_tf import losses, metrics
from emenet_tf._keras import keras, tf
from emenet_tf.config import TrainConfig
from emenet_tf.data import pipeline
from emenet_tf.data.index import FrameIndex
from emenet_tf.errors import ConfigError
from emenet_tf.inference import predict_dataset
from emenet_tf.io import atomic_path, atomic_write_json, atomic_write_text, read_json
from emenet_tf.labels import va_bin_centres
from emenet_tf.models import build_emenet, input_size, load_backbone_weights
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

    @classmethod
    def from_config(cls, cfg: TrainConfig, weights: dict, soft: bool) -> LossSetup:
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
        )


def task_losses(setup: LossSetup, batch: dict, logits: dict) -> dict:
    """Per-task losses (scalars) of one batch: hard, soft, or soft + hard_label_weight * hard."""
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
        soft = {
            "au": losses.au_soft_ce(batch["soft_au"], logits["au"]),
            "expr": losses.expr_kl(batch["soft_expr"], logits["expr"]),
            "va": losses.va_kl(batch["soft_va"], logits["va"], ccc_weight=setup.va_ccc_weight),
        }
        out = {k: soft[k] + setup.hard_label_weight * out[k] if k in out else soft[k] for k in soft}
    return out


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

    def _total(self, batch, training):
        logits = self.net(batch["image"], training=training)
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


class EpochEnd(keras.callbacks.Callback):
    """After each epoch: validation ABAW scores, logs, checkpoint, best weights, state.json."""

    def __init__(self, member_dir: str, net: keras.Model, ckpt: tf.train.Checkpoint, val_ds, state: dict):
        super().__init__()
        self.member_dir, self.net, self.ckpt, self.val_ds, self.state = member_dir, net, ckpt, val_ds, state
        self.writer = tf.summary.create_file_writer(os.path.join(member_dir, "tensorboard"))

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        scores = abaw_scores(predict_dataset(self.net, self.val_ds)) if self.val_ds is not None else {}
        record = {"epoch": epoch + 1, "lr": float(_current_lr(self.model.optimizer))}
        record.update({f"train/{k}": float(v) for k, v in logs.items() if not k.startswith("val_")})
        record.update({f"validation/{k[4:]}": float(v) for k, v in logs.items() if k.startswith("val_")})
        record.update({f"validation/{k}": v for k, v in scores.items()})
        with self.writer.as_default(step=epoch + 1):
            for name, value in record.items():
                if name != "epoch":
                    tf.summary.scalar(name, value)
        self.writer.flush()
        with open(os.path.join(self.member_dir, "history.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")
        score = scores.get("score", -float(logs.get("val_loss", logs.get("loss", 0.0))))
        if self.state.get("best_score") is None or score > self.state["best_score"]:
            with atomic_path(os.path.join(self.member_dir, "best.weights.h5")) as tmp:
                self.net.save_weights(tmp)
            self.state.update(best_score=float(score), best_epoch=epoch + 1)
        ckpt_dir = os.path.join(self.member_dir, "ckpt", f"epoch_{epoch + 1}")
        with atomic_path(ckpt_dir) as tmp:
            self.ckpt.write(os.path.join(tmp, "ckpt"))
        self.state["epoch"] = epoch + 1
        atomic_write_json(os.path.join(self.member_dir, "state.json"), self.state)
        _prune_checkpoints(os.path.join(self.member_dir, "ckpt"), keep=epoch + 1)
        logging.info("%s epoch %d: %s", self.member_dir, epoch + 1, json.dumps(record))


def _remove_stale_temporaries(out_dir: str) -> None:
    """Delete half-written files a killed run left (never read: nothing points at them)."""
    for root in (out_dir, os.path.join(out_dir, "ckpt")):
        if os.path.isdir(root):
            for name in os.listdir(root):
                if name.startswith(".tmp-"):
                    path = os.path.join(root, name)
                    shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


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


def _prune_checkpoints(ckpt_root: str, keep: int) -> None:
    for name in os.listdir(ckpt_root):
        if name.startswith("epoch_") and name != f"epoch_{keep}":
            shutil.rmtree(os.path.join(ckpt_root, name), ignore_errors=True)


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


def member_dir(cfg: TrainConfig, generation: int, member: int) -> str:
    return os.path.join(cfg.workdir, f"gen{generation}", f"member{member}")


def is_done(cfg: TrainConfig, generation: int, member: int) -> bool:
    return os.path.exists(os.path.join(member_dir(cfg, generation, member), "done.json"))


def build_member_model(cfg: TrainConfig, seed: int | None = None, mc_dropout: bool = False) -> keras.Model:
    return build_emenet(
        cfg.model, image_size=cfg.image_size, dropout=cfg.dropout, mc_dropout=mc_dropout, seed=seed
    )


def train_member(
    cfg: TrainConfig,
    generation: int,
    member: int,
    train_index: FrameIndex,
    val_index: FrameIndex | None,
    class_weights: dict,
    soft_labels: dict | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> str:
    """Train (or resume, or skip if done) one member; return the path of its best weights."""
    out_dir = member_dir(cfg, generation, member)
    best_path = os.path.join(out_dir, "best.weights.h5")
    if is_done(cfg, generation, member):
        logging.info("gen %d member %d is done; skipping", generation, member)
        return best_path
    os.makedirs(out_dir, exist_ok=True)
    state_path = os.path.join(out_dir, "state.json")
    state = read_json(state_path) if os.path.exists(state_path) else {"epoch": 0, "best_score": None}
    _truncate_history(os.path.join(out_dir, "history.jsonl"), state["epoch"])
    _remove_stale_temporaries(out_dir)
    seed = cfg.member_seed(generation, member)
    keras.utils.set_random_seed(seed)
    strategy = strategy or make_strategy(cfg.strategy)
    steps = cfg.steps_per_epoch or pipeline.steps_per_epoch(train_index, cfg.batch_size)
    image_size = resolved_image_size(cfg)
    train_ds = pipeline.make_dataset(
        train_index,
        image_size,
        cfg.batch_size,
        training=True,
        soft_labels=soft_labels,
        seed=seed,
        augment=cfg.augment,
        repeat=True,
    )
    val_ds = None
    if val_index is not None and len(val_index):
        val_ds = pipeline.make_dataset(val_index, image_size, cfg.batch_size, training=False)
    with strategy.scope():
        net = build_member_model(cfg, seed=seed)
        if cfg.backbone_weights and state["epoch"] == 0:
            loaded = load_backbone_weights(net, cfg.backbone_weights)
            logging.info("loaded %d backbone layers from %s", len(loaded), cfg.backbone_weights)
        setup = LossSetup.from_config(cfg, class_weights, soft=soft_labels is not None)
        trainer = MultitaskTrainer(net, setup)
        trainer.compile(optimizer=make_optimizer(cfg, steps))
        ckpt = tf.train.Checkpoint(net=net, optimizer=trainer.optimizer)
        if state["epoch"] > 0:
            ckpt.read(os.path.join(out_dir, "ckpt", f"epoch_{state['epoch']}", "ckpt")).expect_partial()
            logging.info("gen %d member %d: resuming after epoch %d", generation, member, state["epoch"])
    if state["epoch"] < cfg.epochs:
        trainer.fit(
            train_ds,
            epochs=cfg.epochs,
            initial_epoch=state["epoch"],
            steps_per_epoch=steps,
            callbacks=[EpochEnd(out_dir, net, ckpt, val_ds, state)],
            verbose=cfg.verbose,
        )
    atomic_write_json(
        os.path.join(out_dir, "done.json"),
        {"best_epoch": state["best_epoch"], "best_score": state["best_score"]},
    )
    shutil.rmtree(os.path.join(out_dir, "ckpt"), ignore_errors=True)
    return best_path


def resolved_image_size(cfg: TrainConfig) -> int:
    return input_size(cfg.model, cfg.image_size)


def load_member(cfg: TrainConfig, generation: int, member: int, mc_dropout: bool = False) -> keras.Model:
    """The best weights of a finished member, in a fresh model (optionally with MC Dropout on)."""
    path = os.path.join(member_dir(cfg, generation, member), "best.weights.h5")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path}: no trained weights (train generation {generation} member {member} first)"
        )
    net = build_member_model(cfg, mc_dropout=mc_dropout)
    net.load_weights(path)
    return net
