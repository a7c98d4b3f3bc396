"""The metadata JSON beside each exported model: reading it, checking its types and ranges, and that it
describes the model it lies beside (schema: docs/ARCHITECTURE.md, "Exported models").

Every refusal is one EdgeError naming the file, the key and the value.
"""

import json
import math
import os
import re

import numpy as np

from edge.contract import FORMAT, INPUT_NAME, KINDS, STATE_INPUTS, STATE_OUTPUTS, output_shapes, state_shapes
from edge.errors import EdgeError
from edge.interpreter import tensor_quantization

TASKS = ("au", "expr", "va")  # the heads, as metadata ``untrained`` names them
_MEMBER = re.compile(r"member(\d+)/")  # the exporter's name scope of member k (emenet_tf.export.graph)

INPUT_DTYPES = ("float32", "uint8", "int8")
# A threshold calibrated on float32 entropies of near-uniform outputs can pass 1 by rounding (~1e-7).
_ENTROPY_SLACK = 1e-6


def metadata_path(model_path) -> str:
    """The metadata JSON that belongs to a model: ``M.json`` beside ``M.tflite``."""
    return os.path.splitext(str(model_path))[0] + ".json"


def required_outputs(kind: str) -> tuple:
    """Output names the contract requires for a model of ``kind`` (``edge.contract.KINDS``)."""
    return tuple(output_shapes(kind, 1, 1, 1))


def _meta_error(path, key, value, why) -> EdgeError:
    return EdgeError(f"{path}: metadata {key} {why} (value: {value!r})")


def _check_names(meta, path, key, count=None):
    names = meta.get(key)
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise _meta_error(path, key, names, "must be a non-empty list of strings")
    if count is not None and len(names) != count:
        raise _meta_error(path, key, names, f"must have {count} entries")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:  # results are keyed by name: a repeated name would hide one output
        raise _meta_error(path, key, repeated, "must not repeat a name")


def _check_number(value, allow_null=False) -> bool:
    if value is None:
        return allow_null
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_input_quantization(spec, path):
    """float32: scale and zero_point null; uint8 / int8: scale > 0, zero point in the type's range."""
    scale, zero_point = spec.get("scale"), spec.get("zero_point")
    if spec["dtype"] == "float32":
        for key, value in (("scale", scale), ("zero_point", zero_point)):
            if value is not None:
                raise _meta_error(path, f"input.{key}", value, "must be null for a float32 input")
        return
    if not _check_number(scale) or scale <= 0:
        raise _meta_error(
            path, "input.scale", scale, f"must be a positive number for a {spec['dtype']} input"
        )
    info = np.iinfo(spec["dtype"])
    if not _is_int(zero_point) or not info.min <= zero_point <= info.max:
        why = f"must be an integer in [{info.min}, {info.max}] for a {spec['dtype']} input"
        raise _meta_error(path, "input.zero_point", zero_point, why)


def _check_input_spec(spec, path):
    if not isinstance(spec, dict):
        raise _meta_error(path, "input", spec, "must be an object")
    if spec.get("name") != INPUT_NAME:
        raise _meta_error(path, "input.name", spec.get("name"), f"must be {INPUT_NAME!r}")
    size = spec.get("size")
    if not _is_int(size) or size < 1:
        raise _meta_error(path, "input.size", size, "must be a positive integer")
    if spec.get("channels") != "RGB":
        raise _meta_error(path, "input.channels", spec.get("channels"), "must be 'RGB'")
    if spec.get("dtype") not in INPUT_DTYPES:
        raise _meta_error(path, "input.dtype", spec.get("dtype"), f"must be one of {INPUT_DTYPES}")
    rng = spec.get("range")
    if not (isinstance(rng, list) and len(rng) == 2 and all(_check_number(v) for v in rng) and rng == [0, 1]):
        raise _meta_error(path, "input.range", rng, "must be [0, 1] (pixels / 255, as in training)")
    _check_input_quantization(spec, path)


def _check_members(meta, path):
    members = meta.get("members")
    if not _is_int(members) or members < 1:
        raise _meta_error(path, "members", members, "must be a positive integer")
    if meta["kind"] in ("single", "dirichlet") and members != 1:
        raise _meta_error(path, "members", members, f"must be 1 for kind {meta['kind']!r}")
    if meta["kind"] == "ensemble" and members < 2:
        raise _meta_error(path, "members", members, "must be at least 2 for kind 'ensemble'")


def _check_bin_centres(meta, path):
    centres = meta.get("va_bin_centres")
    if not (isinstance(centres, list) and len(centres) >= 2 and all(_check_number(c) for c in centres)):
        raise _meta_error(path, "va_bin_centres", centres, "must be a list of at least 2 numbers")
    if not all(-1.0 <= c <= 1.0 for c in centres) or not np.all(np.diff(centres) > 0):
        raise _meta_error(path, "va_bin_centres", centres, "must increase strictly within [-1, 1]")


def _check_thresholds(meta, path):
    """expr_entropy and ood_epistemic compare normalised entropies, so they lie in [0, 1]
    (ood_epistemic may be null); ood (on a Dirichlet model's ood_score, a log density) is any finite
    number or null (absent: null)."""
    thresholds = meta.get("thresholds")
    if not isinstance(thresholds, dict):
        raise _meta_error(path, "thresholds", thresholds, "must be an object")
    no_expr = "expr" in meta.get("untrained", [])  # no expression head: no expression threshold
    for key, allow_null in (("expr_entropy", no_expr), ("ood_epistemic", True)):
        value = thresholds.get(key)
        is_number = _check_number(value, allow_null)
        if not is_number or (value is not None and not -_ENTROPY_SLACK <= value <= 1.0 + _ENTROPY_SLACK):
            why = "must be a number in [0, 1]" + (" or null" if allow_null else "")
            raise _meta_error(path, f"thresholds.{key}", value, why)
    if not _check_number(thresholds.get("ood"), allow_null=True):
        raise _meta_error(path, "thresholds.ood", thresholds.get("ood"), "must be a finite number or null")


def _check_untrained(meta, path):
    """``untrained`` (absent: none): the tasks whose heads never saw a label, a list of distinct names
    from au, expr, va that leaves at least one task trained."""
    untrained = meta.get("untrained", [])
    if not isinstance(untrained, list) or not all(t in TASKS for t in untrained):
        raise _meta_error(path, "untrained", untrained, f"must be a list of task names from {list(TASKS)}")
    if len(set(untrained)) != len(untrained) or set(untrained) == set(TASKS):
        raise _meta_error(path, "untrained", untrained, "must name distinct tasks and leave one trained")


def _check_state(meta, path):
    """A stream model's ``state`` block: the contract's tensor names, a positive size, max_gap >= 0,
    reset_every >= 0 (absent in older exports: filled in as 0, never reset)."""
    state = meta.get("state")
    if state is None:
        return
    if not isinstance(state, dict):
        raise _meta_error(path, "state", state, "must be an object or absent")
    for key, names in (("inputs", STATE_INPUTS), ("outputs", STATE_OUTPUTS)):
        if state.get(key) != list(names):
            raise _meta_error(path, f"state.{key}", state.get(key), f"must be {list(names)}")
    state.setdefault("reset_every", 0)
    for key, low in (("size", 1), ("max_gap", 0), ("reset_every", 0)):
        if not _is_int(state.get(key)) or state[key] < low:
            raise _meta_error(path, f"state.{key}", state.get(key), f"must be an integer >= {low}")


def validate_metadata(meta, path) -> dict:
    """Check a metadata dict's types and ranges (schema: ARCHITECTURE.md); EdgeError naming the key.

    Fills in what older exports lack: ``state.reset_every`` 0."""
    if not isinstance(meta, dict):
        raise _meta_error(path, "root", type(meta).__name__, "must be a JSON object")
    if meta.get("format") != FORMAT:
        raise _meta_error(path, "format", meta.get("format"), f"must be {FORMAT!r}")
    if meta.get("kind") not in KINDS:
        raise _meta_error(path, "kind", meta.get("kind"), f"must be one of {', '.join(map(repr, KINDS))}")
    _check_members(meta, path)
    _check_input_spec(meta.get("input"), path)
    _check_names(meta, path, "outputs")
    missing = [n for n in required_outputs(meta["kind"]) if n not in meta["outputs"]]
    if missing:
        raise _meta_error(path, "outputs", missing, f"lacks outputs a {meta['kind']} model must have")
    _check_names(meta, path, "expr_names")
    _check_names(meta, path, "au_names")
    _check_bin_centres(meta, path)
    _check_untrained(meta, path)
    _check_thresholds(meta, path)
    _check_state(meta, path)
    return meta


def load_metadata(path) -> dict:
    """Read and validate a model's metadata JSON (EdgeError if missing, not JSON or off-schema)."""
    path = str(path)
    if not os.path.isfile(path):
        raise EdgeError(f"{path}: metadata JSON not found (a model M.tflite needs M.json beside it)")
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except json.JSONDecodeError as e:
        raise EdgeError(f"{path}:{e.lineno}: metadata is not valid JSON ({e.msg})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise EdgeError(f"{path}: cannot read metadata ({e})") from None
    return validate_metadata(meta, path)


def _expected_output_shapes(meta) -> dict:
    counts = (len(meta["expr_names"]), len(meta["au_names"]), len(meta["va_bin_centres"]))
    shapes = output_shapes(meta["kind"], *counts)
    if meta.get("state") is not None:
        shapes.update(state_shapes(meta["state"]["size"]))
    return shapes


def _state_names(meta, key: str) -> list:
    return list(meta["state"][key]) if meta.get("state") is not None else []


def _check_quantization_matches(spec, detail, meta_file):
    """A quantised input's metadata scale / zero point must be the tensor's (float32 rounding apart)."""
    if spec["dtype"] == "float32":
        return
    scale, zero_point = tensor_quantization(detail)
    if not math.isclose(spec["scale"], scale, rel_tol=1e-6):
        raise _meta_error(
            meta_file, "input.scale", spec["scale"], f"does not match the model input's {scale}"
        )
    if spec["zero_point"] != zero_point:
        why = f"does not match the model input's {zero_point}"
        raise _meta_error(meta_file, "input.zero_point", spec["zero_point"], why)


def check_members(meta, tensor_names, meta_file):
    """The metadata's ``members`` against the model: the exporter builds member k's layers under the
    name scope ``member<k>/``, so a model whose tensor names show another count of members does not
    belong to this metadata (a model with no such names, from another exporter, is not checked)."""
    found = {int(m.group(1)) for name in tensor_names for m in [_MEMBER.match(name)] if m}
    if found and len(found) != meta["members"]:
        why = f"does not match the model, which holds {len(found)} member(s)"
        raise _meta_error(meta_file, "members", meta["members"], why)


def check_model_matches(meta, input_details, output_details, meta_file):
    """The metadata must describe this model: input name/size/dtype, state, output names and shapes."""
    if sorted(input_details) != sorted([INPUT_NAME, *_state_names(meta, "inputs")]):
        key = "state" if meta.get("state") is not None or len(input_details) > 1 else "input.name"
        raise _meta_error(
            meta_file, key, meta.get("state"), f"does not match model inputs {list(input_details)}"
        )
    detail = input_details[INPUT_NAME]
    size = meta["input"]["size"]
    if tuple(int(d) for d in detail["shape"]) != (1, size, size, 3):
        raise _meta_error(
            meta_file, "input.size", size, f"does not match model input shape {list(detail['shape'])}"
        )
    if np.dtype(detail["dtype"]).name != meta["input"]["dtype"]:
        raise _meta_error(
            meta_file,
            "input.dtype",
            meta["input"]["dtype"],
            f"does not match model input {np.dtype(detail['dtype'])}",
        )
    _check_quantization_matches(meta["input"], detail, meta_file)
    if sorted(output_details) != sorted(meta["outputs"] + _state_names(meta, "outputs")):
        raise _meta_error(
            meta_file, "outputs", meta["outputs"], f"do not match model outputs {sorted(output_details)}"
        )
    for name, shape in _expected_output_shapes(meta).items():
        details = input_details if name in _state_names(meta, "inputs") else output_details
        if name in details and tuple(int(d) for d in details[name]["shape"]) != shape:
            got = list(details[name]["shape"])
            key = "state.size" if meta.get("state") is not None and name in state_shapes(1) else "outputs"
            raise _meta_error(meta_file, key, name, f"has model shape {got}, metadata implies {list(shape)}")
