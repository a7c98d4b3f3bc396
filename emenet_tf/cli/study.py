"""The replicate study's command line: python -m emenet_tf.study [--replicates K] --seed S --workdir DIR [flags].

Every TrainConfig flag of train.py (``emenet_tf.cli.flags``, presets included) is accepted and passed
to each replicate; --member is refused (whole generations), and a replicate is evaluated, never
exported. An explicit --synthetic_seed or --train_resample_seed is ignored (replicate r derives
them from S + r, ``study.runner``), with a warning.
"""

from __future__ import annotations

import os
import shlex
import sys

from absl import flags, logging

from emenet_tf.cli.flags import config_from_flags, define_config_flags, error
from emenet_tf.study.render import fmt, fmt_ci
from emenet_tf.study.runner import DEFAULT_REPLICATES, DEFAULT_WORKDIR

FLAGS = flags.FLAGS
PROG = "python -m emenet_tf.study"


def define_flags() -> None:
    """train.py's TrainConfig flags (one definition) plus --replicates."""
    define_config_flags()
    flags.DEFINE_integer(
        "replicates",
        DEFAULT_REPLICATES,
        "Independent replicates K (each its own data and seeds).",
        lower_bound=1,
    )


def main(argv) -> int:
    if len(argv) > 1:
        return error(PROG, f"unexpected arguments: {argv[1:]}")
    for name in ("synthetic_seed", "train_resample_seed"):
        if FLAGS[name].present:
            logging.warning("--%s is ignored: replicate r derives it from S + r", name)
    if FLAGS["member"].present:
        return error(PROG, "--member is not for a study: each replicate trains whole generations")
    workdir = os.path.abspath(FLAGS.workdir if FLAGS["workdir"].present else DEFAULT_WORKDIR)
    from emenet_tf.errors import ConfigError, DataError, RunError, TrainingError

    try:
        base = config_from_flags(workdir=workdir)
        from emenet_tf import job
        from emenet_tf.study.runner import check_study_dir, replicate_config, run_study

        check_study_dir(workdir)  # the study's folder; each replicate's run folder is rep<r>/ in it
        job.check_paths(replicate_config(base, FLAGS.seed, 0, workdir))
        job.check_model(base)
        command = f"{PROG} " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        study = run_study(base, FLAGS.replicates, FLAGS.seed, workdir, command)
    except (ConfigError, DataError, RunError, TrainingError, FileNotFoundError) as e:
        return error(PROG, e)
    held = sum(c["holds"] for c in study["claims"])
    print(f"study: {held} of {len(study['claims'])} claims hold; see {os.path.join(workdir, 'claims.md')}")
    for c in study["claims"]:
        print(f"  {c['name']:45s} {c['task']:5s} mean {fmt(c['mean'])} CI {fmt_ci(c['ci95'])} "
              f"{'HOLDS' if c['holds'] else 'does not hold'}")  # fmt: skip
    return 0


def run_main() -> None:
    """``python -m emenet_tf.study`` (and the ``emenet-study`` console script)."""
    from emenet_tf.cli.flags import run

    define_flags()
    run(main, PROG)
