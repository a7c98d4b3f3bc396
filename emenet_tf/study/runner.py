"""Running the replicates of a study: K full runs (train + evaluate, no export), each its own data and seeds.

Replicate r (r = 0..K-1) is a full run in ``DIR/rep<r>/``. Everything random in it derives from S + r:
training uses --seed SEED_STRIDE (S + r) (member k of generation g then uses SEED_STRIDE (S + r) + k +
1000 g, so no two replicates share a member seed); the synthetic benchmark, when ``--data`` uses it,
is generated with --synthetic_seed S + r (its own faces, identities, sampled labels and OOD images);
on real datasets (one fixed split) each replicate trains on a seeded resample of the training
identities, --train_resample_seed S + r (``data.sources.RESAMPLE_SHARE`` of them). With S = 0,
replicate 0 on the benchmark is exactly ``python train.py --seed 0 --synthetic_seed 0 --noexport``
with the same flags. Rerunning the command skips finished replicates (``rep<r>/replicate.json``)
and resumes a killed one through train.py's resume; a replicate folder holding a run with other
settings is refused by the run's own config check (``job.prepare``).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
import time

from absl import logging

from emenet_tf.config import TrainConfig, flat
from emenet_tf.data import sources
from emenet_tf.errors import ConfigError, RunError
from emenet_tf.io import atomic_write_json, read_json
from emenet_tf.rundir import REPLICATE_TIME, RunDir
from emenet_tf.study.analysis import summarise
from emenet_tf.study.render import machine, write_study

SEED_STRIDE = 100_000  # training seed of replicate r: SEED_STRIDE * (S + r)
DEFAULT_REPLICATES = 8  # the study's default K (decided after the K = 8 study)
# Config fields that are not the study's settings: per replicate (folder, seeds) or per invocation.
PER_INVOCATION = ("workdir", "member", "verbose", "strategy", "seed", "synthetic_seed", "train_resample_seed")
REPLICATE = "replicate.json"  # in rep<r>/: written when the replicate is trained and evaluated
DEFAULT_WORKDIR = "runs/study"
MARKER = ".emenet-study"  # in every study folder


def replicate_config(base: TrainConfig, seed: int, r: int, workdir: str) -> TrainConfig:
    """The TrainConfig of replicate ``r``: its own folder, training seed, synthetic seed and resample."""
    return dataclasses.replace(
        base,
        workdir=os.path.join(workdir, f"rep{r}"),
        seed=SEED_STRIDE * (seed + r),
        synthetic=dataclasses.replace(base.synthetic, seed=seed + r),
        train_resample_seed=seed + r if base.uses_real_data() else None,
        member=None,
    )


def seed_rule(base: TrainConfig) -> str:
    rule = [f"--seed {SEED_STRIDE} (S + r)"]
    if base.uses_benchmark():
        rule.append("--synthetic_seed S + r")
    if base.uses_real_data():
        rule.append(f"--train_resample_seed S + r ({sources.RESAMPLE_SHARE:.0%} of the training identities)")
    return ", ".join(rule)


def run_replicate(cfg: TrainConfig) -> dict:
    """Train and evaluate one replicate (resuming), unless ``replicate.json`` says it is finished.

    A replicate folder holding a run with other settings is refused by the run itself
    (``job.prepare``: the saved config.json must agree).
    """
    from emenet_tf import job

    folder = RunDir(cfg.workdir)
    done_path = folder.path(REPLICATE)
    info, metrics = _readable(done_path), _readable(folder.metrics_path)
    if info is not None and metrics is not None:
        job.saved_config(cfg)  # skipped, yet refused if it was run with other settings
        if info.get("generations") == cfg.generations:  # else: extended by generations, go on
            return info
    resumed = os.path.exists(folder.config_path)
    with Stopwatch(folder.path(REPLICATE_TIME)) as watch:
        result = job.run_job(cfg, evaluate=True, export=False)
    if "metrics" not in result:
        raise RunError(f"{cfg.workdir}: only {result['generations_complete']} generation(s) complete")
    total = watch.totals()
    info = {
        "wall_s": total["wall_s"],
        "cpu_s": total["cpu_s"],
        "invocations": total["invocations"],
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "resumed": resumed,
        "seed": cfg.seed,
        "synthetic_seed": cfg.synthetic.seed,
        "train_resample_seed": cfg.train_resample_seed,
        "generations": cfg.generations,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    atomic_write_json(done_path, info)
    _free_memory()
    return info


def _readable(path: str) -> dict | None:
    """The JSON object at ``path``, or None when it is absent or unreadable (said in one warning: the
    replicate is then finished again, which recomputes the file)."""
    if not os.path.exists(path):
        return None
    try:
        value = read_json(path)
    except (OSError, ValueError) as err:
        logging.warning("%s is unreadable (%s): the replicate is finished again", path, err)
        return None
    return value if isinstance(value, dict) else None


class Stopwatch:
    """The wall and CPU seconds every invocation spent on one replicate, in a ledger file.

    Each invocation appends its entry and a daemon thread rewrites it (atomically) every
    ``every`` seconds, and once more at the end: an invocation killed at any moment, kill -9
    included, leaves its time up to its last update (at most ``every`` seconds are lost), so the
    replicate's recorded cost covers every invocation, not only the one that finished it.
    """

    def __init__(self, path: str, every: float = 30.0):
        self.path, self.every = path, every
        self._stop = threading.Event()

    def __enter__(self):
        self._entries = self._read()
        self._entries.append({"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "wall_s": 0.0, "cpu_s": 0.0})
        self._start, self._cpu = time.time(), _cpu_seconds()
        self._write()
        self._thread = threading.Thread(target=self._tick, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._write()
        return False

    def _read(self) -> list:
        try:
            entries = read_json(self.path)["invocations"]
            return [e for e in entries if isinstance(e, dict) and {"wall_s", "cpu_s"} <= set(e)]
        except (OSError, ValueError, KeyError, TypeError):
            return []  # absent, or torn: the time before is unknown, never invented

    def _tick(self) -> None:
        while not self._stop.wait(self.every):
            self._write()

    def _write(self) -> None:
        self._entries[-1].update(wall_s=time.time() - self._start, cpu_s=_cpu_seconds() - self._cpu)
        try:
            atomic_write_json(self.path, {"invocations": self._entries})
        except RunError:
            pass  # the ledger is bookkeeping: a full disk fails the run elsewhere, not here

    def totals(self) -> dict:
        return {
            "wall_s": sum(e["wall_s"] for e in self._entries),
            "cpu_s": sum(e["cpu_s"] for e in self._entries),
            "invocations": len(self._entries),
        }


def _cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _free_memory() -> None:
    import gc

    from emenet_tf._keras import keras

    keras.backend.clear_session()
    gc.collect()


def load_results(workdir: str, replicates: int) -> list[dict]:
    """Every replicate's metrics.json; RunError naming one that is missing or unreadable."""
    out = []
    for r in range(replicates):
        path = RunDir(os.path.join(workdir, f"rep{r}")).metrics_path
        result = _readable(path)
        if result is None:
            raise RunError(
                f"{path}: missing or unreadable; run the study command again to finish replicate {r}"
            )
        out.append(result)
    return out


def study_config(base: TrainConfig) -> dict:
    """The settings every replicate shares: the config less its folder, seeds and run-time fields."""
    config = {k: v for k, v in flat(base.to_dict()).items() if k not in PER_INVOCATION}
    if not base.uses_benchmark():
        config = {k: v for k, v in config.items() if not k.startswith("synthetic_")}
    config["seed_rule"] = seed_rule(base)
    return config


def check_study_dir(workdir: str) -> None:
    """ConfigError unless ``workdir`` is absent, empty or a study folder (its MARKER, or from before
    the marker: rep<r>/ folders and claims files only): the study writes claims.json, claims.md and
    claims.png there, which must never replace a user's files."""
    if not os.path.exists(workdir):
        return
    if not os.path.isdir(workdir):
        raise ConfigError(f"--workdir {workdir} is a file, not a study folder")
    entries = set(os.listdir(workdir))
    ours = {MARKER, "claims.json", "claims.md", "claims.png"}
    if entries and MARKER not in entries and not all(e in ours or e.startswith("rep") for e in entries):
        raise ConfigError(
            f"--workdir {workdir} is not empty and not a study folder; give a new or empty folder"
        )


def run_study(base: TrainConfig, replicates: int, seed: int, workdir: str, command: str = "") -> dict:
    """Run (or resume) every replicate of the study in ``workdir``, then write the claims."""
    if replicates < 1:
        raise ConfigError(f"--replicates must be >= 1, got {replicates}")
    check_study_dir(workdir)
    os.makedirs(workdir, exist_ok=True)
    atomic_write_json(os.path.join(workdir, MARKER), {"written_by": "emenet_tf.study"})
    start = time.time()
    walls, cpus = [], []
    for r in range(replicates):
        cfg = replicate_config(base, seed, r, workdir)
        logging.info("study: replicate %d/%d in %s (%s)", r + 1, replicates, cfg.workdir, seed_rule(base))
        info = run_replicate(cfg)
        walls.append(info.get("wall_s"))
        cpus.append(info.get("cpu_s"))
    run_info = {
        "command": command,
        "machine": machine(),
        "wall_s": time.time() - start,
        "replicate_wall_s": walls,
        "replicate_cpu_s": cpus,
        "python": sys.version.split()[0],
    }
    tasks = RunDir(os.path.join(workdir, "rep0")).trained_tasks()
    results = load_results(workdir, replicates)
    study = summarise(results, base.generations, tasks, seed, study_config(base), run_info)
    write_study(workdir, study)
    return study
