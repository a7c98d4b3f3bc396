"""The evaluation's inputs: which generations are finished, the validation split, the OOD images, the truth.

The validation split is the run's own (every dataset of ``--data``, as training indexed it); the
OOD images are ``--ood_dir`` or the synthetic benchmark's ``ood/`` folder; the truth (the true label
distribution of every synthetic frame) exists only for the benchmark's rows.
"""

from __future__ import annotations

import os

import numpy as np
from absl import logging

from edge.images import IMAGE_EXTENSIONS
from emenet_tf.config import TrainConfig
from emenet_tf.data import label_model, sources, synthetic
from emenet_tf.data.index import FrameIndex
from emenet_tf.errors import DataError, RunError
from emenet_tf.labels import NUM_AU
from emenet_tf.rundir import RunDir


def evaluable_generations(run: RunDir, cfg: TrainConfig) -> int:
    """Generations 0..G-1 whose every member has finished (done.json); the first unfinished one stops it."""
    generations = run.finished_generations(cfg)
    if generations == 0:
        raise RunError(f"generation 0 is not finished: {run.unfinished_members(cfg, 0)[0]} has no done.json")
    if generations < cfg.generations:
        logging.warning(
            "generation %d is unfinished (%s); evaluating generations < %d",
            generations,
            run.unfinished_members(cfg, generations)[0],
            generations,
        )
    return generations


def default_ood_dir(run: RunDir, cfg: TrainConfig) -> str | None:
    """The out-of-domain images of the run's data: the ``ood/`` folder of the first dataset in the
    Aff-Wild2 layout that has one (the synthetic benchmark writes one), else None."""
    for folder in sources.aff_wild2_folders(cfg.sources(), run.synthetic_dir).values():
        if os.path.isdir(os.path.join(folder, "ood")):
            return os.path.join(folder, "ood")
    return None


def ood_index(folder: str, work: str) -> FrameIndex:
    """A label-less FrameIndex over the images of ``folder`` (non-JPEG ones transcoded into ``work``)."""
    if not os.path.isdir(folder):
        raise DataError("OOD folder does not exist", path=folder)
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in the OOD folder", path=folder)
    if any(not f.lower().endswith((".jpg", ".jpeg")) for f in files):
        files = [_as_jpeg(folder, f, work) for f in files]
        files = [f for f in files if f is not None]
        folder = work
    n = len(files)
    return FrameIndex(
        data_dir=folder,
        split="ood",
        paths=np.array(files),
        video=np.full(n, "ood"),
        frame=np.arange(1, n + 1, dtype=np.int32),
        au=np.zeros((n, NUM_AU), np.float32),
        au_mask=np.zeros((n, NUM_AU), np.float32),
        expr=np.zeros(n, np.int32),
        expr_mask=np.zeros(n, np.float32),
        va=np.zeros((n, 2), np.float32),
        va_mask=np.zeros((n, 2), np.float32),
    )


def _as_jpeg(folder: str, name: str, work: str) -> str | None:
    """``name`` as a JPEG inside ``work`` (symlink if it is one, else transcoded); None if unreadable."""
    import cv2

    src = os.path.join(folder, name)
    if name.lower().endswith((".jpg", ".jpeg")):
        os.symlink(os.path.abspath(src), os.path.join(work, name))
        return name
    image = cv2.imread(src, cv2.IMREAD_COLOR)
    if image is None:
        logging.warning("Skipping unreadable OOD image: %s", src)
        return None
    out = name + ".jpg"
    cv2.imwrite(os.path.join(work, out), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return out


def aligned_truth(run: RunDir, cfg: TrainConfig, index: FrameIndex) -> dict | None:
    """The synthetic truth of every validation row (rows without truth: nan), from the first dataset in
    the Aff-Wild2 layout that has one (a synthetic benchmark), and that dataset's ``folder``; None when
    none has."""
    for label, folder in sources.aff_wild2_folders(cfg.sources(), run.synthetic_dir).items():
        truth = synthetic.load_truth(folder, "validation")
        if truth is not None:
            prefix = f"{label}/" if index.source is not None else ""  # several datasets: index.concat's names
            return _truth_rows(truth, prefix, folder, index)
    return None


def _truth_rows(truth: dict, prefix: str, folder: str, index: FrameIndex) -> dict:
    """``truth`` (the benchmark's, by video and frame) aligned to the rows of ``index``."""
    keys = np.char.add(
        np.char.add(np.char.add(prefix, np.asarray(truth["video"]).astype(str)), "/"),
        np.asarray(truth["frame"]).astype(str),
    )
    lookup = dict(zip(keys.tolist(), range(len(keys)), strict=True))
    rows = np.array([lookup.get(k, -1) for k in index.keys().tolist()], np.int64)
    out = {"has": rows >= 0, "folder": folder}
    arrays = {
        "expr": truth["expr_probs"],
        "au": truth["au_probs"],
        "va": label_model.va_true_bins(truth["va_mean"], truth["va_std"]),
        "va_mean": truth["va_mean"],
        "va_std": truth["va_std"],
    }
    for key, values in arrays.items():
        values = np.asarray(values, np.float64)[np.maximum(rows, 0)]
        out[key] = np.where(out["has"].reshape((-1,) + (1,) * (values.ndim - 1)), values, np.nan)
    return out


def validation_index(run: RunDir, cfg: TrainConfig) -> FrameIndex:
    """The run's validation split over every dataset of ``--data`` (read as training read it)."""
    splits, _ = run.load_splits(cfg)
    return splits["validation"]


def unfinished(run: RunDir, cfg: TrainConfig, generations: int) -> str | None:
    """What is unfinished in the run (its evaluation would be partial), or None."""
    if generations < cfg.generations:
        return f"generation {generations} is unfinished ({run.unfinished_members(cfg, generations)[0]})"
    if cfg.dirichlet_student and not (run.dirichlet_done(cfg) and os.path.exists(run.density_path(cfg))):
        return f"the Dirichlet student is unfinished ({run.dirichlet_dir(cfg)})"
    return None


def frame_counts(index, present, fit_rows, eval_rows, methods, seed, ood_dir) -> dict:
    """Which frames the evaluation used (metrics.json ``frames``); ``methods``: the Predictions."""
    ood = methods[0].splits.get("ood")
    return {
        "validation": len(index),
        "predicted": int(present.sum()),
        "fit": len(fit_rows),
        "evaluated": len(eval_rows),
        "ood": int(ood["present"].sum()) if ood is not None else 0,
        "ood_dir": ood_dir,
        "split_seed": seed,
        "expr_labelled": int(index.expr_mask[eval_rows].sum()),
        "au_labelled": int((index.au_mask[eval_rows].sum(axis=1) > 0).sum()),
        "va_labelled": int((index.va_mask[eval_rows].sum(axis=1) > 0).sum()),
    }
