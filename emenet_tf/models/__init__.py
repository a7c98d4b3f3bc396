"""EMENet models: the backbone, the task heads and the named variants."""

from emenet_tf.models.emenet import (
    VARIANTS,
    VariantSpec,
    build_emenet,
    input_size,
    load_backbone_weights,
    min_image_size,
    save_backbone_weights,
)

__all__ = [
    "VARIANTS",
    "VariantSpec",
    "build_emenet",
    "input_size",
    "load_backbone_weights",
    "min_image_size",
    "save_backbone_weights",
]
