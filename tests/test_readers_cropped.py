"""Readers that cut aligned face crops (AffectNet, ExpW, AFEW-VA, DISFA) on tiny fixtures in each dataset's
own layout: labels and masks, the crop's geometry, skips by reason, bad lines, splits, the crop cache.

Crop geometry: the fixtures draw coloured dots at the eyes and mouth centre of made-up landmarks
(tests/reader_fixtures.py); the device's crop (edge.align) puts them at fixed places in the 112 px crop.
"""

import json
import logging
import os

import cv2
import numpy as np
import pytest

from emenet_tf.data.readers import afew_va, affectnet, common, crops, disfa, expw
from emenet_tf.errors import DataError
from emenet_tf.labels import AU_INDEX
from tests import reader_fixtures as fx

# Dots drawn with radius 4 and anti-aliasing, then JPEG (quality 95): their centroids in the crop move by
# well under a pixel; 2 px leaves room for that and is far below a crop that is off (tens of px).
DOT_TOL = 2.0


def raises_one_line(match, fn, *args, **kwargs) -> str:
    with pytest.raises(DataError, match=match) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def crop_at(index, row: int) -> np.ndarray:
    image = cv2.imread(os.path.join(index.data_dir, index.paths[row]))
    assert image is not None and image.shape == (crops.CROP_SIZE, crops.CROP_SIZE, 3)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def mtimes(folder) -> dict:
    out = {}
    for base, _, files in os.walk(folder):
        for name in files:
            if name.endswith((".jpg", ".png")):
                out[os.path.join(base, name)] = os.stat(os.path.join(base, name)).st_mtime_ns
    return out


def touch_later(path) -> None:
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


# ---------------------------------------------------------------- AffectNet


def test_affectnet_csv_labels_masks_and_crops(tmp_path, caplog):
    turned = fx.landmarks68(angle_deg=25.0)
    train = [
        fx.affectnet_row("1/a.jpg", 0, 0.5, -0.5),
        fx.affectnet_row("1/b.jpg", 1, landmarks=turned),  # Happy, a tilted face
        fx.affectnet_row("2/c.jpg", 6, -2, -2),  # Anger, no VA
        fx.affectnet_row("2/d.jpg", 7, 0.1, 0.2),  # contempt with VA: kept, EXPR masked
        fx.affectnet_row("2/e.jpg", 8, -2, -2),  # None without VA: dropped
        fx.affectnet_row("2/f.jpg", 10, -2, -2),  # No-face
    ]
    validation = [fx.affectnet_row("3/g.jpg", 3, 0.0, 1.0), fx.affectnet_row("3/h.jpg", 9, -2, -2)]
    root = fx.write_affectnet(tmp_path, train, validation)
    caplog.set_level(logging.WARNING)
    out = affectnet.read(root, str(tmp_path / "w"))
    t, v = out["train"], out["validation"]
    assert t.video.tolist() == [f"Manually_Annotated_Images/{p}" for p in ("1/a", "1/b", "2/c", "2/d")]
    assert t.expr.tolist() == [0, 4, 1, 0] and t.expr_mask.tolist() == [1, 1, 1, 0]
    # 0.5 and -0.5 are exact in float32: == is safe
    assert t.va_mask.tolist() == [[1, 1], [1, 1], [0, 0], [1, 1]] and t.va[0].tolist() == [0.5, -0.5]
    assert t.au_mask.sum() == 0 and t.expr_dist is None and t.data_dir == str(tmp_path / "w")
    assert v.video.tolist() == ["Manually_Annotated_Images/3/g"] and v.expr.tolist() == [6]  # Surprise
    assert t.skipped["contempt"] == 1 and t.skipped["none"] == 1 and t.skipped["no_face"] == 1
    assert v.skipped["uncertain"] == 1 and t.skipped["box_crop"] == 0
    for row in (0, 1):  # the device's crop: eyes level at fixed places, also for the tilted face
        assert fx.dot_error(crop_at(t, row)) < DOT_TOL


def test_affectnet_degenerate_landmarks_fall_back_to_the_box(tmp_path):
    same = np.tile([[100.0, 100.0]], (68, 1))  # every point at one place: eyes coincide
    rows = [
        fx.affectnet_row("1/a.jpg", 4, landmarks=fx.landmarks68()),
        fx.affectnet_row("1/b.jpg", 4, landmarks=same, box=(60, 40, 80, 120)),
        fx.affectnet_row("1/c.jpg", 4, box=(0, 0, 0, 0)),
        fx.affectnet_row("1/d.jpg", 5, box=(0, 0, 0, 0)),
    ]
    rows[2][5] = "1;2;3"  # too few numbers, and no usable box either
    rows[3][5] = ""  # no landmarks at all, no box
    root = fx.write_affectnet(tmp_path, rows, [fx.affectnet_row("2/z.jpg", 0)])
    out = affectnet.read(root, str(tmp_path / "w"))
    t = out["train"]
    assert t.video.tolist() == ["Manually_Annotated_Images/1/a", "Manually_Annotated_Images/1/b"]
    assert t.skipped["box_crop"] == 1 and t.skipped["no_face_box"] == 2
    crop = crop_at(t, 1)  # the box (side 120, centred at (100, 100)) holds the image's grey background
    assert crop.shape == (112, 112, 3)


@pytest.mark.parametrize(
    "line, match, value",
    [
        ("1/x.jpg,50,50,100,100,1;2,4,0.1", "expected 9 comma-separated fields", "1/x.jpg"),
        ("1/x.jpg,50,50,100,100,1;2,11,0.1,0.1", "expression must be an integer 0-10", "11"),
        ("1/x.jpg,50,50,100,100,1;2,4,1.5,0.1", "valence must be in", "1.5"),
        ("1/x.jpg,50,50,100,100,1;2,4,0.1,-3", "arousal must be in", "-3"),
        ("1/x.jpg,fifty,50,100,100,1;2,4,0.1,0.1", "face_x is not a number", "fifty"),
        ("../x.jpg,50,50,100,100,1;2,4,0.1,0.1", "leaves the images folder", "../x.jpg"),
        ("/etc/x.jpg,50,50,100,100,1;2,4,0.1,0.1", "absolute", "/etc/x.jpg"),
        ("1/a.jpg,50,50,100,100,1;2,4,0.1,0.1", "listed twice", "1/a.jpg"),
    ],
)
def test_affectnet_bad_rows_name_file_line_and_value(tmp_path, line, match, value):
    rows = [fx.affectnet_row("1/a.jpg", 4), line, fx.affectnet_row("1/b.jpg", 3)]
    root = fx.write_affectnet(tmp_path, rows, [fx.affectnet_row("2/z.jpg", 0)])
    message = raises_one_line(match, affectnet.read, root, str(tmp_path / "w"))
    assert message.startswith(os.path.join(root, "training.csv") + ":3: ") and value in message
    out = affectnet.read(root, str(tmp_path / "w"), skip_bad_labels=True)
    assert len(out["train"]) == 2 and out["train"].skipped["bad_line"] == 1


def test_affectnet_missing_and_unreadable_images_and_layout_errors(tmp_path):
    rows = [
        fx.affectnet_row("1/a.jpg", 4),
        fx.affectnet_row("1/gone.jpg", 4),
        fx.affectnet_row("1/bad.jpg", 4),
    ]
    root = fx.write_affectnet(tmp_path, rows, [fx.affectnet_row("2/z.jpg", 0)])
    os.remove(os.path.join(root, "Manually_Annotated_Images", "1", "gone.jpg"))
    fx.write_text(os.path.join(root, "Manually_Annotated_Images", "1", "bad.jpg"), "not a jpeg")
    out = affectnet.read(root, str(tmp_path / "w"))
    assert out["train"].skipped["no_image"] == 1 and out["train"].skipped["unreadable_image"] == 1
    assert len(out["train"]) == 1
    raises_one_line("not an AffectNet folder", affectnet.check_path, str(tmp_path / "w"))
    fx.write_text(os.path.join(root, "training.csv"), "path,expression\n")
    raises_one_line("wrong header", affectnet.read, root, str(tmp_path / "w"))


def test_affectnet_2021_npy_release(tmp_path):
    def item(folder, n, exp, val, aro, points, as_text=False):
        notes = os.path.join(folder, "annotations")
        os.makedirs(notes, exist_ok=True)
        np.save(os.path.join(notes, f"{n}_exp.npy"), np.array(str(exp)) if as_text else np.array(exp))
        np.save(os.path.join(notes, f"{n}_val.npy"), np.array(val))
        np.save(os.path.join(notes, f"{n}_aro.npy"), np.array(aro))
        np.save(os.path.join(notes, f"{n}_lnd.npy"), np.asarray(points).reshape(-1))
        fx.write_image(os.path.join(folder, "images", f"{n}.jpg"), fx.dotted_face(np.asarray(points)))

    train, val = str(tmp_path / "train_set"), str(tmp_path / "val_set")
    item(train, 0, 1, 0.25, 0.5, fx.landmarks68())
    item(train, 1, 2, -0.5, 0.0, fx.landmarks68(angle_deg=-15.0), as_text=True)  # stored as text
    item(train, 10, 7, 0.1, 0.1, fx.landmarks68())  # contempt, kept for VA
    item(val, 3, 0, 0.0, 0.0, fx.landmarks68())
    out = affectnet.read(str(tmp_path), str(tmp_path / "w"))
    t = out["train"]
    assert t.video.tolist() == ["train_set/images/0", "train_set/images/1", "train_set/images/10"]
    assert t.expr.tolist() == [4, 5, 0] and t.expr_mask.tolist() == [1, 1, 0] and t.skipped["contempt"] == 1
    np.testing.assert_allclose(t.va[1], [-0.5, 0.0], atol=1e-6)  # float32 storage of exact values
    assert fx.dot_error(crop_at(t, 1)) < DOT_TOL
    np.save(os.path.join(train, "annotations", "0_val.npy"), np.array(1.5))
    message = raises_one_line("valence must be in", affectnet.read, str(tmp_path), str(tmp_path / "w"))
    assert "0_val.npy" in message and "1.5" in message


# ---------------------------------------------------------------- ExpW


def test_expw_box_crops_label_map_and_photo_groups(tmp_path, caplog):
    photo = np.full((200, 300, 3), 60, np.uint8)
    photo[40:120, 100:160] = (255, 0, 0)  # the face box: top 40, left 100, right 160, bottom 120
    photos = {f"p{i}.jpg": photo for i in range(30)}
    lines = [f"p{i}.jpg {f} 40 100 160 120 90.5 {(i + f) % 7}" for i in range(30) for f in (0, 1)]
    lines += [
        "p0.jpg 0 40 100 160 120 90.5 3",
        "gone.jpg 0 10 10 50 50 80.0 1",
    ]  # a duplicate, a missing photo
    root = fx.write_expw(tmp_path, lines, photos)
    caplog.set_level(logging.WARNING)
    out = expw.read(root, str(tmp_path / "w"))
    t, v = out["train"], out["validation"]
    assert len(t) + len(v) == 60 and len(v) > 0
    photos_of = {s: {name.rsplit("_", 1)[0] for name in out[s].video} for s in common.SPLITS}
    assert not photos_of["train"] & photos_of["validation"]  # the faces of one photograph stay together
    assert sum(out[s].skipped["duplicate_face"] for s in common.SPLITS) == 1
    assert sum(out[s].skipped["no_image"] for s in common.SPLITS) == 1
    index = next(out[s] for s in common.SPLITS if "p1_0" in out[s].video)
    row = index.video.tolist().index("p1_0")
    assert index.expr[row] == 2  # label 1 is Disgust
    assert index.paths[row] == "image/origin/p1_0.jpg"
    crop = crop_at(index, row).astype(int)
    # box 60 wide, 80 tall, centred at (130, 80): the square of side 80 holds the red box across its middle
    # 84 px (60 / 80 of 112) and grey at its left and right edges.
    assert np.abs(crop[56, 56] - (255, 0, 0)).sum() < 30 and np.abs(crop[56, 3] - 60).sum() < 30
    assert np.abs(crop[3, 56] - (255, 0, 0)).sum() < 30 and np.abs(crop[56, 108] - 60).sum() < 30


@pytest.mark.parametrize(
    "line, match, value",
    [
        ("p0.jpg 1 40 100 160 120 90.5", "expected 8 space-separated fields", "p0.jpg 1 40"),
        ("p0.jpg 1 40 100 160 120 90.5 7", "label must be an integer 0-6", "7"),
        ("p0.jpg 1 40 160 100 120 90.5 2", "right > left", "40 160 100 120"),
        ("p0.jpg 1 40 x 160 120 90.5 2", "must be numbers", "40 x 160"),
        ("../p0.jpg 1 40 100 160 120 90.5 2", "inside image/origin", "../p0.jpg"),
    ],
)
def test_expw_bad_lines_name_file_line_and_value(tmp_path, line, match, value):
    photos = {f"p{i}.jpg": fx.small_image(i, 200) for i in range(3)}
    lines = [
        "p0.jpg 0 40 100 160 120 90.5 3",
        line,
        "p1.jpg 0 40 100 160 120 90.5 3",
        "p2.jpg 0 40 100 160 120 90.5 3",
    ]
    root = fx.write_expw(tmp_path, lines, photos)
    message = raises_one_line(match, expw.read, root, str(tmp_path / "w"))
    assert message.startswith(os.path.join(root, "label", "label.lst") + ":2: ") and value in message
    out = expw.read(root, str(tmp_path / "w"), skip_bad_labels=True)
    assert out["train"].skipped["bad_line"] == 1 and len(out["train"]) + len(out["validation"]) == 3


def test_crop_cache_is_reused_then_redone_when_the_labels_change(tmp_path, monkeypatch):
    photos = {f"p{i}.jpg": fx.small_image(i, 120) for i in range(4)}
    lines = [f"p{i}.jpg 0 10 10 90 90 90.0 {i}" for i in range(4)]
    root = fx.write_expw(tmp_path, lines, photos)
    work = str(tmp_path / "w")
    first = expw.read(root, work)
    before = mtimes(work)
    assert len(before) == 4
    monkeypatch.setattr(crops, "read_rgb", lambda path: pytest.fail(f"read {path} again"))
    second = expw.read(root, work)  # complete marker: no photograph opened, no crop written
    assert mtimes(work) == before
    assert second["train"].video.tolist() == first["train"].video.tolist()
    monkeypatch.undo()
    touch_later(os.path.join(root, "label", "label.lst"))  # the source changed: every crop redone
    expw.read(root, work)
    after = mtimes(work)
    assert after.keys() == before.keys() and all(after[k] != before[k] for k in before)
    with open(os.path.join(work, ".prepared.json")) as f:
        marker = json.load(f)
    assert (
        marker["complete"] is True
        and os.path.join(root, "label", "label.lst") in marker["signature"]["sources"]
    )


# ---------------------------------------------------------------- AFEW-VA


def test_afew_va_values_frames_crops_and_clip_splits(tmp_path, caplog):
    clips = {f"{c:03d}": {f"{k:05d}": (c - 6.0, 10.0 - k, None) for k in range(3)} for c in range(1, 13)}
    clips["005"]["00001"] = (2.5, -7.5, fx.landmarks68(angle_deg=30.0))
    root = fx.write_afew_va(tmp_path, clips, missing={("002", "00002")})
    caplog.set_level(logging.WARNING)
    out = afew_va.read(root, str(tmp_path / "w"))
    clip_of = {s: set(out[s].video.tolist()) for s in common.SPLITS}
    assert clip_of["validation"] and not clip_of["train"] & clip_of["validation"]  # clips never cross
    index = next(out[s] for s in common.SPLITS if "005" in clip_of[s])
    rows = np.flatnonzero(index.video == "005")
    assert index.frame[rows].tolist() == [1, 2, 3]  # keys 00000.. are 0-based; frames are 1-based
    # float32 of v / 10: exact to ~1e-7
    np.testing.assert_allclose(index.va[rows[1]], [0.25, -0.75], atol=1e-6)
    np.testing.assert_allclose(index.va[rows[0]], [-0.1, 1.0], atol=1e-6)
    assert index.va_mask.min() == 1 and index.expr_mask.sum() == 0 and index.au_mask.sum() == 0
    assert index.paths[rows[1]] == "005/00001.jpg" and fx.dot_error(crop_at(index, rows[1])) < DOT_TOL
    assert sum(out[s].skipped["no_image"] for s in common.SPLITS) == 1
    assert sum(len(out[s]) for s in common.SPLITS) == 12 * 3 - 1


def test_afew_va_bad_frames_nested_parts_and_degenerate_landmarks(tmp_path):
    clips = {f"01/{c:03d}": {"00000": (1.0, 1.0, None), "00001": (2.0, 2.0, None)} for c in range(1, 4)}
    root = fx.write_afew_va(tmp_path, clips)
    assert afew_va.clips(root) == ["01/001", "01/002", "01/003"]
    json_path = os.path.join(root, "01", "002", "002.json")
    with open(json_path) as f:
        record = json.load(f)
    record["frames"]["00001"]["valence"] = 11
    fx.write_text(json_path, json.dumps(record))
    message = raises_one_line(
        r"frame 00001: valence must be a number in \[-10, 10\]", afew_va.read, root, str(tmp_path / "w")
    )
    assert message.startswith(json_path) and "11" in message
    record["frames"]["00001"]["valence"] = 1
    record["frames"]["00001"]["landmarks"] = [[1, 2]] * 5
    fx.write_text(json_path, json.dumps(record))
    raises_one_line("68 \\[x, y\\] number pairs", afew_va.read, root, str(tmp_path / "w"))
    record["frames"]["00001"]["landmarks"] = [[50, 50]] * 68  # eyes at one point
    fx.write_text(json_path, json.dumps(record))
    out = afew_va.read(root, str(tmp_path / "w"))
    assert sum(out[s].skipped["degenerate_landmarks"] for s in common.SPLITS) == 1
    fx.write_text(json_path, "{not json")
    raises_one_line("not valid JSON", afew_va.read, root, str(tmp_path / "w"))


# ---------------------------------------------------------------- DISFA


@pytest.fixture
def disfa_tree(tmp_path):
    """SN001-SN003: 5 cartoon frames each (SN002's frame 3 blank: no face), labels for 6 frames (frame 6
    is past the video's end); SN004 labelled without a video. AU5 is coded but not among the 12."""
    subjects = {}
    for i, subject in enumerate(("SN001", "SN002", "SN003")):
        frames = fx.cartoon_frames(i, 5)
        if subject == "SN002":
            frames[2] = np.full_like(frames[2], 40)
        labels = {1: [0, 1, 2, 3, 5, 0], 2: [0] * 6, 5: [5] * 6, 12: [4, 4, 0, 0, 2, 2], 25: [1] * 6}
        subjects[subject] = (frames, labels)
    subjects["SN004"] = (None, {1: [1, 2]})
    return fx.write_disfa(tmp_path / "DISFA", subjects)


def test_disfa_labels_faces_skips_and_subject_splits(disfa_tree, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    out = disfa.read(disfa_tree, str(tmp_path / "w"))
    subjects = {s: set(out[s].video.tolist()) for s in common.SPLITS}
    assert subjects["train"] and subjects["validation"] and not subjects["train"] & subjects["validation"]
    index = next(out[s] for s in common.SPLITS if "SN001" in subjects[s])
    rows = np.flatnonzero(index.video == "SN001")
    assert index.frame[rows].tolist() == [1, 2, 3, 4, 5]
    au1, au12 = AU_INDEX["AU1"], AU_INDEX["AU12"]
    assert index.au[rows, au1].tolist() == [0, 0, 1, 1, 1]  # present = intensity >= 2
    assert index.au[rows, au12].tolist() == [1, 1, 0, 0, 1]
    labelled = [AU_INDEX[a] for a in ("AU1", "AU2", "AU12", "AU25")]
    assert (index.au_mask[rows][:, labelled] == 1).all() and index.au_mask[rows].sum() == 5 * 4
    assert index.paths[rows[0]] == "Videos_LeftCamera/LeftVideoSN001_comp/00001.jpg"
    assert crop_at(index, rows[0]).shape == (112, 112, 3)
    total = {r: sum(out[s].skipped[r] for s in common.SPLITS) for r in disfa.SKIP_REASONS}
    assert total["no_face"] == 1 and total["no_image"] == 3 and total["no_video"] == 2
    assert (
        total["no_au_file"] == 3 * 4 + 7 and total["frame_step"] == 0
    )  # AU4, 6, 15, 26 missing; SN004 has AU1 only
    assert sum(len(out[s]) for s in common.SPLITS) == 3 * 5 - 1


def test_disfa_bad_lines_frame_step_and_cache(disfa_tree, tmp_path, monkeypatch):
    work = str(tmp_path / "w")
    disfa.read(disfa_tree, work)
    before = mtimes(work)

    class NoDetector:
        def __init__(self, *args, **kwargs):
            pytest.fail("BlazeFace loaded although every crop is in place")

    monkeypatch.setattr("edge.blazeface.BlazeFace", NoDetector)
    disfa.read(disfa_tree, work)
    assert mtimes(work) == before
    monkeypatch.undo()
    video = os.path.join(disfa_tree, "Videos_LeftCamera", "LeftVideoSN001_comp.avi")
    touch_later(video)  # SN001 is redone, the others reused
    disfa.read(disfa_tree, work)
    after = mtimes(work)
    changed = {os.path.basename(os.path.dirname(k)) for k in before if after[k] != before[k]}
    assert changed == {"LeftVideoSN001_comp"}
    monkeypatch.setattr(disfa, "FRAME_STEP", 2)
    out = disfa.read(disfa_tree, str(tmp_path / "w2"))
    assert sum(out[s].skipped["frame_step"] for s in common.SPLITS) == 3 * 3  # frames 2, 4, 6 of each video
    label = os.path.join(disfa_tree, "ActionUnit_Labels", "SN003", "SN003_au12.txt")
    fx.write_text(label, "1,4\n2,6\n3,0\n")
    message = raises_one_line("intensity must be 0-5", disfa.read, disfa_tree, work)
    assert message.startswith(f"{label}:2: ") and "2,6" in message
    fx.write_text(label, "1,4\n1,3\n")
    raises_one_line("frame 1 listed twice", disfa.read, disfa_tree, work)
