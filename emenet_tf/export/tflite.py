"""Running and inspecting a converted TFLite model: outputs on frames, its input spec, its signature."""

from __future__ import annotations

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from edge.contract import INPUT_NAME, SIGNATURE, STATE_INPUTS, STATE_OUTPUTS, output_shapes, state_shapes
from edge.runtime import input_tensor
from emenet_tf.errors import ExportError
from emenet_tf.export import private_tf
from emenet_tf.labels import NUM_AU, NUM_EXPR, NUM_VA_BINS


def _runner(model_content: bytes, num_threads: int | None = None):
    return Interpreter(model_content=model_content, num_threads=num_threads).get_signature_runner(SIGNATURE)


def run_tflite(model_content: bytes, images: np.ndarray, num_threads: int = 2, starts=None) -> dict:
    """Invoke a model's signature once per image of ``images`` (N,S,S,3) in [0, 1]; stacked outputs.

    The images are fed as the edge runtime feeds them (``edge.runtime.input_tensor``: quantised
    with the input tensor's scale and zero point in an int8 model). A stream model (state inputs)
    gets the state its previous call returned, zeros where ``starts`` (N,) bool is True (a
    segment begins) and at the first image.
    """
    runner = _runner(model_content, num_threads)
    details = runner.get_input_details()
    detail = details[INPUT_NAME]
    zeros = {n: np.zeros(details[n]["shape"], np.float32) for n in STATE_INPUTS if n in details}
    state, outs = dict(zeros), []
    for i, image in enumerate(images):
        if starts is not None and starts[i]:
            state = dict(zeros)
        out = runner(**{INPUT_NAME: input_tensor(image[None], detail)}, **state)
        state = {n: out[o] for n, o in zip(STATE_INPUTS, STATE_OUTPUTS, strict=True) if n in zeros}
        outs.append(out)
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def input_spec(model_content: bytes, image_size: int) -> dict:
    """The metadata ``input`` block, read from the model's input tensor."""
    detail = _runner(model_content).get_input_details()[INPUT_NAME]
    quantised = np.dtype(detail["dtype"]) != np.float32
    scale, zero_point = detail["quantization"]
    return {
        "name": INPUT_NAME,
        "size": int(image_size),
        "channels": "RGB",
        "dtype": np.dtype(detail["dtype"]).name,
        "range": [0, 1],
        "scale": float(scale) if quantised else None,
        "zero_point": int(zero_point) if quantised else None,
    }


def check_signature(model_content: bytes, kind: str, image_size: int, state_size: int | None = None) -> None:
    """ExportError unless the model's signature has exactly the contract's inputs and outputs (names
    and shapes, ``edge.contract.output_shapes``; a stream model's state tensors, ``state_shapes``)."""
    runner = _runner(model_content)
    expected_in = {INPUT_NAME: (1, image_size, image_size, 3)}
    expected = output_shapes(kind, NUM_EXPR, NUM_AU, NUM_VA_BINS)
    if state_size is not None:
        states = state_shapes(state_size)
        expected_in.update({n: states[n] for n in STATE_INPUTS})
        expected.update({n: states[n] for n in STATE_OUTPUTS})
    inputs = {name: tuple(int(d) for d in v["shape"]) for name, v in runner.get_input_details().items()}
    outputs = {name: tuple(int(d) for d in v["shape"]) for name, v in runner.get_output_details().items()}
    if inputs != expected_in or outputs != expected:
        raise ExportError(
            f"the converted {kind} model breaks the contract: inputs {inputs}, outputs {outputs}; "
            f"expected {expected_in} and {expected}"
        )


def op_dtypes(model_content: bytes) -> list[tuple[str, str, str]]:
    """(op type, output tensor name, output dtype) of every op, in execution order."""
    ops, tensors = private_tf.ops_details(model_content)
    return [
        (op["op_name"], tensors[op["outputs"][0]]["name"], np.dtype(tensors[op["outputs"][0]]["dtype"]).name)
        for op in ops
    ]
