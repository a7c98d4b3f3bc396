"""Export of the final students to TFLite: float32 and int8 models, the ensemble graph, metadata, parity.

Writes into ``<workdir>/export/`` (see docs/ARCHITECTURE.md, "Exported models"):
  student_float32.tflite  student_int8.tflite  ensemble_float32.tflite  ensemble_int8.tflite
  [student_qat_int8.tflite with --qat_epochs N]   each with its metadata ``M.json`` beside it
  parity.json             the parity figures of every model against its reference, and the targets
The graph takes ``image`` (1, S, S, 3) float32 in [0, 1] (uint8 in the int8 models) and returns
named, post-processed float32 outputs: probabilities, normalised entropies, VA expectations and,
for the ensemble, the total / aleatoric / epistemic decomposition (``emenet_tf.uncertainty``).

Int8 models: the members' layers (backbone and heads, up to the logits) are quantised to int8
with a representative set of training frames; by default (``quantize="float_post"``) everything
after the logits (softmax, sigmoid, entropies, expectations) stays float32, because int8
probabilities (steps of 1/256) and an int8 LOG visibly perturb the entropies and make near-tie
top-1 decisions flip. ``quantize="full"`` quantises the post-processing too (for comparison).

Parity targets (checked at export; a model that misses one is not written unless
``allow_degraded``): float TFLite vs Keras max abs diff <= 1e-4 on every output; int8 vs float
TFLite on validation frames: EXPR top-1 agreement >= 0.99, mean abs diff of the EXPR normalised
entropy <= 0.02, AU decision (p >= 0.5) agreement >= 0.99.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import tempfile

import numpy as np
from absl import logging
from ai_edge_litert.interpreter import Interpreter

from edge.contract import ENSEMBLE_OUTPUTS, FORMAT, SIGNATURE, SINGLE_OUTPUTS
from emenet_tf import distributions
from emenet_tf._keras import keras, tf
from emenet_tf.config import TrainConfig
from emenet_tf.data import affwild2, pipeline
from emenet_tf.data.index import FrameIndex
from emenet_tf.errors import ConfigError, ExportError
from emenet_tf.io import atomic_path, atomic_write_json, read_json
from emenet_tf.labels import AU_NAMES, EXPR_NAMES, NUM_VA_BINS, va_bin_centres
from emenet_tf.uncertainty import bernoulli_entropy_tf, ensemble_uncertainty_tf, normalised_entropy_tf

TARGETS = {
    "float_max_abs_diff": 1e-4,  # at most
    "expr_top1_agreement": 0.99,  # at least
    "expr_entropy_mean_abs_diff": 0.02,  # at most
    "au_decision_agreement": 0.99,  # at least
}
QUANTIZE_MODES = ("float_post", "full")
# Layers of each member kept float in quantize="float_post" (Keras layer names; a fused op is
# float when any of the layers fused into it is listed). The task heads are ~1% of the compute.
# ``mlir_quantize(denylisted_nodes=...)`` matches an op by the name of its output tensor in the
# calibrated model (the op's location, e.g. "member0/emenet_small/expr/MatMul;.../BiasAdd"): the
# ops listed run in float with a DEQUANTIZE before them (see ``op_dtypes``).
FLOAT_LAYERS = ("au_hidden", "expr_hidden", "va_hidden", "au", "expr", "va_logits", "va")
# The backbone layers, input to output: float_layers=FLOAT_LAYERS + BACKBONE_LAYERS[:k] keeps the
# first k stages float too (the measured trade-off is in docs/ARCHITECTURE.md / the report).
BACKBONE_LAYERS = ("stem", "block0", "block1", "block2", "block3", "last", "pool", "embedding")
# At most this many leading stages are kept float by the parity search: the rest (the widest conv
# and the embedding) stays int8 whatever happens, so the int8 file never silently becomes float.
FLOAT_BACKBONE_MAX = 5
EXPR_COVERAGE = 0.8  # expr_entropy threshold: accept the 80% most certain validation predictions
OOD_QUANTILE = 0.95  # ood_epistemic threshold: ~5% false OOD alarms on in-domain validation
MARGIN_EPS = 0.05  # top-1 agreement is also reported where the float top-1 margin exceeds this
MEMBER_SCOPE = "member"  # name scope of each member's layers: the int8 part of the graph
VALIDATION_FRAMES = 1000  # validation frames used for parity and calibration (at most)


# ---------------------------------------------------------------- the exported graph


def contract_outputs(member_logits: list[dict]) -> dict:
    """The contract's named outputs from the logits of one model (list of 1) or of M members.

    expr_probs (B,7), expr_entropy (B,1), au_probs (B,12), au_entropy (B,12), valence/arousal
    (B,1) = sum_k p_k c_k over the bin centres, valence_entropy/arousal_entropy (B,1), va_probs
    (B,2,20); with M > 1 the same over the mean probabilities (entropy = total) plus
    {expr,au,va}_{aleatoric,epistemic} of shapes (B,1), (B,12), (B,2). Entropies are normalised.
    """
    probs = [_probabilities(logits) for logits in member_logits]
    if len(probs) == 1:
        p = probs[0]
        parts = {
            "expr": {"mean_probs": p["expr"], "total": normalised_entropy_tf(p["expr"])},
            "au": {"mean_probs": p["au"], "total": bernoulli_entropy_tf(p["au"])},
            "va": {"mean_probs": p["va"], "total": normalised_entropy_tf(p["va"])},
        }
    else:
        parts = {
            task: ensemble_uncertainty_tf(tf.stack([p[task] for p in probs]), kind)
            for task, kind in (("expr", "categorical"), ("au", "bernoulli"), ("va", "categorical"))
        }
    va_probs = parts["va"]["mean_probs"]
    va_value = distributions.va_expectation(va_probs)  # (B, 2)
    va_entropy = parts["va"]["total"]  # (B, 2)
    out = {
        "expr_probs": parts["expr"]["mean_probs"],
        "expr_entropy": parts["expr"]["total"][:, None],
        "au_probs": parts["au"]["mean_probs"],
        "au_entropy": parts["au"]["total"],
        "valence": va_value[:, :1],
        "arousal": va_value[:, 1:],
        "valence_entropy": va_entropy[:, :1],
        "arousal_entropy": va_entropy[:, 1:],
        "va_probs": va_probs,
    }
    if len(probs) > 1:
        out.update(
            expr_aleatoric=parts["expr"]["aleatoric"][:, None],
            expr_epistemic=parts["expr"]["epistemic"][:, None],
            au_aleatoric=parts["au"]["aleatoric"],
            au_epistemic=parts["au"]["epistemic"],
            va_aleatoric=parts["va"]["aleatoric"],
            va_epistemic=parts["va"]["epistemic"],
        )
    return out


def _softmax(logits):
    """softmax = exp(z - max z) / sum exp(z - max z), spelled out in EXP/SUM/DIV/MUL ops.

    TFLite's SOFTMAX and LOGISTIC have fixed int8 output ranges, and the int8 quantizer
    round-trips their outputs through int8 (steps of 1/256) even when deny-listed; these plain
    float ops stay float. Same values as ``emenet_tf.inference.probabilities`` (float parity).
    """
    e = tf.exp(logits - tf.reduce_max(logits, axis=-1, keepdims=True))
    return e * tf.math.reciprocal(tf.reduce_sum(e, axis=-1, keepdims=True))  # e / sum: fused back


def _sigmoid(logits):
    """sigmoid(z) = 1 / (1 + e) for z >= 0 and e / (1 + e) for z < 0, with e = exp(-|z|).

    ``1 / (1 + exp(-z))`` is fused into TFLite's LOGISTIC, whose int8 output (steps of 1/256,
    0.5 exact) the quantizer keeps even when deny-listed: p in (0.498, 0.5) then rounds to 0.5
    and flips the AU decision p >= 0.5. These ops stay float.
    """
    e = tf.exp(-tf.abs(logits))
    r = tf.math.reciprocal(1.0 + e)
    return tf.where(logits >= 0.0, r, e * r)


def _probabilities(logits: dict) -> dict:
    """AU sigmoid, EXPR and VA-bin softmax, as float ops (see ``_softmax`` and ``_sigmoid``)."""
    return {
        "au": _sigmoid(tf.cast(logits["au"], tf.float32)),
        "expr": _softmax(tf.cast(logits["expr"], tf.float32)),
        "va": _softmax(tf.cast(logits["va"], tf.float32)),
    }


class ExportModule(tf.Module):
    """One model or an ensemble sharing the input; ``serve``: image (1,S,S,3) -> named outputs."""

    def __init__(self, members: list, image_size: int):
        super().__init__()
        self.members = list(members)
        self.image_size = int(image_size)
        spec = tf.TensorSpec((1, self.image_size, self.image_size, 3), tf.float32, name="image")
        self.serve = tf.function(self._serve, input_signature=[spec])

    def member_logits(self, image) -> list[dict]:
        """Logits of every member; their ops live under ``member<k>/`` (the int8 part of the graph)."""
        out = []
        for k, member in enumerate(self.members):
            with tf.name_scope(f"{MEMBER_SCOPE}{k}"):
                out.append(member(image, training=False))
        return out

    def _serve(self, image):
        return contract_outputs(self.member_logits(image))


def keras_outputs(members: list, images: np.ndarray, batch_size: int = 64) -> dict:
    """The contract's outputs computed in Keras (batched) on ``images`` (N,S,S,3): numpy arrays."""
    chunks = []
    for start in range(0, len(images), batch_size):
        x = tf.constant(images[start : start + batch_size])
        out = contract_outputs([m(x, training=False) for m in members])
        chunks.append({k: v.numpy() for k, v in out.items()})
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


# ---------------------------------------------------------------- conversion


def save_module(module: ExportModule, saved_dir: str) -> None:
    tf.saved_model.save(module, saved_dir, signatures={SIGNATURE: module.serve})


def convert(
    saved_dir: str,
    quantize: str | None = None,
    representative: np.ndarray | None = None,
    float_layers: tuple[str, ...] = FLOAT_LAYERS,
) -> bytes:
    """SavedModel -> TFLite flatbuffer: float32 (``quantize=None``) or int8 with a uint8 input.

    quantize="float_post": int8 for the ops under ``member<k>/`` except the layers named by
    ``float_layers`` (default: the task heads), float32 for them and after the logits (deny-listed
    by op name, see ``float_nodes``). quantize="full": every op the int8 kernels support is int8.
    Outputs are float32 either way.
    """
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_dir, signature_keys=[SIGNATURE])
    if quantize is None:
        return converter.convert()
    if quantize not in QUANTIZE_MODES:
        raise ConfigError(f"quantize must be one of {QUANTIZE_MODES}, got {quantize!r}")
    if representative is None or not len(representative):
        raise ExportError("int8 conversion needs representative frames")
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = functools.partial(_representative, representative)
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.float32
    if quantize == "full":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        return converter.convert()
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
        tf.lite.OpsSet.TFLITE_BUILTINS,
    ]
    converter._experimental_calibrate_only = True  # calibrate, then quantise with a deny list
    calibrated = converter.convert()
    # The public QuantizationDebugger calls this same function but cannot set a uint8 input.
    from tensorflow.lite.python.convert import mlir_quantize

    return mlir_quantize(
        calibrated,
        input_data_type=tf.uint8,
        output_data_type=tf.float32,
        denylisted_nodes=float_nodes(calibrated, float_layers),
    )


def convert_qat(saved_dir: str) -> bytes:
    """SavedModel of a QAT model (tfmot fake-quant ops) -> int8 TFLite with a uint8 input.

    The int8 ranges are the ones learned in QAT: no calibration. (Sending a QAT model through the
    calibrate + ``mlir_quantize`` path of ``convert`` re-quantises the fake-quant ops and gave
    nearly constant outputs: EXPR top-1 agreement 0.17 with the QAT Keras model.)
    """
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_dir, signature_keys=[SIGNATURE])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.float32
    return converter.convert()


def _representative(images: np.ndarray):
    """Calibration inputs: a black and a white frame first (so the uint8 input maps 0..255 to
    [0, 1] exactly: scale 1/255, zero point 0), then the training frames."""
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
    interpreter = Interpreter(model_content=model_content)
    tensors = interpreter.get_tensor_details()
    names = []
    for op in interpreter._get_ops_details():
        for index in op["outputs"]:
            name = tensors[index]["name"]
            parts = set(name.replace(";", "/").split("/"))
            parts |= {part.split("_")[0] for part in parts}
            if not name.startswith(MEMBER_SCOPE) or parts & wanted:
                names.append(name)
    return names


def op_dtypes(model_content: bytes) -> list[tuple[str, str, str]]:
    """(op type, output tensor name, output dtype) of every op, in execution order."""
    interpreter = Interpreter(model_content=model_content)
    tensors = interpreter.get_tensor_details()
    return [
        (op["op_name"], tensors[op["outputs"][0]]["name"], np.dtype(tensors[op["outputs"][0]]["dtype"]).name)
        for op in interpreter._get_ops_details()
    ]


def on_uint8_grid(images: np.ndarray) -> np.ndarray:
    """Images in [0, 1] rounded to multiples of 1/255: what a uint8 camera frame delivers.

    Parity compares the float and int8 models on the same frames; the edge runtime feeds both
    uint8 pixels / 255, so the frames are put on that grid first (otherwise the int8 model's
    uint8 input rounding alone flips ~1% of the near-tie EXPR decisions of an underconfident model).
    """
    return (np.round(np.clip(images, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def quantize_input(images: np.ndarray, detail: dict) -> np.ndarray:
    """Float images in [0, 1] -> the input tensor's dtype: q = round(x / scale) + zero_point."""
    dtype = np.dtype(detail["dtype"])
    if dtype == np.float32:
        return images.astype(np.float32)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(images / scale) + zero_point, info.min, info.max).astype(dtype)


def run_tflite(model_content: bytes, images: np.ndarray, num_threads: int = 2) -> dict:
    """Invoke a model's signature once per image of ``images`` (N,S,S,3) in [0, 1]; stacked outputs."""
    runner = Interpreter(model_content=model_content, num_threads=num_threads).get_signature_runner(SIGNATURE)
    detail = runner.get_input_details()["image"]
    outs = [runner(image=quantize_input(image[None], detail)) for image in images]
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def input_spec(model_content: bytes, image_size: int) -> dict:
    """The metadata ``input`` block, read from the model's input tensor."""
    detail = (
        Interpreter(model_content=model_content).get_signature_runner(SIGNATURE).get_input_details()["image"]
    )
    quantised = np.dtype(detail["dtype"]) != np.float32
    scale, zero_point = detail["quantization"]
    return {
        "name": "image",
        "size": int(image_size),
        "channels": "RGB",
        "dtype": np.dtype(detail["dtype"]).name,
        "range": [0, 1],
        "scale": float(scale) if quantised else None,
        "zero_point": int(zero_point) if quantised else None,
    }


def check_signature(model_content: bytes, kind: str) -> None:
    """ExportError unless the model's signature has exactly the contract's input and output names."""
    runner = Interpreter(model_content=model_content).get_signature_runner(SIGNATURE)
    expected = set(ENSEMBLE_OUTPUTS if kind == "ensemble" else SINGLE_OUTPUTS)
    got_in, got_out = set(runner.get_input_details()), set(runner.get_output_details())
    if got_in != {"image"} or got_out != expected:
        raise ExportError(f"TFLite signature has inputs {sorted(got_in)} and outputs {sorted(got_out)}")


# ---------------------------------------------------------------- parity and calibration


def float_parity(tflite: dict, reference: dict) -> dict:
    """Max abs difference of every output: float TFLite vs Keras."""
    per_output = {k: float(np.max(np.abs(tflite[k] - reference[k]))) for k in reference}
    return {"float_max_abs_diff": max(per_output.values()), "per_output_max_abs_diff": per_output}


def int8_parity(quant: dict, ref: dict) -> dict:
    """Agreement of an int8 model with its float reference on the same frames.

    expr_top1_agreement: share of frames whose EXPR argmax agrees; also reported restricted to
    frames whose float top-1 margin (p1 - p2) exceeds MARGIN_EPS (near-ties flip on rounding).
    expr_entropy_mean_abs_diff: mean |H_int8 - H_float| of the normalised EXPR entropy.
    au_decision_agreement: share of (frame, AU) decisions p >= 0.5 that agree; also reported
    where the float |p - 0.5| exceeds MARGIN_EPS / 2. The targets apply to the unrestricted figures.
    """
    top1 = quant["expr_probs"].argmax(-1) == ref["expr_probs"].argmax(-1)
    sorted_ref = np.sort(ref["expr_probs"], axis=-1)
    clear = sorted_ref[:, -1] - sorted_ref[:, -2] > MARGIN_EPS
    au_agree = (quant["au_probs"] >= 0.5) == (ref["au_probs"] >= 0.5)
    au_clear = np.abs(ref["au_probs"] - 0.5) > MARGIN_EPS / 2
    out = {
        "frames": int(len(top1)),
        "expr_top1_agreement": float(top1.mean()),
        "expr_top1_agreement_clear_margin": float(top1[clear].mean()) if clear.any() else None,
        "clear_margin_frames": int(clear.sum()),
        "expr_entropy_mean_abs_diff": float(np.mean(np.abs(quant["expr_entropy"] - ref["expr_entropy"]))),
        "au_decision_agreement": float(au_agree.mean()),
        "au_decision_agreement_clear_margin": float(au_agree[au_clear].mean()) if au_clear.any() else None,
        "au_clear_margin_decisions": int(au_clear.sum()),
        "au_entropy_mean_abs_diff": float(np.mean(np.abs(quant["au_entropy"] - ref["au_entropy"]))),
        "va_mean_abs_diff": float(
            np.mean(
                np.abs(np.concatenate([quant["valence"] - ref["valence"], quant["arousal"] - ref["arousal"]]))
            )
        ),
    }
    if "expr_epistemic" in ref:
        out["expr_epistemic_mean_abs_diff"] = float(
            np.mean(np.abs(quant["expr_epistemic"] - ref["expr_epistemic"]))
        )
    return out


def parity_failures(figures: dict) -> list[str]:
    """The targets a model's figures miss, as readable strings (empty: all met)."""
    failures = []
    for name, target in TARGETS.items():
        if name not in figures:
            continue
        value = figures[name]
        at_most = name.endswith("diff")
        if not ((value <= target) if at_most else (value >= target)):  # NaN fails too
            failures.append(f"{name} = {value:.6g} ({'>' if at_most else '<'} target {target})")
    return failures


def calibrate_thresholds(outputs: dict, expr_labels: np.ndarray, expr_mask: np.ndarray) -> dict:
    """Uncertainty thresholds of one model from its own outputs on validation frames.

    expr_entropy: the EXPR_COVERAGE quantile of the normalised EXPR entropy (predictions below it
    are accepted: 80% coverage); the EXPR error of the accepted and of all labelled frames is
    stated in "target". ood_epistemic (ensemble only): the OOD_QUANTILE quantile of the in-domain
    expr_epistemic, so about 5% of in-domain faces raise a false OOD alarm.
    """
    entropy = outputs["expr_entropy"][:, 0]
    threshold = float(np.quantile(entropy, EXPR_COVERAGE))
    labelled = expr_mask > 0
    wrong = outputs["expr_probs"].argmax(-1) != expr_labels
    accepted = labelled & (entropy <= threshold)
    risk = f"{wrong[accepted].mean():.3f}" if accepted.any() else "n/a"
    overall = f"{wrong[labelled].mean():.3f}" if labelled.any() else "n/a"
    target = (
        f"expr_entropy: {EXPR_COVERAGE:.0%} coverage quantile of the validation EXPR normalised entropy "
        f"({len(entropy)} frames); EXPR error of the accepted labelled frames {risk} vs {overall} overall"
    )
    ood = None
    if "expr_epistemic" in outputs:
        ood = float(np.quantile(outputs["expr_epistemic"][:, 0], OOD_QUANTILE))
        target += (
            f"; ood_epistemic: {OOD_QUANTILE:.0%} quantile of expr_epistemic on in-domain validation "
            f"(about {1 - OOD_QUANTILE:.0%} false OOD alarms); the OOD score is expr_epistemic"
        )
    return {"expr_entropy": threshold, "ood_epistemic": ood, "target": target}


def metadata(kind: str, members: int, spec: dict, thresholds: dict) -> dict:
    """The ``M.json`` beside a model, in the schema of docs/ARCHITECTURE.md."""
    return {
        "format": FORMAT,
        "kind": kind,
        "members": int(members),
        "input": spec,
        "outputs": list(ENSEMBLE_OUTPUTS if kind == "ensemble" else SINGLE_OUTPUTS),
        "expr_names": list(EXPR_NAMES),
        "au_names": list(AU_NAMES),
        "va_bin_centres": [float(c) for c in va_bin_centres(NUM_VA_BINS)],
        "thresholds": thresholds,
    }


# ---------------------------------------------------------------- frames


def _spread(index: FrameIndex, count: int) -> FrameIndex:
    """``count`` rows of ``index`` spread evenly over it (all rows when it has fewer)."""
    if len(index) <= count:
        return index
    return index.subset(np.unique(np.linspace(0, len(index) - 1, count).round().astype(np.int64)))


def load_frames(index: FrameIndex, image_size: int, count: int) -> dict:
    """Images (N,S,S,3) float32 in [0, 1] and EXPR labels/masks of ``count`` frames spread over ``index``."""
    ds = pipeline.make_dataset(_spread(index, count), image_size, 64, training=False)
    parts = [{k: batch[k].numpy() for k in ("image", "expr", "expr_mask")} for batch in ds]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# ---------------------------------------------------------------- one model, the run


def export_model(
    members: list,
    name: str,
    out_dir: str,
    frames: dict,
    representative: np.ndarray,
    quantize: str = "float_post",
    allow_degraded: bool = False,
    int8_reference: list | None = None,
    float_layers: tuple[str, ...] = FLOAT_LAYERS,
    float_backbone_max: int = 0,
) -> dict:
    """Convert one model (1 member) or ensemble (M) to ``<name>_float32`` and ``<name>_int8`` .tflite.

    float_backbone_max: when the int8 model misses a parity target, keep the first 1, 2, ... up
    to this many backbone stages (``BACKBONE_LAYERS``) float as well, and take the first that
    meets every target (the figures record which layers stayed float).

    Writes each file (atomically, metadata JSON beside it) only if it meets its parity targets
    or ``allow_degraded``. int8_reference: Keras models to compare the int8 model with instead
    of the float TFLite (the QAT model; then no float file is written). float_layers: see
    ``convert``. Parity runs on the frames put on the uint8 grid (``on_uint8_grid``).
    Returns {"files": {...}, "parity": {...}, "failures": [...]}.
    """
    kind = "ensemble" if len(members) > 1 else "single"
    image_size = int(frames["image"].shape[1])
    images = on_uint8_grid(frames["image"])
    module = ExportModule(members, image_size)
    result = {"files": {}, "parity": {}, "failures": []}
    candidates = {}
    with tempfile.TemporaryDirectory() as saved_dir:
        save_module(module, saved_dir)
        if int8_reference is None:
            float_bytes = convert(saved_dir)
            reference = run_tflite(float_bytes, images)
            figures = float_parity(reference, keras_outputs(members, images))
            candidates[f"{name}_float32"] = (float_bytes, reference, figures)
            int8_bytes, int8_out, figures = _int8_within_targets(
                saved_dir, quantize, representative, float_layers, float_backbone_max, images, reference
            )
        else:
            reference = keras_outputs(int8_reference, images)
            int8_bytes = convert_qat(saved_dir)
            int8_out = run_tflite(int8_bytes, images)
            figures = {"quantize": quantize, **int8_parity(int8_out, reference)}
    candidates[f"{name}_int8"] = (int8_bytes, int8_out, figures)
    for model_name, (content, outputs, figures) in candidates.items():
        check_signature(content, kind)
        failures = parity_failures(figures)
        figures = {**figures, "size_bytes": len(content), "passed": not failures}
        result["parity"][model_name] = figures
        print(f"parity {model_name}: {json.dumps(figures)}", flush=True)
        if failures:
            result["failures"].append(f"{model_name}: " + "; ".join(failures))
            if not allow_degraded:
                continue
        thresholds = calibrate_thresholds(outputs, frames["expr"], frames["expr_mask"])
        meta = metadata(kind, len(members), input_spec(content, image_size), thresholds)
        path = os.path.join(out_dir, f"{model_name}.tflite")
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                f.write(content)
        atomic_write_json(os.path.join(out_dir, f"{model_name}.json"), meta)
        result["files"][model_name] = path
    return result


def _int8_within_targets(
    saved_dir, quantize, representative, float_layers, float_backbone_max, images, reference
):
    """int8 conversion with the fewest leading backbone stages float that meets the targets."""
    for k in range(0, float_backbone_max + 1 if quantize == "float_post" else 1):
        layers = tuple(float_layers) + BACKBONE_LAYERS[:k]
        content = convert(saved_dir, quantize, representative, layers)
        outputs = run_tflite(content, images)
        figures = {"quantize": quantize, **int8_parity(outputs, reference)}
        if quantize == "float_post":
            figures["float_layers"] = list(layers)
        if not parity_failures(figures):
            break
        print(f"int8 with float layers {list(layers)} misses: {parity_failures(figures)}", flush=True)
    return content, outputs, figures


def export_run(
    workdir: str,
    out_dir: str | None = None,
    qat_epochs: int = 0,
    allow_degraded: bool = False,
    representative_frames: int = 200,
    quantize: str = "float_post",
    validation_frames: int = VALIDATION_FRAMES,
    qat_steps: int | None = None,
    float_layers: tuple[str, ...] = FLOAT_LAYERS,
    float_backbone_max: int = FLOAT_BACKBONE_MAX,
) -> dict:
    """Export the final generation's student (member 0) and ensemble of a finished run.

    An int8 model that misses a parity target is converted again with its first 1, 2, ... up to
    ``float_backbone_max`` backbone stages kept float (see ``export_model``).

    Writes the .tflite files, their metadata and ``parity.json`` into ``out_dir`` (default
    ``<workdir>/export``). float_layers: the members' layers kept float in the int8 models
    (see ``convert``; e.g. ``FLOAT_LAYERS + BACKBONE_LAYERS[:5]``). Raises ExportError naming every model that missed a parity target
    (after writing the others and parity.json) unless ``allow_degraded``.
    Returns {"out_dir", "files": {name: path}, "parity": {name: figures}, "failures": [...]}.
    """
    from emenet_tf.training import load_member, resolved_image_size

    cfg = TrainConfig.load(os.path.join(workdir, "config.json"))
    out_dir = out_dir or os.path.join(workdir, "export")
    os.makedirs(out_dir, exist_ok=True)
    image_size = resolved_image_size(cfg)
    generation = cfg.generations - 1
    members = [load_member(cfg, generation, k) for k in range(cfg.ensemble_size)]
    splits = affwild2.load_splits(cfg.resolved_data_dir(), skip_bad_labels=cfg.skip_bad_labels)
    frames = load_frames(splits["validation"], image_size, validation_frames)
    representative = load_frames(splits["train"], image_size, representative_frames)["image"]
    common = dict(
        frames=frames,
        representative=representative,
        quantize=quantize,
        allow_degraded=allow_degraded,
        float_layers=tuple(float_layers),
        float_backbone_max=float_backbone_max,
    )
    results = [export_model(members[:1], "student", out_dir, **common)]
    if len(members) > 1:
        results.append(export_model(members, "ensemble", out_dir, **common))
    if qat_epochs > 0:
        qat = qat_finetune(cfg, members[0], splits["train"], qat_epochs, steps=qat_steps)
        results.append(export_model([qat], "student_qat", out_dir, int8_reference=[qat], **common))
    summary = {
        "out_dir": out_dir,
        "generation": generation,
        "files": {k: v for r in results for k, v in r["files"].items()},
        "parity": {k: v for r in results for k, v in r["parity"].items()},
        "failures": [f for r in results for f in r["failures"]],
        "targets": TARGETS,
    }
    atomic_write_json(os.path.join(out_dir, "parity.json"), summary)
    if summary["failures"] and not allow_degraded:
        raise ExportError(
            "refused to write models that miss their parity targets (see "
            f"{os.path.join(out_dir, 'parity.json')}; --allow_degraded writes them anyway): "
            + " | ".join(summary["failures"])
        )
    return summary


# ---------------------------------------------------------------- quantization-aware training


def qat_finetune(cfg: TrainConfig, student: keras.Model, train_index: FrameIndex, epochs: int, steps=None):
    """Quantization-aware fine-tune of the student (tfmot) for ``epochs`` on its teacher's labels.

    Labels: the soft labels of generation G-2 (the final generation's teachers) with the
    distillation losses, or the hard labels when the run has one generation. Adam at
    learning_rate * lr_decay_factor. Returns the QAT Keras model (fake-quant layers inside).
    """
    import tensorflow_model_optimization as tfmot

    from emenet_tf import distill, losses
    from emenet_tf.training import LossSetup, MultitaskTrainer, resolved_image_size

    soft = None
    if cfg.generations > 1:
        soft = distill.load_soft_labels(distill.soft_labels_path(cfg, cfg.generations - 2), train_index)
    weights_path = os.path.join(cfg.workdir, "class_weights.json")
    weights = read_json(weights_path) if os.path.exists(weights_path) else losses.class_weights(train_index)
    setup = LossSetup.from_config(cfg, weights, soft=soft is not None)
    qat = tfmot.quantization.keras.quantize_model(student)
    trainer = MultitaskTrainer(qat, setup)
    trainer.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate * cfg.lr_decay_factor))
    ds = pipeline.make_dataset(
        train_index,
        resolved_image_size(cfg),
        cfg.batch_size,
        training=True,
        soft_labels=soft,
        seed=cfg.seed,
        augment=cfg.augment,
        repeat=True,
    )
    steps = steps or cfg.steps_per_epoch or pipeline.steps_per_epoch(train_index, cfg.batch_size)
    trainer.fit(ds, epochs=epochs, steps_per_epoch=steps, verbose=cfg.verbose)
    return qat


# ---------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> dict:
    """CLI: python -m emenet_tf.export --workdir DIR [--qat_epochs N] [--allow_degraded] [--out DIR]."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a finished training run (holds config.json)")
    parser.add_argument("--out", default=None, help="output folder (default: WORKDIR/export)")
    parser.add_argument(
        "--qat_epochs", type=int, default=0, help="quantization-aware fine-tune epochs (0: none)"
    )
    parser.add_argument("--allow_degraded", action="store_true", help="write models that miss parity targets")
    parser.add_argument("--representative_frames", type=int, default=200)
    parser.add_argument("--validation_frames", type=int, default=VALIDATION_FRAMES)
    parser.add_argument("--quantize", choices=QUANTIZE_MODES, default="float_post")
    parser.add_argument(
        "--float_backbone",
        type=int,
        default=0,
        help=f"also keep the first K backbone stages float ({', '.join(BACKBONE_LAYERS)})",
    )
    parser.add_argument(
        "--float_backbone_max",
        type=int,
        default=FLOAT_BACKBONE_MAX,
        help="if int8 misses a parity target, keep up to this many more leading stages float",
    )
    args = parser.parse_args(argv)
    if not os.path.exists(os.path.join(args.workdir, "config.json")):
        parser.error(f"{args.workdir} holds no config.json (not a training run)")
    if not 0 <= args.float_backbone <= len(BACKBONE_LAYERS):
        parser.error(f"--float_backbone must be in 0..{len(BACKBONE_LAYERS)}, got {args.float_backbone}")
    if args.qat_epochs < 0:
        parser.error(f"--qat_epochs must be >= 0, got {args.qat_epochs}")
    logging.set_verbosity(logging.WARNING)
    try:
        summary = export_run(
            args.workdir,
            out_dir=args.out,
            qat_epochs=args.qat_epochs,
            allow_degraded=args.allow_degraded,
            representative_frames=args.representative_frames,
            quantize=args.quantize,
            validation_frames=args.validation_frames,
            float_layers=FLOAT_LAYERS + BACKBONE_LAYERS[: args.float_backbone],
            float_backbone_max=args.float_backbone_max,
        )
    except (ExportError, ConfigError, FileNotFoundError) as err:
        raise SystemExit(f"export failed: {err}") from None
    for path in summary["files"].values():
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")
    return summary


if __name__ == "__main__":
    main()
