"""Writing an evaluation: metrics.json, metrics_full.json, temperatures.json, report.md and the plots.

Every file is written atomically into the evaluation folder, which holds a marker (``MARKER``) so
that a later evaluation recognises it: a folder that is neither empty nor an evaluation (a user's
folder given as ``--out_dir``) is refused, never written into.
"""

from __future__ import annotations

import os

from emenet_tf import plots
from emenet_tf.errors import RunError
from emenet_tf.io import atomic_write_json, atomic_write_text
from emenet_tf.rundir import METRICS

MARKER = ".emenet-evaluation"  # written into every evaluation folder
FULL_METRICS = "metrics_full.json"
TEMPERATURES = "temperatures.json"
REPORT = "report.md"


def check_out_dir(out_dir: str) -> None:
    """RunError unless ``out_dir`` is absent, empty, or an earlier evaluation (it holds MARKER, or the
    metrics.json of an evaluation written before the marker existed)."""
    if not os.path.exists(out_dir):
        return
    if not os.path.isdir(out_dir):
        raise RunError(f"{out_dir}: exists and is not a folder; refusing to write the evaluation there")
    entries = set(os.listdir(out_dir))
    if entries and not ({MARKER, METRICS} & entries):
        raise RunError(
            f"{out_dir}: not empty and not an evaluation folder; refusing to write into it "
            "(give an empty or new --out_dir)"
        )


def write_outputs(out_dir, result, full, methods, index, eval_rows, scaler, generations) -> None:
    """Every output file of one evaluation; ``methods``: the ``Predictions`` evaluated."""
    os.makedirs(out_dir, exist_ok=True)
    atomic_write_text(os.path.join(out_dir, MARKER), "written by emenet_tf.evaluation\n")
    atomic_write_json(os.path.join(out_dir, METRICS), result)
    atomic_write_json(os.path.join(out_dir, FULL_METRICS), full)
    atomic_write_json(os.path.join(out_dir, TEMPERATURES), scaler.to_dict())
    from emenet_tf import report

    atomic_write_text(os.path.join(out_dir, REPORT), report.render(result, full, scaler, generations))
    arrays = {m.info.name: m.splits for m in methods}
    plots.write_all(out_dir, arrays, index, eval_rows, generations)
