"""Peak memory and time of ``edge.predict`` on one very large photo, and whether the next image still works.

  python benchmarks/edge_large_image.py --model EXPORT/student_int8.tflite [--side 8000] [--limit_mb 1500]
      [--faces 24]

Writes a SIDE x SIDE JPEG (smooth noise with a cartoon face a third of its width) and a small face
PNG into a temporary folder, then runs ``python -m edge.predict`` in a fresh process on: the small
image alone, the large image alone, and the large image followed by the small one with the address
space limited to ``--limit_mb`` (RLIMIT_AS; 0 = no limit). For each run it prints the wall time,
the child's peak RSS (ru_maxrss from wait4), the exit code, the JSON lines and the stderr lines.
Face detection is on (the Haar cascade of opencv-python-headless 4.x).

Then the cost of detecting on a downscaled copy: rendered synthetic faces (``--faces``), each placed
at 160, 320 and 560 px on a 1920x1440 canvas, detected at full size and at ``detect_size`` 1280, 960
and 640: faces found (box IoU >= 0.4 with the placed square), other boxes, ms per canvas.
"""

import argparse
import glob
import os
import resource
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from edge.faces import FaceDetector, box_iou  # noqa: E402
from tests.edge_fixtures import draw_face  # noqa: E402  (uses TensorFlow; only this parent imports it)

DETECT_SIZES = (0, 1280, 960, 640)


def write_images(folder: str, side: int) -> tuple:
    """(large JPEG path, small PNG path): smooth noise plus a face of side // 3 in the middle."""
    rng = np.random.default_rng(0)
    coarse = rng.integers(60, 200, (side // 64 + 1, side // 64 + 1, 3), dtype=np.uint8)
    large = cv2.resize(coarse, (side, side), interpolation=cv2.INTER_CUBIC)
    face = draw_face(side // 3)
    start = side // 3
    large[start : start + face.shape[0], start : start + face.shape[1]] = face
    large_path, small_path = os.path.join(folder, "large.jpg"), os.path.join(folder, "small.png")
    cv2.imwrite(large_path, cv2.cvtColor(large, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    cv2.imwrite(small_path, cv2.cvtColor(draw_face(256), cv2.COLOR_RGB2BGR))
    return large_path, small_path


def run_cli(model: str, inputs: list, limit_mb: int = 0) -> dict:
    """Run edge.predict in a child process: wall seconds, its peak RSS (MB), exit code, output lines."""

    def limit():
        if limit_mb:
            resource.setrlimit(resource.RLIMIT_AS, (limit_mb << 20, limit_mb << 20))

    argv = [sys.executable, "-m", "edge.predict", "--model", model, *inputs]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=err, text=True, preexec_fn=limit)
        _, status, usage = os.wait4(proc.pid, 0)  # the rusage of this child alone
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        return {
            "seconds": seconds,
            "peak_mb": usage.ru_maxrss / 1024.0,
            "code": proc.returncode,
            "records": len(out.read().splitlines()),
            "stderr": err.read().strip().splitlines(),
        }


def rendered_faces(count: int) -> list:
    """About ``count`` rendered synthetic faces (RGB, 112 px), seeded."""
    from emenet_tf.data import synthetic

    with tempfile.TemporaryDirectory() as out:
        synthetic.generate(
            out, seed=1, train_videos=count // 2, val_videos=1, frames_per_video=2, ood_images=1
        )
        paths = sorted(glob.glob(os.path.join(out, "cropped_aligned", "syn-train-*", "*.jpg")))
        return [cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2RGB) for p in paths]


def detection_quality(faces: list) -> None:
    """Print faces found, other boxes and ms per canvas for each detect_size (0: full size)."""
    detectors = {size: FaceDetector(detect_size=size) for size in DETECT_SIZES}
    found, other, seconds = (dict.fromkeys(DETECT_SIZES, 0) for _ in range(3))
    cases = 0
    for face in faces:
        for side in (160, 320, 560):
            canvas = np.full((1440, 1920, 3), 90, np.uint8)
            canvas[400 : 400 + side, 700 : 700 + side] = cv2.resize(
                face, (side, side), interpolation=cv2.INTER_CUBIC
            )
            truth, cases = (700, 400, side, side), cases + 1
            for size, detector in detectors.items():
                start = time.perf_counter()
                boxes = detector.detect(canvas)
                seconds[size] += time.perf_counter() - start
                found[size] += any(box_iou(b, truth) >= 0.4 for b in boxes)
                other[size] += sum(box_iou(b, truth) < 0.4 for b in boxes)
    print(f"\ndetection on {cases} canvases 1920x1440 (faces of 160, 320, 560 px), Haar cascade")
    print(f"{'detect_size':>11s} {'found':>6s} {'other boxes':>11s} {'ms/canvas':>9s}")
    for size in DETECT_SIZES:
        name = "full" if size == 0 else str(size)
        print(f"{name:>11s} {found[size]:6d} {other[size]:11d} {1000 * seconds[size] / cases:9.1f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="exported .tflite model (metadata beside it)")
    parser.add_argument("--side", type=int, default=8000, help="side of the large square JPEG in pixels")
    parser.add_argument("--limit_mb", type=int, default=1500, help="RLIMIT_AS of the third run (0: none)")
    parser.add_argument(
        "--faces", type=int, default=24, help="rendered faces for the detection part (0: skip)"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        large, small = write_images(folder, args.side)
        size_mb = os.path.getsize(large) / 1e6
        print(f"large image: {args.side}x{args.side} JPEG, {size_mb:.1f} MB; model {args.model}")
        cases = [
            ("small only", [small], 0),
            ("large only", [large], 0),
            (f"large then small, limit {args.limit_mb} MB", [large, small], args.limit_mb),
        ]
        print(f"{'case':40s} {'wall s':>7s} {'peak MB':>8s} {'exit':>4s} {'lines':>5s}  stderr")
        for name, inputs, limit_mb in cases:
            r = run_cli(args.model, inputs, limit_mb)
            err = " | ".join(line.replace(folder + "/", "") for line in r["stderr"])
            print(
                f"{name:40s} {r['seconds']:7.2f} {r['peak_mb']:8.0f} {r['code']:4d} {r['records']:5d}  {err}"
            )
    if args.faces:
        detection_quality(rendered_faces(args.faces))


if __name__ == "__main__":
    main()
