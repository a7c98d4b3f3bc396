"""Peak memory and time of ``edge.predict`` on one very large photo, and whether the next image still works.

  python benchmarks/edge_large_image.py --model EXPORT/student_int8.tflite [--side 8000] [--limit_mb 1500]
      [--faces 24] [--detector blazeface|haar]

Writes a SIDE x SIDE JPEG (smooth noise with a cartoon face a third of its width) and a small face
PNG into a temporary folder, then runs ``python -m edge.predict`` in a fresh process on: the small
image alone, the large image alone, and the large image followed by the small one with the address
space limited to ``--limit_mb`` (RLIMIT_AS; 0 = no limit). For each run it prints the wall time,
the child's peak RSS (ru_maxrss from wait4, by a small launcher), the exit code, the JSON lines and
the stderr lines.
Face detection is on, with ``--detector`` (default BlazeFace, the CLI's default).

Then the cost of detecting on a downscaled copy: rendered synthetic faces (``--faces``), each placed
at 160, 320 and 560 px on a 1920x1440 canvas, detected by Haar at full size and at ``detect_size``
1280, 960 and 640, and by BlazeFace (which letterboxes every image to its 192 px input): faces found
(a box centred in the placed square), other boxes, ms per canvas.
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from edge.faces import FaceDetector  # noqa: E402
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


# Started by a small Python (not by this process, which holds TensorFlow): Linux keeps a process's
# peak RSS across fork and exec, so a child of this process would report this process's ~250 MB.
LAUNCHER = """
import json, os, resource, sys
report, limit_mb, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
pid = os.fork()
if pid == 0:
    if limit_mb:
        resource.setrlimit(resource.RLIMIT_AS, (limit_mb << 20, limit_mb << 20))
    os.execv(argv[0], argv)
_, status, usage = os.wait4(pid, 0)
with open(report, "w") as f:
    json.dump({"code": os.waitstatus_to_exitcode(status), "peak_mb": usage.ru_maxrss / 1024.0}, f)
"""


def run_cli(model: str, inputs: list, limit_mb: int = 0, detector: str = "blazeface") -> dict:
    """Run edge.predict in a child process: wall seconds, its peak RSS (MB), exit code, output lines."""
    argv = [sys.executable, "-m", "edge.predict", "--model", model, "--detector", detector, *inputs]
    with tempfile.TemporaryDirectory() as folder:
        report = os.path.join(folder, "report.json")
        launch = [sys.executable, "-c", LAUNCHER, report, str(limit_mb), *argv]
        start = time.perf_counter()
        proc = subprocess.run(launch, cwd=ROOT, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
        with open(report) as f:
            child = json.load(f)
    return {
        "seconds": seconds,
        "peak_mb": child["peak_mb"],
        "code": child["code"],
        "records": len(proc.stdout.splitlines()),
        "stderr": proc.stderr.strip().splitlines(),
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


def centred_in(box, square) -> bool:
    """The box's centre lies in the placed face square (x, y, side, side)."""
    x, y, side, _ = square
    cx, cy = box[0] + box[2] / 2.0, box[1] + box[3] / 2.0
    return x <= cx <= x + side and y <= cy <= y + side


def detection_quality(faces: list) -> None:
    """Print faces found, other boxes and ms per canvas for Haar at each detect_size and BlazeFace."""
    detectors = {f"haar {size or 'full'}": FaceDetector("haar", detect_size=size) for size in DETECT_SIZES}
    detectors["blazeface"] = FaceDetector("blazeface")
    found, other, seconds = (dict.fromkeys(detectors, 0) for _ in range(3))
    cases = 0
    for face in faces:
        for side in (160, 320, 560):
            canvas = np.full((1440, 1920, 3), 90, np.uint8)
            canvas[400 : 400 + side, 700 : 700 + side] = cv2.resize(
                face, (side, side), interpolation=cv2.INTER_CUBIC
            )
            truth, cases = (700, 400, side, side), cases + 1
            for name, detector in detectors.items():
                start = time.perf_counter()
                boxes = [f.box for f in detector.detect(canvas)]
                seconds[name] += time.perf_counter() - start
                found[name] += any(centred_in(b, truth) for b in boxes)
                other[name] += sum(not centred_in(b, truth) for b in boxes)
    print(f"\ndetection on {cases} canvases 1920x1440 (faces of 160, 320, 560 px)")
    print(f"{'detector':>11s} {'found':>6s} {'other boxes':>11s} {'ms/canvas':>9s}")
    for name in detectors:
        print(f"{name:>11s} {found[name]:6d} {other[name]:11d} {1000 * seconds[name] / cases:9.1f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="exported .tflite model (metadata beside it)")
    parser.add_argument("--side", type=int, default=8000, help="side of the large square JPEG in pixels")
    parser.add_argument("--detector", default="blazeface", choices=("blazeface", "haar"))
    parser.add_argument("--limit_mb", type=int, default=1500, help="RLIMIT_AS of the third run (0: none)")
    parser.add_argument(
        "--faces", type=int, default=24, help="rendered faces for the detection part (0: skip)"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        large, small = write_images(folder, args.side)
        size_mb = os.path.getsize(large) / 1e6
        print(
            f"large image: {args.side}x{args.side} JPEG, {size_mb:.1f} MB; model {args.model}; {args.detector}"
        )
        cases = [
            ("small only", [small], 0),
            ("large only", [large], 0),
            (f"large then small, limit {args.limit_mb} MB", [large, small], args.limit_mb),
        ]
        print(f"{'case':40s} {'wall s':>7s} {'peak MB':>8s} {'exit':>4s} {'lines':>5s}  stderr")
        for name, inputs, limit_mb in cases:
            r = run_cli(args.model, inputs, limit_mb, args.detector)
            err = " | ".join(line.replace(folder + "/", "") for line in r["stderr"])
            print(
                f"{name:40s} {r['seconds']:7.2f} {r['peak_mb']:8.0f} {r['code']:4d} {r['records']:5d}  {err}"
            )
    if args.faces:
        detection_quality(rendered_faces(args.faces))


if __name__ == "__main__":
    main()
