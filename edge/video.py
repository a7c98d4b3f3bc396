"""Reading a video or camera frame by frame, a face's state between frames, and the progress line.

``FrameReader`` yields (index, frame) pairs and skips a few undecodable frames with their indices
kept; ``FaceStates`` carries per face track a stream model's state (reset as in training) and the
smoothing; ``Progress`` prints ``progress: SOURCE: done/total frames (p%), F frames/s`` on stderr
every ``every`` seconds while a video runs.
"""

import math
import sys
import time

import cv2

_MAX_BAD_FRAMES = 8  # frames in a row that fail to decode before a video counts as ended there


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

    def __init__(self, model, alpha):
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


class Progress:
    """The progress line of a long video on stderr: frames read of the announced total, frames/s
    processed. ``every``: seconds between lines (the class attribute is the CLI's default)."""

    every = 2.0

    def __init__(self, source: str, total=None, every: float | None = None, stream=None):
        self.source, self.total = source, total
        self.every = type(self).every if every is None else every
        self.stream = stream if stream is not None else sys.stderr
        self.start = self._last = time.perf_counter()

    def update(self, done: int, position: int) -> None:
        """Say where the run is, at most once per ``every`` seconds (``done``: frames processed,
        ``position``: frames read)."""
        now = time.perf_counter()
        if now - self._last < self.every:
            return
        self._last = now
        rate = done / (now - self.start) if now > self.start else 0.0
        share = f" ({100.0 * position / self.total:.0f}%)" if self.total else ""
        of = f"/{self.total}" if self.total else ""
        print(
            f"progress: {self.source}: {position}{of} frames{share}, {rate:.1f} frames/s",
            file=self.stream,
            flush=True,
        )
