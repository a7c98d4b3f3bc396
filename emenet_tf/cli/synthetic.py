"""The synthetic benchmark's command line: python -m emenet_tf.data.synthetic --out DIR [--seed S] [settings].

The settings are ``SyntheticConfig``'s fields (``--train_videos``, ``--val_videos``, ...; the same
defaults as a run's ``--synthetic_*``). Writes into a temporary folder beside ``--out`` renamed into
place when complete; a bad setting or a failed write prints one line ``error: ...`` to stderr and
exits with status 2.
"""

from __future__ import annotations

import json
import sys

from absl import flags

from emenet_tf.cli.flags import define_dataclass_flags, explicit_values
from emenet_tf.data.synthetic_config import SyntheticConfig

PROG = "python -m emenet_tf.data.synthetic"


def _fail(message) -> None:
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(2)


def parse(argv: list[str]) -> flags.FlagValues:
    """The command line's values, on a FlagValues of their own (so ``main`` may run in-process)."""
    values = flags.FlagValues()
    flags.DEFINE_string("out", None, "Output folder (the Aff-Wild2 layout).", flag_values=values)
    flags.DEFINE_integer(
        "workers", 1, "Worker processes (the output does not depend on it).", flag_values=values
    )
    define_dataclass_flags(SyntheticConfig, flag_values=values)
    try:
        values([PROG, *argv])
    except flags.Error as err:
        _fail(err)
    if not values.out:
        _fail("--out is required")
    return values


def main(argv: list[str] | None = None) -> dict:
    """Write the benchmark; print its counts, Bayes limits and speed; return the summary."""
    from emenet_tf.data import synthetic
    from emenet_tf.errors import ConfigError, DataError

    values = parse(sys.argv[1:] if argv is None else argv)
    try:
        config = SyntheticConfig(**explicit_values(SyntheticConfig, flag_values=values))
        summary = synthetic.write(values.out, config, workers=values.workers)
    except ConfigError as err:  # its messages name train.py's flags, --synthetic_<name>
        _fail(str(err).replace("--synthetic_", "--"))
    except (DataError, OSError) as err:
        _fail(err)
    for split, counts in summary["counts"].items():
        print(f"{split}: {counts}")
    print(f"bayes limits (validation): {json.dumps(summary['bayes_limits']['validation'], indent=1)}")
    print(
        f"wrote {summary['out_dir']} in {summary['seconds']:.1f} s ({summary['frames_per_second']:.0f} frames/s)"
    )
    return summary
