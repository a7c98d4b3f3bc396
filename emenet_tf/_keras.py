"""The one place that selects Keras 2 (tf-keras) and imports TensorFlow and Keras.

Every module of the package imports ``tf`` and ``keras`` from here, never directly:
tensorflow-model-optimization (QAT) and ``tfp.layers`` only work with the Keras 2 API, which
TensorFlow serves when ``TF_USE_LEGACY_KERAS=1`` is set before TensorFlow is first imported.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

__all__ = ["tf", "keras"]
