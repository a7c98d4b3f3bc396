"""Train EMENet: a generation-0 deep ensemble, then distilled student generations.

With no arguments: generates the synthetic Aff-Wild2 benchmark into --workdir, trains, evaluates
and exports. Run the same command again to resume after an interruption.

The defaults are the CPU demo, sized so the whole job ends within ~15 minutes on 2 cores
(3 members x 3 generations, 6 epochs, the `small` model at 64x64). The paper's settings for a
real run: --model full --ensemble_size 5 --epochs 10 --learning_rate 1e-3 --lr_decay_epochs 3.
"""

import sys

from absl import app, flags

flags.DEFINE_string(
    "data_dir", None, "Aff-Wild2 root (cropped_aligned/, annotations/). Default: synthetic data."
)
flags.DEFINE_string("workdir", "runs/default", "Where checkpoints, soft labels, metrics and exports go.")
flags.DEFINE_string("model", "small", "EMENet variant: small (CPU demo, 64x64) or full (112x112).")
flags.DEFINE_integer("image_size", None, "Input side in pixels (default: the variant's).")
flags.DEFINE_float("dropout", 0.5, "Dropout rate before the heads (MC Dropout uses it too).")
flags.DEFINE_integer("ensemble_size", 3, "Members per generation (the paper: 5).")
flags.DEFINE_integer("generations", 3, "Generations: 1 = the generation-0 ensemble only.")
flags.DEFINE_integer("member", None, "Train only this member of each generation (parallel jobs).")
flags.DEFINE_integer("epochs", 6, "Epochs per member (the paper: 10).")
flags.DEFINE_integer("batch_size", 64, "Batch size.")
flags.DEFINE_float("learning_rate", 3e-3, "Adam learning rate (the paper: 1e-3).")
flags.DEFINE_integer(
    "lr_decay_epochs", 4, "Multiply the learning rate by --lr_decay_factor every this many epochs (paper: 3)."
)
flags.DEFINE_float("lr_decay_factor", 0.1, "Step decay factor.")
flags.DEFINE_integer("seed", 0, "Base seed: member k of generation g uses seed + k + 1000 g.")
flags.DEFINE_bool("augment", True, "Flip and colour jitter during training.")
flags.DEFINE_float("au_weight", 1.0, "Weight of the AU loss.")
flags.DEFINE_float("expr_weight", 1.0, "Weight of the EXPR loss.")
flags.DEFINE_float("va_weight", 1.0, "Weight of the VA loss.")
flags.DEFINE_float("va_ccc_weight", 1.0, "Weight of 1 - CCC inside the VA loss.")
flags.DEFINE_float("va_ce_weight", 1.0, "Weight of the bin cross-entropy inside the VA loss.")
flags.DEFINE_float(
    "class_weight_power",
    0.0,
    "Class weights = (inverse frequency)^power: 1 the paper's, 0.5 sqrt, 0 none (default: weighted "
    "cross-entropy is minimised by p_k ~ w_k q_k, which miscalibrates every model and its students).",
)
flags.DEFINE_float(
    "hard_label_weight", 0.0, "Students: weight of the ground-truth losses added to distillation."
)
flags.DEFINE_bool("skip_bad_labels", False, "Skip malformed annotation lines (counted) instead of failing.")
flags.DEFINE_string("backbone_weights", None, "Start the backbone from these saved weights (.h5).")
flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker"], "tf.distribute strategy.")
flags.DEFINE_bool("mixed_precision", False, "mixed_float16 compute (for GPUs).")
flags.DEFINE_integer("steps_per_epoch", None, "Cap on steps per epoch (quick runs).")
flags.DEFINE_integer("verbose", 1, "Keras fit verbosity: 0 silent, 1 progress bar, 2 one line per epoch.")
flags.DEFINE_integer("synthetic_seed", 0, "Seed of the generated synthetic benchmark.")
flags.DEFINE_integer(
    "synthetic_train_videos", None, "Synthetic benchmark: training videos (default: generator's)."
)
flags.DEFINE_integer("synthetic_val_videos", None, "Synthetic benchmark: validation videos.")
flags.DEFINE_integer("synthetic_frames_per_video", None, "Synthetic benchmark: frames per video.")
flags.DEFINE_bool("evaluate", True, "Evaluate all methods when training is complete.")
flags.DEFINE_bool("export", True, "Export TFLite models when training is complete.")
flags.DEFINE_integer("qat_epochs", 0, "Export: quantization-aware fine-tune epochs before int8 conversion.")
flags.DEFINE_bool("allow_degraded", False, "Export: write int8 models even if they miss the parity targets.")
FLAGS = flags.FLAGS


def config_from_flags():
    from emenet_tf.config import TrainConfig

    synthetic = {"seed": FLAGS.synthetic_seed}
    for name in ("train_videos", "val_videos", "frames_per_video"):
        value = getattr(FLAGS, f"synthetic_{name}")
        if value is not None:
            synthetic[name] = value
    names = [
        "data_dir",
        "workdir",
        "model",
        "image_size",
        "dropout",
        "ensemble_size",
        "generations",
        "member",
        "epochs",
        "batch_size",
        "learning_rate",
        "lr_decay_epochs",
        "lr_decay_factor",
        "seed",
        "augment",
        "au_weight",
        "expr_weight",
        "va_weight",
        "va_ccc_weight",
        "va_ce_weight",
        "class_weight_power",
        "hard_label_weight",
        "skip_bad_labels",
        "backbone_weights",
        "strategy",
        "mixed_precision",
        "steps_per_epoch",
        "verbose",
    ]
    return TrainConfig(synthetic=synthetic, **{n: getattr(FLAGS, n) for n in names})


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from emenet_tf.errors import ConfigError, DataError, ExportError

    try:
        cfg = config_from_flags()
        if cfg.mixed_precision:
            from emenet_tf._keras import keras

            keras.mixed_precision.set_global_policy("mixed_float16")
        from emenet_tf import run

        export_options = {"qat_epochs": FLAGS.qat_epochs, "allow_degraded": FLAGS.allow_degraded}
        result = run.run(cfg, evaluate=FLAGS.evaluate, export=FLAGS.export, export_options=export_options)
    except (ConfigError, DataError, ExportError, FileNotFoundError) as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 2
    print(f"train.py: done ({result['generations_complete']} generation(s) complete) in {cfg.workdir}")
    return 0


if __name__ == "__main__":
    app.run(main)
