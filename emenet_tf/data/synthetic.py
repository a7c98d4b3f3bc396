"""The synthetic Aff-Wild2 benchmark writer: rendered faces whose labels are samples from a known truth.

It writes exactly the Aff-Wild2 layout (``cropped_aligned/<video>/00001.jpg`` and
``annotations/{AU,EXPR,VA}_Set/{Train,Validation}_Set/<video>.txt``), so the same reader serves
both, plus what real data never has: the TRUE label distribution of every frame
(``synthetic_truth/{train,validation}.npz``), an out-of-domain folder (``ood/*.jpg``) and
``synthetic_meta.json`` (seed, sizes, counts, Bayes limits), written last.

The label model (AU tracks, the true distribution, label sampling, Bayes limits) is
``label_model``; the images are ``render``'s. This module derives every generator from the seed,
plans the videos, and writes the files. A write that fails (disk full, no permission, a JPEG that
will not encode) raises ``DataError`` naming the file. ``generate`` writes into the folder it is
given; the CLI (``python -m emenet_tf.data.synthetic``) writes into a temporary folder renamed into
place, so a failed run never leaves a folder that looks finished.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing
import os
import shutil
import time
import zipfile

import cv2
import numpy as np

from emenet_tf.data import label_model, render
from emenet_tf.data.synthetic_config import SyntheticConfig
from emenet_tf.errors import ConfigError, DataError
from emenet_tf.io import atomic_path
from emenet_tf.labels import (
    ANNOTATION_DIR,
    HEADERS,
    IMAGE_DIR,
    NUM_AU,
    NUM_EXPR,
    SPLITS,
    TASK_DIRS,
    TASKS,
    frame_name,
)

# ---------------------------------------------------------------- writing files

JPEG_QUALITY = 90


@contextlib.contextmanager
def _writing(path: str):
    """Turn an OSError inside the block (ENOSPC, EACCES, ...) into a one-line DataError naming the file.

    The file is the OSError's own (a folder ``os.makedirs`` could not make) or else ``path``
    (a write or flush that failed has none).
    """
    try:
        yield
    except OSError as err:
        where = path if err.filename is None else str(err.filename)
        raise DataError(f"cannot write: {err.strerror or err}", path=where) from err


def _makedirs(folder: str) -> None:
    with _writing(folder):
        os.makedirs(folder, exist_ok=True)


def _write_jpeg(path: str, rgb: np.ndarray) -> None:
    """Encode ``rgb`` (H, W, 3) uint8 as a JPEG and write it to ``path``."""
    ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise DataError("cannot write: JPEG encoding failed", path=path)
    with _writing(path), open(path, "wb") as f:
        f.write(buf.tobytes())


# ---------------------------------------------------------------- one video


def _video_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of one video: derived from the base seed, split and index only."""
    split_id = 0 if split == "train" else 1
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(split_id, index)))


def _missing_runs(rng: np.random.Generator, n: int, rate: float, mean_len: float) -> np.ndarray:
    """(n,) bool: runs of missing frames / lines (``render.frame_runs``)."""
    missing = np.zeros(n, bool)
    for run in render.frame_runs(rng, n, rate, mean_len):
        missing[run] = True
    return missing


def _task_sets(rng: np.random.Generator, index: int) -> tuple[str, ...]:
    """The task sets a video appears in: always one (round robin), each other with p = 0.7."""
    own = TASKS[index % 3]
    return tuple(t for t in TASKS if t == own or rng.random() < 0.7)


def _format_lines(task: str, labels: dict, missing: np.ndarray) -> list[str]:
    if task == "au":
        return [
            "-1," * (NUM_AU - 1) + "-1" if m else ",".join(map(str, r))
            for r, m in zip(labels["au"], missing, strict=True)
        ]
    if task == "expr":
        return ["-1" if m else str(int(e)) for e, m in zip(labels["expr"], missing, strict=True)]
    return ["-5,-5" if m else f"{v:.3f},{ar:.3f}" for (v, ar), m in zip(labels["va"], missing, strict=True)]


def make_video(
    out_dir: str,
    split: str,
    name: str,
    rng: np.random.Generator,
    n_frames: int,
    tasks,
    size: int,
    force: int | None = None,
    degraded_frames: float = 0.0,
) -> dict:
    """Render and write one video (frames + its annotation files); return its truth and labels.

    degraded_frames: the share of frames ``render.degrade`` spoils (drawn from a sixth child of
    ``rng``: the clean frames, labels and truth are the same at any share). Their labels and
    truth stay the face's state: annotators label the moment from the video around it.
    """
    r_track, r_id, r_pose, r_labels, r_miss, r_degrade = rng.spawn(6)
    a, _ = label_model.au_track(r_track, n_frames, force)
    ident = render.identity(r_id)
    truth = label_model.true_distribution(a)
    labels = label_model.sample_labels(r_labels, truth)
    no_image = _missing_runs(r_miss, n_frames, 0.02, 3.0)
    _write_annotations(out_dir, split, name, tasks, labels, r_miss, n_frames)
    degraded = render.degradation_plan(r_degrade, n_frames, degraded_frames) if degraded_frames > 0 else None
    _write_frames(out_dir, name, a, ident, r_pose, no_image, size, degraded)
    keep = ~no_image
    out = {key: value[keep] for key, value in truth.items()}
    out["frame"] = (np.flatnonzero(keep) + 1).astype(np.int32)
    out["video"] = np.full(int(keep.sum()), name)
    out["expr_label"] = labels["expr"][keep]
    out["degraded"] = int((degraded[keep] >= 0).sum()) if degraded is not None else 0
    return out


def _write_annotations(out_dir, split, name, tasks, labels, rng, n_frames) -> None:
    for task in TASKS:  # draw for every task, so the task sets do not shift other draws
        missing = _missing_runs(rng, n_frames, 0.05, 4.0)
        if task not in tasks:
            continue
        folder = os.path.join(out_dir, ANNOTATION_DIR, TASK_DIRS[task], SPLITS[split])
        _makedirs(folder)
        path = os.path.join(folder, f"{name}.txt")
        with _writing(path), open(path, "w", encoding="ascii", newline="\n") as f:
            f.write("\n".join([HEADERS[task], *_format_lines(task, labels, missing)]) + "\n")


def _write_frames(out_dir, name, a, ident, rng, no_image, size, degraded=None) -> None:
    folder = os.path.join(out_dir, IMAGE_DIR, name)
    _makedirs(folder)
    for i, img in render.video_frames(a, ident, rng, no_image, size, degraded):
        _write_jpeg(os.path.join(folder, frame_name(i + 1)), img)


def write_ood(out_dir: str, seed: int, count: int, size: int) -> int:
    """Write ``count`` OOD JPEGs to ``out_dir/ood/00001.jpg``...; return the count."""
    folder = os.path.join(out_dir, "ood")
    _makedirs(folder)
    for i in range(count):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2, i)))
        img = render.ood_image(rng, render.OOD_KINDS[i % len(render.OOD_KINDS)], size)
        _write_jpeg(os.path.join(folder, frame_name(i + 1)), img)
    return count


# ---------------------------------------------------------------- reading the truth back

META = "synthetic_meta.json"  # written last: its presence marks a finished benchmark
_TRUTH_KEYS = ("video", "frame", "expr_probs", "au_probs", "va_mean", "va_std")


def _split_key(split: str) -> str:
    for key, folder in SPLITS.items():
        if split in (key, folder):
            return key
    raise DataError(f"unknown split; expected one of {sorted(SPLITS)}", value=split)


def load_truth(data_dir: str, split: str) -> dict | None:
    """The true label distributions of ``split`` ("train" / "validation"), or None if not synthetic.

    Returns video (N,) str, frame (N,) int32, expr_probs (N, 7), au_probs (N, 12),
    va_mean (N, 2), va_std (N, 2), sorted by (video, frame).
    """
    path = os.path.join(data_dir, "synthetic_truth", f"{_split_key(split)}.npz")
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in _TRUTH_KEYS if k not in z.files]
            if missing:
                raise DataError(f"truth file lacks arrays {missing}", path=path)
            return {k: z[k] for k in _TRUTH_KEYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(f"unreadable truth file ({' '.join(str(err).split())[:160]})", path=path) from None


def is_complete(out_dir: str) -> bool:
    """Whether ``out_dir`` holds a finished benchmark whose meta and truth files read back whole (a
    damaged one is generated again: its output is a function of its settings)."""
    try:
        with open(os.path.join(out_dir, META)) as f:
            json.load(f)
        return all(load_truth(out_dir, split) is not None for split in SPLITS)
    except (OSError, ValueError):
        return False


# ---------------------------------------------------------------- the whole benchmark

_OURS = (ANNOTATION_DIR, IMAGE_DIR, "synthetic_truth", "ood", META)


def check_out_dir(out_dir: str) -> None:
    """Refuse (DataError) an ``out_dir`` that cannot be made, or a non-empty folder that is not a benchmark.

    A folder with ``synthetic_meta.json`` may be overwritten only if it holds nothing but the
    benchmark's own entries.
    """
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise DataError("exists and is not a folder; refusing to overwrite", path=out_dir)
    parent = os.path.dirname(os.path.abspath(out_dir))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise DataError("is a file: cannot create the output folder under it", path=parent)
    entries = set(os.listdir(out_dir)) if os.path.isdir(out_dir) else set()
    if entries and not os.path.isfile(os.path.join(out_dir, META)):
        raise DataError("not empty and not a synthetic benchmark; refusing to overwrite", path=out_dir)
    if entries - set(_OURS):
        foreign = sorted(entries - set(_OURS))
        raise DataError(
            "holds files that are not the benchmark's; refusing to overwrite", out_dir, value=foreign
        )


def _prepare_out_dir(out_dir: str) -> None:
    """Create ``out_dir``; clear a previous synthetic run; refuse to touch anything else."""
    check_out_dir(out_dir)
    with _writing(out_dir):
        for name in _OURS:
            path = os.path.join(out_dir, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.isfile(path):
                os.remove(path)
        os.makedirs(out_dir, exist_ok=True)


def video_plan(seed: int, split: str, n_videos: int, pairs: int) -> list[tuple[int, str, tuple]]:
    """(index, name, task sets) of each video of a split; the last 2 * pairs are _left/_right."""
    prefix = "syn-train" if split == "train" else "syn-val"
    pairs = min(pairs, n_videos // 2)
    plan = []
    for i in range(n_videos):
        j = i - (n_videos - 2 * pairs)
        name = f"{prefix}-{i:03d}" if j < 0 else f"{prefix}-{n_videos - 2 * pairs + j // 2:03d}-pair"
        name += "" if j < 0 else ("_left", "_right")[j % 2]
        tasks = _task_sets(np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(3, i))), i)
        plan.append((i, name, tasks))
    return plan


def _video_job(job) -> dict:
    out_dir, seed, split, index, name, tasks, n_frames, size, degraded_frames = job
    rng = _video_rng(seed, split, index)
    force = label_model.FORCED.get(index % 12)
    out = make_video(out_dir, split, name, rng, n_frames, tasks, size, force, degraded_frames)
    out["tasks"] = tasks
    return out


def _split_counts(parts: list[dict], n_frames: int) -> dict:
    expr = np.concatenate([p["expr_label"] for p in parts])
    return {
        "videos": len(parts),
        "frames": len(parts) * n_frames,
        "images": int(sum(len(p["frame"]) for p in parts)),
        "degraded_images": int(sum(p["degraded"] for p in parts)),
        "videos_per_task": {t: sum(t in p["tasks"] for p in parts) for t in TASKS},
        "expr_sampled_label_freq": np.round(
            np.bincount(expr, minlength=NUM_EXPR) / max(len(expr), 1), 4
        ).tolist(),
    }


def generate(out_dir: str, config: SyntheticConfig | None = None, workers: int = 1, **settings) -> dict:
    """Write the synthetic Aff-Wild2 benchmark to ``out_dir``; return a summary dict.

    config: the benchmark's settings (default ``SyntheticConfig()``); ``settings``: any of its fields,
    overriding it (``generate(out, seed=3, train_videos=4)``). ``degraded_frames``: the share of frames
    spoilt in short runs (``render.degrade``). The output is a function of the settings alone
    (``workers`` changes only the speed). Bad settings raise ``DataError`` naming them.
    """
    try:
        config = dataclasses.replace(config or SyntheticConfig(), **settings)
    except (ConfigError, TypeError) as err:
        raise DataError(f"bad synthetic benchmark settings: {err}", value=settings) from None
    seed, frames_per_video, image_size = config.seed, config.frames_per_video, config.image_size
    sizes = {
        "train_videos": config.train_videos,
        "val_videos": config.val_videos,
        "frames_per_video": frames_per_video,
        "image_size": image_size,
    }
    degraded_frames, pairs = config.degraded_frames, config.pairs
    ood_images = config.ood_images
    if ood_images is None:
        ood_images = min(400, config.val_videos * frames_per_video // 4)
    start = time.perf_counter()
    _prepare_out_dir(out_dir)
    summary = {
        "seed": seed,
        "sizes": {**sizes, "ood_images": ood_images},
        "degraded_frames": degraded_frames,
        "counts": {},
        "bayes_limits": {},
    }
    for split, n_videos in (("train", config.train_videos), ("validation", config.val_videos)):
        n_pairs = pairs if pairs is not None else (1 if n_videos >= 4 else 0)
        jobs = [
            (out_dir, seed, split, i, name, tasks, frames_per_video, image_size, degraded_frames)
            for i, name, tasks in video_plan(seed, split, n_videos, n_pairs)
        ]
        parts = _run_jobs(jobs, workers)
        truth = _write_truth(out_dir, split, parts)
        summary["counts"][split] = _split_counts(parts, frames_per_video)
        summary["bayes_limits"][split] = label_model.bayes_limits(truth)
    summary["counts"]["ood"] = write_ood(out_dir, seed, ood_images, image_size)
    _write_meta(out_dir, summary)
    seconds = time.perf_counter() - start
    frames = sum(c["images"] for k, c in summary["counts"].items() if k != "ood")
    return {
        **summary,
        "out_dir": out_dir,
        "seconds": seconds,
        "frames_per_second": frames / max(seconds, 1e-9),
    }


def _write_meta(out_dir: str, summary: dict) -> None:
    """synthetic_meta.json: written last and whole (or not at all), it marks a finished benchmark."""
    path = os.path.join(out_dir, META)
    with atomic_path(path) as tmp, _writing(path), open(tmp, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, sort_keys=True)


def _run_jobs(jobs: list, workers: int) -> list[dict]:
    if workers <= 1 or len(jobs) <= 1:
        return [_video_job(j) for j in jobs]
    # spawn, not fork: the caller may already hold TensorFlow's threads
    with multiprocessing.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
        return pool.map(_video_job, jobs)


def _write_truth(out_dir: str, split: str, parts: list[dict]) -> dict:
    order = sorted(range(len(parts)), key=lambda i: parts[i]["video"][0] if len(parts[i]["video"]) else "")
    parts = [parts[i] for i in order if len(parts[i]["frame"])]
    truth = {k: np.concatenate([p[k] for p in parts]) for k in _TRUTH_KEYS}
    truth["video"] = truth["video"].astype(str)
    folder = os.path.join(out_dir, "synthetic_truth")
    _makedirs(folder)
    path = os.path.join(folder, f"{split}.npz")
    with _writing(path), open(path, "wb") as f:
        np.savez(f, **truth)
    return truth


def write(out_dir: str, config: SyntheticConfig, workers: int = 1) -> dict:
    """``generate`` into a temporary folder beside ``out_dir``, renamed into place when complete:
    a failed or killed run never leaves a folder that looks finished. Refuses (DataError) an
    ``out_dir`` that is neither empty nor a benchmark."""
    check_out_dir(out_dir)
    with atomic_path(out_dir) as tmp:
        return {**generate(tmp, config, workers=workers), "out_dir": out_dir}


if __name__ == "__main__":
    from emenet_tf.cli.synthetic import main

    main()
