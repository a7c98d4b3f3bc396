"""Face preparation's command line: python -m emenet_tf.prepare INPUT --out DIR (console script emenet-prepare).

Prints one summary line (faces kept, photographs without a face, ...) and where labels.csv is; bad
input ends in one line ``... error: ...`` with exit status 2. See ``emenet_tf.prepare``.
"""

from __future__ import annotations

import os

from absl import flags

from emenet_tf.cli.flags import error

FLAGS = flags.FLAGS
PROG = "python -m emenet_tf.prepare"


def define_flags() -> None:
    flags.DEFINE_string(
        "out", None, "Output folder: crops/, labels.csv, no_face.txt (empty, new or an earlier one)."
    )
    flags.DEFINE_enum("detector", "blazeface", ["blazeface", "haar"], "Face detector (the device's).")
    flags.DEFINE_integer("every", 1, "Video: take every N-th frame.", lower_bound=1)


def main(argv) -> int:
    if len(argv) != 2:
        return error(PROG, f"give one INPUT (a folder CSV, a class-folder tree or a video), got {argv[1:]}")
    if not FLAGS.out:
        return error(PROG, "--out is required (the folder to write crops/ and labels.csv into)")
    from edge.errors import EdgeError
    from emenet_tf import prepare
    from emenet_tf.errors import DataError, RunError

    try:
        summary = prepare.prepare(argv[1], FLAGS.out, FLAGS.detector, FLAGS.every)
    except (DataError, EdgeError, RunError, OSError) as e:
        return error(PROG, e)
    labels = os.path.join(FLAGS.out, prepare.LABELS)
    print(f"{PROG}: {prepare.describe(summary)}; train with: python train.py --data folder:{labels}")
    if summary["skipped"]["no_face"] or summary["skipped"]["unreadable"]:
        print(f"{PROG}: the inputs without a face are listed in {os.path.join(FLAGS.out, prepare.NO_FACE)}")
    return 0


def run_main() -> None:
    """``python -m emenet_tf.prepare`` and the ``emenet-prepare`` console script."""
    from emenet_tf.cli.flags import run

    define_flags()
    run(main, PROG)
