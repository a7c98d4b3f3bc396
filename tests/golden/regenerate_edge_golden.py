"""Regenerate tests/golden/edge_predict.jsonl: the edge CLI's output on the fixture models.

    .venv/bin/python tests/golden/regenerate_edge_golden.py     (needs scikit-image: the astronaut)

The golden images (tests/edge_fixtures.py) run whole (--no_face_detection), and the astronaut photo
with BlazeFace: its lines carry the detection (box, score, keypoints) and the model's answer on the
aligned crop. When to regenerate: only when a change of the numbers is intended and understood - the
fixture network or its weights in tests/edge_fixtures.py, the golden images, the result fields of
edge/results.py, the detector or the crop (edge/blazeface.py, edge/align.py, edge/faces.py), or the
preprocessing (resize / scaling) on purpose. Never to make a failing test
pass without knowing why it failed: a drift in the numbers means preprocessing, dequantisation or
post-processing changed. Review the diff (git diff tests/golden/) before committing it.
"""

import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from tests.edge_fixtures import (  # noqa: E402
    golden_cli_lines,
    golden_detection_images,
    make_fixture_model,
    write_golden_images,
)

GOLDEN = os.path.join(ROOT, "tests", "golden", "edge_predict.jsonl")
GOLDEN_MODELS = (("single_float", "single"), ("ensemble_float", "ensemble"))


def build_golden_models(out_dir) -> dict:
    """The float fixture models the golden file was made with, by name."""
    return {name: make_fixture_model(out_dir, kind=kind, quantize="float") for name, kind in GOLDEN_MODELS}


def main():
    with tempfile.TemporaryDirectory() as tmp:
        models = build_golden_models(os.path.join(tmp, "models"))
        images = write_golden_images(os.path.join(tmp, "images"))
        faces = write_golden_images(os.path.join(tmp, "faces"), golden_detection_images())
        lines = golden_cli_lines(models, images, faces)
    with open(GOLDEN, "w") as f:
        for record in lines:
            f.write(json.dumps(record) + "\n")
    print(f"wrote {len(lines)} lines to {GOLDEN}")


if __name__ == "__main__":
    main()
