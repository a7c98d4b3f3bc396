"""The EMENet variants and their architecture tables: plain data, no TensorFlow.

``VARIANTS`` names each size (input side, width multiplier, block table, layer sizes); the command
lines check ``--model`` and ``--image_size`` against it before TensorFlow is imported.
"""

from __future__ import annotations

import dataclasses
import math

from emenet_tf.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """One row of the architecture table: ``repeats`` inverted residual blocks; the first one
    has stride ``stride``, the rest stride 1. ``filters`` is scaled by the width multiplier."""

    expansion: int
    filters: int
    repeats: int
    stride: int
    kernel: int = 3


# MobileFaceNet (Chen et al. 2018) body, as EMENet's paper uses it at 112x112 (total stride 16).
MOBILEFACENET_BLOCKS = (
    BlockSpec(1, 64, 1, 1),
    BlockSpec(2, 64, 5, 2),
    BlockSpec(4, 128, 1, 2),
    BlockSpec(2, 128, 6, 1),
    BlockSpec(4, 128, 1, 2),
    BlockSpec(2, 128, 2, 1),
)


def total_stride(blocks: tuple[BlockSpec, ...]) -> int:
    """Downsampling factor from the image to the last feature map (the stem has stride 2)."""
    return 2 * math.prod(b.stride for b in blocks)


@dataclasses.dataclass(frozen=True)
class VariantSpec:
    """A named EMENet size: default input size, width multiplier and layer sizes."""

    image_size: int
    width: float
    blocks: tuple[BlockSpec, ...]
    stem_filters: int
    last_filters: int
    embedding: int
    head_units: int
    description: str


VARIANTS = {
    "full": VariantSpec(
        image_size=112,
        width=1.0,
        blocks=MOBILEFACENET_BLOCKS,
        stem_filters=64,
        last_filters=512,
        embedding=512,
        head_units=128,
        description="the paper's size: MobileFaceNet body at 112x112, 512-d embedding, <= 1.68M params",
    ),
    "small": VariantSpec(
        image_size=64,
        width=0.5,
        blocks=(
            BlockSpec(1, 64, 1, 2),
            BlockSpec(2, 64, 1, 2),
            BlockSpec(4, 128, 1, 2),
            BlockSpec(2, 128, 2, 1),
        ),
        stem_filters=32,
        last_filters=256,
        embedding=128,
        head_units=64,
        description="the CPU demo at 64x64: half width, downsamples early, 5 blocks, 128-d embedding",
    ),
    "tiny": VariantSpec(
        image_size=32,
        width=0.25,
        blocks=(
            BlockSpec(1, 64, 1, 1),
            BlockSpec(2, 64, 1, 2),
            BlockSpec(4, 128, 1, 2),
            BlockSpec(4, 128, 1, 2),
        ),
        stem_filters=64,
        last_filters=64,
        embedding=32,
        head_units=16,
        description="for tests: quarter width, one block per stage, 32x32",
    ),
}


def get_variant(variant: str) -> VariantSpec:
    """The spec of a named variant; ConfigError listing the valid names otherwise."""
    if variant not in VARIANTS:
        raise ConfigError(f"unknown EMENet variant {variant!r}; valid: {', '.join(sorted(VARIANTS))}")
    return VARIANTS[variant]


def input_size(variant: str, image_size: int | None = None) -> int:
    """The input side a model of ``variant`` is built with: ``image_size``, else the variant's default."""
    return int(image_size) if image_size else get_variant(variant).image_size


def min_image_size(variant: str) -> int:
    """Smallest input size a variant accepts: twice its total stride (a >= 2x2 last feature map)."""
    return 2 * total_stride(get_variant(variant).blocks)
