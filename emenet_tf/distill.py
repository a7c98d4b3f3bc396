"""Iterative distillation: soft labels from a generation's ensemble, then the next generation.

Generation 0 is a deep ensemble trained on the hard labels. Generation g+1 trains
``ensemble_size`` fresh students on the mean probabilities of generation g's members over every
training frame (no augmentation), stored atomically in ``gen<g>/soft_labels.npz`` with the
frame keys ("video/frame") so a stale file can never be attached to the wrong frames. The file
also holds every member's logits (``pipeline.MEMBER_LOGITS``, float16: < 1% relative error on any
probability, half the size of float32), which the Dirichlet student learns from.

After the last generation (``cfg.dirichlet_student``), one Dirichlet student distils the last
ensemble's distribution of predictions (``train_dirichlet_student``), and its feature density is
fit on the training frames (``emenet_tf.density``).
"""

from __future__ import annotations

import os
import zipfile

import numpy as np
from absl import logging

from emenet_tf import calibration, density, locks
from emenet_tf.config import TrainConfig
from emenet_tf.data import pipeline
from emenet_tf.data.index import FrameIndex
from emenet_tf.errors import ConfigError, DataError, RunError
from emenet_tf.inference import to_logits
from emenet_tf.io import atomic_save_npz, atomic_write_json, short_reason
from emenet_tf.labels import TASKS
from emenet_tf.models import input_size
from emenet_tf.rundir import DIRICHLET, RunDir
from emenet_tf.temporal_inference import frame_source, predict_frames
from emenet_tf.training.checkpoints import remove_stale_temporaries
from emenet_tf.training.member import train_member
from emenet_tf.training.trainers import is_chief, make_strategy


def ensemble_probabilities(models, index: FrameIndex, image_size: int, batch_size: int, source=None) -> dict:
    """Mean member probabilities for every row of ``index`` (rows whose image is unreadable: uniform),
    and every member's logits (``pipeline.MEMBER_LOGITS`` keys, (N, M, ...) float16; unreadable: 0).

    source: what ``temporal_inference.predict_frames`` reads (default: the per-frame dataset of
    ``index``; a temporal run passes its ``Segments``, so every frame is predicted in its video).
    """
    ds = (
        source if source is not None else pipeline.make_dataset(index, image_size, batch_size, training=False)
    )
    pred = predict_frames(models, ds, keep_members=True)
    n = len(index)
    out = {}
    for task in TASKS:
        fill = 0.5 if task == "au" else 1.0 / pred[task].shape[-1]
        out[task] = np.full((n,) + pred[task].shape[1:], fill, np.float32)
        out[task][pred["frame_id"]] = pred[task]
        logits = to_logits(
            np.moveaxis(pred[f"members_{task}"], 0, 1), "bernoulli" if task == "au" else "categorical"
        )
        key = pipeline.MEMBER_LOGITS[task]
        out[key] = np.zeros((n,) + logits.shape[1:], np.float16)
        out[key][pred["frame_id"]] = logits
    out["predicted"] = np.zeros(n, bool)
    out["predicted"][pred["frame_id"]] = True
    return out


def make_soft_labels(
    cfg: TrainConfig,
    generation: int,
    train_index: FrameIndex,
    members: bool = False,
    val_index: FrameIndex | None = None,
) -> dict:
    """Compute (or load, if already stored for these frames) generation ``generation``'s soft labels.

    members: also return every member's logits (a file written before they were stored is
    recomputed). Parallel ``--member`` jobs of the next generation all need them: the first
    computes them under the generation's lock, the others wait for it and load the file.
    With ``--teacher_calibration temperature`` the ensemble's mean probabilities are temperature
    scaled first (``calibrate_teacher``: fit on ``val_index``'s fit half); members' logits stay raw.
    """
    run = RunDir(cfg.workdir)
    path = run.soft_labels_path(generation)
    folder = run.generation_dir(generation)
    names = TASKS + (tuple(pipeline.MEMBER_LOGITS.values()) if members else ())
    with locks.hold(os.path.join(folder, ".soft_labels.lock"), f"{path}", wait=True):
        stored = _read_whole(path, names) if os.path.exists(path) else None
        if stored is not None:
            _check_frames(stored.pop("keys"), train_index, path)
            return stored
        remove_stale_temporaries(folder)
        models = [run.load_member(cfg, generation, k) for k in range(cfg.ensemble_size)]
        size = input_size(cfg.model, cfg.image_size)
        source = frame_source(cfg, train_index, cfg.batch_size)
        probs = ensemble_probabilities(models, train_index, size, cfg.batch_size, source)
        missing = int((~probs["predicted"]).sum())
        if missing:
            logging.warning("soft labels: %d frames had unreadable images and got uniform labels", missing)
        if cfg.teacher_calibration == "temperature":
            probs = calibrate_teacher(cfg, generation, models, probs, val_index)
        stored = TASKS + tuple(pipeline.MEMBER_LOGITS.values())
        atomic_save_npz(path, keys=train_index.keys(), **{k: probs[k] for k in stored})
        logging.info("wrote %s (%d frames, ensemble of %d)", path, len(train_index), len(models))
    return {k: probs[k] for k in names}


def calibrate_teacher(cfg: TrainConfig, generation: int, models, probs: dict, val_index) -> dict:
    """The ensemble's training-frame probabilities scaled by temperatures fit on the validation fit
    half (``calibration``), which are written to ``gen<g>/teacher_temperatures.json``."""
    source = frame_source(cfg, val_index, cfg.batch_size)
    scaler = calibration.fit_teacher_temperatures(predict_frames(models, source), len(val_index))
    path = RunDir(cfg.workdir).teacher_temperatures_path(generation)
    atomic_write_json(path, scaler.to_dict())
    logging.info("generation %d teacher temperatures (validation fit half): %s", generation, scaler.to_dict())
    return calibration.calibrate(probs, scaler)


def _read_whole(path: str, names) -> dict | None:
    """The arrays ``names`` and "keys" of the stored soft labels at ``path``, each read back whole, or
    None when the file lacks one (it predates them) or is cut short or otherwise unreadable (named in
    one warning): then they are recomputed. One made for other frames is refused by ``_check_frames``."""
    try:
        with np.load(path) as data:
            if not all(k in data.files for k in names):
                return None
            return {k: data[k] for k in (*names, "keys")}  # a cut file fails here
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as err:
        reason = short_reason(err)
        logging.warning("%s is unreadable (%s): recomputing the soft labels", path, reason)
        return None


def _check_frames(keys: np.ndarray, index: FrameIndex, path: str) -> None:
    """DataError unless the soft labels' frame ``keys`` are exactly the frames of ``index``."""
    if keys.shape[0] != len(index) or not np.array_equal(keys, index.keys()):
        raise DataError(
            f"soft labels were made for {keys.shape[0]} other frames than the "
            f"{len(index)} training frames now indexed; delete it to recompute",
            path=path,
        )


def load_soft_labels(path: str, index: FrameIndex, names=TASKS) -> dict:
    """Soft labels ``names`` stored at ``path``, checked to belong to exactly the frames of ``index``."""
    with np.load(path) as data:
        _check_frames(data["keys"], index, path)
        return {k: data[k] for k in names}


def _usable_density(path: str) -> bool:
    """Whether the density file reads back; a cut or unreadable one is named in a warning (and refit)."""
    if not os.path.exists(path):
        return False
    try:
        density.GaussianDensity.load(path)
    except RunError as err:
        logging.warning("%s: fitting it again", err)
        return False
    return True


def members_to_train(cfg: TrainConfig) -> list[int]:
    return [cfg.member] if cfg.member is not None else list(range(cfg.ensemble_size))


def run_generations(
    cfg: TrainConfig, train_index: FrameIndex, val_index: FrameIndex | None, class_weights: dict
) -> int:
    """Train every generation (resuming what exists); return the number of complete generations."""
    if (
        cfg.teacher_calibration == "temperature"
        and cfg.generations > 1
        and (val_index is None or not len(val_index))
    ):
        raise ConfigError(
            "--teacher_calibration temperature needs validation frames to fit on (the data has none); "
            "use --teacher_calibration none"
        )
    run = RunDir(cfg.workdir)
    # A multi-worker strategy must exist before any TensorFlow op runs (the fit-half selection below
    # and soft labels run ops), so it is made first whenever a member is left to train.
    left = any(not run.is_done(g, k) for g in range(cfg.generations) for k in members_to_train(cfg))
    strategy = make_strategy(cfg.strategy) if left else None
    teacher_val = val_index  # the teacher calibration cuts all of validation into its halves itself
    if cfg.selection_split == "fit" and val_index is not None and len(val_index):
        val_index = calibration.selection_index(
            val_index, input_size(cfg.model, cfg.image_size), cfg.batch_size
        )
        logging.info("best epochs are chosen on the %d frames of the validation fit half", len(val_index))
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
            soft = make_soft_labels(cfg, generation - 1, train_index, val_index=teacher_val)
        for member in members_to_train(cfg):
            logging.info("generation %d member %d", generation, member)
            train_member(cfg, generation, member, train_index, val_index, class_weights, soft, strategy)
    if cfg.dirichlet_student and cfg.member is None and (strategy is None or is_chief(strategy)):
        # Only its small precision heads learn (the rest is frozen): with --strategy multi_worker the
        # chief trains it alone, without collectives, and the other workers are done.
        alone = make_strategy("default") if cfg.strategy == "multi_worker" else strategy
        train_dirichlet_student(cfg, train_index, class_weights, alone, teacher_val)
    return cfg.generations


def train_dirichlet_student(
    cfg: TrainConfig, train_index: FrameIndex, class_weights: dict, strategy=None, val_index=None
) -> str:
    """Train (or resume, or skip) the Dirichlet student of the last generation, then fit its density.

    It starts as the last generation's member 0 (the exported student), frozen but for its
    precision heads (``training.start_from_student``), which learn every member's predictions.

    Returns the path of its best weights. Like a member: locked, resumable, done.json last; the
    density file (``run.density_path``) is written atomically after it, so a kill in between
    only makes the next run fit it again.
    """
    run = RunDir(cfg.workdir)
    generation = run.dirichlet_generation(cfg)
    if not (run.dirichlet_done(cfg) and run.reopen_if_damaged(generation, DIRICHLET)):
        soft = make_soft_labels(cfg, generation - 1, train_index, members=True, val_index=val_index)
        logging.info("generation %d Dirichlet student", generation)
        # No validation score: its mean is the frozen student's, so the ABAW score cannot choose an
        # epoch; the best epoch is the one of lowest training loss (the precision heads' fit).
        train_member(cfg, generation, DIRICHLET, train_index, None, class_weights, soft, strategy)
    if not _usable_density(run.density_path(cfg)):
        net = run.load_member(cfg, generation, DIRICHLET)
        size = input_size(cfg.model, cfg.image_size)
        ds = pipeline.make_dataset(train_index, size, cfg.batch_size, training=False)
        density.fit_model_density(net, ds).save(run.density_path(cfg))
        logging.info("wrote %s", run.density_path(cfg))
    return run.best_weights_path(generation, DIRICHLET)
