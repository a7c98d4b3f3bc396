"""Faces followed through a video: full detection every k frames; in between each face is followed
by template matching and re-found by the detector near its last box every few frames.

The video path is detection-bound. On the benchmark clip (``benchmarks/edge_pipeline.py``: 640x480,
one thread) a full detection costs ~7 ms with BlazeFace (~120 ms with the Haar fallback), a
detection near the last face (``FaceDetector.detect_near``: BlazeFace's short-range model on the
region) ~2 ms, template matching ~0.1 ms, the aligned crop ~0.1 ms, the int8 model ~0.05-0.1 ms. ``FaceTracker`` therefore runs
the detector on the whole frame only on the first frame, every ``detect_every`` frames (to find
new faces), and on the frame after a face was lost. On the frames in between, each face is followed
two ways, the cheaper first:
- template matching (``follow_template``): the face's grey patch, taken where the detector last
  found it, shrunk to TEMPLATE_PX pixels, is matched (normalised cross-correlation) in a region
  around its last box; the face (box and keypoints) moves, its size is kept. A match below MIN_MATCH
  fails.
- the detector near the last box (``detect_near``): every ``refine_every`` frames, and whenever
  template matching fails; it gives the box a full detection gives (position and size) and a new
  template. If it misses the face where the template still matches, the template's box is kept.
A face a full detection misses is followed by its template too (the Haar detector misses some
expressions and poses for a while), but only for ``detect_every`` frames after the detector last
found it, and never with ``detect_every`` 1 (the detector alone). A face nothing finds is lost for
that frame (its track ends, or is kept missing up to ``max_missed`` frames), and the next frame
gets a full detection. A track holds the face's last ``edge.faces.Face`` (box, score, keypoints).

Each face has a track id while it is followed: a detection continues the track whose box it
overlaps most (IoU >= ``min_iou``), else starts a new one (a new or changed face). A track that
is not seen for more than ``max_missed`` frames ends; ``ended`` lists the ids that ended at the
last update. Per-face state (smoothing, a stream model's GRU state) hangs on these ids.
A detector without ``detect_near`` (any object with ``detect(image) -> [Face]``) is run in full
on every frame; ``refine_every`` 1 follows with the detector alone (no templates).
"""

import dataclasses

import cv2
import numpy as np

from edge.faces import Face, box_iou

# Measured with benchmarks/edge_pipeline.py (640x480 rendered-face video, one thread): see edge/README.md.
DETECT_EVERY = 30  # frames between full detections (new faces appear within a second at 30 frames/s)
REFINE_EVERY = 5  # frames between detections near the last box while template matching follows the face
TEMPLATE_PX = 32  # side of the template (and of the face in the search region) in pixels
SEARCH = 0.5  # the search region extends this many box sides beyond the last box on each side
MIN_MATCH = 0.6  # normalised cross-correlation below this: template matching lost the face
MIN_TEMPLATE_STD = 2.0  # grey levels: a flatter template matches any flat region (no template)
MIN_IOU = 0.3  # a detection continues the track it overlaps at least this much
_DUPLICATE_IOU = 0.5  # two tracks that found boxes overlapping this much follow one face


@dataclasses.dataclass
class Track:
    """One followed face: its id, its last ``Face`` (box, score, keypoints), the frames it has not been
    seen, and the template matching follows it with (grey, TEMPLATE_PX a side; None until taken)."""

    id: int
    face: Face
    missed: int = 0
    template: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
    since_anchor: int = 0  # frames since the detector last found this face

    @property
    def box(self) -> tuple:
        return tuple(self.face.box)

    def place(self, face) -> None:
        """This frame's face, or None: not found in this frame (one more frame missed)."""
        if face is None:
            self.missed += 1
        else:
            self.face, self.missed = face, 0


def face_template(image_rgb: np.ndarray, box) -> np.ndarray | None:
    """The grey patch of ``box`` shrunk to TEMPLATE_PX a side, or None if the box is empty or flat
    (OpenCV's normalised cross-correlation of a flat template is 1 everywhere: it would follow anything)."""
    x, y, w, h = (int(v) for v in box)
    patch = image_rgb[max(0, y) : y + h, max(0, x) : x + w]
    if patch.shape[0] < 2 or patch.shape[1] < 2:
        return None
    grey = cv2.cvtColor(np.ascontiguousarray(patch), cv2.COLOR_RGB2GRAY)
    template = cv2.resize(grey, (TEMPLATE_PX, TEMPLATE_PX), interpolation=cv2.INTER_AREA)
    return template if template.std() >= MIN_TEMPLATE_STD else None


def follow_template(image_rgb: np.ndarray, face: Face, template: np.ndarray) -> Face | None:
    """The face moved to where ``template`` matches best within SEARCH box sides of its box (its size
    and keypoints' layout kept), or None if the best normalised cross-correlation is below MIN_MATCH or
    the region is too small."""
    height, width = image_rgb.shape[:2]
    x, y = int(round(face.box[0])), int(round(face.box[1]))
    side = int(round(max(face.box[2], face.box[3])))
    if side < 2 or side > min(width, height):
        return None
    reach = int(round(side * SEARCH))
    x0, y0 = max(0, x - reach), max(0, y - reach)
    x1, y1 = min(width, x + side + reach), min(height, y + side + reach)
    factor = side / TEMPLATE_PX
    size = (int(round((x1 - x0) / factor)), int(round((y1 - y0) / factor)))
    if size[0] <= TEMPLATE_PX or size[1] <= TEMPLATE_PX:
        return None
    region = cv2.cvtColor(np.ascontiguousarray(image_rgb[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
    region = cv2.resize(region, size, interpolation=cv2.INTER_AREA)
    _, best, _, (bx, by) = cv2.minMaxLoc(cv2.matchTemplate(region, template, cv2.TM_CCOEFF_NORMED))
    if not best >= MIN_MATCH:  # also NaN (a flat region)
        return None
    nx = min(max(int(round(x0 + bx * factor)), 0), width - side)
    ny = min(max(int(round(y0 + by * factor)), 0), height - side)
    return face.moved(nx - x, ny - y)


class FaceTracker:
    """Tracks of the faces in consecutive frames of one video or stream (see the module docstring)."""

    def __init__(
        self,
        detector,
        detect_every: int = DETECT_EVERY,
        max_missed: int = 0,
        min_iou: float = MIN_IOU,
        refine_every: int = REFINE_EVERY,
    ):
        if detect_every < 1 or max_missed < 0 or refine_every < 1:
            raise ValueError(
                "detect_every and refine_every must be >= 1 and max_missed >= 0, got "
                f"{detect_every}, {refine_every}, {max_missed}"
            )
        self.detector = detector
        self.detect_every = detect_every
        self.refine_every = refine_every
        self.max_missed = max_missed
        self.min_iou = min_iou
        self.tracks: list[Track] = []
        self.ended: list[int] = []
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
            self._assign(image, self.detector.detect(image))
        else:
            self._follow(image)
        self._drop_duplicates()
        self.ended = [t.id for t in self.tracks if t.missed > self.max_missed]
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        self._lost = bool(self.ended) or any(t.missed for t in self.tracks)
        return sorted((t for t in self.tracks if t.missed == 0), key=lambda t: tuple(t.box))

    def _follow(self, image) -> None:
        for track in self.tracks:
            track.since_anchor += 1
            refine = track.since_anchor % self.refine_every == 0
            face = None if refine else self._by_template(image, track)
            face = self._near(image, track) if face is None else face
            face = self._by_template(image, track) if face is None and refine else face  # detector missed it
            track.place(face)

    def _by_template(self, image, track: Track):
        """The track's face moved by template matching; None without a template, when it does not
        match, when the detector has not confirmed the face for more than ``detect_every`` frames, or
        with ``detect_every`` 1 (the detector alone)."""
        if track.template is None or self.detect_every == 1 or track.since_anchor > self.detect_every:
            return None
        return follow_template(image, track.face, track.template)

    def _near(self, image, track: Track):
        """The detector near the track's last face; when it finds the face, the track is re-anchored."""
        face = self.detector.detect_near(image, track.face)
        if face is not None:
            self._anchor(image, track, face)
        return face

    def _anchor(self, image, track: Track, face: Face) -> None:
        """The detector found the track's face: the template is taken there."""
        track.since_anchor = 0
        if self.refine_every > 1:
            track.template = face_template(image, face.box)

    def _assign(self, image, faces: list) -> None:
        """Continue the best-overlapping track of each detection (each track once), or start one."""
        pairs = sorted(
            ((box_iou(f.box, t.box), i, j) for i, f in enumerate(faces) for j, t in enumerate(self.tracks)),
            reverse=True,
        )
        taken_faces, taken_tracks = set(), set()
        for iou, i, j in pairs:
            if iou < self.min_iou:
                break
            if i in taken_faces or j in taken_tracks:
                continue
            taken_faces.add(i)
            taken_tracks.add(j)
            self.tracks[j].place(faces[i])
            self._anchor(image, self.tracks[j], faces[i])
        for j, track in enumerate(self.tracks):
            if j not in taken_tracks:  # the detector missed it here: its template may still follow it
                track.since_anchor += 1
                track.place(self._by_template(image, track))
        for i, face in enumerate(faces):
            if i not in taken_faces:
                self.tracks.append(Track(self._next_id, face))
                self._anchor(image, self.tracks[-1], face)
                self._next_id += 1

    def _drop_duplicates(self) -> None:
        """Two tracks that found the same face: the younger one (higher id) ends."""
        seen = [t for t in self.tracks if t.missed == 0]
        for a in seen:
            for b in seen:
                if a.id < b.id and b.missed == 0 and box_iou(a.box, b.box) >= _DUPLICATE_IOU:
                    b.missed = self.max_missed + 1
