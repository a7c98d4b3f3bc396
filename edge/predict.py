"""Command line: emotion predictions with uncertainty for images, folders, videos or a camera.

    python -m edge.predict --model M.tflite INPUT... [--camera N] [--no_face_detection]
        [--threads N] [--smooth ALPHA] [--every N] [--face_model YUNET.onnx] [--max_frames N]
        [--detect_size PX] [--detect_every K] [--summary]

Prints one JSON line per face to stdout (and with --summary one line per video or stream after its
frames); notes, warnings, errors and a summary go to stderr.
Exit code: 0 if at least one image or frame gave a result, 1 if the model could not be loaded,
2 if no input could be processed.
"""

import argparse
import json
import math
import os
import sys
import time
import warnings

import cv2

from edge.faces import DETECT_SIZE, FaceDetector, scale_box
from edge.images import (
    IMAGE_EXTENSIONS,
    decode_image,
    first_frame_only,
    read_file,
    read_header,
    within_limit,
)
from edge.runtime import EdgeError, EmotionModel, FallbackRuntimeWarning, result_to_json, to_rgb_uint8
from edge.summary import VideoSummary
from edge.tracking import DETECT_EVERY, FaceTracker, Track

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".3gp")
# MemoryError: one input too large for this device must not end the run (the next may fit).
_INPUT_ERRORS = (EdgeError, OSError, cv2.error, RuntimeError, MemoryError)
_MAX_BAD_FRAMES = 8  # frames in a row that fail to decode before a video counts as ended there


def _say(kind: str, message: str):
    print(f"{kind}: {message}", file=sys.stderr, flush=True)


class Counts:
    """Images or frames that gave results, inputs that failed, images or frames with no face, and
    videos or animations read only in part (truncated, undecodable frames, first frame only)."""

    def __init__(self):
        self.processed = 0
        self.failed = 0
        self.no_face = 0
        self.incomplete = 0

    def summary(self) -> str:
        text = f"{self.processed} processed, {self.failed} failed, {self.no_face} no face"
        return text + (f", {self.incomplete} incomplete" if self.incomplete else "")


class FrameReader:
    """(index, frame) pairs of a capture. Frames that fail to decode before the ``expected`` count are
    skipped (up to _MAX_BAD_FRAMES in a row) and listed in ``bad``, so indices stay the video's own."""

    def __init__(self, capture, expected=None):
        self.capture = capture
        self.expected = expected
        self.position = 0  # index of the next frame
        self.bad = []

    def __iter__(self):
        pending = []
        while True:
            ok, frame = self.capture.read()
            if ok and frame is not None:
                self.bad += pending
                self.position += len(pending)
                pending = []
                yield self.position, frame
                self.position += 1
            elif self._may_skip(len(pending)):
                pending.append(self.position + len(pending))
            else:
                return

    def _may_skip(self, failed_in_a_row: int) -> bool:
        """After a failed read: go on if more frames are announced and < _MAX_BAD_FRAMES failed in a row."""
        announced_more = self.expected and self.position + failed_in_a_row + 1 < self.expected
        return bool(announced_more) and failed_in_a_row < _MAX_BAD_FRAMES

    def losses(self) -> list:
        """One line per kind of loss once the stream has ended: skipped frames, frames never read."""
        lines = []
        if self.bad:
            lines.append(
                f"{len(self.bad)} frame(s) could not be decoded and were skipped (first: frame {self.bad[0]})"
            )
        if self.expected and self.position < self.expected:
            lines.append(
                f"ended after {self.position} of the {self.expected} frames its header announces "
                "(truncated or corrupt file)"
            )
        return lines


def frame_count(capture):
    """Frames a video file announces (CAP_PROP_FRAME_COUNT), or None for a camera or an unusable value."""
    count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    return int(count) if math.isfinite(count) and 0 < count < 2**31 else None


class FaceStates:
    """What one video carries per face track (``edge.tracking`` ids): a stream model's state (reset
    every ``state.reset_every`` frames of the face, as in training) and, with --smooth, the
    exponentially smoothed outputs. A track that ends takes its state with it."""

    def __init__(self, model: EmotionModel, alpha):
        self.model = model
        self.alpha = alpha
        self.reset_every = model.state["reset_every"] if model.state is not None else 0
        self.state = {}  # track id -> the stream model's state after the face's last frame
        self.seen = {}  # track id -> frames of the face stepped so far
        self.smoothed = {}  # track id -> smoothed raw outputs

    def outputs(self, face_id, face_rgb) -> dict:
        """Raw outputs for this frame's crop of face ``face_id``: its state carried, then smoothed."""
        seen = self.seen.get(face_id, 0)
        state = None if self.reset_every and seen % self.reset_every == 0 else self.state.get(face_id)
        raw, self.state[face_id] = self.model.step(face_rgb, state)
        self.seen[face_id] = seen + 1
        if self.alpha is not None:
            if face_id in self.smoothed:
                raw = self.model.smooth(self.smoothed[face_id], raw, self.alpha)
            self.smoothed[face_id] = raw
        return raw

    def end(self, face_ids) -> None:
        for face_id in face_ids:
            self.state.pop(face_id, None)
            self.seen.pop(face_id, None)
            self.smoothed.pop(face_id, None)


class Runner:
    """Runs the model over the inputs, printing results and keeping the counts."""

    def __init__(self, model: EmotionModel, args):
        self.model = model
        self.args = args
        self.detect = not args.no_face_detection
        self.counts = Counts()

    def _emit(self, items: list, source: str, frame, summary=None) -> None:
        """One JSON line per (box, raw) item; video items (box, raw, face id) also say their face."""
        for box, raw, *face in items:
            result = self.model.to_result(raw, box, source, frame)
            if face:
                result["face"] = face[0]
            if summary is not None:
                summary.add(result, *face)
            print(result_to_json(result), flush=True)

    def _fail(self, where: str, error: Exception) -> None:
        self.counts.failed += 1
        _say("error", _one_line(error, where))

    def run_image(self, path: str, data=None) -> None:
        """One image file (``data``: its bytes, if read): results, or a counted error / no face.

        An animated image runs as a video; if OpenCV cannot play it, its first frame is used with a
        warning. A JPEG above the pixel limit is decoded at a reduced scale; boxes are in full-size pixels.
        Other images above the limit, animated or not, are refused before decoding.
        """
        try:
            data = read_file(path) if data is None else data
            header = read_header(data)
            animated = header is not None and header.frames > 1
            if animated and within_limit(header) and self._run_animation(path, header.frames):
                return
            rgb, note, scale = decode_image(data, path)
        except _INPUT_ERRORS as e:
            self._fail(path, e)
            return
        if animated:
            self.counts.incomplete += 1
            _say("warning", f"{path}: {first_frame_only(header)} (OpenCV cannot read its frames as a video)")
        if note:
            _say("note", f"{path}: {note}")
        full_size = (header.width, header.height) if scale > 1 else None
        self._predict_image(path, rgb, scale, full_size)

    def _predict_image(self, path: str, rgb, scale: int = 1, full_size=None) -> None:
        try:
            items = self.model.predict_raw(rgb, self.detect)
        except _INPUT_ERRORS as e:
            self._fail(path, e)
            return
        if not items:
            self.counts.no_face += 1
            _say("warning", f"{path}: no face found")
            return
        if scale > 1:
            items = [(scale_box(box, scale, *full_size), raw) for box, raw in items]
        self.counts.processed += 1
        self._emit(items, path, None)

    def _run_animation(self, path: str, frames: int) -> bool:
        """Every frame of an animated image, as a video; False if OpenCV cannot read its frames."""
        probe = cv2.VideoCapture(path)
        playable = probe.isOpened() and probe.read()[0]
        probe.release()
        if playable:
            self.run_stream(cv2.VideoCapture(path), path, expected=frames)
        return bool(playable)

    def _tracker(self):
        """Face tracks of one video: a stream model keeps a face's state over up to its max_gap
        frames without that face; a per-frame model ends a track at the first frame without it."""
        if not self.detect:
            return None
        max_missed = self.model.state["max_gap"] if self.model.state is not None else 0
        return FaceTracker(self.model.face_detector, self.args.detect_every, max_missed)

    def run_stream(self, capture, source: str, expected=None) -> None:
        """A video, camera or animated image: every N-th frame, faces tracked, per-face state, frames/s.

        ``expected``: frames the file announces (default: the container's frame count). Frames that
        fail to decode, or a stream that ends early, give one warning line and count as incomplete.
        With --summary, one summary line follows the frames' lines.
        """
        video = (self._tracker(), FaceStates(self.model, self.args.smooth))
        summary = VideoSummary(source) if self.args.summary else None
        reader = FrameReader(capture, expected or frame_count(capture))
        done, stopped = 0, False
        start = time.perf_counter()
        try:
            for index, frame in reader:
                if 0 < self.args.max_frames <= done:
                    stopped = True
                    break
                if index % self.args.every == 0:
                    self._run_frame(frame, source, index, video, summary)
                    done += 1
        except KeyboardInterrupt:
            stopped = True
            _say("note", f"{source}: interrupted")
        finally:
            capture.release()
        seconds = time.perf_counter() - start
        if reader.position == 0:
            self._fail(source, EdgeError(f"{source}: cannot read any frame"))
            return
        fps = done / seconds if seconds > 0 else float("inf")
        _say("info", f"{source}: {done} of {reader.position} frames in {seconds:.2f} s ({fps:.1f} frames/s)")
        losses = [] if stopped else reader.losses()
        for line in losses:
            _say("warning", f"{source}: {line}")
        self.counts.incomplete += bool(losses)
        if summary is not None:
            print(json.dumps(summary.to_json_dict()), flush=True)

    def _run_frame(self, frame, source: str, index: int, video: tuple, summary) -> None:
        tracker, states = video
        try:
            rgb, _ = to_rgb_uint8(frame)
            height, width = rgb.shape[:2]
            tracks = tracker.update(rgb) if tracker else [Track(0, (0, 0, width, height))]
            items = [(t.box, states.outputs(t.id, _crop(rgb, t.box)), t.id) for t in tracks]
        except _INPUT_ERRORS as e:
            self._fail(f"{source} frame {index}", e)
            return
        finally:
            states.end(tracker.ended if tracker else ())
        if not items:
            self.counts.no_face += 1
            _say("warning", f"{source} frame {index}: no face found")
            return
        self.counts.processed += 1
        self._emit(items, source, index, summary)

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
            data = read_file(path)
        except EdgeError as e:
            self._fail(path, e)
            return
        if read_header(data) is not None or _decodes(data, path):
            self.run_image(path, data)
            return
        capture = cv2.VideoCapture(path)
        if capture.isOpened():
            self.run_stream(capture, path)
        else:
            self.counts.failed += 1
            _say("error", f"{path}: neither an image nor a video OpenCV can read")


def _crop(image, box):
    x, y, w, h = box
    return image[y : y + h, x : x + w]


def _decodes(data, path) -> bool:
    try:
        decode_image(data, path)
    except EdgeError:
        return False
    return True


def _one_line(error: Exception, where: str) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if isinstance(error, EdgeError) and text.startswith(where) else f"{where}: {text}"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
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
    p.add_argument("--threads", type=_positive_int, default=None, help="interpreter and OpenCV threads")
    p.add_argument(
        "--smooth", type=_alpha, default=None, metavar="ALPHA", help="video smoothing weight (0, 1]"
    )
    p.add_argument(
        "--every", type=_positive_int, default=1, metavar="N", help="process every N-th video frame"
    )
    p.add_argument(
        "--max_frames", type=int, default=0, help="stop each video/camera after N processed frames"
    )
    p.add_argument(
        "--detect_size",
        type=_non_negative_int,
        default=DETECT_SIZE,
        metavar="PX",
        help=f"detect faces on a copy at most PX pixels a side (default {DETECT_SIZE}; 0: full size)",
    )
    p.add_argument(
        "--detect_every",
        type=_positive_int,
        default=DETECT_EVERY,
        metavar="K",
        help=f"video: detect faces in the whole frame every K processed frames and follow them in between "
        f"(default {DETECT_EVERY}; 1: detect in every frame)",
    )
    p.add_argument(
        "--summary", action="store_true", help="video: after its frames, one JSON line summarising it"
    )
    args = p.parse_args(argv)
    if not args.inputs and args.camera is None:
        p.error("give at least one INPUT or --camera N")
    return args


def _quiet_opencv():
    """OpenCV's and FFmpeg's own lines (probing a non-video file, a missing camera, a corrupt frame)
    would repeat ours; FFmpeg reads OPENCV_FFMPEG_LOGLEVEL (-8: quiet) when the first capture opens."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is not None:
        logging.setLogLevel(logging.LOG_LEVEL_ERROR)


def load_model(path: str, threads) -> EmotionModel:
    """EmotionModel; the runtime's warnings (e.g. the slower tflite_runtime fallback) one line each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = EmotionModel(path, num_threads=threads)
    for w in caught:
        _say("note" if issubclass(w.category, FallbackRuntimeWarning) else "warning", str(w.message))
    return model


def main(argv=None) -> int:
    args = parse_args(argv)
    _quiet_opencv()
    if args.threads is not None:
        cv2.setNumThreads(args.threads)
    try:
        model = load_model(args.model, args.threads)
    except EdgeError as e:
        _say("error", f"cannot load model: {_one_line(e, args.model)}")
        return 1
    if not args.no_face_detection:
        try:
            model.face_detector = FaceDetector(args.face_model)
        except EdgeError as e:
            _say("error", _one_line(e, "face detection"))
            return 2
        model.face_detector.detect_size = args.detect_size
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
