"""The Keras models that train an EMENet: one per-frame trainer and one for temporal (clip) batches,
the optimizer with the paper's step decay, and the tf.distribute strategy.

``MultitaskTrainer`` wraps an EMENet so that ``fit`` trains it on the pipeline's batch dicts with the
masked multitask losses of ``objectives.task_losses``; ``TemporalTrainer`` does the same for a
temporal EMENet on batches of clips, its backbone and heads taken from the model's attributes
(``frame_net``, ``heads``).
"""

from __future__ import annotations

import os

from emenet_tf._keras import keras, tf
from emenet_tf.config import TrainConfig
from emenet_tf.errors import ConfigError
from emenet_tf.training.objectives import LossSetup, task_losses


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
        weights = self.setup.task_weights()
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

    A batch is a clip batch or a dict of them (``member.training_data``: {"clips": clips of T frames,
    "frames": single frames}). The backbone runs once, in one call, on the present frames of all
    of them: padding and missing frames never enter the BatchNorm statistics, and the statistics
    see every part. The GRU heads run over each part's clips (masked steps carry the state); the
    per-frame losses of ``task_losses`` apply to all present frames at once.
    """

    def _forward(self, batch, training):
        parts = [batch] if "image" in batch else [batch[k] for k in sorted(batch)]
        where = [tf.cast(tf.where(tf.reshape(p["frame_mask"] > 0, [-1])), tf.int32) for p in parts]
        images = [tf.gather_nd(_frames_of(p["image"]), w) for p, w in zip(parts, where, strict=True)]
        embeddings = tf.split(
            self.net.frame_net(tf.concat(images, 0), training=training), [tf.shape(i)[0] for i in images]
        )
        labels, logits = [], []
        for part, rows, embedding in zip(parts, where, embeddings, strict=True):
            mask = part["frame_mask"]
            dense = tf.scatter_nd(rows, embedding, tf.stack([tf.size(mask), tf.shape(embedding)[1]]))
            dense = tf.reshape(dense, tf.concat([tf.shape(mask), tf.shape(embedding)[1:]], 0))
            out = self.net.heads([dense, mask], training=training)
            labels.append({k: tf.gather_nd(_frames_of(v), rows) for k, v in part.items() if k not in _INPUTS})
            logits.append({k: tf.gather_nd(_frames_of(v), rows) for k, v in out.items()})
        return _concat(labels), _concat(logits)


_INPUTS = ("image", "frame_mask")


def _frames_of(value):
    """(B, T, ...) -> (B * T, ...)."""
    return tf.reshape(value, tf.concat([[-1], tf.shape(value)[2:]], 0))


def _concat(dicts: list) -> dict:
    return {k: tf.concat([d[k] for d in dicts], 0) for k in dicts[0]}


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


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run folder: always, except a non-chief multi-worker task."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief
