"""Run configuration: one frozen, validated dataclass, the one source of every training default.

``train.py``'s flags are derived from these fields (``emenet_tf.cli.flags``): the field's default
is the flag's default and its ``help`` metadata the flag's help, so the two never disagree.
A run saves its configuration as ``config.json``; a rerun on the same folder must agree with it
in every field that changes what was trained (``RESUMABLE`` lists the ones that may differ).
The data come from ``--data`` (``emenet_tf.data.sources``); the built-in benchmark's own settings
are ``SyntheticConfig`` (field ``synthetic``, flags ``--synthetic_<name>``).

Presets (``--preset``) replace some defaults at once; flags given explicitly still win:
  demo   the CPU demo (the defaults below)
  paper  the paper's settings: MobileFaceNet-sized model at 112 px, 5 members, 10 epochs,
         Adam 1e-3 x0.1 every 3 epochs, inverse-frequency class weights, generation-3 students
"""

from __future__ import annotations

import dataclasses
import json
import math

from emenet_tf import retired
from emenet_tf.data import sources
from emenet_tf.data.synthetic_config import SyntheticConfig
from emenet_tf.errors import ConfigError
from emenet_tf.io import atomic_write_text

STRATEGIES = ("default", "mirrored", "multi_worker")
TEACHER_CALIBRATIONS = ("none", "temperature")
SELECTION_SPLITS = ("all", "fit")
MAX_SEED = 2**31 - 1
# Bounds on the flags that size memory, checked before TensorFlow loads: a side of 1024 px already
# makes a batch of 64 frames 800 MB of float32 input; larger sides are a typo, not a setting.
MAX_IMAGE_SIZE = 1024
MAX_BATCH_SIZE = 4096
MAX_TEMPORAL = 512


def _field(default, help: str, **choices):
    """A config field with its flag help (and, for strings, the allowed values)."""
    return dataclasses.field(default=default, metadata={"help": help, **choices})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything one training run (all generations, all members) depends on."""

    workdir: str = _field("runs/default", "Where checkpoints, soft labels, metrics and exports go.")
    data: str = _field("synthetic", sources.FLAG_HELP)
    synthetic: SyntheticConfig = dataclasses.field(
        default_factory=SyntheticConfig, metadata={"help": "The built-in benchmark's settings."}
    )
    train_resample_seed: int | None = _field(
        None,
        "Train on a seeded random share (data.sources.RESAMPLE_SHARE) of the training identities "
        "(videos, subjects or photos): the replicate study's resample on datasets with one fixed "
        "split. None: all of them.",
    )
    preset: str = _field("demo", "Named defaults: demo (CPU demo) or paper (the paper's settings).")
    model: str = _field("small", "EMENet variant: small (CPU demo, 64x64), full (112x112) or tiny (tests).")
    image_size: int | None = _field(None, "Input side in pixels (default: the variant's).")
    dropout: float = _field(0.5, "Dropout rate before the heads (MC Dropout uses it too).")
    ensemble_size: int = _field(3, "Members per generation (the paper: 5).")
    generations: int = _field(3, "Generations: 1 = the generation-0 ensemble only.")
    member: int | None = _field(None, "Train only this member of each generation (parallel jobs).")
    epochs: int = _field(6, "Epochs per member (the paper: 10).")
    batch_size: int = _field(64, "Batch size.")
    learning_rate: float = _field(3e-3, "Adam learning rate (the paper: 1e-3).")
    lr_decay_epochs: int = _field(
        4, "Multiply the learning rate by --lr_decay_factor every this many epochs (the paper: 3)."
    )
    lr_decay_factor: float = _field(0.1, "Step decay factor.")
    seed: int = _field(0, "Base seed: member k of generation g uses seed + k + 1000 g.")
    augment: bool = _field(True, "Flip and colour jitter during training.")
    au_weight: float = _field(1.0, "Weight of the AU loss.")
    expr_weight: float = _field(1.0, "Weight of the EXPR loss.")
    va_weight: float = _field(1.0, "Weight of the VA loss.")
    va_ccc_weight: float = _field(1.0, "Weight of 1 - CCC inside the VA loss.")
    va_ce_weight: float = _field(1.0, "Weight of the bin cross-entropy inside the VA loss.")
    class_weight_power: float = _field(
        0.0,
        "Class weights = (inverse frequency)^power: 1 the paper's, 0.5 sqrt, 0 none (default: weighted "
        "cross-entropy is minimised by p_k ~ w_k q_k, which miscalibrates every model and its students).",
    )
    hard_label_weight: float = _field(
        1.0,
        "Students: weight of the ground-truth losses added to distillation (the paper: 0; 1 measured "
        "better in every replicate, research/RESEARCH.md).",
    )
    teacher_calibration: str = _field(
        "temperature",
        "Students' soft labels: each teacher ensemble's mean temperature scaled with temperatures fit "
        "on the validation FIT half (temperature), or as is (none, the paper). Never the evaluation half.",
        choices=TEACHER_CALIBRATIONS,
    )
    selection_split: str = _field(
        "fit",
        "Each member's best epoch is chosen on the validation fit half only (fit: the evaluation half "
        "is never seen in training) or on all validation frames (all, the paper's code).",
        choices=SELECTION_SPLITS,
    )
    dirichlet_student: bool = _field(
        True,
        "After the last generation, distil its ensemble into one Dirichlet student (EnD^2: Dirichlet "
        "over EXPR and the VA bins, Beta per AU, trained on every member's probabilities), with a "
        "feature-density OOD score; exported as student_dirichlet_int8.tflite. Per-frame runs only: "
        "off by default with --temporal.",
    )
    skip_bad_labels: bool = _field(False, "Skip malformed annotation lines (counted) instead of failing.")
    backbone_weights: str | None = _field(None, "Start the backbone from these saved weights (.h5).")
    strategy: str = _field("default", "tf.distribute strategy.", choices=STRATEGIES)
    mixed_precision: bool = _field(False, "mixed_float16 compute (for GPUs).")
    steps_per_epoch: int | None = _field(None, "Cap on steps per epoch (quick runs).")
    verbose: int = _field(1, "Keras fit verbosity: 0 silent, 1 progress bar, 2 one line per epoch.")
    temporal: int = _field(
        0,
        "Clip length T: train temporal EMENets (the backbone per frame, a GRU of 128 units in each "
        "task head) on clips of T frames and evaluate them over whole videos; 0: per-frame EMENets.",
    )
    temporal_stride: int | None = _field(
        None, "Temporal: frames between the starts of consecutive training clips (default: T, no overlap)."
    )
    temporal_max_gap: int = _field(
        5,
        "Temporal: missing frames a video segment bridges as masked steps (state carried); a longer gap "
        "starts a new segment (state reset). The edge keeps a face's state as long.",
    )

    def __post_init__(self):
        if isinstance(self.synthetic, dict):  # from config.json
            object.__setattr__(self, "synthetic", SyntheticConfig.from_dict(self.synthetic))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"--{f.name} must be a finite number, got {value}")
        for ok, message in self._checks():
            if not ok:
                raise ConfigError(message)
        sources.parse(self.data)  # ConfigError naming the entry that is wrong

    def _checks(self):
        positive = ("ensemble_size", "generations", "epochs", "batch_size", "lr_decay_epochs")
        yield from ((getattr(self, n) >= 1, f"--{n} must be >= 1, got {getattr(self, n)}") for n in positive)
        for f in dataclasses.fields(self):
            allowed = f.metadata.get("choices")
            value = getattr(self, f.name)
            yield allowed is None or value in allowed, f"--{f.name} must be one of {allowed}, got {value!r}"
        yield self.temporal >= 0, f"--temporal must be >= 0 (0: per-frame), got {self.temporal}"
        yield self.temporal_max_gap >= 0, f"--temporal_max_gap must be >= 0, got {self.temporal_max_gap}"
        for n in ("temporal_stride", "steps_per_epoch", "image_size"):
            value = getattr(self, n)
            yield value is None or value >= 1, f"--{n} must be >= 1, got {value}"
        for name, bound in (
            ("image_size", MAX_IMAGE_SIZE),
            ("batch_size", MAX_BATCH_SIZE),
            ("temporal", MAX_TEMPORAL),
        ):
            value = getattr(self, name)
            yield value is None or value <= bound, f"--{name} must be <= {bound}, got {value}"
        weights = (
            "au_weight",
            "expr_weight",
            "va_weight",
            "va_ccc_weight",
            "va_ce_weight",
            "hard_label_weight",
        )
        yield from ((getattr(self, n) >= 0, f"--{n} must be >= 0, got {getattr(self, n)}") for n in weights)
        yield (
            self.au_weight + self.expr_weight + self.va_weight > 0,
            "--au_weight, --expr_weight and --va_weight are all 0: nothing would be trained",
        )
        yield self.learning_rate > 0, f"--learning_rate must be > 0, got {self.learning_rate}"
        yield (
            0 < self.lr_decay_factor <= 1,
            f"--lr_decay_factor must be in (0, 1], got {self.lr_decay_factor}",
        )
        yield 0.0 <= self.dropout < 1.0, f"--dropout must be in [0, 1), got {self.dropout}"
        for n in ("seed", "train_resample_seed"):
            value = getattr(self, n)
            yield value is None or 0 <= value <= MAX_SEED, f"--{n} must be in [0, {MAX_SEED}], got {value}"
        yield (
            not self.temporal or all(s.weight == 1.0 for s in sources.parse(self.data)),
            "--data weights are for per-frame runs: a temporal run draws clips from every dataset alike",
        )
        yield (
            not (self.dirichlet_student and self.temporal),
            "--dirichlet_student is for per-frame runs (--temporal 0): its precision heads and density "
            "have no temporal form yet",
        )
        yield self.preset in PRESETS, f"--preset must be one of {tuple(PRESETS)}, got {self.preset!r}"
        yield (
            0.0 <= self.class_weight_power <= 1.0,
            f"--class_weight_power must be in [0, 1], got {self.class_weight_power}",
        )
        yield (
            self.member is None or 0 <= self.member < self.ensemble_size,
            f"--member must be in [0, {self.ensemble_size}), got {self.member}",
        )
        yield self.verbose in (0, 1, 2), f"--verbose must be 0, 1 or 2, got {self.verbose}"

    def member_seed(self, generation: int, member: int | str) -> int:
        """Seed of one member: seed + member, shifted per generation so students differ from teachers.

        The Dirichlet student (member ``"dirichlet"``) counts as member ``ensemble_size``.
        """
        index = self.ensemble_size if isinstance(member, str) else member
        return self.seed + index + 1000 * generation

    def clip_stride(self) -> int:
        """Frames between the starts of consecutive training clips (temporal runs)."""
        return self.temporal_stride or self.temporal

    def clips_per_batch(self) -> int:
        """Clips per temporal training batch: --batch_size counts frames in both kinds of run."""
        return max(1, self.batch_size // max(self.temporal, 1))

    def sources(self) -> tuple[sources.Source, ...]:
        """The datasets ``--data`` names, in order."""
        return sources.parse(self.data)

    def uses_benchmark(self) -> bool:
        """``--data`` names the synthetic benchmark."""
        return any(s.name == sources.SYNTHETIC for s in self.sources())

    def uses_real_data(self) -> bool:
        """``--data`` names a dataset other than the synthetic benchmark."""
        return any(s.name != sources.SYNTHETIC for s in self.sources())

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def save(self, path: str) -> None:
        atomic_write_text(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str) -> TrainConfig:
        """A saved config.json, older layouts read with their documented meaning (``retired.upgrade``)."""
        with open(path) as f:
            values = json.load(f)
        if not isinstance(values, dict):
            raise ValueError(f"expected a JSON object, got {type(values).__name__}")
        values = retired.upgrade(values, path)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


# Fields a rerun on an existing run folder may change: they do not change what was trained.
# generations: a run may be extended (or stopped earlier) by generations.
RESUMABLE = ("workdir", "member", "verbose", "strategy", "generations")

PRESETS = {
    "demo": {},
    "paper": {
        "model": "full",
        "ensemble_size": 5,
        "generations": 4,
        "epochs": 10,
        "batch_size": 64,
        "learning_rate": 1e-3,
        "lr_decay_epochs": 3,
        "lr_decay_factor": 0.1,
        "dropout": 0.5,
        "class_weight_power": 1.0,
        "hard_label_weight": 0.0,
        "teacher_calibration": "none",
        "selection_split": "all",
    },
}


def make_config(preset: str = "demo", **explicit) -> TrainConfig:
    """A config from a preset's values, overridden by ``explicit`` values (e.g. flags given)."""
    if preset not in PRESETS:
        raise ConfigError(f"--preset must be one of {tuple(PRESETS)}, got {preset!r}")
    values = {**PRESETS[preset], **explicit, "preset": preset}
    if values.get("temporal") and "dirichlet_student" not in explicit:
        values["dirichlet_student"] = False  # per-frame only; asked for with --temporal: refused
    return TrainConfig(**values)


def flat(values: dict) -> dict:
    """A config dict with the synthetic benchmark's settings as ``synthetic_<name>`` entries: the
    flags' names, for messages and comparisons."""
    out = {k: v for k, v in values.items() if k != "synthetic"}
    for name, value in (values.get("synthetic") or {}).items():
        out[f"synthetic_{name}"] = value
    return out


def differences(saved: dict, cfg: TrainConfig) -> dict:
    """{flag name: (saved value, new value)} for fields outside RESUMABLE whose values differ.

    ``saved`` is read as ``TrainConfig.load`` reads it (``retired.upgrade``); a field missing from it
    (a config.json written by an older version) counts as its default. The synthetic benchmark's
    settings count only when the run uses the benchmark (``--data synthetic``).
    """
    saved = flat(retired.upgrade(dict(saved), "config.json"))
    defaults = flat(TrainConfig().to_dict())
    new = flat(cfg.to_dict())
    uses_benchmark = cfg.uses_benchmark()
    out = {}
    for name, value in new.items():
        if name in RESUMABLE or (name.startswith("synthetic_") and not uses_benchmark):
            continue
        old = saved.get(name, defaults[name])
        if old != value:
            out[name] = (old, value)
    return out
