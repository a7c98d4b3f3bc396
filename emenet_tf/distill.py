"""Iterative distillation: soft labels from a generation's ensemble, then the next generation.

Generation 0 is a deep ensemble trained on the hard labels. Generation g+1 trains
``ensemble_size`` fresh students on the mean probabilities of generation g's members over every
training frame (no augmentation), stored atomically in ``gen<g>/soft_labels.npz`` with the
frame keys ("video/frame") so a stale file can never be attached to the wrong frames.
"""

from __future__ import annotations

import os

import numpy as np
from absl import logging

from emenet_tf import locks
from emenet_tf.config import TrainConfig
from emenet_tf.data import pipeline
from emenet_tf.data.index import FrameIndex
from emenet_tf.errors import DataError
from emenet_tf.io import atomic_save_npz
from emenet_tf.labels import TASKS
from emenet_tf.models import input_size
from emenet_tf.rundir import RunDir
from emenet_tf.temporal_inference import frame_source, predict_frames
from emenet_tf.training import make_strategy, remove_stale_temporaries, train_member


def ensemble_probabilities(models, index: FrameIndex, image_size: int, batch_size: int, source=None) -> dict:
    """Mean member probabilities for every row of ``index`` (rows whose image is unreadable: uniform).

    source: what ``temporal_inference.predict_frames`` reads (default: the per-frame dataset of
    ``index``; a temporal run passes its ``Segments``, so every frame is predicted in its video).
    """
    ds = (
        source if source is not None else pipeline.make_dataset(index, image_size, batch_size, training=False)
    )
    pred = predict_frames(models, ds)
    n = len(index)
    shapes = {
        "au": (n, pred["au"].shape[1]),
        "expr": (n, pred["expr"].shape[1]),
        "va": (n,) + pred["va"].shape[1:],
    }
    out = {}
    for task in TASKS:
        fill = 0.5 if task == "au" else 1.0 / shapes[task][-1]
        array = np.full(shapes[task], fill, np.float32)
        array[pred["frame_id"]] = pred[task]
        out[task] = array
    out["predicted"] = np.zeros(n, bool)
    out["predicted"][pred["frame_id"]] = True
    return out


def make_soft_labels(cfg: TrainConfig, generation: int, train_index: FrameIndex) -> dict:
    """Compute (or load, if already stored for these frames) generation ``generation``'s soft labels.

    Parallel ``--member`` jobs of the next generation all need them: the first computes them
    under the generation's lock, the others wait for it and load the file.
    """
    run = RunDir(cfg.workdir)
    path = run.soft_labels_path(generation)
    folder = run.generation_dir(generation)
    with locks.hold(os.path.join(folder, ".soft_labels.lock"), f"{path}", wait=True):
        if os.path.exists(path):
            return load_soft_labels(path, train_index)
        remove_stale_temporaries(folder)
        models = [run.load_member(cfg, generation, k) for k in range(cfg.ensemble_size)]
        size = input_size(cfg.model, cfg.image_size)
        source = frame_source(cfg, train_index, cfg.batch_size)
        probs = ensemble_probabilities(models, train_index, size, cfg.batch_size, source)
        missing = int((~probs["predicted"]).sum())
        if missing:
            logging.warning("soft labels: %d frames had unreadable images and got uniform labels", missing)
        atomic_save_npz(path, keys=train_index.keys(), **{t: probs[t] for t in TASKS})
        logging.info("wrote %s (%d frames, ensemble of %d)", path, len(train_index), len(models))
    return {t: probs[t] for t in TASKS}


def load_soft_labels(path: str, index: FrameIndex) -> dict:
    """Soft labels stored at ``path``, checked to belong to exactly the frames of ``index``."""
    with np.load(path) as data:
        keys = data["keys"]
        if keys.shape[0] != len(index) or not np.array_equal(keys, index.keys()):
            raise DataError(
                f"soft labels were made for {keys.shape[0]} other frames than the "
                f"{len(index)} training frames now indexed; delete it to recompute",
                path=path,
            )
        return {t: data[t] for t in TASKS}


def members_to_train(cfg: TrainConfig) -> list[int]:
    return [cfg.member] if cfg.member is not None else list(range(cfg.ensemble_size))


def run_generations(
    cfg: TrainConfig, train_index: FrameIndex, val_index: FrameIndex | None, class_weights: dict
) -> int:
    """Train every generation (resuming what exists); return the number of complete generations."""
    run = RunDir(cfg.workdir)
    strategy = None
    for generation in range(cfg.generations):
        soft = None
        if generation > 0:
            if not run.generation_done(cfg, generation - 1):
                logging.warning(
                    "generation %d needs all %d members of generation %d; run the other members first",
                    generation,
                    cfg.ensemble_size,
                    generation - 1,
                )
                return generation
            soft = make_soft_labels(cfg, generation - 1, train_index)
        for member in members_to_train(cfg):
            logging.info("generation %d member %d", generation, member)
            if strategy is None and not run.is_done(generation, member):
                strategy = make_strategy(cfg.strategy)
            train_member(cfg, generation, member, train_index, val_index, class_weights, soft, strategy)
    return cfg.generations
