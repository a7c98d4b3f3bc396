"""Train EMENet: a generation-0 deep ensemble, then distilled student generations.

With no arguments: generates the synthetic Aff-Wild2 benchmark into --workdir, trains, evaluates
and exports. Run the same command again to resume after an interruption.

The defaults are the CPU demo (``--preset demo``); ``--preset paper`` gives the paper's settings
(see ``emenet_tf.config``). Any flag given explicitly overrides the preset.
"""

from __future__ import annotations

import sys

from absl import app, flags

from emenet_tf.cli.flags import config_from_flags, define_config_flags

FLAGS = flags.FLAGS


def define_flags() -> None:
    """TrainConfig's flags plus the ones that choose what happens after training."""
    define_config_flags()
    flags.DEFINE_bool("evaluate", True, "Evaluate all methods when training is complete.")
    flags.DEFINE_bool("export", True, "Export TFLite models when training is complete.")
    flags.DEFINE_integer(
        "qat_epochs", 0, "Export: quantization-aware fine-tune epochs before int8 conversion.", lower_bound=0
    )
    flags.DEFINE_bool(
        "allow_degraded", False, "Export: write int8 models even if they miss the parity targets."
    )


def main(argv) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from emenet_tf.errors import ConfigError, DataError, ExportError, RunError, TrainingError

    try:
        cfg = config_from_flags()
        from emenet_tf import run

        run.check_paths(cfg)  # before TensorFlow loads: a wrong path is one line, at once
        if cfg.mixed_precision:
            from emenet_tf._keras import keras

            keras.mixed_precision.set_global_policy("mixed_float16")
        export_options = {"qat_epochs": FLAGS.qat_epochs, "allow_degraded": FLAGS.allow_degraded}
        result = run.run(cfg, evaluate=FLAGS.evaluate, export=FLAGS.export, export_options=export_options)
    except (ConfigError, DataError, ExportError, RunError, TrainingError, FileNotFoundError) as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 2
    print(f"train.py: done ({result['generations_complete']} generation(s) complete) in {cfg.workdir}")
    return 0


def run_main() -> None:
    """Console entry point (``emenet-train``) and ``python train.py``."""
    define_flags()
    app.run(main)
