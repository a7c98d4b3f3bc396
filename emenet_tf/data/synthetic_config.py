"""The synthetic benchmark generator's own settings: one frozen dataclass, the one source of its defaults.

``synthetic.generate`` takes them, ``python -m emenet_tf.data.synthetic`` turns them into flags, and a
run on the built-in benchmark (``--data synthetic``) records them in its config.json under
``"synthetic"`` (flags ``--synthetic_<field>``). None of them is a training setting.
"""

from __future__ import annotations

import dataclasses
import math

from emenet_tf.errors import ConfigError

MAX_SEED = 2**31 - 1
MIN_IMAGE_SIZE = 32  # the renderer's smallest face
# Upper bounds, checked before anything is written: beyond them a value is a typo, not a benchmark
# (64 x 150 frames of 112 px is ~300 MB of JPEGs; the bounds allow ~1000x that and no more).
MAX_VIDEOS = 10_000
MAX_FRAMES_PER_VIDEO = 100_000
MAX_IMAGE_SIZE = 1024
MAX_OOD_IMAGES = 100_000


def _field(default, help: str):
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """What the synthetic Aff-Wild2 benchmark is made of; its output is a function of these alone."""

    seed: int = _field(0, "Seed of the generated benchmark (faces, identities, sampled labels, OOD images).")
    train_videos: int = _field(
        64,
        "Training videos, one identity each (more identities was the lever that moved every claim: "
        "research/RESEARCH.md).",
    )
    val_videos: int = _field(18, "Validation videos, one identity each.")
    frames_per_video: int = _field(150, "Frames per video.")
    image_size: int = _field(112, "Side of the rendered frames in pixels (Aff-Wild2's cropped_aligned: 112).")
    ood_images: int | None = _field(
        None, "Out-of-domain images (None: a quarter of the validation frames, <= 400)."
    )
    pairs: int | None = _field(
        None, "_left/_right video pairs per split (None: one per split with >= 4 videos)."
    )
    degraded_frames: float = _field(
        0.0,
        "Share of frames spoilt in short runs by a hand over the face, motion blur or low light, labels "
        "kept (in-the-wild moments a model over time can bridge); 0: none.",
    )

    def __post_init__(self):
        for ok, message in self._checks():
            if not ok:
                raise ConfigError(message)

    def _checks(self):
        bounds = {
            "train_videos": MAX_VIDEOS,
            "val_videos": MAX_VIDEOS,
            "frames_per_video": MAX_FRAMES_PER_VIDEO,
        }
        for name, high in bounds.items():
            value = getattr(self, name)
            ok = _is_int(value) and 1 <= value <= high
            yield ok, f"--synthetic_{name} must be in [1, {high}], got {value}"
        size = self.image_size
        ok = _is_int(size) and MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE
        yield ok, f"--synthetic_image_size must be in [{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}], got {size}"
        for name, high in (("ood_images", MAX_OOD_IMAGES), ("pairs", MAX_VIDEOS)):
            value = getattr(self, name)
            ok = value is None or (_is_int(value) and 0 <= value <= high)
            yield ok, f"--synthetic_{name} must be in [0, {high}], got {value}"
        yield (
            _is_int(self.seed) and 0 <= self.seed <= MAX_SEED,
            (f"--synthetic_seed must be in [0, {MAX_SEED}], got {self.seed}"),
        )
        rate = self.degraded_frames
        yield (
            isinstance(rate, (int, float)) and math.isfinite(rate) and 0.0 <= rate < 1.0,
            (f"--synthetic_degraded_frames must be in [0, 1), got {rate}"),
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> SyntheticConfig:
        """From a dict of its fields (unknown keys: ConfigError naming them)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown synthetic benchmark settings {unknown}; known: {sorted(known)}")
        return cls(**values)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
