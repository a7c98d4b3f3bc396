"""The whole job behind ``train.py``: data, class weights, generations, evaluation, export."""

from __future__ import annotations

import json
import os

from absl import logging

from emenet_tf.config import TrainConfig
from emenet_tf.data import affwild2
from emenet_tf.errors import ConfigError
from emenet_tf.io import atomic_path, atomic_write_json, read_json
from emenet_tf.losses import class_weights as compute_class_weights
from emenet_tf.models import VARIANTS, min_image_size

# Fields that change what a finished member means: a workdir is not resumed with other values.
RUN_IDENTITY = ("model", "image_size", "dropout", "ensemble_size", "seed", "data_dir", "class_weight_power")


def check_config(cfg: TrainConfig) -> None:
    """Flag errors that need the model table, raised before any data is generated or read."""
    if cfg.model not in VARIANTS:
        raise ConfigError(f"--model {cfg.model!r} is unknown; choose one of {sorted(VARIANTS)}")
    if cfg.image_size is not None and cfg.image_size < min_image_size(cfg.model):
        raise ConfigError(
            f"--image_size {cfg.image_size} is too small for --model={cfg.model}: "
            f"it needs at least {min_image_size(cfg.model)}"
        )
    if cfg.data_dir is not None and not os.path.isdir(cfg.data_dir):
        raise ConfigError(f"--data_dir {cfg.data_dir} does not exist")


def save_config(cfg: TrainConfig) -> None:
    """Write config.json first; refuse a workdir that holds a different run."""
    path = os.path.join(cfg.workdir, "config.json")
    if os.path.exists(path):
        old = read_json(path)
        new = json.loads(cfg.to_json())
        changed = [k for k in RUN_IDENTITY if old.get(k) != new.get(k)]
        if changed:
            raise ConfigError(
                f"{path} holds a run with other {', '.join(changed)} "
                f"({', '.join(f'{k}={old.get(k)!r}' for k in changed)}); use a new --workdir"
            )
    os.makedirs(cfg.workdir, exist_ok=True)
    cfg.save(path)


def ensure_data(cfg: TrainConfig) -> str:
    """The data folder: --data_dir, or the synthetic benchmark generated once into workdir/data."""
    if cfg.data_dir:
        affwild2.check_data_dir(cfg.data_dir)
        return cfg.data_dir
    from emenet_tf.data import synthetic

    data_dir = cfg.resolved_data_dir()
    if os.path.exists(os.path.join(data_dir, "synthetic_meta.json")):
        logging.info("using the synthetic benchmark already in %s", data_dir)
        return data_dir
    with atomic_path(data_dir) as tmp:
        summary = synthetic.generate(tmp, **cfg.synthetic)
    print("Synthetic Aff-Wild2 benchmark:", json.dumps(summary, default=str), flush=True)
    return data_dir


def load_data(cfg: TrainConfig):
    data_dir = ensure_data(cfg)
    splits = affwild2.load_splits(data_dir, skip_bad_labels=cfg.skip_bad_labels)
    for index in splits.values():
        print(f"{index.split}: {json.dumps(index.summary())}", flush=True)
    return splits["train"], splits["validation"]


def run(
    cfg: TrainConfig, evaluate: bool = True, export: bool = True, export_options: dict | None = None
) -> dict:
    """Train all generations, then evaluate and export when the last generation is complete.

    ``export_options`` go to ``export.export_run`` (e.g. ``qat_epochs``, ``allow_degraded``).
    """
    check_config(cfg)
    save_config(cfg)
    train_index, val_index = load_data(cfg)
    weights = compute_class_weights(train_index, power=cfg.class_weight_power)
    atomic_write_json(os.path.join(cfg.workdir, "class_weights.json"), weights)
    from emenet_tf import distill

    complete = distill.run_generations(cfg, train_index, val_index, weights)
    result = {"generations_complete": complete}
    if complete < cfg.generations or cfg.member is not None:
        return result
    if evaluate:
        from emenet_tf import evaluation

        result["metrics"] = evaluation.evaluate_run(cfg.workdir)
    if export:
        from emenet_tf import export as export_lib

        result["export"] = export_lib.export_run(cfg.workdir, **(export_options or {}))
    return result
