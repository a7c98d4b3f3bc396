"""The edge runtime for EMENet-TF models: numpy, LiteRT and OpenCV only (no TensorFlow, no emenet_tf)."""

__version__ = "0.2.0"  # the project's version: emenet_tf and both packages report it
