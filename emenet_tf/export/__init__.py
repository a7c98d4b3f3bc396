"""Export of the final students to TFLite: float32 and int8 models, the ensemble graph, metadata, parity.

graph.py       the exported graph: logits -> the contract's named outputs (ExportModule)
convert.py     SavedModel -> TFLite: float32, int8 with float layers, QAT (private_tf.py: the
               private converter APIs this needs)
tflite.py      running and inspecting a converted model
parity.py      parity figures, targets and failures
metadata.py    the metadata JSON and its calibrated thresholds
model.py       one model or ensemble: convert, check, write what passes
qat.py         the quantization-aware fine-tune and its int8 model
run.py         a finished run: every model into one folder, swapped in whole (``export_run``)
__main__.py    the CLI: python -m emenet_tf.export --workdir DIR [--qat_epochs N] [--allow_degraded] [--out DIR]
"""

from emenet_tf.export.run import export_run

__all__ = ["export_run"]
