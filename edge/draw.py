"""Pictures of the results (``edge.predict --draw``): each face's box, label, probability and entropy,
coloured by what the model says about itself.

Colours (BGR, as OpenCV draws): green for a confident answer, amber when the model is unsure
(``uncertain``: the expression entropy is above its threshold), red when the input looks out of
domain (``ood``); with BlazeFace the crop the model saw (the aligned square) is drawn thin in the
same colour and the six keypoints as dots. ``Drawing`` writes one image, or the frames of a video
(MJPG .avi or mp4v .mp4 by the file's extension), atomically: a killed run leaves no half file
under the final name.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from edge.align import keypoint_frame
from edge.errors import EdgeError

COLOURS = {"confident": (60, 180, 75), "uncertain": (0, 170, 255), "ood": (40, 40, 220)}  # BGR
VIDEO_CODECS = {".avi": "MJPG", ".mp4": "mp4v"}
DEFAULT_FPS = 25.0  # frames per second of a --draw video when the source does not say
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def state(result) -> str:
    """ "ood", "uncertain" or "confident": the colour a result is drawn in."""
    if result.ood:
        return "ood"
    return "uncertain" if result.uncertain else "confident"


def caption(result) -> str:
    """The text above a face: label, probability, entropy H and the flags that are raised."""
    top = result.top_emotion()
    text = (
        "no expression head" if top is None else f"{top[0]} {top[1]:.2f} H={result.expression['entropy']:.2f}"
    )
    if result.uncertain:
        text += " unsure"
    if result.ood:
        text += " OOD"
    return text


def draw(image_bgr: np.ndarray, results: list) -> np.ndarray:
    """A copy of a BGR image with every result drawn on it."""
    out = image_bgr.copy()
    thickness = max(1, round(max(out.shape[:2]) / 400))
    for result in results:
        colour = COLOURS[state(result)]
        x, y, w, h = result.box
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), colour, thickness + 1)
        if result.keypoints is not None:
            points = np.asarray(result.keypoints, np.float64)
            corners = keypoint_frame(points).corners()
            cv2.polylines(out, [np.round(corners).astype(np.int32)], True, colour, thickness)
            for px, py in points:
                cv2.circle(out, (int(round(px)), int(round(py))), thickness + 1, colour, -1)
        _label(out, caption(result), (x, y), colour, thickness)
    return out


def _label(image, text: str, corner, colour, thickness: int) -> None:
    scale = max(0.4, thickness * 0.45)
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, thickness)
    x = max(0, min(int(corner[0]), image.shape[1] - tw - 2))  # inside the picture, if it fits
    y = max(int(corner[1]), th + base + 2)
    cv2.rectangle(image, (x, y - th - base - 2), (x + tw + 2, y), colour, -1)
    cv2.putText(image, text, (x + 1, y - base), _FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)


class Drawing:
    """Where ``--draw`` pictures go: ``path`` is an image file (one picture) or a video file (frames).

    ``add(frame_bgr, results)`` draws and keeps a frame; ``close()`` writes the file (a video: frames
    at ``fps``) under a temporary name and renames it into place. EdgeError when it cannot be written.
    """

    def __init__(self, path: str, fps: float | None = None):
        self.path = path
        self.fps = fps if fps and np.isfinite(fps) and fps > 0 else DEFAULT_FPS  # unknown or nonsense
        folder = os.path.dirname(os.path.abspath(path))
        self._tmp = os.path.join(folder, f".tmp-{os.getpid()}-{os.path.basename(path)}")
        self._ext = os.path.splitext(path)[1].lower()
        self._writer = None
        self._last = None
        self.frames = 0

    @property
    def is_video(self) -> bool:
        return self._ext in VIDEO_CODECS

    def add(self, frame_bgr: np.ndarray, results: list) -> None:
        picture = draw(frame_bgr, results)
        self.frames += 1
        if not self.is_video:
            self._last = picture  # one picture: the last frame drawn
            return
        if self._writer is None:
            height, width = picture.shape[:2]
            fourcc = cv2.VideoWriter_fourcc(*VIDEO_CODECS[self._ext])
            self._writer = cv2.VideoWriter(self._tmp, fourcc, self.fps, (width, height))
            if not self._writer.isOpened():
                raise EdgeError(f"{self.path}: cannot write a {self._ext} video here")
        self._writer.write(picture)

    def discard(self) -> None:
        """Give up: nothing is written (a half-written video is removed)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        self._last = None
        if os.path.exists(self._tmp):
            os.remove(self._tmp)

    def close(self) -> None:
        """Write the picture or finish the video, then move it into place."""
        try:
            if self._writer is not None:
                self._writer.release()
            elif self._last is not None:
                ok, data = cv2.imencode(self._ext or ".png", self._last)
                if not ok:
                    raise EdgeError(
                        f"{self.path}: OpenCV cannot write a {self._ext or 'extensionless'} image"
                    )
                with open(self._tmp, "wb") as f:
                    f.write(data.tobytes())
            if os.path.exists(self._tmp):
                os.replace(self._tmp, self.path)
        except OSError as e:
            raise EdgeError(f"{self.path}: cannot write the picture ({e.strerror or e})") from None
        finally:
            if os.path.exists(self._tmp):
                os.remove(self._tmp)
