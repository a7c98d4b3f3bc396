"""The run folder: every path of a training run, what "finished" means, its config and its weights.

A run folder (``--workdir``) holds::

  config.json                  the run's configuration (written first)
  class_weights.json           loss weights from the training split
  data_summary.json            what the reader indexed and skipped, per split
  data/                        the synthetic benchmark, when --data names it
  prepared/<dataset>/          what a dataset's reader writes (face crops, decoded pixels)
  gen<g>/member<k>/            one ensemble member: best.weights.h5, done.json, history.jsonl,
                               tensorboard/, ckpt/ (while it trains), .lock
  gen<g>/soft_labels.npz       generation g's mean probabilities over the training frames (and
                               each member's logits, float16, for the Dirichlet student)
  gen<G>/dirichlet/            the Dirichlet student of the last generation G - 1 (G = generations):
                               a member's files, plus density.npz (its feature-density OOD score)
  eval/  export/               evaluate.py's and the exporter's outputs

Every path is resolved from the folder this object is given, never from the ``workdir`` saved in
config.json, so a moved or copied run evaluates and exports from any current directory.
A member is finished when its ``done.json`` exists: it is written last, after the best weights,
so a member killed at any moment is never taken for finished.
"""

from __future__ import annotations

import dataclasses
import json
import os

from absl import logging

from emenet_tf.config import TrainConfig
from emenet_tf.errors import RunError
from emenet_tf.io import short_reason
from emenet_tf.labels import TASKS

CONFIG = "config.json"
CLASS_WEIGHTS = "class_weights.json"
DATA_SUMMARY = "data_summary.json"
DATA = "data"
PREPARED = "prepared"
EVAL = "eval"
METRICS = "metrics.json"  # the evaluation's results, in eval/
EXPORT = "export"
BEST_WEIGHTS = "best.weights.h5"
DONE = "done.json"
HISTORY = "history.jsonl"
TENSORBOARD = "tensorboard"
CHECKPOINTS = "ckpt"
SOFT_LABELS = "soft_labels.npz"
TEACHER_TEMPERATURES = "teacher_temperatures.json"  # --teacher_calibration temperature
LOCK = ".lock"
REPLICATE_TIME = "replicate_time.json"  # a study replicate's time ledger: written before config.json
EVAL_LOCK = ".eval.lock"
EXPORT_LOCK = ".export.lock"
DIRICHLET = "dirichlet"  # the member name of the distribution-distilled (Dirichlet) student
DENSITY = "density.npz"
TEMPORARY_PREFIX = ".tmp-"  # io.atomic_path's temporaries: never read, removed on resume


class RunDir:
    """The paths of one run folder, resolved from ``root`` (made absolute once, here)."""

    def __init__(self, root: str):
        self.root = os.path.abspath(os.fspath(root))

    def __repr__(self) -> str:
        return f"RunDir({self.root!r})"

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    # ------------------------------------------------------------ run-level files

    @property
    def config_path(self) -> str:
        return self.path(CONFIG)

    @property
    def class_weights_path(self) -> str:
        return self.path(CLASS_WEIGHTS)

    @property
    def data_summary_path(self) -> str:
        return self.path(DATA_SUMMARY)

    @property
    def eval_dir(self) -> str:
        return self.path(EVAL)

    @property
    def metrics_path(self) -> str:
        return os.path.join(self.eval_dir, METRICS)

    @property
    def export_dir(self) -> str:
        return self.path(EXPORT)

    @property
    def lock_path(self) -> str:
        return self.path(LOCK)

    @property
    def eval_lock_path(self) -> str:
        return self.path(EVAL_LOCK)

    @property
    def export_lock_path(self) -> str:
        return self.path(EXPORT_LOCK)

    @property
    def synthetic_dir(self) -> str:
        """Where the run's synthetic benchmark lies (``--data synthetic``)."""
        return self.path(DATA)

    @property
    def prepared_dir(self) -> str:
        """Where the datasets' readers write, one folder per dataset."""
        return self.path(PREPARED)

    # ------------------------------------------------------------ generations and members

    def generation_dir(self, generation: int) -> str:
        return self.path(f"gen{generation}")

    def soft_labels_path(self, generation: int) -> str:
        return os.path.join(self.generation_dir(generation), SOFT_LABELS)

    def teacher_temperatures_path(self, generation: int) -> str:
        return os.path.join(self.generation_dir(generation), TEACHER_TEMPERATURES)

    def member_dir(self, generation: int, member: int | str) -> str:
        """gen<g>/member<k>, or gen<g>/dirichlet for member ``DIRICHLET``."""
        name = member if isinstance(member, str) else f"member{member}"
        return os.path.join(self.generation_dir(generation), name)

    def member_file(self, generation: int, member: int | str, name: str) -> str:
        return os.path.join(self.member_dir(generation, member), name)

    def best_weights_path(self, generation: int, member: int | str) -> str:
        return self.member_file(generation, member, BEST_WEIGHTS)

    def done_path(self, generation: int, member: int | str) -> str:
        return self.member_file(generation, member, DONE)

    def is_done(self, generation: int, member: int | str) -> bool:
        """The member finished training: its done.json exists (written after its best weights)."""
        return os.path.isfile(self.done_path(generation, member))

    def reopen_if_damaged(self, generation: int, member: int | str) -> bool:
        """For a finished member: True when its done.json and best weights read back whole. Else (a
        disk fault, a file cut short) one warning names the file and done.json is removed, so the
        member trains again from its start (its checkpoint is gone once it is done): False."""
        done, weights = self.done_path(generation, member), self.best_weights_path(generation, member)
        for path, read in ((done, _read_json_object), (weights, _read_all_weights)):
            try:
                read(path)
            except (OSError, ValueError, KeyError, RuntimeError) as err:
                reason = short_reason(err)
                logging.warning("%s is unreadable (%s): generation %d member %s trains again", path, reason,
                                generation, member)  # fmt: skip
                os.remove(done)
                return False
        return True

    def generation_done(self, cfg: TrainConfig, generation: int) -> bool:
        return all(self.is_done(generation, k) for k in range(cfg.ensemble_size))

    def finished_generations(self, cfg: TrainConfig) -> int:
        """How many leading generations have every member finished (0..cfg.generations)."""
        for generation in range(cfg.generations):
            if not self.generation_done(cfg, generation):
                return generation
        return cfg.generations

    def unfinished_members(self, cfg: TrainConfig, generation: int) -> list[str]:
        return [
            self.member_dir(generation, k)
            for k in range(cfg.ensemble_size)
            if not self.is_done(generation, k)
        ]

    # ------------------------------------------------------------ the Dirichlet student

    @staticmethod
    def dirichlet_generation(cfg: TrainConfig) -> int:
        """The Dirichlet student's generation: one after the last, whose ensemble teaches it."""
        return cfg.generations

    def dirichlet_dir(self, cfg: TrainConfig) -> str:
        return self.member_dir(self.dirichlet_generation(cfg), DIRICHLET)

    def dirichlet_done(self, cfg: TrainConfig) -> bool:
        return self.is_done(self.dirichlet_generation(cfg), DIRICHLET)

    def density_path(self, cfg: TrainConfig) -> str:
        return os.path.join(self.dirichlet_dir(cfg), DENSITY)

    # ------------------------------------------------------------ reading a run

    def load_splits(self, cfg: TrainConfig) -> tuple[dict, dict]:
        """({"train", "validation"} over every dataset of ``cfg``'s --data, what was indexed and
        skipped), read the way training reads them (the benchmark and prepared crops in this folder)."""
        from emenet_tf.data import sources

        return sources.load_splits(
            cfg.sources(), self.synthetic_dir, self.prepared_dir, cfg.skip_bad_labels, cfg.train_resample_seed
        )

    def trained_tasks(self) -> tuple[str, ...]:
        """The tasks the run's training split labels (data_summary.json; a run indexed before it
        recorded them: all three). Only these are trained, distilled, evaluated and exported."""
        try:
            with open(self.data_summary_path) as f:
                tasks = json.load(f)["train"]["tasks"]
        except (OSError, ValueError, KeyError, TypeError):
            return TASKS
        return tuple(t for t in TASKS if t in tasks)

    def load_config(self) -> TrainConfig:
        """The saved configuration, with ``workdir`` set to this folder (wherever it was trained)."""
        if not os.path.isfile(self.config_path):
            raise RunError(f"{self.root}: no {CONFIG}: not a training run folder (run train.py first)")
        try:
            cfg = TrainConfig.load(self.config_path)
        except (ValueError, TypeError, OSError) as err:
            raise RunError(f"{self.config_path}: unreadable run configuration ({err})") from None
        return dataclasses.replace(cfg, workdir=self.root)

    def load_member(self, cfg: TrainConfig, generation: int, member: int | str, mc_dropout: bool = False):
        """A finished member's best weights in a fresh model (optionally with MC Dropout active).

        Member ``DIRICHLET`` is a Dirichlet student (``build_emenet(dirichlet=True)``).

        Raises RunError naming the member when it is not finished, or the file when its weights
        cannot be read (truncated, not HDF5, another architecture).
        """
        if not self.is_done(generation, member):
            raise RunError(
                f"{self.member_dir(generation, member)}: generation {generation} member {member} has not "
                f"finished training (no {DONE}); run train.py on this folder to finish it"
            )
        path = self.best_weights_path(generation, member)
        net = member_net(cfg, mc_dropout=mc_dropout, dirichlet=member == DIRICHLET)
        try:
            net.load_weights(path)
        except (OSError, ValueError, KeyError) as err:
            reason = short_reason(err, 200)
            raise RunError(f"{path}: cannot read the member's weights ({reason})") from None
        return net


def _read_json_object(path: str) -> None:
    with open(path) as f:
        if not isinstance(json.load(f), dict):
            raise ValueError("not a JSON object")


def _read_all_weights(path: str) -> None:
    """Read every array of a Keras HDF5 weights file (a cut file raises OSError or KeyError here)."""
    import h5py

    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: item[()] if isinstance(item, h5py.Dataset) else None)


def member_net(cfg: TrainConfig, seed: int | None = None, mc_dropout: bool = False, dirichlet: bool = False):
    """A fresh network of the kind the run's members are: temporal EMENet if ``cfg.temporal``, else
    EMENet (with precision heads for the Dirichlet student: ``dirichlet``)."""
    if cfg.temporal:
        from emenet_tf.models.temporal import build_temporal_emenet

        return build_temporal_emenet(
            cfg.model,
            image_size=cfg.image_size,
            dropout=cfg.dropout,
            mc_dropout=mc_dropout,
            seed=seed,
        )
    from emenet_tf.models import build_emenet

    return build_emenet(
        cfg.model,
        image_size=cfg.image_size,
        dropout=cfg.dropout,
        mc_dropout=mc_dropout,
        seed=seed,
        dirichlet=dirichlet,
    )
