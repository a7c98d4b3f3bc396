"""The validation halves, and the method options that use the FIT half (never the evaluation half).

The evaluation (``evaluation.evaluate_run``, seed ``SPLIT_SEED``) cuts the validation frames every
model predicted at random into a fit half (Temperature Scaling is fit there) and an evaluation half
(every method is measured there): ``split_halves``. Training may use the same fit half, as that
baseline does (``TrainConfig`` fields, defaults in brackets; the paper's code: none / all):

  --selection_split fit [fit]     each member's best epoch is chosen on the fit half only (``all``
                                  chooses it on every validation frame, evaluation half included);
  --teacher_calibration temperature [temperature]
                                  before a generation labels the training frames, its ensemble's
                                  mean probabilities are temperature scaled with temperatures fit
                                  on the fit half (one for EXPR, one per AU, one each for V and A:
                                  the baseline's ``TemperatureScaler``), so students learn from
                                  calibrated rather than over-smoothed soft labels.

``fit_rows`` reproduces the evaluation's split: ``split_halves`` over the frames the pipeline
decodes (the evaluation's "predicted by every model": a model predicts every decoded frame).
"""

from __future__ import annotations

import numpy as np

from emenet_tf.data.index import FrameIndex
from emenet_tf.labels import TASKS
from emenet_tf.temperature import TemperatureScaler

SPLIT_SEED = 0  # evaluation.evaluate_run's default split: the one every report and the options use


def split_halves(present: np.ndarray, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, evaluation rows): a seeded random half of the present rows each, sorted."""
    rows = np.flatnonzero(present)
    perm = np.random.default_rng(seed).permutation(rows)
    half = len(rows) // 2
    return np.sort(perm[:half]), np.sort(perm[half:])


def decodable(index: FrameIndex, image_size: int, batch_size: int) -> np.ndarray:
    """(N,) bool: the rows whose image the evaluation pipeline decodes."""
    from emenet_tf.data import pipeline

    present = np.zeros(len(index), bool)
    for batch in pipeline.make_dataset(index, image_size, batch_size, training=False):
        present[batch["frame_id"].numpy()] = True
    return present


def fit_rows(present: np.ndarray) -> np.ndarray:
    """Rows of the validation fit half (``split_halves``' first half at ``SPLIT_SEED``)."""
    return split_halves(present)[0]


def selection_index(val_index: FrameIndex, image_size: int, batch_size: int) -> FrameIndex:
    """The validation frames of the fit half: what ``--selection_split fit`` selects epochs on."""
    return val_index.subset(fit_rows(decodable(val_index, image_size, batch_size)))


def fit_teacher_temperatures(val_pred: dict, n_rows: int) -> TemperatureScaler:
    """Temperatures of an ensemble's mean probabilities, fit on the fit half of its validation
    predictions (a ``predict_frames`` dict over the validation index of ``n_rows`` rows)."""
    present = np.zeros(n_rows, bool)
    present[val_pred["frame_id"]] = True
    position = np.full(n_rows, -1, np.int64)
    position[val_pred["frame_id"]] = np.arange(len(val_pred["frame_id"]))
    return TemperatureScaler.fit(val_pred, rows=position[fit_rows(present)])


def calibrate(probs: dict, scaler: TemperatureScaler) -> dict:
    """``probs`` with its task arrays (au, expr, va) scaled by ``scaler``, float32; other keys kept."""
    scaled = scaler.apply({t: probs[t] for t in TASKS})
    return {**probs, **{t: np.asarray(scaled[t], np.float32) for t in TASKS}}
