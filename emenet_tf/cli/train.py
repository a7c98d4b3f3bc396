"""Train EMENet: a generation-0 deep ensemble, then distilled student generations.

With no arguments: generates the synthetic Aff-Wild2 benchmark into --workdir, trains, evaluates
and exports. Run the same command again to resume after an interruption.

The defaults are the CPU demo (``--preset demo``); ``--preset paper`` gives the paper's settings
(see ``emenet_tf.config``). Any flag given explicitly overrides the preset.
"""

from __future__ import annotations

from absl import flags

from emenet_tf.cli.flags import (
    config_from_flags,
    define_config_flags,
    define_dataclass_flags,
    error,
    explicit_values,
)
from emenet_tf.export.options import ExportOptions

FLAGS = flags.FLAGS
PROG = "train.py"


def define_flags() -> None:
    """TrainConfig's flags, export's own options, and the ones that choose what happens after training."""
    define_config_flags()
    define_dataclass_flags(ExportOptions)
    flags.DEFINE_bool("evaluate", True, "Evaluate all methods when training is complete.")
    flags.DEFINE_bool("export", True, "Export TFLite models when training is complete.")


def main(argv) -> int:
    if len(argv) > 1:
        return error(PROG, f"unexpected arguments: {argv[1:]}")
    from emenet_tf.errors import ConfigError, DataError, ExportError, RunError, TrainingError

    try:
        cfg = config_from_flags()
        export_options = ExportOptions(**explicit_values(ExportOptions))
        from emenet_tf import job

        job.check_paths(cfg)  # before TensorFlow loads: a wrong path is one line, at once
        job.check_model(cfg)
        if cfg.mixed_precision:
            from emenet_tf._keras import keras

            keras.mixed_precision.set_global_policy("mixed_float16")
        result = job.run_job(cfg, evaluate=FLAGS.evaluate, export=FLAGS.export, export_options=export_options)
    except (ConfigError, DataError, ExportError, RunError, TrainingError, FileNotFoundError) as e:
        return error(PROG, e)
    print(f"{PROG}: done ({result['generations_complete']} generation(s) complete) in {cfg.workdir}")
    for line in result.get("notes", []):
        print(f"{PROG}: {line}")
    return 0


def run_main() -> None:
    """Console entry point (``emenet-train``) and ``python train.py``."""
    from emenet_tf.cli.flags import run

    define_flags()
    run(main, PROG)
