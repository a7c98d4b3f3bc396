"""Export a finished run to TFLite: python -m emenet_tf.export --workdir DIR [--out DIR] [--qat_epochs N] [--allow_degraded].

Prints one parity line per model and the files written; any failure ends in one line naming the file
or folder (exit status 2). The options are ``export.options.ExportOptions`` (train.py takes them too).
"""

from __future__ import annotations

import json
import os

from absl import flags, logging

from emenet_tf.cli.flags import define_dataclass_flags, error, explicit_values
from emenet_tf.export.options import ExportOptions

FLAGS = flags.FLAGS
PROG = "python -m emenet_tf.export"
# Figures printed per model (all of them are in parity.json).
SHOWN = (
    "float_max_abs_diff",
    "float_max_rel_diff",
    "expr_top1_agreement",
    "expr_entropy_mean_abs_diff",
    "au_decision_agreement",
    "float_layers",
    "size_bytes",
    "passed",
)


def define_flags() -> None:
    flags.DEFINE_string("workdir", None, "A finished training run (holds config.json).")
    flags.DEFINE_string(
        "out",
        None,
        "Output folder (default: WORKDIR/export). It must be empty, absent, or an earlier export of "
        "this run: anything else is refused, never replaced.",
    )
    define_dataclass_flags(ExportOptions)


def print_summary(summary: dict) -> None:
    """One line of the main parity figures per model, then the files written."""
    for name, figures in summary["parity"].items():
        shown = {k: figures[k] for k in SHOWN if k in figures}
        print(f"parity {name}: {json.dumps(shown)}")
    for path in summary["files"].values():
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")
    print(f"parity figures: {os.path.join(summary['out_dir'], 'parity.json')}")


def main(argv) -> int:
    if len(argv) > 1:
        return error(PROG, f"unexpected arguments: {argv[1:]}")
    from emenet_tf.errors import ConfigError, DataError, ExportError, RunError
    from emenet_tf.rundir import RunDir

    if not FLAGS.workdir:
        return error(PROG, "--workdir is required (a finished training run)")
    if not os.path.isfile(RunDir(FLAGS.workdir).config_path):
        return error(PROG, f"{FLAGS.workdir} holds no config.json (not a training run)")
    logging.set_verbosity(logging.WARNING)
    try:
        options = ExportOptions(**explicit_values(ExportOptions))
        from emenet_tf.export.exporter import export_run

        summary = export_run(FLAGS.workdir, out_dir=FLAGS.out, **options.to_dict())
    except (ExportError, RunError, ConfigError, DataError, OSError) as err:
        return error(PROG, f"export failed: {err}")
    print_summary(summary)
    return 0


def run_main() -> None:
    """``python -m emenet_tf.export`` and the ``emenet-export`` console script."""
    from emenet_tf.cli.flags import run

    define_flags()
    run(main, PROG)
