"""Evaluate a training run: every generation's single model and ensemble against the baselines.

  python evaluate.py --workdir runs/default [--ood_dir FOLDER] [--mc_passes 10] [--seed 0]

Writes <workdir>/eval/metrics.json, report.md and PNG plots (see emenet_tf/evaluation.py).
"""

import os
import sys

from absl import app, flags

flags.DEFINE_string("workdir", None, "The run directory train.py wrote (holds config.json and gen*/).")
flags.DEFINE_string("ood_dir", None, "Folder of out-of-domain images (default: <data_dir>/ood if it exists).")
flags.DEFINE_string("out_dir", None, "Where the results go (default: <workdir>/eval).")
flags.DEFINE_integer("mc_passes", 10, "MC Dropout forward passes.")
flags.DEFINE_integer("seed", 0, "Seed of the random fit / evaluation halves of validation.")
flags.DEFINE_integer("batch_size", None, "Inference batch size (default: the run's).")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        print(f"evaluate.py: error: unexpected arguments: {argv[1:]}", file=sys.stderr)
        return 2
    if not FLAGS.workdir:
        print("evaluate.py: error: --workdir is required (the folder train.py wrote)", file=sys.stderr)
        return 2
    if FLAGS.batch_size is not None and FLAGS.batch_size < 1:
        print(f"evaluate.py: error: --batch_size must be >= 1, got {FLAGS.batch_size}", file=sys.stderr)
        return 2
    if not os.path.isfile(os.path.join(FLAGS.workdir, "config.json")):  # checked before TensorFlow loads
        print(
            f"evaluate.py: error: {FLAGS.workdir}: no config.json: not a training run directory",
            file=sys.stderr,
        )
        return 2
    from emenet_tf import evaluation
    from emenet_tf.errors import ConfigError, DataError

    try:
        result = evaluation.evaluate_run(
            FLAGS.workdir,
            ood_dir=FLAGS.ood_dir,
            out_dir=FLAGS.out_dir,
            mc_passes=FLAGS.mc_passes,
            seed=FLAGS.seed,
            batch_size=FLAGS.batch_size,
        )
    except (ConfigError, DataError, FileNotFoundError) as e:
        print(f"evaluate.py: error: {e}", file=sys.stderr)
        return 2
    out_dir = FLAGS.out_dir or f"{FLAGS.workdir}/eval"
    print(f"evaluate.py: {len(result['methods'])} methods evaluated; see {out_dir}/report.md")
    return 0


if __name__ == "__main__":
    app.run(main)
