"""Quantization-aware fine-tune of the student (tfmot) and its int8 model, checked against itself.

The QAT model's int8 TFLite file is compared with the QAT Keras model it was fine-tuned into
(its fake-quant outputs computed in float), never with the student before the fine-tune: one
QAT epoch changes ~10% of the student's EXPR decisions, so that comparison would measure the
fine-tune, not the conversion. Everything up to the logits is int8 (tfmot's default scheme).
"""

from __future__ import annotations

import os
import tempfile

from emenet_tf._keras import keras
from emenet_tf.config import TrainConfig
from emenet_tf.data import pipeline
from emenet_tf.data.index import FrameIndex
from emenet_tf.export.convert import convert_qat
from emenet_tf.export.graph import ExportModule, keras_outputs
from emenet_tf.export.model import write_checked
from emenet_tf.export.parity import int8_parity, on_uint8_grid
from emenet_tf.export.tflite import run_tflite
from emenet_tf.io import read_json
from emenet_tf.models import input_size
from emenet_tf.rundir import RunDir


def qat_finetune(
    run: RunDir, cfg: TrainConfig, student: keras.Model, train_index: FrameIndex, epochs: int, steps=None
):
    """Quantization-aware fine-tune of the student (tfmot) for ``epochs`` on its teacher's labels.

    Labels: the soft labels of generation G-2 (the final generation's teachers) with the
    distillation losses, or the hard labels when the run has one generation. Adam at
    learning_rate * lr_decay_factor.
    Returns the QAT Keras model (fake-quant layers inside).
    """
    import tensorflow_model_optimization as tfmot

    from emenet_tf import distill, losses
    from emenet_tf.training.objectives import LossSetup
    from emenet_tf.training.trainers import MultitaskTrainer

    soft = None
    if cfg.generations > 1:
        soft = distill.load_soft_labels(run.soft_labels_path(cfg.generations - 2), train_index)
    if os.path.exists(run.class_weights_path):
        weights = read_json(run.class_weights_path)
    else:
        weights = losses.class_weights(train_index, power=cfg.class_weight_power)
    setup = LossSetup.from_config(cfg, weights, soft=soft is not None, tasks=run.trained_tasks())
    qat = tfmot.quantization.keras.quantize_model(student)
    trainer = MultitaskTrainer(qat, setup)
    trainer.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate * cfg.lr_decay_factor))
    ds = pipeline.make_dataset(
        train_index,
        input_size(cfg.model, cfg.image_size),
        cfg.batch_size,
        training=True,
        soft_labels=soft,
        seed=cfg.seed,
        augment=cfg.augment,
        repeat=True,
    )
    steps = steps or cfg.steps_per_epoch or pipeline.steps_per_epoch(train_index, cfg.batch_size)
    trainer.fit(ds, epochs=epochs, steps_per_epoch=steps, verbose=cfg.verbose)
    return qat


def export_qat(
    qat: keras.Model, name: str, out_dir: str, frames: dict, allow_degraded: bool = False, untrained=()
) -> dict:
    """Convert the QAT model to ``<name>_int8`` and check it against the QAT Keras model itself.

    Parity on the validation frames put on the uint8 grid, as in ``model.export_model``; the same
    targets. Returns {"files", "parity", "failures"} like ``model.export_model``.
    """
    module = ExportModule([qat], int(frames["image"].shape[1]))
    images = on_uint8_grid(frames["image"])
    reference = keras_outputs([qat], images)  # the fine-tuned QAT model: fake-quant, in float
    with tempfile.TemporaryDirectory() as saved_dir:
        module.save(saved_dir)
        content = convert_qat(saved_dir)
    outputs = run_tflite(content, images)
    figures = {"quantize": "qat", "reference": "qat_keras", **int8_parity(outputs, reference)}
    return write_checked(
        {f"{name}_int8": (content, outputs, figures)}, module, out_dir, frames, allow_degraded, untrained
    )
