"""Reads DISFA: 27 subjects filmed watching video clips, 12 AUs coded per frame (intensity 0-5); AU only.

PATH is the DISFA folder, holding (folder names as the public tools use them: OpenFace's DISFA scripts
and e.g. jaysonjeg/FacialDynamicsHMM read ``DISFA/Videos_LeftCamera/LeftVideoSN001_comp.avi`` and
``DISFA/ActionUnit_Labels/SN001/SN001_au1.txt``; some copies unpack the videos as ``Video_LeftCamera``)
  ActionUnit_Labels/SNxxx/SNxxx_au<N>.txt   lines ``frame,intensity``: 1-based frame, intensity 0-5
  Videos_LeftCamera/LeftVideoSNxxx_comp.avi  the left camera's video (file names matched in any case)
DISFA codes AU 1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26; AU 1, 2, 4, 6, 12, 15, 25, 26 are among the
project's 12 (labelmaps.DISFA) and labelled, present = intensity >= 2 (the seed authors' rule); AU7,
AU10, AU23, AU24 stay masked, and so does an AU whose file a subject lacks ("no_au_file", counted in
files). A line that is not two integers, an intensity outside 0-5, a frame below 1 or a frame listed
twice is a bad line (DataError naming file, line and value; counted with skip_bad_labels).

Frames: frame k of the label files is the k-th frame OpenCV reads from the video. Every FRAME_STEP-th
labelled frame is used (frames 1, 1 + FRAME_STEP, ...; the rest counted "frame_step"; 1 uses all).
Faces: BlazeFace (full range, edge.blazeface) on each frame, the highest-scoring detection, its eyes
and mouth centre -> edge.align.face_frame -> aligned_crop, the device's own preparation; 112x112 JPEGs
under work_dir as ``Videos_LeftCamera/LeftVideoSNxxx_comp/<frame>.jpg`` (5 digits). Frames without a
face ("no_face") and labelled frames past the video's end ("no_image") are counted; subjects without a
video are counted in frames ("no_video"). A marker per subject records the video's and label files'
size and mtime and the settings: a rerun reuses its crops without decoding the video.

Split rule (common.py), the group being the subject: validation = subjects whose crc32 of the name
(``SN001``) mod 10 == 0. Each subject is a video (``SN001``), frames numbered as in the label files.
"""

from __future__ import annotations

import os
import re

import cv2
import numpy as np

from edge import align
from emenet_tf.data.index import FrameIndex
from emenet_tf.data.readers import common, crops, labelmaps
from emenet_tf.errors import DataError
from emenet_tf.labels import NUM_AU

NAME = "disfa"
LABEL_DIR = "ActionUnit_Labels"
VIDEO_DIRS = ("Videos_LeftCamera", "Video_LeftCamera")
FRAME_STEP = 1  # use every FRAME_STEP-th labelled frame (1: all); a larger step makes preparation faster
PRESENT_FROM = 2  # intensity >= PRESENT_FROM: the AU is present (the seed authors' rule)
MAX_INTENSITY = 5
DETECTOR = "full"  # BlazeFace model kind (edge.blazeface.MODELS)
SKIP_REASONS = {
    "no_au_file": "AU label files missing (that AU masked for the subject)",
    "no_video": "labelled frames of subjects without a video",
    "no_image": "labelled frames past the video's last frame",
    "no_face": "frames where BlazeFace found no face",
    "frame_step": "labelled frames left out by FRAME_STEP",
}
HOW_TO_SPLIT = "DISFA needs at least two subjects"
_SUBJECT = re.compile(r"^SN\d+$")


def subjects(path: str) -> list[str]:
    """The subject folders of ActionUnit_Labels/ (SN001, ...), sorted."""
    folder = os.path.join(path, LABEL_DIR)
    return sorted(
        n for n in os.listdir(folder) if _SUBJECT.match(n) and os.path.isdir(os.path.join(folder, n))
    )


def videos(path: str) -> dict[str, str]:
    """{lower-cased video file name: its path} in the first of VIDEO_DIRS that exists ({} if none)."""
    for name in VIDEO_DIRS:
        folder = os.path.join(path, name)
        if os.path.isdir(folder):
            return {f.lower(): os.path.join(folder, f) for f in os.listdir(folder)}
    return {}


def check_path(path: str) -> None:
    """A DISFA folder: ActionUnit_Labels/ with SN folders, and Videos_LeftCamera/ (or Video_LeftCamera/)."""
    if not os.path.isdir(os.path.join(path, LABEL_DIR)) or not subjects(path):
        raise DataError(f"not a DISFA folder: no {LABEL_DIR}/SNxxx/ in it", path)
    if not any(os.path.isdir(os.path.join(path, v)) for v in VIDEO_DIRS):
        raise DataError(f"DISFA: no video folder ({' or '.join(VIDEO_DIRS)}) in it", path)


def read(path: str, work_dir: str, skip_bad_labels: bool = False) -> dict[str, FrameIndex]:
    """The reader protocol (data.sources): {"train", "validation"} of the DISFA folder at ``path``."""
    check_path(path)
    pending = common.PendingSkips(SKIP_REASONS)
    found = videos(path)
    detector = _Detector()
    parts = []
    for subject in subjects(path):
        skips = pending.of(subject)
        labels = _labels(path, subject, skips, skip_bad_labels)
        video = found.get(f"leftvideo{subject.lower()}_comp.avi")
        if video is None:
            skips.add("no_video", len(labels["frame"]), [f"{subject}: no LeftVideo{subject}_comp.avi"])
            continue
        parts.append(_subject(subject, video, labels, work_dir, skips, detector))
    empty = {"frame": np.zeros(0, np.int64), "au": np.zeros((0, NUM_AU)), "au_mask": np.zeros((0, NUM_AU))}
    empty.update(rel=np.zeros(0, dtype=object), subject=np.zeros(0, dtype=object))
    rows = {k: np.concatenate([v] + [p[k] for p in parts]) for k, v in empty.items()}
    splits = common.group_splits(rows["subject"], path, HOW_TO_SPLIT)
    return common.build_splits(
        work_dir,
        NAME,
        path,
        [splits[s] for s in rows["subject"]],
        pending.resolve(splits),
        rows["rel"],
        rows["subject"],
        rows["frame"],
        au=rows["au"],
        au_mask=rows["au_mask"],
    )


# ---------------------------------------------------------------- labels


def _labels(path: str, subject: str, skips, skip_bad_labels: bool) -> dict:
    """{"frame": (F,) sorted, "au", "au_mask": (F, 12), "files": label files read} of one subject."""
    per_au, files = {}, []
    for number, column in labelmaps.DISFA.items():
        file = os.path.join(path, LABEL_DIR, subject, f"{subject}_au{number}.txt")
        if not os.path.isfile(file):
            skips.add("no_au_file", 1, [file])
            continue
        files.append(file)
        per_au[column] = _read_au_file(file, skips, skip_bad_labels)
    frames = np.unique(np.concatenate([f for f, _ in per_au.values()] or [np.zeros(0, np.int64)]))
    au = np.zeros((frames.size, NUM_AU), np.float32)
    mask = np.zeros((frames.size, NUM_AU), np.float32)
    for column, (frame, intensity) in per_au.items():
        rows = np.searchsorted(frames, frame)
        au[rows, column] = intensity >= PRESENT_FROM
        mask[rows, column] = 1.0
    return {"frame": frames, "au": au, "au_mask": mask, "files": files}


def _read_au_file(path: str, skips, skip_bad_labels: bool) -> tuple[np.ndarray, np.ndarray]:
    """(frames, intensities) of one SNxxx_au<N>.txt; bad lines raise or are counted."""
    frames, values, seen = [], [], {}
    for line_no, text in common.text_lines(path):
        parsed = _parse_line(text, path, line_no, seen)
        if isinstance(parsed, DataError):
            common.bad_line(parsed, skips, skip_bad_labels)
            continue
        frame, intensity = parsed
        seen[frame] = line_no
        frames.append(frame)
        values.append(intensity)
    return np.array(frames, np.int64), np.array(values, np.int64)


def _parse_line(text: str, path: str, line: int, seen: dict) -> tuple[int, int] | DataError:
    """(frame, intensity) of one line, or a DataError naming it."""
    fields = [v.strip() for v in text.split(",")]
    if len(fields) != 2 or not all(v.isdigit() and v.isascii() for v in fields):
        return DataError("expected 'frame,intensity' (two non-negative integers)", path, line, text)
    frame, intensity = int(fields[0]), int(fields[1])
    if frame < 1:
        return DataError("frame numbers start at 1", path, line, text)
    if intensity > MAX_INTENSITY:
        return DataError(f"intensity must be 0-{MAX_INTENSITY}", path, line, text)
    if frame in seen:
        return DataError(f"frame {frame} listed twice (first on line {seen[frame]})", path, line, text)
    return frame, intensity


# ---------------------------------------------------------------- frames and faces


class _Detector:
    """BlazeFace, loaded on first use (a rerun with every crop in place never loads it)."""

    def __init__(self):
        self._model = None

    def face_frame(self, image_rgb: np.ndarray) -> align.FaceFrame | None:
        """The crop frame of the highest-scoring face, or None when there is none."""
        if self._model is None:
            from edge.blazeface import BlazeFace

            self._model = BlazeFace(DETECTOR)
        found = self._model.detect(image_rgb)
        if not found:
            return None
        return align.keypoint_frame(found[0].keypoints)


def _subject(subject: str, video: str, labels: dict, work_dir: str, skips, detector) -> dict:
    """The rows of one subject whose crop exists; crops made as needed."""
    folder = f"{os.path.basename(os.path.dirname(video))}/{os.path.splitext(os.path.basename(video))[0]}"
    frames = labels["frame"]
    sampled = (frames - 1) % FRAME_STEP == 0
    skips.add("frame_step", int((~sampled).sum()), (f"{subject} frame {k}" for k in frames[~sampled]))
    rel = np.array([f"{folder}/{k:05d}.jpg" for k in frames.tolist()], dtype=object)
    settings = {"frame_step": FRAME_STEP, "detector": DETECTOR}
    prep = crops.Preparation(work_dir, f"{folder}/.prepared.json", [video, *labels["files"]], settings)
    wanted = {int(k): r for k, r, s in zip(frames, rel, sampled, strict=True) if s and prep.needs(r)}
    if wanted:
        _crop_video(video, wanted, prep, detector, subject)
    prep.finish()
    keep = np.zeros(frames.size, bool)
    for i in np.flatnonzero(sampled):
        failed = prep.failure(rel[i])
        if failed is None:
            keep[i] = True
        else:
            skips.add(failed[0], 1, [failed[1]])
    return {
        "frame": frames[keep],
        "au": labels["au"][keep],
        "au_mask": labels["au_mask"][keep],
        "rel": rel[keep],
        "subject": np.full(int(keep.sum()), subject, dtype=object),
    }


def _crop_video(video: str, wanted: dict, prep: crops.Preparation, detector, subject: str) -> None:
    """Read the video once, up to the last wanted frame; crop each wanted frame (1-based)."""
    capture = cv2.VideoCapture(video)
    try:
        last = max(wanted)
        number = 0
        while number < last:
            ok, bgr = capture.read()
            if not ok:
                break
            number += 1
            if number in wanted:
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                frame = detector.face_frame(rgb)
                if frame is None:
                    prep.fail(wanted[number], "no_face", f"{subject} frame {number}")
                else:
                    prep.write(wanted[number], crops.crop(rgb, frame))
    finally:
        capture.release()
    for k, rel in wanted.items():
        if k > number:
            prep.fail(rel, "no_image", f"{subject} frame {k} (the video has {number})")
