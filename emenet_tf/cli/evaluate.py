"""Evaluate a training run: every generation's single model and ensemble against the baselines.

  python evaluate.py --workdir runs/default [--ood_dir FOLDER] [--mc_passes 10] [--seed 0] [--allow_partial]

Writes <workdir>/eval/metrics.json, report.md and PNG plots (see emenet_tf/evaluation/). A run with an
unfinished generation is refused unless --allow_partial, whose figures go to <workdir>/eval_partial/.
"""

from __future__ import annotations

import os

from absl import flags

from emenet_tf.cli.flags import error

FLAGS = flags.FLAGS
PROG = "evaluate.py"
MAX_MC_PASSES = 1000  # each pass predicts the whole validation split


def define_flags() -> None:
    flags.DEFINE_string("workdir", None, "The run directory train.py wrote (holds config.json and gen*/).")
    flags.DEFINE_string(
        "ood_dir",
        None,
        "Folder of out-of-domain images (default: the synthetic benchmark's ood/, if the run uses it).",
    )
    flags.DEFINE_string(
        "out_dir",
        None,
        "Where the results go (default: <workdir>/eval); an empty or new folder, or an earlier evaluation.",
    )
    flags.DEFINE_bool(
        "allow_partial",
        False,
        "Evaluate a run whose last generation is unfinished (into <workdir>/eval_partial).",
    )
    flags.DEFINE_integer("mc_passes", 10, "MC Dropout forward passes.")
    flags.DEFINE_integer("seed", 0, "Seed of the random fit / evaluation halves of validation.")
    flags.DEFINE_integer("batch_size", None, "Inference batch size (default: the run's).")


def _error(message) -> int:
    return error(PROG, message)


def main(argv) -> int:
    if len(argv) > 1:
        return _error(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.workdir:
        return _error("--workdir is required (the folder train.py wrote)")
    from emenet_tf.config import MAX_BATCH_SIZE

    if FLAGS.batch_size is not None and not 1 <= FLAGS.batch_size <= MAX_BATCH_SIZE:
        return _error(f"--batch_size must be in [1, {MAX_BATCH_SIZE}], got {FLAGS.batch_size}")
    if not 2 <= FLAGS.mc_passes <= MAX_MC_PASSES:
        return _error(f"--mc_passes must be in [2, {MAX_MC_PASSES}], got {FLAGS.mc_passes}")
    if not os.path.isfile(os.path.join(FLAGS.workdir, "config.json")):  # checked before TensorFlow loads
        return _error(f"{FLAGS.workdir}: no config.json: not a training run directory")
    from emenet_tf import evaluation
    from emenet_tf.errors import ConfigError, DataError, RunError

    try:
        result = evaluation.evaluate_run(
            FLAGS.workdir,
            ood_dir=FLAGS.ood_dir,
            out_dir=FLAGS.out_dir,
            mc_passes=FLAGS.mc_passes,
            seed=FLAGS.seed,
            batch_size=FLAGS.batch_size,
            allow_partial=FLAGS.allow_partial,
        )
    except (ConfigError, DataError, RunError, FileNotFoundError) as e:
        return _error(str(e))
    partial = result["frames"].get("partial")
    out_dir = FLAGS.out_dir or os.path.join(FLAGS.workdir, "eval_partial" if partial else "eval")
    print(f"{PROG}: {len(result['methods'])} methods evaluated; see {out_dir}/report.md")
    return 0


def run_main() -> None:
    """Console entry point (``emenet-evaluate``) and ``python evaluate.py``."""
    from emenet_tf.cli.flags import run

    define_flags()
    run(main, PROG)
