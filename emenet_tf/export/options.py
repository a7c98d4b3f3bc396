"""The export's own options: one dataclass, the flags of ``python -m emenet_tf.export`` and of train.py."""

from __future__ import annotations

import dataclasses

from emenet_tf.errors import ConfigError

VALIDATION_FRAMES = 1000  # validation frames used for parity and calibration (at most)
REPRESENTATIVE_FRAMES = 200  # training frames that calibrate the int8 ranges


def _field(default, help: str):
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    """How a finished run is exported (``export.exporter.export_run``)."""

    qat_epochs: int = _field(
        0, "Export: quantization-aware fine-tune epochs before int8 conversion (0: none)."
    )
    allow_degraded: bool = _field(False, "Export: write int8 models even if they miss the parity targets.")
    representative_frames: int = _field(
        REPRESENTATIVE_FRAMES, "Export: training frames that calibrate the int8 ranges."
    )
    validation_frames: int = _field(
        VALIDATION_FRAMES, "Export: validation frames for the parity checks and the thresholds (at most)."
    )

    def __post_init__(self):
        bounds = {"qat_epochs": 0, "representative_frames": 1, "validation_frames": 1}
        for name, low in bounds.items():
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise ConfigError(f"--{name} must be an integer >= {low}, got {value}")
        for name in ("representative_frames", "validation_frames"):
            if getattr(self, name) > 100_000:
                raise ConfigError(
                    f"--{name} must be <= 100000 (frames held in memory), got {getattr(self, name)}"
                )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
