"""The whole job behind ``train.py``: checks, data, class weights, generations, evaluation, export.

TensorFlow is imported only once the checks have passed. Order matters for a run folder that must
never hold a lie: every flag and every dataset path is checked BEFORE anything is written;
config.json is then written (or, on a rerun, compared with the saved one: a rerun that differs in
anything that changes what was trained refuses, naming each difference); the synthetic data is
generated once under the run's setup lock, so jobs that start together do not both generate it.
"""

from __future__ import annotations

import json
import os
import tempfile

from absl import logging

from emenet_tf import locks
from emenet_tf.config import RESUMABLE, TrainConfig, differences
from emenet_tf.data import sources
from emenet_tf.errors import ConfigError
from emenet_tf.io import atomic_write_json, describe_os_error, read_json
from emenet_tf.rundir import CONFIG, LOCK, REPLICATE_TIME, TEMPORARY_PREFIX, RunDir


def check_paths(cfg: TrainConfig) -> None:
    """The files and folders the flags name, checked before anything is written (and before
    TensorFlow loads, so a wrong path is reported at once)."""
    sources.check(cfg.data)
    if cfg.backbone_weights is not None and not os.path.isfile(cfg.backbone_weights):
        raise ConfigError(f"--backbone_weights {cfg.backbone_weights} is not a file")
    check_workdir(RunDir(cfg.workdir).root)


# What a run folder may hold before its config.json exists: the setup lock of a job starting now, the
# time ledger of the study replicate it is, and a temporary of either left by a killed write.
_BEFORE_CONFIG = {LOCK, REPLICATE_TIME}


def check_workdir(root: str) -> None:
    """ConfigError unless ``root`` is a run folder, an empty or absent folder this process can create
    and write (a user's folder with other files is never written into)."""
    if os.path.exists(root):
        if not os.path.isdir(root):
            raise ConfigError(f"--workdir {root} is a file, not a folder")
        entries = set(os.listdir(root))
        foreign = {e for e in entries - _BEFORE_CONFIG if not e.startswith(TEMPORARY_PREFIX)}
        if foreign and not os.path.exists(os.path.join(root, CONFIG)):
            raise ConfigError(
                f"--workdir {root} is not empty and not a training run (no config.json); give a new or empty folder"
            )
        if not os.access(root, os.W_OK | os.X_OK):
            raise ConfigError(f"--workdir {root}: no permission to write in it")
        return
    parent = os.path.dirname(root)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ConfigError(f"--workdir {root}: {parent} is a file, so the folder cannot be created")
    try:  # a real attempt: permissions alone do not tell (root may write anywhere, /proc takes no folder)
        os.rmdir(tempfile.mkdtemp(prefix=".emenet-probe-", dir=parent))
    except OSError as err:
        raise ConfigError(
            f"--workdir {root}: cannot create a folder in {parent} ({describe_os_error(err)})"
        ) from None


def check_model(cfg: TrainConfig) -> None:
    """The model flags against the variant table."""
    from emenet_tf.models import VARIANTS, min_image_size

    if cfg.model not in VARIANTS:
        raise ConfigError(f"--model {cfg.model!r} is unknown; choose one of {sorted(VARIANTS)}")
    if cfg.image_size is not None and cfg.image_size < min_image_size(cfg.model):
        raise ConfigError(
            f"--image_size {cfg.image_size} is too small for --model={cfg.model}: "
            f"it needs at least {min_image_size(cfg.model)}"
        )


def saved_config(cfg: TrainConfig) -> dict | None:
    """The config.json of ``cfg.workdir`` (None on a new run); ConfigError if it differs from ``cfg``
    in a field that matters (outside ``RESUMABLE``) or cannot be read."""
    run = RunDir(cfg.workdir)
    if not os.path.exists(run.config_path):
        return None
    try:
        saved = read_json(run.config_path)
    except (OSError, ValueError) as err:
        raise ConfigError(f"{run.config_path}: unreadable ({err}); use a new --workdir") from None
    changed = differences(saved, cfg)
    if changed:
        listed = ", ".join(f"--{k}={new!r} (the run has {old!r})" for k, (old, new) in changed.items())
        raise ConfigError(
            f"{run.root} holds a run with other settings: {listed}. Rerun with the run's settings "
            f"(only {', '.join('--' + n for n in RESUMABLE if n != 'workdir')} may change), "
            "or use a new --workdir"
        )
    return saved


def save_config(cfg: TrainConfig) -> None:
    """Write config.json on a new run; on a rerun, refuse any difference that matters."""
    run = RunDir(cfg.workdir)
    saved = saved_config(cfg)
    if saved is not None:
        if saved.get("generations") != cfg.generations:
            logging.warning(
                "continuing %s with --generations %d (it had %s)",
                run.root,
                cfg.generations,
                saved.get("generations"),
            )
        merged = {**saved, "generations": cfg.generations}
        if merged != saved:
            atomic_write_json(run.config_path, merged)
        return
    os.makedirs(run.root, exist_ok=True)
    cfg.save(run.config_path)


def ensure_data(cfg: TrainConfig) -> None:
    """The synthetic benchmark, generated once into the run folder when ``--data`` names it."""
    run = RunDir(cfg.workdir)
    if not cfg.uses_benchmark():
        return
    from emenet_tf.data import synthetic

    if synthetic.is_complete(run.synthetic_dir):
        logging.info("using the synthetic benchmark already in %s", run.synthetic_dir)
        return
    if os.path.exists(os.path.join(run.synthetic_dir, synthetic.META)):
        logging.warning("the synthetic benchmark in %s is damaged: generating it again", run.synthetic_dir)
    summary = synthetic.write(run.synthetic_dir, cfg.synthetic)
    logging.info("synthetic Aff-Wild2 benchmark: %s", json.dumps(summary, default=str))


def load_data(cfg: TrainConfig):
    """Index both splits of every dataset; write what was indexed and skipped to ``data_summary.json``."""
    run = RunDir(cfg.workdir)
    splits, summary = run.load_splits(cfg)
    atomic_write_json(run.data_summary_path, summary)
    for name, counts in summary.items():
        logging.info("%s split: %s", name, json.dumps(counts))
    return splits["train"], splits["validation"]


def prepare(cfg: TrainConfig):
    """Check, write or compare config.json, make the data, index it, write class weights.

    Runs under the run folder's setup lock: a second job started at the same time waits here,
    then finds config and data in place. Returns (train index, validation index, class weights).
    """
    check_paths(cfg)
    check_model(cfg)
    run = RunDir(cfg.workdir)
    os.makedirs(run.root, exist_ok=True)
    with locks.hold(run.lock_path, f"{run.root} (run setup)", wait=True):
        save_config(cfg)
        ensure_data(cfg)
        train_index, val_index = load_data(cfg)
        from emenet_tf.losses import class_weights

        weights = class_weights(train_index, power=cfg.class_weight_power)
        atomic_write_json(run.class_weights_path, weights)
    return train_index, val_index, weights


def record_dropped_images(cfg: TrainConfig) -> dict:
    """Write into data_summary.json the frames the pipeline could not read during training.

    Every finished member's done.json names them (all members read the same frames); the largest
    count, with its examples, goes into ``data_summary.json`` under ``dropped_images``.
    """
    run = RunDir(cfg.workdir)
    worst = {"bad_images": 0, "unnamed": 0, "examples": []}
    for generation in range(cfg.generations):
        for member in range(cfg.ensemble_size):
            if run.is_done(generation, member):
                dropped = read_json(run.done_path(generation, member)).get("dropped_images") or worst
                if dropped["bad_images"] > worst["bad_images"]:
                    worst = dropped
    with locks.hold(run.lock_path, f"{run.root} (run setup)", wait=True):
        summary = read_json(run.data_summary_path) if os.path.exists(run.data_summary_path) else {}
        summary["dropped_images"] = worst
        atomic_write_json(run.data_summary_path, summary)
    if worst["bad_images"]:
        logging.warning(
            "%d frames could not be read and were left out of training (see %s), e.g. %s",
            worst["bad_images"],
            run.data_summary_path,
            "; ".join(worst["examples"][:3]),
        )
    return worst


def run_job(cfg: TrainConfig, evaluate: bool = True, export: bool = True, export_options=None) -> dict:
    """Train all generations, then evaluate and export when the last generation is complete.

    export_options: an ``export.options.ExportOptions`` (default: its defaults). A model the export
    withholds (it misses a parity target) does not fail the job: the trained run stays as it is and
    ``notes`` says which model was withheld and how to get it.
    """
    train_index, val_index, weights = prepare(cfg)
    from emenet_tf import distill

    complete = distill.run_generations(cfg, train_index, val_index, weights)
    result = {"generations_complete": complete, "dropped_images": record_dropped_images(cfg), "notes": []}
    if complete < cfg.generations or cfg.member is not None:
        return result
    if evaluate:
        from emenet_tf import evaluation

        result["metrics"] = evaluation.evaluate_run(cfg.workdir)
    if export:
        from emenet_tf.errors import ExportError
        from emenet_tf.export import export_run
        from emenet_tf.export.options import ExportOptions

        options = export_options or ExportOptions()
        try:
            result["export"] = export_run(cfg.workdir, **options.to_dict())
        except ExportError as err:
            result["notes"].append(f"training finished; the export withheld a model: {err}")
    return result
