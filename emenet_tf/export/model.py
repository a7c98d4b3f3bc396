"""Export of one model (one member or an ensemble): convert, check parity, write what passes.

For each model ``<name>_float32`` and ``<name>_int8`` (``.tflite`` and the metadata ``.json``
beside it) are written into the output folder if they meet their parity targets (or
``allow_degraded``). Parity runs on validation frames put on the uint8 grid (``on_uint8_grid``):
the float TFLite against the Keras model, the int8 TFLite against the float TFLite.
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np
from absl import logging

from emenet_tf.export.convert import BACKBONE_LAYERS, FLOAT_LAYERS, convert
from emenet_tf.export.graph import ExportModule
from emenet_tf.export.metadata import calibrate_thresholds, metadata
from emenet_tf.export.parity import float_parity, int8_parity, on_uint8_grid, parity_failures
from emenet_tf.export.tflite import check_signature, input_spec, run_tflite
from emenet_tf.io import atomic_write_bytes, atomic_write_json


def export_model(
    members: list,
    name: str,
    out_dir: str,
    frames: dict,
    representative: np.ndarray,
    allow_degraded: bool = False,
    float_backbone_max: int = 0,
    density=None,
    ood_images: np.ndarray | None = None,
    module=None,
    untrained=(),
) -> dict:
    """Convert one model (1 member) or ensemble (M) to ``<name>_float32`` and ``<name>_int8`` .tflite.

    float_backbone_max: when the int8 model misses a parity target, keep the first 1, 2, ... up
    to this many backbone stages (``BACKBONE_LAYERS``) float as well, and take the first that
    meets every target (the figures record which layers stayed float). density: the member is a Dirichlet student with this feature density
    (``ExportModule``); ood_images (N,S,S,3) in [0, 1]: then each model's ``ood_auroc`` (its
    ood_score, validation frames against these) is in its figures. module: the graph to export
    (default ``ExportModule(members, ..., density)``; a ``stream.StreamModule`` runs over
    ``frames["start"]``, the state carried between frames). untrained: the tasks the run's data never
    labelled (written into the metadata: the edge leaves them out).
    Returns {"files": {name: path}, "parity": {name: figures}, "failures": [...]}.
    """
    module = module or ExportModule(members, int(frames["image"].shape[1]), density)
    images, starts = on_uint8_grid(frames["image"]), frames.get("start")
    with tempfile.TemporaryDirectory() as saved_dir:
        module.save(saved_dir)
        float_bytes = convert(saved_dir)
        reference = run_tflite(float_bytes, images, starts=starts)
        figures = {"reference": "keras", **float_parity(reference, module.keras_outputs(images, starts))}
        candidates = {f"{name}_float32": (float_bytes, reference, figures)}
        candidates[f"{name}_int8"] = _int8_within_targets(
            saved_dir, representative, float_backbone_max, images, reference, starts, untrained
        )
    if ood_images is not None and module.kind == "dirichlet":
        ood_images = on_uint8_grid(ood_images)
        for content, outputs, figures in candidates.values():
            figures["ood_auroc"] = ood_auroc(content, outputs, ood_images)
    return write_checked(candidates, module, out_dir, frames, allow_degraded, untrained)


def ood_auroc(content: bytes, outputs: dict, ood_images: np.ndarray) -> float:
    """AUROC of a model's ood_score: its validation ``outputs`` negative, ``ood_images`` positive."""
    from emenet_tf.metrics import auroc

    return float(auroc(outputs["ood_score"][:, 0], run_tflite(content, ood_images)["ood_score"][:, 0]))


def _int8_within_targets(
    saved_dir, representative, float_backbone_max, images, reference, starts=None, untrained=()
):
    """(content, outputs, figures) of the int8 conversion with the fewest leading backbone stages
    float that meets the targets against ``reference`` (the last one tried when none does)."""
    for k in range(0, float_backbone_max + 1):
        layers = FLOAT_LAYERS + BACKBONE_LAYERS[:k]
        content = convert(saved_dir, "float_post", representative, layers)
        outputs = run_tflite(content, images, starts=starts)
        figures = {"quantize": "float_post", "reference": "float32_tflite", **int8_parity(outputs, reference)}
        figures["float_layers"] = list(layers)
        missed = parity_failures(figures, untrained)
        if not missed:
            break
        logging.info("int8 with float layers %s misses: %s", list(layers), missed)
    return content, outputs, figures


def write_checked(
    candidates: dict, module: ExportModule, out_dir: str, frames: dict, allow_degraded: bool, untrained=()
) -> dict:
    """Write each candidate {name: (content, outputs on frames, parity figures)} that meets its targets.

    Each written model gets its metadata (thresholds calibrated on its own outputs) beside it.
    Returns {"files", "parity", "failures"} of these models; ExportError if a file cannot be written.
    """
    result = {"files": {}, "parity": {}, "failures": []}
    for model_name, (content, outputs, figures) in candidates.items():
        state = module.state
        check_signature(content, module.kind, module.image_size, state and state["size"])
        failures = parity_failures(figures, untrained)
        figures = {**figures, "size_bytes": len(content), "passed": not failures}
        result["parity"][model_name] = figures
        logging.info("parity %s: %s", model_name, json.dumps(figures))
        if failures:
            result["failures"].append(f"{model_name}: " + "; ".join(failures))
            if not allow_degraded:
                continue
        thresholds = calibrate_thresholds(outputs, frames["expr"], frames["expr_mask"], untrained)
        spec = input_spec(content, module.image_size)
        meta = metadata(module.kind, len(module.members), spec, thresholds, state, untrained)
        path = os.path.join(out_dir, f"{model_name}.tflite")
        write_file(path, content)
        write_file(os.path.splitext(path)[0] + ".json", meta)
        result["files"][model_name] = path
    return result


def write_file(path: str, content) -> None:
    """Write bytes or a JSON object atomically; WriteError naming the path if it fails (ENOSPC...)."""
    if isinstance(content, bytes):
        atomic_write_bytes(path, content)
    else:
        atomic_write_json(path, content)
