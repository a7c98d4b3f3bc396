"""Tiny copies of the public datasets, in each one's exact distributed layout, for the reader tests.

No real images: faces are drawn with numpy / OpenCV. Landmark datasets get made-up but geometrically
sensible iBUG-68 landmarks (``landmarks68``) on images carrying coloured dots at the eyes and mouth
centre, so a test can see where the aligned crop put them; DISFA's videos show the synthetic
benchmark's cartoon faces (emenet_tf.data.render) at about half the frame, which BlazeFace finds.
Each ``write_*`` returns the PATH to give the reader and takes ``n`` / options for the awkward cases.
"""

import json
import os

import cv2
import numpy as np

FER_EMOTIONS = (0, 1, 2, 3, 4, 5, 6)
# Where the dots land in the 112 px crop of ``landmarks68`` (see its docstring): right eye (image left),
# left eye, mouth centre.
CROP_DOTS = {"right_eye": (28.0, 28.0), "left_eye": (84.0, 28.0), "mouth": (56.0, 84.0)}
DOT_COLOURS = {"right_eye": (255, 0, 0), "left_eye": (0, 0, 255), "mouth": (0, 255, 0)}


def write_text(path, text: str) -> str:
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    return str(path)


def write_image(path, image_rgb: np.ndarray) -> str:
    """An image file; a name OpenCV cannot encode (.gif) gets PNG bytes (decoders sniff the content)."""
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    ext = os.path.splitext(str(path))[1].lower()
    ok, data = cv2.imencode(ext if ext in (".jpg", ".jpeg", ".png", ".bmp") else ".png", image_rgb[..., ::-1])
    assert ok, path
    with open(path, "wb") as f:
        f.write(data.tobytes())
    return str(path)


def small_image(seed: int, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def pixel_string(seed: int) -> str:
    return " ".join(str(v) for v in np.random.default_rng(seed).integers(0, 256, 48 * 48))


# ---------------------------------------------------------------- landmarks and drawn faces


def _template() -> np.ndarray:
    """(68, 2) iBUG-68 points in face units (x right, y down; eyes at (-+0.4, -0.3), mouth at (0, 0.5))."""
    jaw = [(np.cos(a), 0.9 * np.sin(a) + 0.1) for a in np.linspace(np.pi * 1.05, -0.05 * np.pi, 17)[::-1]]
    jaw = [(-x, y) for x, y in jaw]
    brows = [(x, -0.55) for x in np.linspace(-0.8, -0.2, 5)] + [(x, -0.55) for x in np.linspace(0.2, 0.8, 5)]
    nose = [(0.0, y) for y in np.linspace(-0.4, 0.1, 4)] + [(x, 0.2) for x in np.linspace(-0.2, 0.2, 5)]
    hexagon = [(np.cos(a) * 0.15, np.sin(a) * 0.06) for a in np.linspace(np.pi, -np.pi, 6, endpoint=False)]
    eyes = [(x - 0.4, y - 0.3) for x, y in hexagon] + [(x + 0.4, y - 0.3) for x, y in hexagon]
    outer = [
        (np.cos(a) * 0.35, np.sin(a) * 0.12 + 0.5) for a in np.linspace(np.pi, -np.pi, 12, endpoint=False)
    ]
    inner = [
        (np.cos(a) * 0.25, np.sin(a) * 0.05 + 0.5) for a in np.linspace(np.pi, -np.pi, 8, endpoint=False)
    ]
    points = np.array(jaw + brows + nose + eyes + outer + inner, np.float64)
    assert points.shape == (68, 2)
    return points


def landmarks68(centre=(100.0, 100.0), scale: float = 50.0, angle_deg: float = 0.0) -> np.ndarray:
    """(68, 2) pixel landmarks: the template scaled by ``scale`` px a unit, turned by ``angle_deg``
    (clockwise on screen) about ``centre``. Eye distance and eye-to-mouth height are both 0.8 scale, so
    the crop's side is 1.6 scale and the dots of ``dotted_face`` land at CROP_DOTS in a 112 px crop."""
    a = np.deg2rad(angle_deg)
    rotation = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return _template() @ rotation.T * scale + np.asarray(centre, np.float64)


def dotted_face(landmarks: np.ndarray, size=(200, 200), background: int = 90) -> np.ndarray:
    """A grey (H, W, 3) RGB image with coloured dots at the landmarks' eye centres and mouth centre."""
    image = np.full((size[0], size[1], 3), background, np.uint8)
    points = {
        "right_eye": landmarks[36:42].mean(0),
        "left_eye": landmarks[42:48].mean(0),
        "mouth": landmarks[48:60].mean(0),
    }
    for name, (x, y) in points.items():
        cv2.circle(image, (int(round(x)), int(round(y))), 4, DOT_COLOURS[name], -1, lineType=cv2.LINE_AA)
    return image


def dot_error(crop_rgb: np.ndarray) -> float:
    """Largest distance (px) between where each coloured dot is in a crop and CROP_DOTS."""
    worst = 0.0
    for name, colour in DOT_COLOURS.items():
        distance = np.abs(crop_rgb.astype(np.int64) - np.array(colour)).sum(axis=2)
        ys, xs = np.nonzero(distance < 150)
        if xs.size == 0:
            return float("inf")
        worst = max(worst, float(np.hypot(xs.mean() - CROP_DOTS[name][0], ys.mean() - CROP_DOTS[name][1])))
    return worst


def cartoon_frames(seed: int, count: int, canvas: int = 224) -> list:
    """``count`` frames (canvas x canvas RGB) of one cartoon face of the synthetic benchmark, 112 px wide
    in the middle of the canvas (the size BlazeFace full range finds, tests/test_blazeface.py)."""
    from emenet_tf.data import render

    rng = np.random.default_rng(seed)
    ident = render.identity(rng)
    units = rng.uniform(0, 1, (count, 12)) * (rng.random((count, 12)) < 0.3)
    frames = []
    for _, face in render.video_frames(units, ident, rng, np.zeros(count, bool), 112):
        image = np.empty((canvas, canvas, 3), np.uint8)
        image[:] = face[0, 0]
        lo = (canvas - 112) // 2
        image[lo : lo + 112, lo : lo + 112] = face
        frames.append(image)
    return frames


def write_video(path, frames: list, fps: int = 25) -> str:
    """An MJPG .avi of RGB frames."""
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened(), path
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return str(path)


# ---------------------------------------------------------------- datasets


def write_folder_csv(
    root, rows: list, header: str = "path,expr,AU1,AU12,valence,arousal", images=None
) -> str:
    """labels.csv with ``rows`` (lists of cells) under ``root``; writes a small image for each path in
    ``images`` (default: every row's first cell that is a plain relative path)."""
    lines = [header] + [",".join(str(c) for c in row) for row in rows]
    csv_path = write_text(os.path.join(root, "labels.csv"), "\n".join(lines) + "\n")
    if images is None:
        images = [
            row[0]
            for row in rows
            if row and not str(row[0]).startswith(("/", "..")) and ".." not in str(row[0])
        ]
    for i, rel in enumerate(images):
        write_image(os.path.join(root, rel), small_image(i))
    return csv_path


def write_class_folders(root, layout: dict) -> str:
    """DIR/<class>/<name> images: ``layout`` {relative path: None (image) or text (a non-image file)}."""
    for i, (rel, text) in enumerate(sorted(layout.items())):
        target = os.path.join(root, rel)
        if text is None:
            write_image(target, small_image(i))
        else:
            write_text(target, text)
    return str(root)


def write_fer2013(root, rows: list, name: str = "fer2013.csv", header: str = "emotion,pixels,Usage") -> str:
    """A FER2013 CSV: ``rows`` of (emotion, pixels or seed, usage) cells (None leaves a cell out)."""
    lines = [header]
    for row in rows:
        cells = [
            pixel_string(c) if isinstance(c, int) and k == 1 else str(c)
            for k, c in enumerate(row)
            if c is not None
        ]
        lines.append(",".join(cells))
    return write_text(os.path.join(root, name), "\n".join(lines) + "\n")


def fer_rows(count: int, usage_cycle=("Training", "Training", "PublicTest")) -> list:
    """``count`` good FER2013 rows: emotion i % 7, pixels of seed i, usages cycling."""
    return [(i % 7, i, usage_cycle[i % len(usage_cycle)]) for i in range(count)]


FERPLUS_HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"


def write_ferplus(root, vote_rows: list) -> str:
    """fer2013new.csv (``vote_rows``: (usage, name, 10 votes)) and a fer2013.csv of as many rows beside it."""
    lines = [FERPLUS_HEADER] + [",".join([u, n, *map(str, v)]) for u, n, v in vote_rows]
    write_text(os.path.join(root, "fer2013new.csv"), "\n".join(lines) + "\n")
    write_fer2013(root, [(0, i, u) for i, (u, _, _) in enumerate(vote_rows)])
    return str(root)


def write_rafdb(root, lines: list, missing=()) -> str:
    """EmoLabel/list_patition_label.txt of ``lines`` and Image/aligned/<stem>_aligned.jpg of each name
    on a well-formed line (except those in ``missing``)."""
    write_text(os.path.join(root, "EmoLabel", "list_patition_label.txt"), "\n".join(lines) + "\n")
    os.makedirs(os.path.join(root, "Image", "aligned"), exist_ok=True)
    for i, line in enumerate(lines):
        name = line.split()[0] if line.split() else ""
        if name.endswith(".jpg") and name not in missing and "/" not in name:
            write_image(os.path.join(root, "Image", "aligned", name[:-4] + "_aligned.jpg"), small_image(i))
    return str(root)


AFFECTNET_HEADER = (
    "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal"
)


def affectnet_row(
    rel: str, expression: int, valence=0.25, arousal=-0.5, landmarks=None, box=(50, 50, 100, 100)
):
    """The cells of one AffectNet CSV row; ``landmarks`` (68, 2) or None (the default face's)."""
    points = landmarks68() if landmarks is None else landmarks
    text = ";".join(f"{v:.2f}" for v in np.asarray(points).reshape(-1))
    return [rel, *map(str, box), text, str(expression), str(valence), str(arousal)]


def write_affectnet(root, train: list, validation: list, images: dict | None = None) -> str:
    """training.csv / validation.csv of rows (cell lists or raw line strings) and the images each good
    row names, drawn by ``dotted_face`` of its landmarks (``images``: {path: RGB} overrides)."""
    for name, rows in (("training.csv", train), ("validation.csv", validation)):
        lines = [AFFECTNET_HEADER] + [r if isinstance(r, str) else ",".join(r) for r in rows]
        write_text(os.path.join(root, name), "\n".join(lines) + "\n")
        for r in rows:
            if isinstance(r, str) or r[0].startswith("/") or ".." in r[0]:
                continue
            try:
                points = np.array(r[5].split(";"), np.float64).reshape(68, 2)
            except ValueError:
                points = landmarks68()
            image = (images or {}).get(r[0], dotted_face(points))
            write_image(os.path.join(root, "Manually_Annotated_Images", r[0]), image)
    return str(root)


def write_expw(root, lines: list, images: dict) -> str:
    """label/label.lst of ``lines`` and image/origin/<name> of each {name: RGB} in ``images``."""
    write_text(os.path.join(root, "label", "label.lst"), "\n".join(lines) + "\n")
    os.makedirs(os.path.join(root, "image", "origin"), exist_ok=True)
    for name, image in images.items():
        write_image(os.path.join(root, "image", "origin", name), image)
    return str(root)


def write_afew_va(root, clips: dict, missing=()) -> str:
    """``clips`` {clip: {frame key: (valence, arousal, landmarks (68, 2), or None: the default)}}:
    <clip>/<clip>.json and <clip>/<key>.png (a dotted face), except the (clip, key) in ``missing``."""
    for clip, frames in clips.items():
        record = {"frames": {}, "actor": "someone", "video_id": clip}
        for key, (valence, arousal, points) in frames.items():
            marks = landmarks68() if points is None else points
            record["frames"][key] = {
                "valence": valence,
                "arousal": arousal,
                "landmarks": np.asarray(marks).tolist(),
            }
            if (clip, key) not in missing:
                write_image(os.path.join(root, clip, f"{key}.png"), dotted_face(np.asarray(marks)))
        write_text(os.path.join(root, clip, f"{os.path.basename(clip)}.json"), json.dumps(record))
    return str(root)


def write_disfa(root, subjects: dict, video_dir: str = "Videos_LeftCamera") -> str:
    """DISFA: ``subjects`` {SN: (frames RGB list or None for no video, {au number: intensities})}:
    ActionUnit_Labels/SN/SN_au<N>.txt with lines 'k,intensity' (k from 1) and the left-camera video."""
    for subject, (frames, labels) in subjects.items():
        for number, values in labels.items():
            lines = [f"{k},{v}" for k, v in enumerate(values, start=1)]
            write_text(
                os.path.join(root, "ActionUnit_Labels", subject, f"{subject}_au{number}.txt"),
                "\n".join(lines) + "\n",
            )
        if frames is not None:
            write_video(os.path.join(root, video_dir, f"LeftVideo{subject}_comp.avi"), frames)
    os.makedirs(os.path.join(root, video_dir), exist_ok=True)
    return str(root)
