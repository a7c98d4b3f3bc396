"""Regenerate docs/edge_draw.jpg, the picture edge/README.md shows: ``edge.predict --draw`` on a photo.

    .venv/bin/python tests/golden/edge_screenshot.py [--model M.tflite] [--out docs/edge_draw.jpg]

The photo: scikit-image's astronaut (Eileen Collins, NASA: public domain) shrunk to 384 px, beside
the same photo turned by 25 degrees, so the picture shows BlazeFace's keypoints and the aligned
square the model is fed turning with her eyes. Without --model the tests' tiny fixture student
(tests/edge_fixtures.py, made with TensorFlow) draws it: its weights are random, so its labels mean
nothing; the picture shows what --draw writes. Needs scikit-image.
"""

import argparse
import os
import sys
import tempfile

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from tests.edge_fixtures import astronaut  # noqa: E402

SIDE = 384
TURN = 25.0  # degrees, anticlockwise on screen


def photo() -> np.ndarray:
    """(SIDE, 2 SIDE, 3) RGB: the astronaut, and beside her the same photo turned by TURN about her face."""
    upright = astronaut(SIDE)
    scale = SIDE / 512.0
    matrix = cv2.getRotationMatrix2D((222.0 * scale, 126.0 * scale), TURN, 1.0)
    turned = cv2.warpAffine(upright, matrix, (SIDE, SIDE), borderMode=cv2.BORDER_REFLECT)
    return np.concatenate([upright, turned], axis=1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="exported .tflite model (default: the tests' tiny one)")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "edge_draw.jpg"))
    args = parser.parse_args(argv)
    from edge import predict

    with tempfile.TemporaryDirectory() as folder:
        if args.model is None:
            from tests.edge_fixtures import make_fixture_model

            args.model = make_fixture_model(folder, kind="ensemble", quantize="float")
        image = os.path.join(folder, "astronaut.png")
        cv2.imwrite(image, cv2.cvtColor(photo(), cv2.COLOR_RGB2BGR))
        return predict.main(["--model", args.model, image, "--draw", args.out])


if __name__ == "__main__":
    sys.exit(main())
