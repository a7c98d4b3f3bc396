"""CLI: python -m emenet_tf.export --workdir DIR [--qat_epochs N] [--allow_degraded] [--out DIR].

Exports a finished training run to TFLite (see ``emenet_tf.export.run``) and prints one parity
line per model and the files written; any failure ends in one line naming the file or folder.
"""

from __future__ import annotations

import argparse
import json
import os

from absl import logging

from emenet_tf.errors import ConfigError, DataError, ExportError, RunError
from emenet_tf.export.convert import BACKBONE_LAYERS, FLOAT_BACKBONE_MAX, FLOAT_LAYERS, QUANTIZE_MODES
from emenet_tf.export.run import VALIDATION_FRAMES, export_run
from emenet_tf.rundir import RunDir

# Figures printed per model (all of them are in parity.json).
SHOWN = (
    "float_max_abs_diff",
    "expr_top1_agreement",
    "expr_entropy_mean_abs_diff",
    "au_decision_agreement",
    "float_layers",
    "size_bytes",
    "passed",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m emenet_tf.export", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a finished training run (holds config.json)")
    parser.add_argument("--out", default=None, help="output folder (default: WORKDIR/export)")
    parser.add_argument(
        "--qat_epochs", type=int, default=0, help="quantization-aware fine-tune epochs (0: none)"
    )
    parser.add_argument("--allow_degraded", action="store_true", help="write models that miss parity targets")
    parser.add_argument("--representative_frames", type=int, default=200)
    parser.add_argument("--validation_frames", type=int, default=VALIDATION_FRAMES)
    parser.add_argument("--quantize", choices=QUANTIZE_MODES, default="float_post")
    parser.add_argument(
        "--float_backbone",
        type=int,
        default=0,
        help=f"also keep the first K backbone stages float ({', '.join(BACKBONE_LAYERS)})",
    )
    parser.add_argument(
        "--float_backbone_max",
        type=int,
        default=FLOAT_BACKBONE_MAX,
        help="if int8 misses a parity target, keep up to this many more leading stages float",
    )
    args = parser.parse_args(argv)
    if not os.path.isfile(RunDir(args.workdir).config_path):
        parser.error(f"{args.workdir} holds no config.json (not a training run)")
    if not 0 <= args.float_backbone <= len(BACKBONE_LAYERS):
        parser.error(f"--float_backbone must be in 0..{len(BACKBONE_LAYERS)}, got {args.float_backbone}")
    if args.qat_epochs < 0:
        parser.error(f"--qat_epochs must be >= 0, got {args.qat_epochs}")
    return args


def print_summary(summary: dict) -> None:
    """One line of the main parity figures per model, then the files written."""
    for name, figures in summary["parity"].items():
        shown = {k: figures[k] for k in SHOWN if k in figures}
        print(f"parity {name}: {json.dumps(shown)}")
    for path in summary["files"].values():
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")
    print(f"parity figures: {os.path.join(summary['out_dir'], 'parity.json')}")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.set_verbosity(logging.WARNING)
    try:
        summary = export_run(
            args.workdir,
            out_dir=args.out,
            qat_epochs=args.qat_epochs,
            allow_degraded=args.allow_degraded,
            representative_frames=args.representative_frames,
            quantize=args.quantize,
            validation_frames=args.validation_frames,
            float_layers=FLOAT_LAYERS + BACKBONE_LAYERS[: args.float_backbone],
            float_backbone_max=args.float_backbone_max,
        )
    except (ExportError, RunError, ConfigError, DataError, OSError) as err:
        raise SystemExit(f"export failed: {err}") from None
    print_summary(summary)
    return summary


def run_main() -> int:
    """Console entry point (``emenet-export``): exit status 0, or main's one-line SystemExit."""
    main()
    return 0


if __name__ == "__main__":
    main()
