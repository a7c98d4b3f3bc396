"""Regenerate tests/golden/edge_predict.jsonl: the edge CLI's output on the fixture models.

    /work/venv/bin/python tests/golden/regenerate_edge_golden.py

When to regenerate: only when a change of the numbers is intended and understood - the fixture
network or its weights in tests/edge_fixtures.py, the golden images, the result fields of
edge/runtime.py, or the preprocessing (resize / scaling) on purpose. Never to make a failing test
pass without knowing why it failed: a drift in the numbers means preprocessing, dequantisation or
post-processing changed. Review the diff (git diff tests/golden/) before committing it.
"""

import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from tests.edge_fixtures import golden_cli_lines, make_fixture_model, write_golden_images  # noqa: E402

GOLDEN = os.path.join(ROOT, "tests", "golden", "edge_predict.jsonl")
GOLDEN_MODELS = (("single_float", "single"), ("ensemble_float", "ensemble"))


def build_golden_models(out_dir) -> dict:
    """The float fixture models the golden file was made with, by name."""
    return {name: make_fixture_model(out_dir, kind=kind, quantize="float") for name, kind in GOLDEN_MODELS}


def main():
    with tempfile.TemporaryDirectory() as tmp:
        models = build_golden_models(os.path.join(tmp, "models"))
        images = write_golden_images(os.path.join(tmp, "images"))
        lines = golden_cli_lines(models, images)
    with open(GOLDEN, "w") as f:
        for record in lines:
            f.write(json.dumps(record) + "\n")
    print(f"wrote {len(lines)} lines to {GOLDEN}")


if __name__ == "__main__":
    main()
