"""Command lines: train (``train.py``, ``emenet-train``), evaluate (``evaluate.py``, ``emenet-evaluate``)."""
