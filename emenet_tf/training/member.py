"""Training of one ensemble member (or the Dirichlet student): build, resume, fit, keep the best epoch.

A member lives in ``<workdir>/gen<g>/member<k>/`` (paths: ``emenet_tf.rundir``):
  ckpt/                 the per-epoch checkpoint (``checkpoints``), removed when the member is done
  history.jsonl         one line of train/ and validation/ figures per epoch
  tensorboard/          the same figures as TensorBoard scalars
  best.weights.h5       weights of the best epoch by validation ABAW score (written at the end)
  done.json             written last: a finished member is skipped on a rerun
"""

from __future__ import annotations

import os
import shutil
import tempfile

import numpy as np
from absl import logging

from emenet_tf import locks
from emenet_tf._keras import keras, tf
from emenet_tf.config import TrainConfig
from emenet_tf.data import clips, pipeline, sources
from emenet_tf.data.index import FrameIndex
from emenet_tf.errors import TrainingError
from emenet_tf.io import atomic_save_weights, atomic_write_json
from emenet_tf.models import input_size, load_backbone_weights
from emenet_tf.models.heads import PRECISION_LAYERS
from emenet_tf.rundir import BEST_WEIGHTS, CHECKPOINTS, DIRICHLET, HISTORY, LOCK, RunDir, member_net
from emenet_tf.temporal_inference import frame_source
from emenet_tf.training.checkpoints import (
    EpochEnd,
    MemberState,
    readable_checkpoint,
    remove_stale_temporaries,
    truncate_history,
)
from emenet_tf.training.objectives import LossSetup
from emenet_tf.training.trainers import (
    MultitaskTrainer,
    TemporalTrainer,
    is_chief,
    make_optimizer,
    make_strategy,
)


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
    if run.is_done(generation, member) and run.reopen_if_damaged(generation, member):
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
    latest = readable_checkpoint(os.path.join(out_dir, CHECKPOINTS))
    if val_index is not None and len(val_index):
        val_source = frame_source(cfg, val_index, cfg.batch_size, bad_images=bad_images)
    with strategy.scope():
        dirichlet = member == DIRICHLET
        net = member_net(cfg, seed=seed, dirichlet=dirichlet)
        if dirichlet:
            start_from_student(net, RunDir(cfg.workdir).load_member(cfg, generation - 1, 0))
        state = MemberState(net)
        kind = TemporalTrainer if cfg.temporal else MultitaskTrainer
        setup = LossSetup.from_config(
            cfg,
            class_weights,
            soft=soft_labels is not None,
            dirichlet=dirichlet,
            tasks=train_index.labelled_tasks(),
        )
        trainer = kind(net, setup)
        trainer.compile(optimizer=make_optimizer(cfg, steps))
        ckpt = tf.train.Checkpoint(net=net, optimizer=trainer.optimizer, state=state)
        manager = tf.train.CheckpointManager(ckpt, os.path.join(out_dir, CHECKPOINTS), max_to_keep=1)
        if latest is not None:
            ckpt.restore(latest)
            logging.info("gen %d member %s: resuming after epoch %d", generation, member, int(state.epoch))
        elif cfg.backbone_weights:
            loaded = load_backbone_weights(net.frame_net if cfg.temporal else net, cfg.backbone_weights)
            logging.info("loaded %d backbone layers from %s", len(loaded), cfg.backbone_weights)
    initial_epoch = int(state.epoch.numpy())
    truncate_history(os.path.join(out_dir, HISTORY), initial_epoch)
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
            bad_images=bad_images, weights=sources.weights(cfg.sources()),
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
