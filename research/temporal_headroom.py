"""What time adds on the benchmark: a temporal student's scores by state reset, a per-frame student's by smoothing.

  python research/temporal_headroom.py --temporal_run RUN_T [--per_frame_run RUN] [--generation G]

Both on ALL validation frames of each run's data (not the evaluation half: this is a diagnostic of
the inference rule, not a claim), ABAW scores (``training.checkpoints.abaw_scores``) of member 0 of the last
(or ``--generation``) generation:
- ``--temporal_run`` (a ``--temporal T`` run): every segment in frame order, the GRU state carried
  over the whole segment (reset 0) or reset every T, 2T, 4T seen frames (``clips.chunks``; T is what
  evaluation and the edge use).
- ``--per_frame_run``: the per-frame student as is, and exponentially smoothed along each segment
  (p <- a p_now + (1 - a) p_before, a = 0.5, 0.3, the edge's ``--smooth``): how much a causal
  filter over time gains on this data, a yardstick for what a temporal model can add.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from emenet_tf.data import clips  # noqa: E402
from emenet_tf.evaluation.inputs import validation_index  # noqa: E402
from emenet_tf.labels import TASKS  # noqa: E402
from emenet_tf.rundir import RunDir  # noqa: E402
from emenet_tf.temporal_inference import frame_source, predict_frames  # noqa: E402
from emenet_tf.training.checkpoints import abaw_scores  # noqa: E402

SMOOTHING = (0.5, 0.3)


def load(workdir: str, generation: int | None):
    """(config, validation index, member 0 of the generation, the generation)."""
    run = RunDir(workdir)
    cfg = dataclasses.replace(run.load_config(), workdir=workdir)
    gen = cfg.generations - 1 if generation is None else generation
    index = validation_index(run, cfg)
    return cfg, index, run.load_member(cfg, gen, 0), gen


def line(name: str, scores: dict) -> str:
    return f"{name:34s} " + " ".join(f"{k}={v:.4f}" for k, v in scores.items())


def temporal_rows(workdir: str, generation: int | None) -> None:
    cfg, index, model, gen = load(workdir, generation)
    if not cfg.temporal:
        raise SystemExit(f"{workdir}: not a temporal run (--temporal 0)")
    base = frame_source(cfg, index, 64)
    for every in (0, cfg.temporal, 2 * cfg.temporal, 4 * cfg.temporal):
        pred = predict_frames(model, dataclasses.replace(base, reset_every=every))
        rule = "state carried" if every == 0 else f"state reset every {every}"
        print(line(f"gen{gen} temporal, {rule}", abaw_scores(pred)), flush=True)


def smoothed(pred: dict, index, max_gap: int, alpha: float) -> dict:
    """The per-frame predictions exponentially smoothed along each segment (frame order)."""
    out = {**pred, **{task: pred[task].copy() for task in TASKS}}
    row_of = {int(f): k for k, f in enumerate(pred["frame_id"])}
    for steps in clips.segments(index, max_gap):
        rows = [row_of[r] for r in steps[steps >= 0].tolist() if r in row_of]
        for task in TASKS:
            for before, now in zip(rows[:-1], rows[1:], strict=True):
                out[task][now] = alpha * pred[task][now] + (1.0 - alpha) * out[task][before]
    return out


def per_frame_rows(workdir: str, generation: int | None) -> None:
    cfg, index, model, gen = load(workdir, generation)
    pred = predict_frames(model, frame_source(cfg, index, 64))
    print(line(f"gen{gen} per-frame", abaw_scores(pred)), flush=True)
    for alpha in SMOOTHING:
        scores = abaw_scores(smoothed(pred, index, cfg.temporal_max_gap, alpha))
        print(line(f"gen{gen} per-frame, smoothed a={alpha}", scores), flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--temporal_run", default=None, help="a --temporal T run folder")
    parser.add_argument("--per_frame_run", default=None, help="a per-frame run folder")
    parser.add_argument("--generation", type=int, default=None, help="default: the last")
    args = parser.parse_args(argv)
    if not (args.temporal_run or args.per_frame_run):
        parser.error("give --temporal_run and/or --per_frame_run")
    if args.temporal_run:
        temporal_rows(args.temporal_run, args.generation)
    if args.per_frame_run:
        per_frame_rows(args.per_frame_run, args.generation)


if __name__ == "__main__":
    main()
