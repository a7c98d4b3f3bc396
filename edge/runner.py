"""The edge CLI's work: images, folders, videos and cameras through the model, results out, counts kept.

``Runner.run_path`` tells an image, a folder and a video apart; a video runs frame by frame with its
faces tracked (``edge.tracking``), a face's state carried (``edge.video.FaceStates``), a progress
line, an optional summary (``edge.summary``) and pictures (``edge.outputs``).
"""

import dataclasses
import json
import os
import sys
import time

import cv2

from edge.faces import scale_box
from edge.images import IMAGE_EXTENSIONS, decode_image, first_frame_only, read_file, read_header, within_limit
from edge.outputs import Outputs
from edge.runtime import EdgeError, EmotionModel, result_to_json, to_rgb_uint8
from edge.summary import VideoSummary
from edge.tracking import FaceTracker
from edge.video import FaceStates, FrameReader, Progress, frame_count

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".3gp")
# MemoryError: one input too large for this device must not end the run (the next may fit).
_INPUT_ERRORS = (EdgeError, OSError, cv2.error, RuntimeError, MemoryError)


def say(kind: str, message: str):
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


class Runner:
    """Runs the model over the inputs, printing results and keeping the counts."""

    def __init__(self, model: EmotionModel, args):
        self.model = model
        self.args = args
        self.detect = not args.no_face_detection
        self.counts = Counts()
        self.outputs = Outputs(args)

    def _emit(self, items: list, source: str, frame, summary=None) -> list:
        """One JSON line (and CSV row) per (face, box, raw[, track id]) item; the FaceResults."""
        results = []
        for face, box, raw, *track in items:
            result = self.model.to_result(raw, box, source, frame, face)
            result.face = track[0] if track else None
            if summary is not None:
                summary.add(result, result.face)
            print(result_to_json(result), flush=True)
            self.outputs.row(result)
            results.append(result)
        return results

    def _fail(self, where: str, error: Exception) -> None:
        self.counts.failed += 1
        say("error", one_line(error, where))

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
            say("warning", f"{path}: {first_frame_only(header)} (OpenCV cannot read its frames as a video)")
        if note:
            say("note", f"{path}: {note}")
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
            say("warning", f"{path}: no face found")
        else:
            self.counts.processed += 1
            if scale > 1:  # found on the image decoded at 1/scale: reported in full-size pixels
                items = [
                    (f and f.scaled(scale), scale_box(box, scale, *full_size), raw) for f, box, raw in items
                ]
            results = self._emit(items, path, None)
            self._draw_image(path, rgb, results, scale)

    def _draw_image(self, path: str, rgb, results: list, scale: int) -> None:
        drawing = self.outputs.drawing(path, video=False)
        if drawing is None:
            return
        if scale > 1:  # a JPEG decoded at 1/scale: drawn at that size, the results in its pixels
            results = [
                dataclasses.replace(
                    r,
                    box=tuple(int(v) // scale for v in r.box),
                    keypoints=r.keypoints and [(x / scale, y / scale) for x, y in r.keypoints],
                )
                for r in results
            ]
        try:
            drawing.add(rgb[..., ::-1], results)
            drawing.close()
        except EdgeError as e:
            self._fail(path, e)

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
        """A video, camera or animated image: every N-th frame, faces tracked, per-face state, progress.

        ``expected``: frames the file announces (default: the container's frame count). Frames that
        fail to decode, or a stream that ends early, give one warning line and count as incomplete.
        With --summary, one summary line follows the frames' lines.
        """
        total = expected or frame_count(capture)
        video = (self._tracker(), FaceStates(self.model, self.args.smooth))
        summary = VideoSummary(source) if self.args.summary else None
        drawing = self.outputs.drawing(source, video=True, fps=capture.get(cv2.CAP_PROP_FPS))
        reader, progress = FrameReader(capture, total), Progress(source, total)
        done, stopped = 0, False
        start = time.perf_counter()
        try:
            for index, frame in reader:
                if 0 < self.args.max_frames <= done:
                    stopped = True
                    break
                if index % self.args.every == 0:
                    results = self._run_frame(frame, source, index, video, summary)
                    drawing = self._draw_frame(drawing, frame, results, source)
                    done += 1
                    progress.update(done, index + 1)
        except KeyboardInterrupt:
            stopped = True
            say("note", f"{source}: interrupted")
        finally:
            capture.release()
        seconds = time.perf_counter() - start
        self._finish_drawing(drawing, source)
        if reader.position == 0:
            self._fail(source, EdgeError(f"{source}: cannot read any frame"))
            return
        fps = done / seconds if seconds > 0 else float("inf")
        say("info", f"{source}: {done} of {reader.position} frames in {seconds:.2f} s ({fps:.1f} frames/s)")
        losses = [] if stopped else reader.losses()
        for line in losses:
            say("warning", f"{source}: {line}")
        self.counts.incomplete += bool(losses)
        if summary is not None:
            self._say_summary(summary)

    def _say_summary(self, summary: VideoSummary) -> None:
        line = summary.to_json_dict()
        for left in line["summary"]["left_out"]:
            say(
                "note",
                f"{summary.source}: face {left['face']} left out of the video's label: {left['reason']}",
            )
        print(json.dumps(line), flush=True)

    def _draw_frame(self, drawing, frame, results: list, source: str):
        """Draw a processed frame into the --draw video; the drawing, or None once it failed (said once)."""
        if drawing is None:
            return None
        try:
            drawing.add(frame, results)
        except EdgeError as e:
            self._fail(source, e)
            drawing.discard()
            return None
        return drawing

    def _finish_drawing(self, drawing, source: str) -> None:
        if drawing is None:
            return
        try:
            drawing.close()
        except EdgeError as e:
            self._fail(source, e)

    def _run_frame(self, frame, source: str, index: int, video: tuple, summary) -> list:
        """One processed frame: its faces tracked and run, its lines printed; its FaceResults."""
        tracker, states = video
        try:
            rgb, _ = to_rgb_uint8(frame)
            height, width = rgb.shape[:2]
            if tracker:
                items = [(t.face, t.face.pixel_box(width, height), states.outputs(t.id, t.face.crop(rgb)), t.id)
                         for t in tracker.update(rgb)]  # fmt: skip
            else:  # --no_face_detection: the whole frame is the one face, id 0
                items = [(None, (0, 0, width, height), states.outputs(0, rgb), 0)]
        except _INPUT_ERRORS as e:
            self._fail(f"{source} frame {index}", e)
            return []
        finally:
            states.end(tracker.ended if tracker else ())
        if not items:
            self.counts.no_face += 1
            say("warning", f"{source} frame {index}: no face found")
            return []
        self.counts.processed += 1
        return self._emit(items, source, index, summary)

    def run_video(self, path: str) -> None:
        capture = cv2.VideoCapture(path)
        if not capture.isOpened():
            self.counts.failed += 1
            say("error", f"{path}: cannot open video")
            return
        self.run_stream(capture, path)

    def run_camera(self, number: int) -> None:
        capture = cv2.VideoCapture(number)
        if not capture.isOpened():
            self.counts.failed += 1
            say("error", f"camera {number}: cannot open")
            return
        self.run_stream(capture, f"camera:{number}")

    def run_path(self, path: str) -> None:
        """An image, a folder of images (sorted) or a video, told apart by extension, else by trying."""
        if os.path.isdir(path):
            self.run_folder(path)
            return
        if not os.path.exists(path):
            self.counts.failed += 1
            say("error", f"{path}: no such file or folder")
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
            say("note", f"{folder}: skipped {skipped} files without an image extension")
        if not images:
            self.counts.failed += 1
            say("error", f"{folder}: no images in folder")
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
            say("error", f"{path}: neither an image nor a video OpenCV can read")


def _decodes(data, path) -> bool:
    try:
        decode_image(data, path)
    except EdgeError:
        return False
    return True


def one_line(error: Exception, where: str) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if isinstance(error, EdgeError) and text.startswith(where) else f"{where}: {text}"
