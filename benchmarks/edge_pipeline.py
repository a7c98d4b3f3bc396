"""Frames/s of the edge video path end to end, BlazeFace against the Haar fallback, and false tracks on texture.

  python benchmarks/edge_pipeline.py [--model EXPORT/student_int8.tflite] [--frames 300] [--threads 1]
      [--rounds 3] [--every_frame 60] [--keep DIR]

Writes two 640x480 MJPG clips (30 frames/s) of one rendered synthetic face (``emenet_tf.data.render``:
its expression follows the benchmark's AU track) 170-210 px wide that drifts across the frame:
``plain`` on a smooth background, ``texture`` on scikit-image's brick (top) and grass (bottom) photos
tiled. Then, in each of ``--rounds`` rounds, BlazeFace and Haar back to back (interleaved, so that the
load of a shared machine falls on both alike), ``python -m edge.predict --threads N --detector D``
in a fresh process on:
  every_frame  plain, ``--detect_every 1 --max_frames E`` (detection on every frame, E frames)
  tracking     plain, ``--detect_every 30`` (the default: tracking between detections)
  texture      texture, ``--detect_every 30``
Per run: the CLI's own frames/s (its "(N frames/s)" line: start-up excluded) and, from its JSON
lines, the tracks (``face`` ids), the frames whose face was found (a box centred in the placed
face) and false boxes (centred outside it), and false tracks (tracks with no box on the face).
Printed: each run, then the median over rounds with the BlazeFace / Haar ratio of each round.
Last, the cost of each step on the plain clip's first frame (median of 30 calls): full detection,
detection near the face, template matching, the aligned crop and the model.
Without ``--model``: the tests' tiny int8 student (tests/edge_fixtures.py, 32 px; made with
TensorFlow); a real student's model step costs ~0.05 ms more, nothing next to detection.
Needs scikit-image (requirements-dev) for the texture.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from edge.faces import Face, FaceDetector  # noqa: E402
from edge.runtime import EmotionModel  # noqa: E402
from edge.tracking import face_template, follow_template  # noqa: E402

SIZE = (640, 480)
DETECTORS = ("blazeface", "haar")


def rendered_faces(count: int, seed: int = 3) -> list:
    """``count`` consecutive frames (RGB, 112 px) of one rendered video of the synthetic benchmark."""
    from emenet_tf.data import label_model, render

    rng = np.random.default_rng(seed)
    track, _ = label_model.au_track(rng, count)
    ident = render.identity(rng)
    return [img for _, img in render.video_frames(track, ident, rng, np.zeros(count, bool), 112)]


def smooth_background() -> np.ndarray:
    coarse = np.random.default_rng(0).integers(40, 200, (SIZE[1] // 32, SIZE[0] // 32, 3), dtype=np.uint8)
    return cv2.resize(coarse, SIZE, interpolation=cv2.INTER_CUBIC)


def texture_background() -> np.ndarray:
    """scikit-image's brick photo tiled over the top half, its grass photo over the bottom half."""
    from skimage import data

    half = SIZE[1] // 2
    brick = np.tile(data.brick(), (1, 2))[:half, : SIZE[0]]
    grass = np.tile(data.grass(), (1, 2))[:half, : SIZE[0]]
    return np.repeat(np.concatenate([brick, grass])[..., None], 3, axis=2).astype(np.uint8)


def write_clip(path: str, background: np.ndarray, faces: list) -> list:
    """An MJPG clip of the faces drifting over ``background``; returns each frame's face square (x, y, side)."""
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 30.0, SIZE)
    placed = []
    for i, face in enumerate(faces):
        side = int(190 + 20 * np.sin(i / 45.0))
        x, y = int(220 + 180 * np.sin(i / 60.0)), int(130 + 60 * np.cos(i / 40.0))
        image = background.copy()
        image[y : y + side, x : x + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        placed.append((x, y, side))
    writer.release()
    return placed


def run_cli(model: str, video: str, threads: int, detector: str, options: list) -> dict:
    """The CLI in a fresh process: its frames/s and its JSON lines."""
    argv = [sys.executable, "-m", "edge.predict", "--model", model, "--threads", str(threads)]
    argv += ["--detector", detector, *options, video]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    found = re.search(r"\(([\d.]+) frames/s\)", proc.stderr)
    if found is None:
        raise RuntimeError(f"edge.predict gave no frames/s line: {proc.stderr[-2000:]}")
    return {"fps": float(found.group(1)), "records": [json.loads(line) for line in proc.stdout.splitlines()]}


def on_face(box, square) -> bool:
    """The box's centre lies in the placed face square (x, y, side)."""
    x, y, side = square
    cx, cy = box[0] + box[2] / 2.0, box[1] + box[3] / 2.0
    return x <= cx <= x + side and y <= cy <= y + side


def track_figures(records: list, placed: list) -> dict:
    """Tracks, frames with the face found, false boxes and false tracks (never on the face)."""
    hits = [on_face(r["box"], placed[r["frame"]]) for r in records]
    tracks = {r["face"] for r in records}
    true_tracks = {r["face"] for r, hit in zip(records, hits, strict=True) if hit}
    found = {r["frame"] for r, hit in zip(records, hits, strict=True) if hit}
    return {
        "tracks": len(tracks),
        "found": len(found),
        "false_boxes": hits.count(False),
        "false_tracks": len(tracks - true_tracks),
    }


def median_ms(call, runs: int = 30) -> float:
    call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def step_costs(model_path: str, frame_rgb: np.ndarray, square: tuple, threads: int) -> None:
    """Per-call cost of each step on one frame, on the face the detector finds there (if it misses
    it: the placed face square, as a box)."""
    model = EmotionModel(model_path, num_threads=threads)
    print("\nper call on the first plain frame, median of 30 (ms):")
    for name in DETECTORS:
        detector = FaceDetector(name, num_threads=threads)
        found = detector.detect(frame_rgb)
        face = found[0] if found else Face((square[0], square[1], square[2], square[2]))
        template, crop = face_template(frame_rgb, face.box), face.crop(frame_rgb)
        costs = {
            "full detection": median_ms(lambda d=detector: d.detect(frame_rgb)),
            "near the face": median_ms(lambda d=detector, f=face: d.detect_near(frame_rgb, f)),
            "template matching": median_ms(lambda f=face, t=template: follow_template(frame_rgb, f, t)),
            "aligned crop": median_ms(lambda f=face: f.crop(frame_rgb)),
            "model": median_ms(lambda c=crop: model.run(c)),
        }
        missed = "" if found else " (it missed the face: the rest on the placed square)"
        print(f"  {name:9s} " + "  ".join(f"{k} {v:.2f}" for k, v in costs.items()) + missed)


def fixture_model(folder: str) -> str:
    """The tests' tiny int8 student (uses TensorFlow, only here)."""
    from tests.edge_fixtures import make_fixture_model

    return make_fixture_model(folder, kind="single", quantize="int8")


def measure(model: str, clips: dict, args) -> dict:
    """{(case, detector): [one figures dict per round]}, BlazeFace and Haar interleaved in every round."""
    cases = {
        "every_frame": ("plain", ["--detect_every", "1", "--max_frames", str(args.every_frame)]),
        "tracking": ("plain", ["--detect_every", "30"]),
        "texture": ("texture", ["--detect_every", "30"]),
    }
    runs = {}
    for round_ in range(args.rounds):
        for case, (clip, options) in cases.items():
            for detector in DETECTORS:
                path, placed = clips[clip]
                got = run_cli(model, path, args.threads, detector, options)
                figures = {"fps": got["fps"], **track_figures(got["records"], placed)}
                runs.setdefault((case, detector), []).append(figures)
                print(
                    f"round {round_} {case:11s} {detector:9s} "
                    + " ".join(f"{k} {v}" for k, v in figures.items())
                )
    return runs


def report(runs: dict) -> None:
    print("\nmedian over rounds (min-max); ratio: BlazeFace / Haar frames/s of each round")
    for case in ("every_frame", "tracking", "texture"):
        for detector in DETECTORS:
            rounds = runs[(case, detector)]
            fps = [r["fps"] for r in rounds]
            worst = {k: max(r[k] for r in rounds) for k in ("tracks", "false_boxes", "false_tracks")}
            print(f"{case:11s} {detector:9s} {statistics.median(fps):7.1f} frames/s ({min(fps):.1f}-{max(fps):.1f})"
                  f"  found {min(r['found'] for r in rounds)}+  most tracks {worst['tracks']}, false boxes "
                  f"{worst['false_boxes']}, false tracks {worst['false_tracks']}")  # fmt: skip
        ratios = [
            b["fps"] / h["fps"] for b, h in zip(runs[(case, "blazeface")], runs[(case, "haar")], strict=True)
        ]
        print(
            f"{case:11s} ratio     {statistics.median(ratios):.1f}x ({', '.join(f'{r:.1f}' for r in ratios)})"
        )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="exported .tflite model (default: the tests' tiny one)")
    parser.add_argument("--frames", type=int, default=300, help="frames of each clip")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--every_frame", type=int, default=60, help="frames of the detect-every-frame runs")
    parser.add_argument("--keep", default=None, help="a folder to keep the clips in")
    args = parser.parse_args(argv)
    cv2.setNumThreads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        out = args.keep or folder
        os.makedirs(out, exist_ok=True)
        model = args.model or fixture_model(folder)
        faces = rendered_faces(args.frames)
        clips = {}
        for name, background in (("plain", smooth_background()), ("texture", texture_background())):
            path = os.path.join(out, f"{name}_640x480.avi")
            clips[name] = (path, write_clip(path, background, faces))
        print(f"clips: {args.frames} frames 640x480 MJPG; model {model}; {args.threads} thread(s); "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
        report(measure(model, clips, args))
        first = cv2.cvtColor(cv2.VideoCapture(clips["plain"][0]).read()[1], cv2.COLOR_BGR2RGB)
        step_costs(model, first, clips["plain"][1][0], args.threads)


if __name__ == "__main__":
    main()
