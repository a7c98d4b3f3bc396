"""Command line: emotion predictions with uncertainty for images, folders, videos or a camera.

    python -m edge.predict --model M.tflite INPUT... [--camera N] [--detector blazeface|haar]
        [--no_face_detection] [--draw PATH] [--csv PATH] [--summary] [--threads N] [--smooth ALPHA]
        [--every N] [--max_frames N] [--detect_size PX] [--detect_every K]

Prints one JSON line per face to stdout (and with --summary one line per video or stream after its
frames); notes, warnings, errors, progress and a summary go to stderr. --csv writes the same results
as CSV rows, --draw the pictures (edge.draw).
Exit code: 0 if at least one image or frame gave a result, 1 if the model could not be loaded,
2 if no input could be processed or an option is wrong.
"""

import argparse
import os
import sys
import warnings

import cv2

from edge.faces import DETECT_SIZE, DETECTORS, FaceDetector
from edge.images import IMAGE_EXTENSIONS
from edge.outputs import draw_file
from edge.runner import VIDEO_EXTENSIONS, Runner, one_line, say  # noqa: F401  (VIDEO_EXTENSIONS: edge.predict's)
from edge.runtime import EdgeError, EmotionModel, FallbackRuntimeWarning
from edge.tracking import DETECT_EVERY

RETIRED = {
    "--face_model": "--face_model was retired: BlazeFace is vendored (--detector blazeface, the default)"
}


def _bounded_int(low: int):
    """An argparse type: an integer >= low (argparse names it in its error: "invalid int value")."""

    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = "int"
    return parse


def _alpha(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse with its errors in one line (``python -m edge.predict: error: ...``, exit status 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_args(argv=None) -> argparse.Namespace:
    p = _Parser(prog="python -m edge.predict", description=__doc__.splitlines()[0])
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="image file, folder of images or video file")
    p.add_argument("--model", required=True, help="exported .tflite model (its .json metadata beside it)")
    p.add_argument(
        "--camera", type=_bounded_int(0), default=None, metavar="N", help="also read camera number N (>= 0)"
    )
    p.add_argument("--detector", choices=DETECTORS, default="blazeface",
                   help="face detector (default: blazeface, vendored; haar, with a warning, if it cannot be loaded)")  # fmt: skip
    p.add_argument("--no_face_detection", action="store_true", help="use the whole image as the face")
    p.add_argument("--draw", default=None, metavar="PATH",
                   help="write pictures of the results: an image or video file for one input, else a folder")  # fmt: skip
    p.add_argument("--csv", default=None, metavar="PATH", help="also write the results as CSV rows")
    p.add_argument("--threads", type=_bounded_int(1), default=None, help="interpreter and OpenCV threads")
    p.add_argument(
        "--smooth", type=_alpha, default=None, metavar="ALPHA", help="video smoothing weight (0, 1]"
    )
    p.add_argument(
        "--every", type=_bounded_int(1), default=1, metavar="N", help="process every N-th video frame"
    )
    p.add_argument("--max_frames", type=_bounded_int(0), default=0,
                   help="stop each video/camera after N processed frames (0: no limit)")  # fmt: skip
    p.add_argument("--detect_size", type=_bounded_int(0), default=DETECT_SIZE, metavar="PX",
                   help=f"haar: detect on a copy at most PX pixels a side (default {DETECT_SIZE}; 0: full size)")  # fmt: skip
    p.add_argument("--detect_every", type=_bounded_int(1), default=DETECT_EVERY, metavar="K",
                   help=f"video: detect faces in the whole frame every K processed frames and follow them in "
                   f"between (default {DETECT_EVERY}; 1: detect in every frame)")  # fmt: skip
    p.add_argument(
        "--summary", action="store_true", help="video: after its frames, one JSON line summarising it"
    )
    for flag, message in RETIRED.items():
        if any(a == flag or a.startswith(flag + "=") for a in (argv if argv is not None else sys.argv[1:])):
            p.error(message)
    args = p.parse_args(argv)
    if not args.inputs and args.camera is None:
        p.error("give at least one INPUT or --camera N")
    if args.draw is not None:
        _check_draw(p, args)
    return args


def _check_draw(p: argparse.ArgumentParser, args) -> None:
    """--draw names one file (edge.outputs.draw_file) only for one image, video or camera; a video
    file only for a video or camera."""
    kind = draw_file(args.draw)
    if kind is None:
        return
    sources = len(args.inputs) + (args.camera is not None)
    if sources > 1 or (args.inputs and os.path.isdir(args.inputs[0])):
        p.error(f"--draw {args.draw} names one file: give a folder for several inputs or a folder of images")
    image_input = bool(args.inputs) and os.path.splitext(args.inputs[0])[1].lower() in IMAGE_EXTENSIONS
    if kind == "video" and image_input:
        p.error(f"--draw {args.draw} is a video file: give an image file or a folder for images")


def _quiet_opencv():
    """OpenCV's and FFmpeg's own lines (probing a non-video file, a missing camera, a corrupt frame)
    would repeat ours; FFmpeg reads OPENCV_FFMPEG_LOGLEVEL (-8: quiet) when the first capture opens."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is not None:
        logging.setLogLevel(logging.LOG_LEVEL_ERROR)


def _noted(build):
    """``build()``, its warnings one line each: the slower runtime a note (same answers, only
    slower), anything else, the Haar fallback included (other crops, so other answers), a warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return build()
        finally:  # said before the error, if build() fails after warning
            for w in caught:
                say("note" if issubclass(w.category, FallbackRuntimeWarning) else "warning", str(w.message))


def load_model(path: str, threads) -> EmotionModel:
    """EmotionModel; the runtime's warnings (e.g. the slower tflite_runtime fallback) one line each."""
    return _noted(lambda: EmotionModel(path, num_threads=threads))


def main(argv=None) -> int:
    args = parse_args(argv)
    _quiet_opencv()
    if args.threads is not None:
        cv2.setNumThreads(args.threads)
    try:
        model = load_model(args.model, args.threads)
    except EdgeError as e:
        say("error", f"cannot load model: {one_line(e, args.model)}")
        return 1
    if not args.no_face_detection:
        try:
            model.face_detector = _noted(
                lambda: FaceDetector(args.detector, detect_size=args.detect_size, num_threads=args.threads)
            )
        except EdgeError as e:
            say("error", one_line(e, "face detection"))
            return 2
    runner = Runner(model, args)
    try:
        for path in args.inputs:
            runner.run_path(path)
        if args.camera is not None:
            runner.run_camera(args.camera)
    except KeyboardInterrupt:
        say("note", "interrupted")
    finally:
        runner.outputs.close()
    say("summary", runner.counts.summary())
    return 0 if runner.counts.processed > 0 else 2


if __name__ == "__main__":
    sys.exit(main())
