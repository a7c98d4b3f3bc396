"""The three private TensorFlow Lite APIs the exporter needs, in one place, with why each is needed.

The int8 models keep the post-processing (and the task heads) float while the backbone is int8.
The public converter cannot do that: it quantises every op it can once a representative dataset
is given. So the exporter (1) calibrates only, (2) quantises the calibrated model itself with a
deny list of op names, and (3) reads op names and dtypes from the interpreter. Each call is
exercised by tests/test_export.py, so a TensorFlow upgrade that changes one fails there first.
"""

from __future__ import annotations

from ai_edge_litert.interpreter import Interpreter


def calibrate_only(converter) -> bytes:
    """A float model with the calibration statistics of the converter's representative dataset.

    ``_experimental_calibrate_only``: the public ``convert()`` would quantise straight away; the
    deny list is applied by ``quantize_calibrated`` instead.
    """
    converter._experimental_calibrate_only = True
    return converter.convert()


def quantize_calibrated(calibrated: bytes, input_type, output_type, denylisted_nodes: list[str]) -> bytes:
    """int8 quantisation of a calibrated model, keeping the ops whose output tensors are named float.

    ``tensorflow.lite.python.convert.mlir_quantize``: the only entry point that takes a deny list of
    op (node) names. The public ``QuantizationDebugger`` calls this same function but cannot set a
    uint8 input.
    """
    from tensorflow.lite.python.convert import mlir_quantize

    return mlir_quantize(
        calibrated,
        input_data_type=input_type,
        output_data_type=output_type,
        denylisted_nodes=denylisted_nodes,
    )


def ops_details(model_content: bytes) -> tuple[list[dict], list[dict]]:
    """(ops, tensors) of a TFLite model: each op's name and its input/output tensor indices.

    ``Interpreter._get_ops_details``: the interpreter lists tensors publicly but not ops; the deny
    list needs the op output names and the tests check which ops run in int8.
    """
    interpreter = Interpreter(model_content=model_content)
    return interpreter._get_ops_details(), interpreter.get_tensor_details()
