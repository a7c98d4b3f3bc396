"""Faces followed through a video: full detection every k frames, each face re-found near its last box in between.

The video path is detection-bound: a full detection of a 640x480 frame costs ~20x the model's
inference. ``FaceTracker`` runs the detector on the whole frame (its ``detect``: on a copy at
most ``detect_size`` a side) only on the first frame, every ``detect_every`` frames, and on the
frame after a face was lost. On the frames in between, each face is looked for again with the
same detector, but only in a square region around its last box, shrunk so the face is about
``TRACK_FACE_PX`` pixels and limited to scales near its last size (``FaceDetector.detect_near``):
the box is the one a full detection gives, at a few per cent of its cost. A face not found there
is lost for that frame, and the next frame gets a full detection.

Each face has a track id while it is followed: a detection continues the track whose box it
overlaps most (IoU >= ``min_iou``), else starts a new one (a new or changed face). A track that
is not seen for more than ``max_missed`` frames ends; ``ended`` lists the ids that ended at the
last update. Per-face state (smoothing, a stream model's GRU state) hangs on these ids.
A detector without ``detect_near`` (any object with ``detect(image) -> boxes``) is run in full
on every frame.
"""

import dataclasses

from edge.faces import box_iou

DETECT_EVERY = 10  # frames between full detections while every face is found near its last box
MIN_IOU = 0.3  # a detection continues the track it overlaps at least this much
_DUPLICATE_IOU = 0.5  # two tracks that found boxes overlapping this much follow one face


@dataclasses.dataclass
class Track:
    """One followed face: its id, its last box (x, y, w, h) and the frames it has not been seen."""

    id: int
    box: tuple
    missed: int = 0


class FaceTracker:
    """Tracks of the faces in consecutive frames of one video or stream (see the module docstring)."""

    def __init__(
        self, detector, detect_every: int = DETECT_EVERY, max_missed: int = 0, min_iou: float = MIN_IOU
    ):
        if detect_every < 1 or max_missed < 0:
            raise ValueError(
                f"detect_every must be >= 1 and max_missed >= 0, got {detect_every}, {max_missed}"
            )
        self.detector = detector
        self.detect_every = detect_every
        self.max_missed = max_missed
        self.min_iou = min_iou
        self.tracks: list[Track] = []
        self.ended: list[int] = []
        self.full_detections = 0  # how many frames had a full detection (for benchmarks)
        self._next_id = 0
        self._frames = 0
        self._lost = False

    def update(self, image) -> list[Track]:
        """The tracks seen in ``image`` (the next frame), left to right; ``ended``: the ids that ended."""
        full = (
            self._lost
            or not self.tracks
            or self._frames % self.detect_every == 0
            or not hasattr(self.detector, "detect_near")
        )
        self._frames += 1
        if full:
            self.full_detections += 1
            self._assign(self.detector.detect(image))
        else:
            self._follow(image)
        self._drop_duplicates()
        self.ended = [t.id for t in self.tracks if t.missed > self.max_missed]
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        self._lost = any(t.missed for t in self.tracks)
        return sorted((t for t in self.tracks if t.missed == 0), key=lambda t: tuple(t.box))

    def _follow(self, image) -> None:
        for track in self.tracks:
            box = self.detector.detect_near(image, track.box)
            if box is None:
                track.missed += 1
            else:
                track.box, track.missed = tuple(box), 0

    def _assign(self, boxes: list) -> None:
        """Continue the best-overlapping track of each detection (each track once), or start one."""
        pairs = sorted(
            ((box_iou(b, t.box), i, j) for i, b in enumerate(boxes) for j, t in enumerate(self.tracks)),
            reverse=True,
        )
        taken_boxes, taken_tracks = set(), set()
        for iou, i, j in pairs:
            if iou < self.min_iou:
                break
            if i in taken_boxes or j in taken_tracks:
                continue
            taken_boxes.add(i)
            taken_tracks.add(j)
            self.tracks[j].box, self.tracks[j].missed = tuple(boxes[i]), 0
        for j, track in enumerate(self.tracks):
            if j not in taken_tracks:
                track.missed += 1
        for i, box in enumerate(boxes):
            if i not in taken_boxes:
                self.tracks.append(Track(self._next_id, tuple(box)))
                self._next_id += 1

    def _drop_duplicates(self) -> None:
        """Two tracks that found the same face: the younger one (higher id) ends."""
        seen = [t for t in self.tracks if t.missed == 0]
        for a in seen:
            for b in seen:
                if a.id < b.id and b.missed == 0 and box_iou(a.box, b.box) >= _DUPLICATE_IOU:
                    b.missed = self.max_missed + 1
