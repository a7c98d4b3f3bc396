"""Export of the final students to TFLite: float32 and int8 models, the ensemble graph, metadata, parity.

graph.py       the exported graph: logits -> the contract's named outputs (ExportModule)
convert.py     SavedModel -> TFLite: float32, int8 with float layers, QAT (private_tf.py: the
               private converter APIs this needs)
tflite.py      running and inspecting a converted model
parity.py      parity figures, targets and failures
metadata.py    the metadata JSON and its calibrated thresholds
model.py       one model or ensemble: convert, check, write what passes
qat.py         the quantization-aware fine-tune and its int8 model
exporter.py    a finished run: every model into one folder, swapped in whole (``export_run``)
options.py     the export's options (its flags here and in train.py); the CLI: emenet_tf/cli/export.py
"""


def __getattr__(name):
    """``export.export_run``, imported on first use (it loads TensorFlow; ``export.options`` does not,
    so the command lines define their flags before TensorFlow is imported)."""
    if name == "export_run":
        from emenet_tf.export.exporter import export_run

        return export_run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
