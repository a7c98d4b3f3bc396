"""Readers of the public datasets, each into the same masked FrameIndex (see emenet_tf.data.sources)."""
