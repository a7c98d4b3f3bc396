"""Time face detection on one 640x480 frame: BlazeFace (full and short range) against the Haar cascade.

Usage: python benchmarks/blazeface_speed.py [--runs 50] [--warmup 5] [--threads 1]
The frame is scikit-image's astronaut photo (public domain), scaled to 300 px, on a tiled grass texture.
Times ``BlazeFace.detect`` (letterbox, LiteRT invoke, decoding, NMS), ``edge.faces.FaceDetector("haar").detect``
(the Haar cascade with its default settings, on a copy at most 640 px a side) and one aligned crop
(``edge.align``, 112 px), each the median of ``--runs`` calls after ``--warmup``, with OpenCV and LiteRT
on ``--threads`` threads. Prints; asserts nothing. Needs scikit-image (requirements-dev.txt).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from edge.align import aligned_crop, keypoint_frame  # noqa: E402
from edge.blazeface import BlazeFace  # noqa: E402
from edge.faces import FaceDetector  # noqa: E402


def test_frame() -> np.ndarray:
    """640x480 RGB: the astronaut (300 px, INTER_AREA) at (250, 120) on tiled skimage grass."""
    from skimage import data

    grass = data.grass()
    background = np.tile(grass, (1, 2))[:480, :640]
    frame = np.repeat(background[..., None], 3, axis=2).astype(np.uint8)
    face = cv2.resize(data.astronaut(), (300, 300), interpolation=cv2.INTER_AREA)
    frame[120:420, 250:550] = face
    return np.ascontiguousarray(frame)


def median_ms(call, runs: int, warmup: int) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    cv2.setNumThreads(args.threads)
    frame = test_frame()
    rows = []
    for kind in ("full", "short"):
        detector = BlazeFace(kind, num_threads=args.threads)
        faces = detector.detect(frame)
        rows.append(
            (
                f"BlazeFace {kind}",
                median_ms(lambda d=detector: d.detect(frame), args.runs, args.warmup),
                len(faces),
            )
        )
    haar = FaceDetector("haar")
    rows.append(
        (
            f"Haar ({haar.backend})",
            median_ms(lambda: haar.detect(frame), args.runs, args.warmup),
            len(haar.detect(frame)),
        )
    )
    faces = BlazeFace("full", num_threads=args.threads).detect(frame)
    if faces:
        points = faces[0].keypoints
        crop = lambda: aligned_crop(frame, keypoint_frame(points), 112)  # noqa: E731
        rows.append(("aligned_crop 112 px", median_ms(crop, args.runs, args.warmup), 1))
    print(f"640x480 frame, {args.threads} thread(s), median of {args.runs} runs after {args.warmup} warm-up")
    print(f"{'':22s} {'ms':>8s}  faces")
    for name, ms, count in rows:
        print(f"{name:22s} {ms:8.2f}  {count}")


if __name__ == "__main__":
    main()
