"""The edge runtime for EMENet-TF models: numpy, LiteRT and OpenCV only (no TensorFlow, no emenet_tf)."""
