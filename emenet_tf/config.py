"""Run configuration: frozen, validated dataclasses saved as config.json in every run."""

from __future__ import annotations

import dataclasses
import json
import os

from emenet_tf.errors import ConfigError
from emenet_tf.io import atomic_write_text

STRATEGIES = ("default", "mirrored", "multi_worker")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything one training run (all generations, all members) depends on."""

    workdir: str
    data_dir: str | None = None  # None: the synthetic benchmark generated into workdir/data
    model: str = "small"
    image_size: int | None = None  # None: the variant's default
    dropout: float = 0.5
    ensemble_size: int = 5
    generations: int = 1
    member: int | None = None  # train only this member of each generation
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    lr_decay_epochs: int = 3
    lr_decay_factor: float = 0.1
    seed: int = 0
    augment: bool = True
    au_weight: float = 1.0
    expr_weight: float = 1.0
    va_weight: float = 1.0
    va_ccc_weight: float = 1.0
    va_ce_weight: float = 1.0
    class_weight_power: float = 0.0  # 1 inverse frequency (paper), 0.5 square root, 0 none
    hard_label_weight: float = 0.0
    skip_bad_labels: bool = False
    backbone_weights: str | None = None
    strategy: str = "default"
    mixed_precision: bool = False
    steps_per_epoch: int | None = None  # cap (tests, quick looks); None: one pass over the data
    verbose: int = 1
    synthetic: dict = dataclasses.field(default_factory=dict)  # generator arguments

    def __post_init__(self):
        checks = [
            (self.ensemble_size >= 1, f"--ensemble_size must be >= 1, got {self.ensemble_size}"),
            (self.generations >= 1, f"--generations must be >= 1, got {self.generations}"),
            (self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch_size must be >= 1, got {self.batch_size}"),
            (self.learning_rate > 0, f"--learning_rate must be > 0, got {self.learning_rate}"),
            (0.0 <= self.dropout < 1.0, f"--dropout must be in [0, 1), got {self.dropout}"),
            (self.lr_decay_epochs >= 1, f"--lr_decay_epochs must be >= 1, got {self.lr_decay_epochs}"),
            (self.strategy in STRATEGIES, f"--strategy must be one of {STRATEGIES}, got {self.strategy!r}"),
            (
                0.0 <= self.class_weight_power <= 1.0,
                f"--class_weight_power must be in [0, 1], got {self.class_weight_power}",
            ),
            (self.hard_label_weight >= 0, f"--hard_label_weight must be >= 0, got {self.hard_label_weight}"),
            (
                self.member is None or 0 <= self.member < self.ensemble_size,
                f"--member must be in [0, {self.ensemble_size}), got {self.member}",
            ),
            (
                self.steps_per_epoch is None or self.steps_per_epoch >= 1,
                f"--steps_per_epoch must be >= 1, got {self.steps_per_epoch}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def member_seed(self, generation: int, member: int) -> int:
        """Seed of one member: seed + member, shifted per generation so students differ from teachers."""
        return self.seed + member + 1000 * generation

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    def save(self, path: str) -> None:
        atomic_write_text(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str) -> TrainConfig:
        with open(path) as f:
            values = json.load(f)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def resolved_data_dir(self) -> str:
        return self.data_dir if self.data_dir else os.path.join(self.workdir, "data")
