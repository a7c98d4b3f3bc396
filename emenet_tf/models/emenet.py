"""EMENet: the multitask emotion network (backbone + three heads) and its named variants.

``build_emenet`` returns a functional Keras 2 model: input ``image`` (B, S, S, 3) float32 RGB in
[0, 1]; outputs a dict of logits ``au`` (B, 12), ``expr`` (B, 7), ``va`` (B, 2, 20). The model
takes [0, 1] pixels directly: the stem's Conv + BatchNorm absorbs any affine input
normalisation, so no Rescaling layer is needed (and none can break quantization).
"""

from __future__ import annotations

import os

import numpy as np

from edge.contract import INPUT_NAME
from emenet_tf._keras import keras
from emenet_tf.errors import ConfigError, DataError
from emenet_tf.models.backbone import EMBEDDING_LAYER, backbone
from emenet_tf.models.blocks import SeedSequence
from emenet_tf.models.heads import task_heads
from emenet_tf.models.variants import VariantSpec, get_variant, min_image_size


def checked_spec(
    variant: str, image_size: int | None, dropout: float, width_multiplier: float | None = None
) -> tuple[VariantSpec, int, float]:
    """(spec, input side, width) of a model to build; ConfigError naming the argument that is out of range."""
    spec = get_variant(variant)
    size = spec.image_size if image_size is None else int(image_size)
    width = spec.width if width_multiplier is None else float(width_multiplier)
    if size < min_image_size(variant):
        raise ConfigError(
            f"image_size {size} is too small for EMENet {variant!r}: "
            f"it needs >= {min_image_size(variant)} (twice its total stride)"
        )
    if width <= 0:
        raise ConfigError(f"width_multiplier must be > 0, got {width}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
    return spec, size, width


def build_emenet(
    variant: str = "small",
    image_size: int | None = None,
    dropout: float = 0.5,
    mc_dropout: bool = False,
    seed: int | None = None,
    width_multiplier: float | None = None,
    name: str | None = None,
    dirichlet: bool = False,
) -> keras.Model:
    """Build EMENet: image (B, S, S, 3) in [0, 1] -> {"au", "expr", "va"} logits.

    Args:
      variant: a key of ``VARIANTS``.
      image_size: input side S (default: the variant's); at least ``min_image_size(variant)``.
      dropout: rate of the Dropout layer ``head_dropout`` on the shared embedding.
      mc_dropout: keep ``head_dropout`` active at inference (MC Dropout). Same layers and
        weights as the model built with False, so ``set_weights`` copies between them.
      seed: seeds every initializer and the dropout (None: Keras' global RNG).
      width_multiplier: overrides the variant's width (channels rounded to multiples of 8).
      name: model name (default ``emenet_<variant>``, ``emenet_<variant>_dirichlet``).
      dirichlet: the distribution-distilled student: outputs are log-concentrations, AU (B, 12, 2)
        (``emenet_tf.models.heads.task_heads``).

    The heads are per-frame (see ``emenet_tf.models.heads``).
    """
    spec, size, width = checked_spec(variant, image_size, dropout, width_multiplier)
    seeds = SeedSequence(seed)
    image = keras.Input(shape=(size, size, 3), dtype="float32", name=INPUT_NAME)
    feature = backbone(image, spec.blocks, width, spec.stem_filters, spec.last_filters, spec.embedding, seeds)
    drop = keras.layers.Dropout(dropout, seed=seeds.next(), name="head_dropout")
    # training=True is stored in the functional graph: the layer stays active at inference.
    feature = drop(feature, training=True) if mc_dropout else drop(feature)
    outputs = task_heads(feature, spec.head_units, seeds, dirichlet=dirichlet)
    default_name = f"emenet_{variant}_dirichlet" if dirichlet else f"emenet_{variant}"
    return keras.Model(image, outputs, name=name or default_name)


def backbone_model(model: keras.Model) -> keras.Model:
    """The backbone of an EMENet (image -> embedding), sharing the model's layers."""
    return keras.Model(model.input, model.get_layer(EMBEDDING_LAYER).output, name=f"{model.name}_backbone")


def save_backbone_weights(model: keras.Model, path: str) -> None:
    """Save the backbone's weights (layers up to the embedding) to an HDF5 file ``path`` (.h5)."""
    backbone_model(model).save_weights(path, save_format="h5")


def _weights_in_file(path: str) -> dict[str, list[np.ndarray]]:
    """Layer name -> weight arrays, from a Keras .h5 weights file or a saved .keras model."""
    if not os.path.isfile(path):
        raise DataError("backbone weights file not found", path=path)
    if path.endswith(".keras"):
        source = keras.models.load_model(path, compile=False)
        return {layer.name: layer.get_weights() for layer in source.layers if layer.weights}
    import h5py

    try:
        with h5py.File(path, "r") as f:
            group = f["model_weights"] if "model_weights" in f else f
            out = {}
            for layer in group.attrs["layer_names"]:
                layer = layer.decode() if isinstance(layer, bytes) else layer
                names = [
                    n.decode() if isinstance(n, bytes) else n for n in group[layer].attrs["weight_names"]
                ]
                out[layer] = [np.asarray(group[layer][n]) for n in names]
            return out
    except (OSError, KeyError) as err:
        raise DataError(f"not a Keras HDF5 weights file ({err})", path=path) from err


def load_backbone_weights(model: keras.Model, path: str) -> list[str]:
    """Copy backbone weights from ``path`` into ``model`` by layer name, skipping mismatches.

    ``path``: an .h5 file from ``save_backbone_weights`` or ``model.save_weights(..h5)``, or a
    saved .keras EMENet. Only backbone layers are copied (heads stay as they are); layers whose
    names or weight shapes differ are skipped. Returns the names of the layers loaded; raises
    DataError when none matched.
    """
    stored = _weights_in_file(path)
    loaded = []
    for layer in backbone_model(model).layers:
        values = stored.get(layer.name)
        if not layer.weights or values is None:
            continue
        if [w.shape for w in values] != [tuple(w.shape) for w in layer.weights]:
            continue
        layer.set_weights(values)
        loaded.append(layer.name)
    if not loaded:
        raise DataError(
            "no backbone layer in the file matches the model (different variant or width?)", path=path
        )
    return loaded
