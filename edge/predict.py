"""Command line: emotion predictions with uncertainty for images, folders, videos or a camera.

    python -m edge.predict --model M.tflite INPUT... [--camera N] [--no_face_detection]
        [--threads N] [--smooth ALPHA] [--every N] [--face_model YUNET.onnx] [--max_frames N]

Prints one JSON line per face to stdout; notes, warnings, errors and a summary go to stderr.
Exit code: 0 if at least one image or frame gave a result, 1 if the model could not be loaded,
2 if no input could be processed.
"""

import argparse
import os
import sys
import time

import cv2

from edge.faces import FaceDetector, box_iou
from edge.runtime import EdgeError, EmotionModel, load_image, result_to_json, to_rgb_uint8

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".3gp")
_INPUT_ERRORS = (EdgeError, OSError, cv2.error, RuntimeError)
_TRACK_IOU = 0.3


def _say(kind: str, message: str):
    print(f"{kind}: {message}", file=sys.stderr, flush=True)


class Counts:
    """Images or frames that gave results, inputs that failed, images or frames with no face."""

    def __init__(self):
        self.processed = 0
        self.failed = 0
        self.no_face = 0

    def summary(self) -> str:
        return f"{self.processed} processed, {self.failed} failed, {self.no_face} no face"


class Smoother:
    """Exponential smoothing of one video's outputs per face track (box overlap between frames)."""

    def __init__(self, model: EmotionModel, alpha):
        self.model = model
        self.alpha = alpha
        self.tracks = []  # [(box, smoothed raw outputs)] of the previous processed frame

    def _match(self, box, used: set):
        scores = [(box_iou(box, t[0]), i) for i, t in enumerate(self.tracks) if i not in used]
        best = max(scores, default=(0.0, None))
        return best[1] if best[0] >= _TRACK_IOU else None

    def update(self, items: list) -> list:
        """Smoothed [(box, raw)] for this frame's faces; one face follows one face, else box overlap."""
        if self.alpha is None:
            return items
        single = len(items) == 1 and len(self.tracks) == 1
        used, out = set(), []
        for box, raw in items:
            i = 0 if single else self._match(box, used)
            if i is not None:
                used.add(i)
                raw = self.model.smooth(self.tracks[i][1], raw, self.alpha)
            out.append((box, raw))
        self.tracks = out
        return out


class Runner:
    """Runs the model over the inputs, printing results and keeping the counts."""

    def __init__(self, model: EmotionModel, args):
        self.model = model
        self.args = args
        self.detect = not args.no_face_detection
        self.counts = Counts()

    def _emit(self, items: list, source: str, frame) -> None:
        for box, raw in items:
            print(result_to_json(self.model.to_result(raw, box, source, frame)), flush=True)

    def run_image(self, path: str, image=None) -> None:
        """One image file (or an already decoded image): results, or a counted error / no face."""
        try:
            rgb, note = load_image(path) if image is None else to_rgb_uint8(image)
            if note:
                _say("note", f"{path}: {note}")
            items = self.model.predict_raw(rgb, self.detect)
        except _INPUT_ERRORS as e:
            self.counts.failed += 1
            _say("error", _one_line(e, path))
            return
        if not items:
            self.counts.no_face += 1
            _say("warning", f"{path}: no face found")
            return
        self.counts.processed += 1
        self._emit(items, path, None)

    def run_stream(self, capture, source: str) -> None:
        """A video file or camera: every N-th frame, optional smoothing, frames per second at the end."""
        smoother = Smoother(self.model, self.args.smooth)
        index = done = 0
        start = time.perf_counter()
        try:
            while self.args.max_frames <= 0 or done < self.args.max_frames:
                ok, frame = capture.read()
                if not ok or frame is None:
                    break
                if index % self.args.every == 0:
                    self._run_frame(frame, source, index, smoother)
                    done += 1
                index += 1
        except KeyboardInterrupt:
            _say("note", f"{source}: interrupted")
        finally:
            capture.release()
        seconds = time.perf_counter() - start
        if index == 0:
            self.counts.failed += 1
            _say("error", f"{source}: cannot read any frame")
            return
        fps = done / seconds if seconds > 0 else float("inf")
        _say("info", f"{source}: {done} of {index} frames in {seconds:.2f} s ({fps:.1f} frames/s)")

    def _run_frame(self, frame, source: str, index: int, smoother: Smoother) -> None:
        try:
            rgb, _ = to_rgb_uint8(frame)
            items = self.model.predict_raw(rgb, self.detect)
        except _INPUT_ERRORS as e:
            self.counts.failed += 1
            _say("error", _one_line(e, f"{source} frame {index}"))
            return
        if not items:
            self.counts.no_face += 1
            smoother.tracks = []
            _say("warning", f"{source} frame {index}: no face found")
            return
        self.counts.processed += 1
        self._emit(smoother.update(items), source, index)

    def run_video(self, path: str) -> None:
        capture = cv2.VideoCapture(path)
        if not capture.isOpened():
            self.counts.failed += 1
            _say("error", f"{path}: cannot open video")
            return
        self.run_stream(capture, path)

    def run_camera(self, number: int) -> None:
        capture = cv2.VideoCapture(number)
        if not capture.isOpened():
            self.counts.failed += 1
            _say("error", f"camera {number}: cannot open")
            return
        self.run_stream(capture, f"camera:{number}")

    def run_path(self, path: str) -> None:
        """An image, a folder of images (sorted) or a video, told apart by extension, else by trying."""
        if os.path.isdir(path):
            self.run_folder(path)
            return
        if not os.path.exists(path):
            self.counts.failed += 1
            _say("error", f"{path}: no such file or folder")
            return
        ext = os.path.splitext(path)[1].lower()
        if ext in VIDEO_EXTENSIONS:
            self.run_video(path)
        elif ext in IMAGE_EXTENSIONS:
            self.run_image(path)
        else:
            self._run_unknown(path)

    def run_folder(self, folder: str) -> None:
        names = sorted(os.listdir(folder))
        images = [n for n in names if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS]
        skipped = len([n for n in names if os.path.isfile(os.path.join(folder, n))]) - len(images)
        if skipped:
            _say("note", f"{folder}: skipped {skipped} files without an image extension")
        if not images:
            self.counts.failed += 1
            _say("error", f"{folder}: no images in folder")
        for name in images:
            self.run_image(os.path.join(folder, name))

    def _run_unknown(self, path: str) -> None:
        try:
            image = load_image(path)
        except EdgeError:
            image = None
        if image is not None:
            self.run_image(path)
            return
        capture = cv2.VideoCapture(path)
        if capture.isOpened():
            self.run_stream(capture, path)
        else:
            self.counts.failed += 1
            _say("error", f"{path}: neither an image nor a video OpenCV can read")


def _one_line(error: Exception, where: str) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if isinstance(error, EdgeError) and text.startswith(where) else f"{where}: {text}"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _alpha(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m edge.predict", description=__doc__.splitlines()[0])
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="image file, folder of images or video file")
    p.add_argument("--model", required=True, help="exported .tflite model (its .json metadata beside it)")
    p.add_argument("--camera", type=int, default=None, metavar="N", help="also read camera number N")
    p.add_argument("--no_face_detection", action="store_true", help="use the whole image as the face")
    p.add_argument("--face_model", default=None, help="YuNet ONNX face detector (default: Haar cascade)")
    p.add_argument("--threads", type=_positive_int, default=None, help="interpreter threads")
    p.add_argument(
        "--smooth", type=_alpha, default=None, metavar="ALPHA", help="video smoothing weight (0, 1]"
    )
    p.add_argument(
        "--every", type=_positive_int, default=1, metavar="N", help="process every N-th video frame"
    )
    p.add_argument(
        "--max_frames", type=int, default=0, help="stop each video/camera after N processed frames"
    )
    args = p.parse_args(argv)
    if not args.inputs and args.camera is None:
        p.error("give at least one INPUT or --camera N")
    return args


def _quiet_opencv():
    """OpenCV's own WARN lines (FFmpeg probing a non-video file, a missing camera) would repeat ours."""
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is not None:
        logging.setLogLevel(logging.LOG_LEVEL_ERROR)


def main(argv=None) -> int:
    args = parse_args(argv)
    _quiet_opencv()
    try:
        model = EmotionModel(args.model, num_threads=args.threads)
    except EdgeError as e:
        _say("error", f"cannot load model: {_one_line(e, args.model)}")
        return 1
    if not args.no_face_detection:
        try:
            model.face_detector = FaceDetector(args.face_model)
        except EdgeError as e:
            _say("error", _one_line(e, "face detection"))
            return 2
    runner = Runner(model, args)
    try:
        for path in args.inputs:
            runner.run_path(path)
        if args.camera is not None:
            runner.run_camera(args.camera)
    except KeyboardInterrupt:
        _say("note", "interrupted")
    _say("summary", runner.counts.summary())
    return 0 if runner.counts.processed > 0 else 2


if __name__ == "__main__":
    sys.exit(main())
