"""Building blocks of the EMENet backbone: plain functions on Keras tensors.

Every block uses only layers that tfmot quantization-aware training and int8 TFLite conversion
handle (Conv2D / DepthwiseConv2D followed by BatchNormalization and ReLU6, Add), so a model
built from them can be passed to ``tfmot.quantization.keras.quantize_model`` unchanged.
"""

from __future__ import annotations

import numpy as np

from emenet_tf._keras import keras

# 0.9 (PyTorch momentum 0.1, as in the paper's code): with 0.99 the moving statistics of a
# short run (a few hundred steps) stay near their initial values and inference collapses to
# a near-constant output (measured: validation EXPR predictions identical for every frame).
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-3


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor``, never more than 10% below ``value``."""
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return int(rounded)


class SeedSequence:
    """Hands out distinct, reproducible initializer seeds: layer k of a model seeded s gets
    a seed derived from (s, k), so models seeded s and s + 1 share no layer initialisation."""

    def __init__(self, seed: int | None):
        self.seed = seed
        self._count = 0

    def next(self) -> int | None:
        """The next seed, or None when the model is unseeded."""
        if self.seed is None:
            return None
        self._count += 1
        state = np.random.SeedSequence([int(self.seed), self._count]).generate_state(1)[0]
        return int(state % (2**31 - 1))

    def glorot(self) -> keras.initializers.Initializer:
        """A Glorot-uniform initializer (the Keras default) with the next seed."""
        return keras.initializers.GlorotUniform(seed=self.next())


def conv_bn(x, filters: int, kernel: int, stride: int, name: str, seeds: SeedSequence, relu: bool = True):
    """Conv2D (no bias) -> BatchNorm -> optional ReLU6."""
    x = keras.layers.Conv2D(
        filters,
        kernel,
        strides=stride,
        padding="same",
        use_bias=False,
        kernel_initializer=seeds.glorot(),
        name=f"{name}_conv",
    )(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    if relu:
        x = keras.layers.ReLU(6.0, name=f"{name}_relu")(x)
    return x


def depthwise_bn(x, kernel: int, stride: int, name: str, seeds: SeedSequence):
    """DepthwiseConv2D (no bias) -> BatchNorm -> ReLU6."""
    x = keras.layers.DepthwiseConv2D(
        kernel,
        strides=stride,
        padding="same",
        use_bias=False,
        depthwise_initializer=seeds.glorot(),
        name=f"{name}_dw",
    )(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{name}_dw_bn")(x)
    return keras.layers.ReLU(6.0, name=f"{name}_dw_relu")(x)


def inverted_res_block(
    x, expansion: int, filters: int, stride: int, name: str, seeds: SeedSequence, kernel: int = 3
):
    """MobileNetV2 inverted residual: 1x1 expand -> depthwise -> 1x1 linear projection.

    The expansion conv is skipped when ``expansion == 1`` (a plain depthwise separable conv);
    the input is added back when the stride is 1 and the channel count is unchanged.
    """
    in_channels = int(x.shape[-1])
    shortcut = x
    if expansion != 1:
        x = conv_bn(x, in_channels * expansion, 1, 1, f"{name}_expand", seeds)
    x = depthwise_bn(x, kernel, stride, name, seeds)
    x = conv_bn(x, filters, 1, 1, f"{name}_project", seeds, relu=False)
    if stride == 1 and in_channels == filters:
        x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return x
