"""The EMENet backbone: a MobileFaceNet-style stack of inverted residuals -> a face embedding.

The architecture is a table of ``BlockSpec`` rows; ``backbone`` turns an image tensor into the
pooled embedding the heads share. Layer names are stable (``stem_*``, ``block{i}_{r}_*``,
``last_*``, ``embedding*``): ``load_backbone_weights`` matches layers by name.
"""

from __future__ import annotations

from emenet_tf._keras import keras
from emenet_tf.models.blocks import (
    BN_EPSILON,
    BN_MOMENTUM,
    SeedSequence,
    conv_bn,
    inverted_res_block,
    make_divisible,
)
from emenet_tf.models.variants import BlockSpec

# Name of the last backbone layer: its output is the embedding the heads share.
EMBEDDING_LAYER = "embedding_bn"


def backbone(
    x,
    blocks: tuple[BlockSpec, ...],
    width: float,
    stem_filters: int,
    last_filters: int,
    embedding: int,
    seeds: SeedSequence,
):
    """Image tensor (B, S, S, 3) -> embedding (B, embedding).

    stem conv 3x3/2 -> blocks -> 1x1 conv to ``last_filters`` -> global average pool ->
    linear Dense(embedding) -> BatchNorm (the MobileFaceNet-style linear embedding).
    Stem and block channels are scaled by ``width`` and rounded to multiples of 8.
    """
    x = conv_bn(x, make_divisible(stem_filters * width), 3, 2, "stem", seeds)
    for i, spec in enumerate(blocks):
        filters = make_divisible(spec.filters * width)
        for r in range(spec.repeats):
            stride = spec.stride if r == 0 else 1
            x = inverted_res_block(x, spec.expansion, filters, stride, f"block{i}_{r}", seeds, spec.kernel)
    x = conv_bn(x, last_filters, 1, 1, "last", seeds)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(embedding, use_bias=False, kernel_initializer=seeds.glorot(), name="embedding")(x)
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=EMBEDDING_LAYER)(x)
