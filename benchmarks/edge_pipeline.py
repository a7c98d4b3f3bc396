"""Frames/s of the edge video path end to end, the share of each stage, and tracked boxes vs per-frame detection.

  python benchmarks/edge_pipeline.py --model EXPORT/student_int8.tflite [--frames 300] [--threads 1]
      [--detect_every 1,10,30] [--keep VIDEO.avi]

Writes a 640x480 MJPG video (30 frames/s) of a rendered synthetic face (``emenet_tf.data.render``:
its expression follows the benchmark's smooth AU track) that drifts and grows slowly over a
textured background, then for each ``--detect_every`` K:
1. runs ``python -m edge.predict --threads N --detect_every K VIDEO`` in a fresh process: the wall
   time (start-up included) and the frames/s the CLI reports (its own loop, start-up excluded);
2. times the same loop in this process stage by stage (decode, colour conversion, detection and
   tracking, crop + model, result + JSON line) and prints each stage's share of the frame time;
3. compares its boxes with per-frame detection (K = 1): the share of the faces per-frame detection
   finds that the loop also finds (a box with IoU >= 0.7), and the boxes it gives in frames where
   per-frame detection found no face (the rendered face is missed there by the detector; a
   tracked face is followed through such frames).
``cv2.setNumThreads`` and the interpreter get ``--threads``, as the CLI does.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from edge.faces import FaceDetector, box_iou  # noqa: E402
from edge.predict import FaceStates, FrameReader, _crop  # noqa: E402
from edge.runtime import EmotionModel, result_to_json, to_rgb_uint8  # noqa: E402
from edge.tracking import DETECT_EVERY, FaceTracker  # noqa: E402

SIZE = (640, 480)
STAGES = ("decode", "convert", "detect_track", "crop_model", "output")


def rendered_faces(count: int, seed: int = 3) -> list:
    """``count`` consecutive frames (RGB, 112 px) of one rendered video of the synthetic benchmark."""
    from emenet_tf.data import label_model, render

    rng = np.random.default_rng(seed)
    track, _ = label_model.au_track(rng, count)
    ident = render.identity(rng)
    return [img for _, img in render.video_frames(track, ident, rng, np.zeros(count, bool), 112)]


def write_video(path: str, frames: int) -> list:
    """The benchmark video; returns the face square placed in each frame (x, y, side)."""
    rng = np.random.default_rng(0)
    coarse = rng.integers(40, 200, (SIZE[1] // 32, SIZE[0] // 32, 3), dtype=np.uint8)
    background = cv2.resize(coarse, SIZE, interpolation=cv2.INTER_CUBIC)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 30.0, SIZE)
    placed = []
    for i, face in enumerate(rendered_faces(frames)):
        side = int(170 + 40 * np.sin(i / 45.0))
        x = int(220 + 150 * np.sin(i / 60.0))
        y = int(130 + 50 * np.cos(i / 40.0))
        image = background.copy()
        image[y : y + side, x : x + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        placed.append((x, y, side))
    writer.release()
    return placed


def run_cli(model: str, video: str, threads: int, detect_every: int) -> dict:
    """The CLI in a fresh process: wall seconds, its reported frames/s, result lines."""
    argv = [sys.executable, "-m", "edge.predict", "--model", model, "--threads", str(threads)]
    argv += ["--detect_every", str(detect_every), video]
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    found = re.search(r"\(([\d.]+) frames/s\)", proc.stderr)
    return {
        "seconds": seconds,
        "fps": float(found.group(1)) if found else float("nan"),
        "lines": len(proc.stdout.splitlines()),
        "code": proc.returncode,
    }


def timed_loop(model: EmotionModel, video: str, detect_every: int) -> tuple[dict, list, tuple]:
    """The CLI's video loop in this process with a timer per stage.

    Returns ({stage: seconds}, the boxes of each frame, (full detections, detections near a box)).
    """
    tracker = FaceTracker(model.face_detector, detect_every, 0)
    states = FaceStates(model, None)
    seconds = dict.fromkeys(STAGES, 0.0)
    boxes, sink = [], io.StringIO()
    frames = iter(FrameReader(cv2.VideoCapture(video)))
    while True:
        t0 = time.perf_counter()
        item = next(frames, None)
        t1 = time.perf_counter()
        if item is None:
            break
        rgb, _ = to_rgb_uint8(item[1])
        t2 = time.perf_counter()
        tracks = tracker.update(rgb)
        t3 = time.perf_counter()
        raws = [(t, states.outputs(t.id, _crop(rgb, t.box))) for t in tracks]
        t4 = time.perf_counter()
        for t, raw in raws:
            sink.write(result_to_json(model.to_result(raw, t.box, video, item[0])) + "\n")
        t5 = time.perf_counter()
        for stage, (a, b) in zip(STAGES, ((t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5)), strict=True):
            seconds[stage] += b - a
        boxes.append([t.box for t in tracks])
    return seconds, boxes, (tracker.full_detections, tracker.near_detections)


def agreement(boxes: list, reference: list, threshold: float = 0.7) -> tuple[float, int]:
    """(share of the reference boxes matched by a box with IoU >= threshold, boxes in frames where
    the reference has none)."""
    found = [
        max((box_iou(x, y) for x in b), default=0.0) >= threshold
        for b, r in zip(boxes, reference, strict=True)
        for y in r
    ]
    extra = sum(len(b) for b, r in zip(boxes, reference, strict=True) if not r)
    return float(np.mean(found)) if found else float("nan"), extra


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="exported .tflite model (metadata beside it)")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--detect_every", default=f"1,10,{DETECT_EVERY}", help="comma-separated K values (1: every frame)"
    )
    parser.add_argument("--keep", default=None, help="also save the video here")
    args = parser.parse_args(argv)
    every = sorted({int(k) for k in args.detect_every.split(",")} | {1})
    cv2.setNumThreads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        video = args.keep or os.path.join(folder, "faces_640x480.avi")
        write_video(video, args.frames)
        print(
            f"video: {args.frames} frames {SIZE[0]}x{SIZE[1]} MJPG; model {args.model}; {args.threads} thread(s)"
        )
        model = EmotionModel(args.model, num_threads=args.threads, face_detector=FaceDetector())
        print(f"{'K':>3s} {'CLI frames/s':>12s} {'CLI wall s':>10s} {'loop frames/s':>13s} "
              + " ".join(f"{s:>12s}" for s in STAGES) + f" {'found':>6s} {'extra':>5s} {'full det.':>9s} {'near det.':>9s}")  # fmt: skip
        reference = None
        for k in every:
            cli = run_cli(args.model, video, args.threads, k)
            seconds, boxes, detections = timed_loop(model, video, k)
            reference = boxes if k == 1 else reference
            total = sum(seconds.values())
            shares = " ".join(f"{100 * seconds[s] / total:11.1f}%" for s in STAGES)
            print(
                f"{k:3d} {cli['fps']:12.1f} {cli['seconds']:10.2f} {len(boxes) / total:13.1f} {shares} "
                "{:6.3f} {:5d} {:9d} {:9d}".format(*agreement(boxes, reference), *detections)
            )


if __name__ == "__main__":
    main()
