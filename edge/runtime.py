"""Run an exported EMENet-TF .tflite model on faces: the edge runtime's public API, in one import.

Needs numpy, LiteRT (``ai_edge_litert``, or the older ``tflite_runtime``) and OpenCV only; never
TensorFlow or ``emenet_tf``. The model contract (signature ``serving_default``, input ``image``, named
post-processed outputs, metadata JSON beside the model) is in docs/ARCHITECTURE.md, "Exported models".
The parts: ``edge.interpreter`` (which TFLite runtime, loading, input quantisation), ``edge.metadata``
(the metadata JSON and its checks), ``edge.model`` (``EmotionModel``), ``edge.images`` (image files).
"""

from edge.contract import ENSEMBLE_EXTRA_OUTPUTS, SINGLE_OUTPUTS  # noqa: F401
from edge.errors import EdgeError  # noqa: F401
from edge.images import load_image, to_rgb_uint8  # noqa: F401
from edge.interpreter import (  # noqa: F401
    FALLBACK_NOTE,
    RUNTIME,
    RUNTIMES,
    FallbackRuntimeWarning,
    Interpreter,
    dequantize,
    find_interpreter,
    input_tensor,
    quantize,
)
from edge.metadata import load_metadata, metadata_path, validate_metadata  # noqa: F401
from edge.model import EmotionModel  # noqa: F401
from edge.results import FaceResult, result_to_json  # noqa: F401
