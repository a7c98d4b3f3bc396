"""SavedModel -> TFLite flatbuffer: the float32 model, the int8 model with float layers, the QAT model.

Int8 models: the members' layers (backbone and heads, up to the logits) are quantised to int8
with a representative set of training frames; by default (``quantize="float_post"``) the task
heads and everything after the logits (softmax, sigmoid, entropies, expectations) stay float32,
because int8 probabilities (steps of 1/256) and an int8 LOG visibly perturb the entropies and
make near-tie top-1 decisions flip. ``quantize="full"`` quantises the post-processing too.
The private converter APIs this needs are in ``private_tf``.
"""

from __future__ import annotations

import functools

import numpy as np

from edge.contract import INPUT_NAME, SIGNATURE
from emenet_tf._keras import tf
from emenet_tf.errors import ConfigError, ExportError
from emenet_tf.export import private_tf
from emenet_tf.export.graph import MEMBER_SCOPE

QUANTIZE_MODES = ("float_post", "full")
# Layers of each member kept float in quantize="float_post" (Keras layer names; a fused op is
# float when any of the layers fused into it is listed). The task heads are ~1% of the compute.
# The deny list matches an op by the name of its output tensor in the calibrated model (the op's
# location, e.g. "member0/emenet_small/expr/MatMul;.../BiasAdd"): the ops listed run in float
# with a DEQUANTIZE before them (see ``tflite.op_dtypes``).
# A Dirichlet student's precision heads are heads too: ``precision_hidden`` and ``<task>_precision``
# (matched by its prefix ``au`` / ``expr`` / ``va``).
FLOAT_LAYERS = ("au_hidden", "expr_hidden", "va_hidden", "au", "expr", "va_logits", "va", "precision_hidden")
# The backbone layers, input to output: float_layers=FLOAT_LAYERS + BACKBONE_LAYERS[:k] keeps the
# first k stages float too (the measured trade-off is in docs/ARCHITECTURE.md / the report).
BACKBONE_LAYERS = ("stem", "block0", "block1", "block2", "block3", "last", "pool", "embedding")
# At most this many leading stages are kept float by the parity search: the rest (the widest conv
# and the embedding) stays int8 whatever happens, so the int8 file never silently becomes float.
FLOAT_BACKBONE_MAX = 5


def _converter(saved_dir: str):
    return tf.lite.TFLiteConverter.from_saved_model(saved_dir, signature_keys=[SIGNATURE])


def convert(
    saved_dir: str,
    quantize: str | None = None,
    representative: np.ndarray | None = None,
    float_layers: tuple[str, ...] = FLOAT_LAYERS,
    output_type=tf.float32,
) -> bytes:
    """SavedModel -> TFLite flatbuffer: float32 (``quantize=None``) or int8 with a uint8 input.

    representative: calibration images (N,S,S,3), or {input name: (N, ...)} for a stream model
    (image and state). The quantizer gives every input of the model the input type, so a stream
    model's inputs all stay float32 (its state must: uint8 steps of the state would add up over
    the frames of a stream) and the image is quantised by the model's first op instead.

    quantize="float_post": int8 for the ops under ``member<k>/`` except the layers named by
    ``float_layers`` (default: the task heads), float32 for them and after the logits (deny-listed
    by op name, see ``float_nodes``). quantize="full": every op the int8 kernels support is int8.
    output_type: the outputs' dtype in an int8 model: float32 (what the exporter writes); uint8
    only for the tests of the edge runtime, which dequantises quantised outputs.
    """
    converter = _converter(saved_dir)
    if quantize is None:
        return converter.convert()
    if quantize not in QUANTIZE_MODES:
        raise ConfigError(f"quantize must be one of {QUANTIZE_MODES}, got {quantize!r}")
    if representative is None or not len(representative):
        raise ExportError("int8 conversion needs representative frames")
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = functools.partial(_representative, representative)
    input_type = tf.float32 if isinstance(representative, dict) else tf.uint8
    converter.inference_input_type = input_type
    converter.inference_output_type = output_type
    if quantize == "full":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        return converter.convert()
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
        tf.lite.OpsSet.TFLITE_BUILTINS,
    ]
    calibrated = private_tf.calibrate_only(converter)
    return private_tf.quantize_calibrated(
        calibrated, input_type, output_type, float_nodes(calibrated, float_layers)
    )


def convert_qat(saved_dir: str) -> bytes:
    """SavedModel of a QAT model (tfmot fake-quant ops) -> int8 TFLite with a uint8 input.

    The int8 ranges are the ones learned in QAT: no calibration. (Sending a QAT model through the
    calibrate + deny-list path of ``convert`` re-quantises the fake-quant ops and gave nearly
    constant outputs: EXPR top-1 agreement 0.17 with the QAT Keras model.)
    """
    converter = _converter(saved_dir)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.float32
    return converter.convert()


def _representative(images):
    """Calibration inputs: a black and a white frame first (so the uint8 input maps 0..255 to
    [0, 1] exactly: scale 1/255, zero point 0), then the training frames.

    images: (N,S,S,3), or {input name: (N, ...)} for a model with more inputs than the image (a
    stream model: each frame with its state), given to the converter by name.
    """
    if isinstance(images, dict):
        shape = (1,) + images[INPUT_NAME].shape[1:]
        for fill in (np.zeros, np.ones):
            yield {n: fill(shape, np.float32) if n == INPUT_NAME else v[:1] * 0 for n, v in images.items()}
        for i in range(len(images[INPUT_NAME])):
            yield {n: v[i : i + 1].astype(np.float32) for n, v in images.items()}
        return
    shape = (1,) + images.shape[1:]
    yield [np.zeros(shape, np.float32)]
    yield [np.ones(shape, np.float32)]
    for image in images:
        yield [image[None].astype(np.float32)]


def float_nodes(model_content: bytes, float_layers: tuple[str, ...] = FLOAT_LAYERS) -> list[str]:
    """Names of the op outputs to keep float: everything outside the members' scopes (the
    post-processing after the logits) and, inside them, the ops of the layers ``float_layers``.

    A layer name matches a path component of the op's name (``expr`` matches ``.../expr/MatMul``)
    or its prefix before "_" (``block0`` matches ``block0_0_dw``, ``embedding`` matches
    ``embedding_bn``).
    """
    wanted = set(float_layers)
    ops, tensors = private_tf.ops_details(model_content)
    names = []
    for op in ops:
        for index in op["outputs"]:
            name = tensors[index]["name"]
            parts = set(name.replace(";", "/").split("/"))
            parts |= {part.split("_")[0] for part in parts}
            if not name.startswith(MEMBER_SCOPE) or parts & wanted:
                names.append(name)
    return names
