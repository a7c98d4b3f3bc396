"""Export of a finished run: the final generation's student and ensemble (and a QAT student), atomically.

Writes into ``<workdir>/export/`` (or ``out_dir``; see docs/ARCHITECTURE.md, "Exported models"):
  student_float32.tflite  student_int8.tflite  ensemble_float32.tflite  ensemble_int8.tflite
  student_dirichlet_float32.tflite  student_dirichlet_int8.tflite  (the Dirichlet student, when
  the run has one: ``cfg.dirichlet_student``)
  [student_qat_int8.tflite with qat_epochs > 0]   each with its metadata ``M.json`` beside it
  (a temporal run instead: student_stream_float32 / _int8, ensemble_stream_float32 / _int8, the
  streaming step of ``stream.StreamModule``, checked over validation video segments in order)
  parity.json             the parity figures of every model against its reference, and the targets
The whole export is written into a temporary folder beside the output folder and swapped in at
the end: a killed or failed export leaves the previous export as it was, never a mix of new and
old models with a stale parity.json.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile

import numpy as np
from absl import logging

from emenet_tf import locks
from emenet_tf.data import pipeline
from emenet_tf.data.index import FrameIndex
from emenet_tf.density import GaussianDensity
from emenet_tf.errors import ConfigError, ExportError, RunError, WriteError
from emenet_tf.evaluation.inputs import default_ood_dir, ood_index
from emenet_tf.export.convert import FLOAT_BACKBONE_MAX
from emenet_tf.export.model import export_model, write_file
from emenet_tf.export.options import REPRESENTATIVE_FRAMES, VALIDATION_FRAMES
from emenet_tf.export.parity import TARGETS
from emenet_tf.export.qat import export_qat, qat_finetune
from emenet_tf.export.stream import StreamModule, sequence_frames
from emenet_tf.io import atomic_path, read_json
from emenet_tf.labels import TASKS
from emenet_tf.models import input_size
from emenet_tf.rundir import DENSITY, DIRICHLET, TEMPORARY_PREFIX, RunDir

MARKER = ".emenet-export"  # in every export folder: the run it was exported from
STREAM_SUFFIX = "_stream"  # a temporal run's models: student_stream_int8.tflite, ...
PARITY_FILE = "parity.json"


def export_run(
    workdir: str,
    out_dir: str | None = None,
    qat_epochs: int = 0,
    allow_degraded: bool = False,
    representative_frames: int = REPRESENTATIVE_FRAMES,
    validation_frames: int = VALIDATION_FRAMES,
    qat_steps: int | None = None,
    float_backbone_max: int = FLOAT_BACKBONE_MAX,
) -> dict:
    """Export the final generation's student (member 0) and ensemble of the finished run in ``workdir``.

    Every path is resolved from ``workdir`` (``RunDir``), so a copied or moved run exports its own
    members from any current directory. An int8 model that misses a parity target is converted
    again with its first 1, 2, ... up to ``float_backbone_max`` backbone stages kept float (see
    ``model.export_model``; the tests pass 0 to be quick).
    Writes the .tflite files, their metadata and ``parity.json`` into ``out_dir`` (default
    ``<workdir>/export``), replacing it whole. Raises RunError for an unfinished run, and
    ExportError naming every model that missed a parity target (after writing the others and
    parity.json) unless ``allow_degraded``; WriteError naming a file that could not be written.
    Returns {"out_dir", "generation", "files": {name: path}, "parity": {name: figures}, "failures", "targets"}.
    """
    run = RunDir(workdir)
    cfg = run.load_config()
    generation = final_generation(run, cfg)
    members = [run.load_member(cfg, generation, k) for k in range(cfg.ensemble_size)]
    if cfg.temporal and qat_epochs > 0:
        raise ConfigError(
            "--qat_epochs: quantization-aware training of temporal (GRU) models is not supported"
        )
    splits, _ = run.load_splits(cfg)
    image_size = input_size(cfg.model, cfg.image_size)
    untrained = tuple(t for t in TASKS if t not in run.trained_tasks())
    common = dict(allow_degraded=allow_degraded, float_backbone_max=float_backbone_max, untrained=untrained)
    if cfg.temporal:
        jobs = _stream_jobs(cfg, members, splits, image_size, validation_frames, representative_frames)
    else:
        frames = load_frames(splits["validation"], image_size, validation_frames)
        representative = load_frames(splits["train"], image_size, representative_frames)["image"]
        jobs = [(name, group, frames, representative, None) for name, group in _groups(members, "")]
    out_dir = os.path.abspath(out_dir or run.export_dir)
    check_out_dir(out_dir, run)
    with (
        locks.hold(run.export_lock_path, f"{run.root} (export)"),
        _naming(out_dir),
        atomic_path(out_dir) as tmp,
    ):
        _remove_stale_temporaries(out_dir)
        os.makedirs(tmp)
        write_file(os.path.join(tmp, MARKER), {"run": run.root})
        results = [
            export_model(group, name, tmp, frames, representative, module=module, **common)
            for name, group, frames, representative, module in jobs
        ]
        if cfg.dirichlet_student:  # per-frame runs only (TrainConfig refuses it with --temporal)
            _, _, frames, representative, _ = jobs[0]
            results.append(export_dirichlet(run, cfg, tmp, frames, representative, common))
        if qat_epochs > 0:
            qat = qat_finetune(run, cfg, members[0], splits["train"], qat_epochs, steps=qat_steps)
            results.append(export_qat(qat, "student_qat", tmp, frames, allow_degraded, untrained))
        summary = _summary(results, out_dir, generation)
        write_file(os.path.join(tmp, PARITY_FILE), summary)
    if summary["failures"] and not allow_degraded:
        raise ExportError(
            f"withheld the models that miss their parity targets (the others are in {out_dir}; figures in "
            f"{PARITY_FILE}): " + " | ".join(summary["failures"]) + f"; to write them anyway: python -m "
            f"emenet_tf.export --workdir {run.root} --allow_degraded"
        )
    return summary


def check_out_dir(out_dir: str, run: RunDir) -> None:
    """RunError unless ``out_dir`` is absent, empty, or an earlier export of this run: it holds MARKER
    naming the run, or (written before the marker) is the run's own export folder holding only models,
    their metadata and parity.json. The export replaces the folder whole: anything else would be lost."""
    if not os.path.exists(out_dir):
        return
    if not os.path.isdir(out_dir):
        raise RunError(f"{out_dir}: exists and is not a folder; refusing to replace it with the export")
    entries = set(os.listdir(out_dir))
    if not entries:
        return
    marker = os.path.join(out_dir, MARKER)
    if os.path.isfile(marker):
        try:
            owner = read_json(marker).get("run")
        except (OSError, ValueError, AttributeError):
            owner = None
        if owner == run.root:
            return
        raise RunError(f"{out_dir}: holds the export of another run ({owner}); refusing to replace it")
    models_only = all(e.endswith((".tflite", ".json")) for e in entries) and PARITY_FILE in entries
    if out_dir == os.path.abspath(run.export_dir) and models_only:
        return
    raise RunError(
        f"{out_dir}: not empty and not an export of this run; refusing to replace it (give --out a new or "
        "empty folder)"
    )


@contextlib.contextmanager
def _naming(out_dir: str):
    """A failed write inside the export's temporary folder is reported against ``out_dir``, the folder
    the user asked for (the temporary one is removed)."""
    try:
        yield
    except WriteError as err:
        parent = os.path.dirname(out_dir)
        text = re.sub(re.escape(parent) + r"/" + re.escape(TEMPORARY_PREFIX) + r"[^/]*", out_dir, str(err))
        raise WriteError(text) from None


def export_dirichlet(run: RunDir, cfg, out_dir: str, frames: dict, representative, common: dict) -> dict:
    """``student_dirichlet_{float32,int8}``: the Dirichlet student with its density in the graph, and
    the AUROC of its ood_score on the run's OOD images (``<data_dir>/ood``) when there are any."""
    if not run.dirichlet_done(cfg) or not os.path.exists(run.density_path(cfg)):
        raise RunError(
            f"{run.dirichlet_dir(cfg)}: the Dirichlet student (or its {DENSITY}) is not finished; "
            "run train.py on this folder to finish it before exporting"
        )
    net = run.load_member(cfg, run.dirichlet_generation(cfg), DIRICHLET)
    density = GaussianDensity.load(run.density_path(cfg))
    ood = ood_frames(default_ood_dir(run, cfg), frames["image"].shape[1])
    return export_model(
        [net], "student_dirichlet", out_dir, frames, representative, density=density, ood_images=ood, **common
    )


def ood_frames(folder: str | None, image_size: int) -> np.ndarray | None:
    """The OOD images of ``folder`` (N,S,S,3) in [0, 1], or None when there is no folder."""
    if folder is None:
        return None
    with tempfile.TemporaryDirectory(prefix="emenet-ood-") as work:
        index = ood_index(folder, work)
        return load_frames(index, image_size, len(index))["image"]


def _groups(members: list, suffix: str) -> list[tuple[str, list]]:
    """(file name stem, members) of the student (member 0) and, with more members, the ensemble."""
    groups = [(f"student{suffix}", members[:1])]
    return groups + ([(f"ensemble{suffix}", members)] if len(members) > 1 else [])


def _stream_jobs(cfg, members, splits, image_size, validation_frames, representative_frames) -> list:
    """Export jobs of a temporal run: ``student_stream`` and ``ensemble_stream`` (``stream.StreamModule``),
    checked and calibrated on validation segments in frame order, quantised with training segments."""
    frames = sequence_frames(
        splits["validation"], image_size, validation_frames, cfg.temporal_max_gap, cfg.temporal
    )
    train = sequence_frames(
        splits["train"], image_size, representative_frames, cfg.temporal_max_gap, cfg.temporal
    )
    jobs = []
    for name, group in _groups(members, STREAM_SUFFIX):
        module = StreamModule(group, image_size, cfg.temporal_max_gap, cfg.temporal)
        jobs.append((name, group, frames, module.representative(train), module))
    return jobs


def final_generation(run: RunDir, cfg) -> int:
    """The generation to export: the last one, once every member of every generation has finished."""
    finished = run.finished_generations(cfg)
    if finished != cfg.generations:
        unfinished = ", ".join(run.unfinished_members(cfg, finished))
        raise RunError(
            f"{run.root}: the run is not finished ({finished} of {cfg.generations} generations complete; "
            f"no done.json in {unfinished}); run train.py on this folder to finish it before exporting"
        )
    return cfg.generations - 1


def _summary(results: list[dict], out_dir: str, generation: int) -> dict:
    """parity.json: every model's figures and failures, the files by their final paths, the targets."""
    return {
        "out_dir": out_dir,
        "generation": generation,
        "files": {
            k: os.path.join(out_dir, os.path.basename(v)) for r in results for k, v in r["files"].items()
        },
        "parity": {k: v for r in results for k, v in r["parity"].items()},
        "failures": [f for r in results for f in r["failures"]],
        "targets": TARGETS,
    }


def _remove_stale_temporaries(out_dir: str) -> None:
    """Delete the temporary export folders a killed export left beside ``out_dir`` (its process is gone)."""
    parent, base = os.path.split(out_dir)
    for name in os.listdir(parent) if os.path.isdir(parent) else ():
        if not (
            name.startswith(TEMPORARY_PREFIX) and (name.endswith("-" + base) or name.endswith(f"-{base}.old"))
        ):
            continue
        pid = name[len(TEMPORARY_PREFIX) :].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            logging.warning("removing %s, left by an export that did not finish", os.path.join(parent, name))
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _spread(index: FrameIndex, count: int) -> FrameIndex:
    """``count`` rows of ``index`` spread evenly over it (all rows when it has fewer)."""
    if len(index) <= count:
        return index
    return index.subset(np.unique(np.linspace(0, len(index) - 1, count).round().astype(np.int64)))


def load_frames(index: FrameIndex, image_size: int, count: int) -> dict:
    """Images (N,S,S,3) float32 in [0, 1] and EXPR labels/masks of ``count`` frames spread over ``index``."""
    ds = pipeline.make_dataset(_spread(index, count), image_size, 64, training=False)
    parts = [{k: batch[k].numpy() for k in ("image", "expr", "expr_mask")} for batch in ds]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
