"""EMENet models: the backbone, the task heads and the named variants.

``variants`` (the variant tables, ``input_size``, ``min_image_size``) loads without TensorFlow;
``build_emenet`` and the weight helpers load it on first use.
"""

from emenet_tf.models.variants import VARIANTS, VariantSpec, input_size, min_image_size

_KERAS = ("build_emenet", "load_backbone_weights", "save_backbone_weights")
__all__ = ["VARIANTS", "VariantSpec", "input_size", "min_image_size", *_KERAS]


def __getattr__(name):
    if name in _KERAS:
        from emenet_tf.models import emenet

        return getattr(emenet, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
