"""Readers of the public datasets (emenet_tf.data.readers) on tiny fixtures in each dataset's own layout:
the shared parts (paths, split rule, label maps, crop cache) and the readers that need no face crop
(folder, FER2013, FER+, RAF-DB). The cropping readers are in test_readers_cropped.py."""

import logging
import os
import zlib

import cv2
import numpy as np
import pytest

from emenet_tf.data import sources
from emenet_tf.data.readers import common, crops, fer2013, ferplus, folder, labelmaps, rafdb
from emenet_tf.errors import DataError
from emenet_tf.labels import AU_INDEX, AU_NAMES, EXPR_NAMES
from tests import reader_fixtures as fx

READER_NAMES = ("fer2013", "ferplus", "rafdb", "affectnet", "expw", "disfa", "afew_va", "folder")


def raises_one_line(match, fn, *args, **kwargs) -> str:
    """The message of the DataError ``fn`` raises: one line, matching ``match``."""
    with pytest.raises(DataError, match=match) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def warnings_of(caplog, fn, *args, **kwargs):
    """(fn's result, the WARNING messages it logged)."""
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        out = fn(*args, **kwargs)
    return out, [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# ---------------------------------------------------------------- registry, paths, split rule


def test_every_reader_is_registered_and_has_the_protocol():
    for name in READER_NAMES:
        module = sources.reader(name)
        assert sources.READERS[name][0] == f"readers.{name}"
        assert callable(module.read) and callable(module.check_path)
        assert common.BAD_LINE not in module.SKIP_REASONS
    assert sources.parse("folder:/x/labels.csv,fer2013:/y:0.5")[1].weight == 0.5


def test_readers_and_their_path_checks_need_no_tensorflow(tmp_path):
    """sources.check runs each reader's check_path before TensorFlow loads (a wrong path fails at once)."""
    import subprocess
    import sys

    path = fx.write_folder_csv(tmp_path, [["x.jpg", "happy", "", "", "", ""]])
    code = (
        "import sys\n"
        "from emenet_tf.data import sources\n"
        f"for name in {READER_NAMES!r}: sources.reader(name)\n"
        f"sources.check('folder:{path}')\n"
        "assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize(
    "value, expected",
    [
        ("a/b.jpg", "a/b.jpg"),
        ("./a//b.jpg", "a/b.jpg"),
        ("a\\b.jpg", "a/b.jpg"),
        ("a/../b.jpg", "b.jpg"),
        ("../b.jpg", None),
        ("a/../../b.jpg", None),
        ("/etc/passwd", None),
        ("C:/x.jpg", None),
        ("", None),
    ],
)
def test_relative_path_refuses_what_leaves_the_root(value, expected):
    assert common.relative_path(value) == expected


def test_rule_split_is_by_group_crc32_and_deterministic():
    groups = [f"person{i // 3}" for i in range(3000)]  # 1000 groups of 3 rows
    split = common.rule_split(groups, "x", "how")
    for g in set(groups):
        rows = [s for s, h in zip(split, groups, strict=True) if h == g]
        assert len(set(rows)) == 1  # a group never crosses splits
        assert rows[0] == ("validation" if zlib.crc32(g.encode()) % 10 == 0 else "train")
    share = np.mean(split == "validation")
    assert 0.07 < share < 0.13  # about 10% of 1000 groups (binomial sd ~1%)
    assert (common.rule_split(groups, "x", "how") == split).all()


def test_rule_split_of_few_groups_fills_both_splits_and_refuses_one():
    for names in (["a", "b"], ["a", "b", "c"], [f"g{i}" for i in range(9)]):
        split = common.rule_split(names, "x", "how")
        assert set(split) == {"train", "validation"}
    message = raises_one_line(
        "too small to split", common.rule_split, ["only", "only"], "/data/x", "add a split"
    )
    assert "/data/x" in message and "add a split" in message


# ---------------------------------------------------------------- the one table of label maps

# The project's class of each source class name, written out (a map that moved a class would fail here).
CANONICAL = {
    "angry": "Anger",
    "anger": "Anger",
    "disgust": "Disgust",
    "fear": "Fear",
    "happy": "Happiness",
    "happiness": "Happiness",
    "sad": "Sadness",
    "sadness": "Sadness",
    "surprise": "Surprise",
    "neutral": "Neutral",
}


def test_every_label_map_agrees_with_the_class_names():
    for dataset, classes in labelmaps.MAPS.items():
        for name, target in classes:
            if isinstance(target, int):
                assert EXPR_NAMES[target] == CANONICAL[name.lower()], (dataset, name)
            else:
                assert name.lower() not in CANONICAL and target in (
                    "contempt",
                    "none",
                    "uncertain",
                    "no_face",
                    "unknown",
                )
    for name, target in labelmaps.FOLDER.items():
        assert EXPR_NAMES[target] == CANONICAL[name]
    for number, column in labelmaps.DISFA.items():
        assert AU_NAMES[column] == f"AU{number}"
    assert set(labelmaps.DISFA) == {n for n in labelmaps.DISFA_AUS if f"AU{n}" in AU_INDEX}
    # METHOD.md's lists, as written there.
    assert labelmaps.targets("fer2013").tolist() == [1, 2, 3, 4, 5, 6, 0]
    assert labelmaps.targets("rafdb").tolist() == [6, 3, 2, 4, 5, 1, 0]
    assert labelmaps.targets("affectnet").tolist() == [0, 4, 5, 6, 3, 2, 1, -1, -1, -1, -1]
    assert labelmaps.targets("expw").tolist() == labelmaps.targets("fer2013").tolist()
    assert [
        n for n, _ in labelmaps.FERPLUS
    ] == "neutral happiness surprise sadness anger disgust fear contempt unknown NF".split()


# ---------------------------------------------------------------- folder: the CSV


def test_folder_csv_labels_masks_and_order(tmp_path):
    rows = [
        ["b/img2.jpg", "Happy", "1", "", "0.5", "-0.25"],
        ["a/img1.PNG", "3", "", "0", "", ""],  # Fear by index, AU12 only
        ["a/img0.jpeg", "SADNESS", "0", "1", "", "1"],
        ["c/img3.bmp", "", "1", "1", "", ""],
    ]
    path = fx.write_folder_csv(tmp_path, rows)
    out = folder.read(path, str(tmp_path / "work"))
    both = {s: out[s] for s in common.SPLITS}
    assert sum(len(i) for i in both.values()) == 4
    index = next(i for i in both.values() if "a/img0" in i.video.tolist())
    everything = np.concatenate([i.video for i in both.values()])
    assert sorted(everything.tolist()) == ["a/img0", "a/img1", "b/img2", "c/img3"]
    assert all(list(i.video) == sorted(i.video) for i in both.values())  # sorted by (video, frame)
    assert index.data_dir == str(tmp_path) and (index.frame == 1).all()
    merged = {v: (i, r) for i in both.values() for r, v in enumerate(i.video.tolist())}
    idx, r = merged["a/img0"]
    assert idx.paths[r] == "a/img0.jpeg" and idx.expr[r] == 5 and idx.expr_mask[r] == 1
    assert (
        idx.au[r, AU_INDEX["AU12"]] == 1 and idx.au_mask[r].sum() == 2 and idx.va_mask[r].tolist() == [0, 1]
    )
    idx, r = merged["b/img2"]
    # 0.5 and -0.25 are exact in float32, so == is safe here (other values get a tolerance)
    assert idx.expr[r] == 4 and idx.va[r].tolist() == [0.5, -0.25] and idx.va_mask[r].tolist() == [1, 1]
    idx, r = merged["a/img1"]
    assert idx.expr[r] == 3 and idx.au_mask[r, AU_INDEX["AU1"]] == 0 and idx.au_mask[r, AU_INDEX["AU12"]] == 1
    idx, r = merged["c/img3"]
    assert idx.expr_mask[r] == 0 and idx.expr[r] == 0  # missing: masked, value 0
    assert idx.expr_dist is None


@pytest.mark.parametrize(
    "row, match, value",
    [
        (["x.jpg", "happy", "1", "1", "0"], "expected 6 comma-separated fields", "x.jpg,happy,1,1,0"),
        (["x.jpg", "joy", "", "", "", ""], "expr must be", "joy"),
        (["x.jpg", "7", "", "", "", ""], "expr must be", "7"),
        (["x.jpg", "", "2", "", "", ""], "AU1 must be 0 or 1", "2"),
        (["x.jpg", "", "", "", "1.5", ""], "valence must be a number in", "1.5"),
        (["x.jpg", "", "", "", "", "high"], "arousal must be a number", "high"),
        (["../x.jpg", "happy", "", "", "", ""], "leaves the CSV's folder", "../x.jpg"),
        (["/abs/x.jpg", "happy", "", "", "", ""], "absolute", "/abs/x.jpg"),
        (["x.txt", "happy", "", "", "", ""], "not an image file", "x.txt"),
    ],
)
def test_folder_csv_bad_rows_name_file_line_and_value(tmp_path, caplog, row, match, value):
    good = [[f"ok{i}.jpg", "happy", "", "", "", ""] for i in range(3)]
    path = fx.write_folder_csv(
        tmp_path, [good[0], row, *good[1:]], images=["ok0.jpg", "ok1.jpg", "ok2.jpg", "x.jpg"]
    )
    message = raises_one_line(match, folder.read, path, str(tmp_path / "work"))
    assert message.startswith(f"{path}:3: ") and repr(value) in message
    out, logged = warnings_of(caplog, folder.read, path, str(tmp_path / "work"), skip_bad_labels=True)
    assert sum(len(i) for i in out.values()) == 3
    assert out["train"].skipped["bad_line"] == 1 and out["validation"].skipped["bad_line"] == 0
    assert match.split()[0] in out["train"].skip_examples["bad_line"][0]
    assert any("bad lines" in w for w in logged)


def test_folder_csv_repeated_path_unknown_column_and_split_values(tmp_path):
    for other in ("./x.jpg", "x.png"):  # the same image, or the same video (the path without extension)
        rows = [
            ["x.jpg", "happy", "", "", "", ""],
            ["y.jpg", "sad", "", "", "", ""],
            [other, "fear", "", "", "", ""],
        ]
        path = fx.write_folder_csv(tmp_path, rows)
        message = raises_one_line("listed twice", folder.read, path, str(tmp_path / "w"))
        assert ":4: " in message and "first on line 2" in message
    path = fx.write_folder_csv(tmp_path, [["x.jpg", "happy", "me"]], header="path,expr,subject")
    assert "'subject'" in raises_one_line("unknown columns", folder.read, path, str(tmp_path / "w"))
    assert "'subject'" in raises_one_line("unknown columns", folder.check_path, path)
    path = fx.write_folder_csv(tmp_path, [["x.jpg", "happy", "test"]], header="path,expr,split")
    assert "'test'" in raises_one_line(
        "split must be train or validation", folder.read, path, str(tmp_path / "w")
    )


def test_folder_csv_skips_are_counted_by_reason(tmp_path, caplog):
    rows = [
        ["a.jpg", "happy", "", "", "", "", "train"],
        ["gone.jpg", "happy", "", "", "", "", "train"],  # no image file
        ["b.jpg", "", "", "", "", "", "train"],  # no label at all
        ["c.jpg", "contempt", "", "", "0.5", "0.5", "validation"],  # kept for VA, EXPR masked
        ["d.jpg", "Contempt", "", "", "", "", "validation"],  # nothing left: dropped
        ["e.jpg", "no-face", "", "", "", "", "train"],
        ["f.jpg", "neutral", "", "", "", "", "validation"],
    ]
    path = fx.write_folder_csv(
        tmp_path,
        rows,
        header="path,expr,AU1,AU12,valence,arousal,split",
        images=[r[0] for r in rows if r[0] != "gone.jpg"],
    )
    out, logged = warnings_of(caplog, folder.read, path, str(tmp_path / "w"))
    train, val = out["train"], out["validation"]
    assert train.video.tolist() == ["a"] and val.video.tolist() == ["c", "f"]
    assert val.expr_mask.tolist() == [0, 1] and val.va_mask[0].tolist() == [1, 1]
    assert train.skipped == {**dict.fromkeys(train.skipped, 0), "no_image": 1, "no_label": 1, "no_face": 1}
    assert val.skipped == {**dict.fromkeys(val.skipped, 0), "contempt": 2}
    assert train.skip_examples["no_image"] == ["line 3: gone.jpg"]
    assert set(train.skipped) == set(common.COMMON_REASONS) | set(folder.SKIP_REASONS)
    assert len(logged) == 2 and "1 rows whose image file is missing (e.g. line 3: gone.jpg)" in logged[0]


def test_folder_csv_groups_never_cross_splits_and_one_group_is_refused(tmp_path):
    rows = [[f"p{i}.jpg", "happy", "", "", "", "", f"person{i % 25}"] for i in range(200)]
    path = fx.write_folder_csv(tmp_path, rows, header="path,expr,AU1,AU12,valence,arousal,group")
    out = folder.read(path, str(tmp_path / "w"))
    people = {s: {f"person{int(v[1:]) % 25}" for v in out[s].video} for s in common.SPLITS}
    assert people["train"] and people["validation"] and not people["train"] & people["validation"]
    for person in people["validation"]:
        assert zlib.crc32(person.encode()) % 10 == 0
    one = [["p0.jpg", "happy", "", "", "", "", "me"], ["p1.jpg", "sad", "", "", "", "", "me"]]
    path = fx.write_folder_csv(tmp_path / "one", one, header="path,expr,AU1,AU12,valence,arousal,source")
    assert "split" in raises_one_line("too small to split", folder.read, path, str(tmp_path / "w"))


# ---------------------------------------------------------------- folder: class sub-folders


def test_folder_of_class_folders(tmp_path, caplog):
    layout = {f"happy/h{i}.jpg": None for i in range(12)}
    layout.update({"Sad/s0.PNG": None, "sad/deep/s1.jpeg": None, "surprise/x.GIF": None, "angry/a.bmp": None})
    layout.update(
        {"cats/c.jpg": None, "happy/notes.txt": "text", "readme.md": "text", "contempt/k.jpg": None}
    )
    layout["happy/h0.png"] = None  # h0.jpg's video again: counted, not indexed
    root = fx.write_class_folders(tmp_path / "photos", layout)
    out, logged = warnings_of(caplog, folder.read, root, str(tmp_path / "w"))
    videos = sorted(v for s in common.SPLITS for v in out[s].video.tolist())
    assert len(videos) == 16 and "Sad/s0" in videos and "sad/deep/s1" in videos
    for s in common.SPLITS:
        index = out[s]
        for v, e in zip(index.video.tolist(), index.expr.tolist(), strict=True):
            expected = {"happy": 4, "Sad": 5, "sad": 5, "surprise": 6, "angry": 1}[v.split("/")[0]]
            assert e == expected
    total = {r: sum(out[s].skipped[r] for s in common.SPLITS) for r in out["train"].skipped}
    assert total["unknown_class"] == 1 and total["not_image"] == 1 and total["loose_file"] == 1
    assert total["contempt"] == 1 and total["same_name"] == 1 and sum(total.values()) == 5
    assert len(out["validation"]) >= 1


def test_folder_of_split_folders(tmp_path):
    layout = {f"train/happy/t{i}.jpg": None for i in range(3)}
    layout.update(
        {"val/happy/v0.jpg": None, "val/sad/v1.jpg": None, "test/sad/x.jpg": None, "Extra/y.jpg": None}
    )
    root = fx.write_class_folders(tmp_path / "photos", layout)
    out = folder.read(root, str(tmp_path / "w"))
    assert out["train"].video.tolist() == ["train/happy/t0", "train/happy/t1", "train/happy/t2"]
    assert out["validation"].video.tolist() == ["val/happy/v0", "val/sad/v1"]
    assert out["validation"].skipped["test_split"] == 1 and out["train"].skipped["unknown_class"] == 1
    layout = {f"Train/happy/t{i}.jpg": None for i in range(20)}  # no validation folder: the split rule
    root = fx.write_class_folders(tmp_path / "train_only", layout)
    out = folder.read(root, str(tmp_path / "w"))
    assert len(out["train"]) + len(out["validation"]) == 20 and len(out["validation"]) > 0


# ---------------------------------------------------------------- FER2013


def test_fer2013_usage_splits_label_map_and_lossless_pixels(tmp_path, caplog):
    path = fx.write_fer2013(tmp_path, fx.fer_rows(14, ("Training", "PublicTest", "PrivateTest")))
    work = tmp_path / "work"
    out, logged = warnings_of(caplog, fer2013.read, path, str(work))
    train, val = out["train"], out["validation"]
    assert len(train) == 5 and len(val) == 5 and val.skipped["test_split"] == 4
    assert train.video.tolist()[:2] == ["fer2013/00001", "fer2013/00004"]
    assert train.expr.tolist()[0] == 1  # emotion 0 is Angry: Anger
    for index in (train, val):
        for p, v in zip(index.paths.tolist(), index.video.tolist(), strict=True):
            row = int(v.split("/")[1]) - 1
            expected = np.array(fx.pixel_string(row).split(), np.uint8).reshape(48, 48)
            image = cv2.imread(os.path.join(str(work), p), cv2.IMREAD_UNCHANGED)
            assert image.shape == (48, 48) and np.array_equal(image, expected)  # PNG: lossless, grey
            assert index.expr[index.video.tolist().index(v)] == labelmaps.targets("fer2013")[row % 7]
    assert index.data_dir == str(work) and len(logged) == 1


@pytest.mark.parametrize(
    "row, match, value",
    [
        ((7, 1, "Training"), "emotion must be an integer 0-6", "7"),
        (("x", 1, "Training"), "emotion must be", "x"),
        ((3, "1 2 3", "Training"), "got 3 numbers", "1 2 3"),
        ((3, "1 2 a", "Training"), "2304 space-separated integers", "1 2 a"),
        ((3, " ".join(["300"] * 2304), "Training"), "integers 0-255", "300 300 300"),
        ((3, 1, "Testing"), "Usage must be", "Testing"),
    ],
)
def test_fer2013_bad_rows_name_file_line_and_value(tmp_path, row, match, value):
    path = fx.write_fer2013(tmp_path, [*fx.fer_rows(3), row, *fx.fer_rows(3)])
    message = raises_one_line(match, fer2013.read, path, str(tmp_path / "w"))
    assert message.startswith(f"{path}:5: ") and value in message
    out = fer2013.read(path, str(tmp_path / "w2"), skip_bad_labels=True)
    assert sum(out[s].skipped["bad_line"] for s in common.SPLITS) == 1


def test_fer2013_train_and_test_csv_layout(tmp_path):
    fx.write_fer2013(tmp_path, [(i % 7, i) for i in range(30)], name="train.csv", header="emotion,pixels")
    fx.write_fer2013(tmp_path, [(None, i) for i in range(4)], name="test.csv", header="pixels")
    out = fer2013.read(str(tmp_path), str(tmp_path / "w"))
    assert len(out["train"]) + len(out["validation"]) == 30 and len(out["validation"]) > 0
    assert out["validation"].skipped["unlabelled"] == 4
    fx.write_fer2013(tmp_path, [(i % 7, i) for i in range(4)], name="test.csv", header="emotion,pixels")
    out = fer2013.read(str(tmp_path), str(tmp_path / "w2"))
    assert len(out["train"]) == 30 and out["validation"].video.tolist()[0] == "test/00001"
    # icml_face_data.csv: the same columns with spaces after the commas
    icml = fx.write_fer2013(
        tmp_path / "icml", fx.fer_rows(6), name="icml_face_data.csv", header="emotion, Usage, pixels"
    )
    text = open(icml).read().splitlines()
    rows = [line.split(",") for line in text[1:]]
    fx.write_text(icml, "\n".join([text[0]] + [f"{e}, {u}, {p}" for e, p, u in rows]) + "\n")
    out = fer2013.read(str(tmp_path / "icml"), str(tmp_path / "w3"))
    assert len(out["train"]) == 4 and len(out["validation"]) == 2
    raises_one_line("not a FER2013 folder", fer2013.check_path, str(tmp_path / "w3"))


def test_fer2013_pngs_are_reused_then_redone_when_the_csv_changes(tmp_path, monkeypatch):
    path = fx.write_fer2013(tmp_path, fx.fer_rows(6))
    work = str(tmp_path / "w")
    fer2013.read(path, work)
    png = os.path.join(work, "fer2013", "00001.png")
    before = os.stat(png).st_mtime_ns
    calls = []
    monkeypatch.setattr(fer2013, "pixels", lambda *a: calls.append(a) or np.zeros((48, 48), np.uint8))
    fer2013.read(path, work)
    assert calls == [] and os.stat(png).st_mtime_ns == before  # complete marker: nothing decoded
    monkeypatch.undo()
    rows = fx.fer_rows(6)
    rows[0] = (0, 99, "Training")  # new pixels for row 1
    fx.write_fer2013(tmp_path, rows)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a later mtime even on a coarse clock
    fer2013.read(path, work)
    expected = np.array(fx.pixel_string(99).split(), np.uint8).reshape(48, 48)
    assert np.array_equal(cv2.imread(png, cv2.IMREAD_UNCHANGED), expected)


# ---------------------------------------------------------------- FER+


def votes(
    neutral=0, happiness=0, surprise=0, sadness=0, anger=0, disgust=0, fear=0, contempt=0, unknown=0, nf=0
):
    return [neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, nf]


def test_ferplus_distribution_majority_and_skips(tmp_path, caplog):
    rows = [
        ("Training", "fer0000000.png", votes(neutral=4, happiness=2, contempt=3, unknown=1)),
        ("Training", "fer0000001.png", votes(anger=3, sadness=3, contempt=4)),  # a tie
        ("Training", "", votes(nf=10)),  # blank name
        ("Training", "fer0000003.png", votes(neutral=4, unknown=3, nf=3)),  # 6 of 10 unsure
        ("PublicTest", "fer0000004.png", votes(surprise=5, unknown=5)),  # exactly half: kept
        ("Training", "fer0000005.png", votes(contempt=6, unknown=4)),  # nothing left of the 7
        ("PrivateTest", "fer0000006.png", votes(fear=10)),
        ("Training", "fer0000007.png", votes(disgust=10)),
    ]
    root = fx.write_ferplus(tmp_path, rows)
    out, logged = warnings_of(caplog, ferplus.read, root, str(tmp_path / "w"))
    train, val = out["train"], out["validation"]
    assert train.video.tolist() == [
        "FER2013Train/fer0000000",
        "FER2013Train/fer0000001",
        "FER2013Train/fer0000007",
    ]
    # Row 1 by hand: contempt (3) and unknown (1) dropped, 6 votes left: neutral 4/6, happiness 2/6.
    # float32 storage: 1e-6 absolute is far below any vote fraction's difference (1/10).
    np.testing.assert_allclose(train.expr_dist[0], [4 / 6, 0, 0, 0, 2 / 6, 0, 0], atol=1e-6)
    np.testing.assert_allclose(train.expr_dist[1], [0, 0.5, 0, 0, 0, 0.5, 0], atol=1e-6)
    assert train.expr.tolist() == [0, 1, 2]  # the tie anger / sadness goes to Anger (first in our order)
    assert val.video.tolist() == ["FER2013Valid/fer0000004"] and val.expr.tolist() == [6]
    np.testing.assert_allclose(val.expr_dist.sum(axis=1), 1.0, atol=1e-6)
    assert train.skipped["blank_name"] == 1 and train.skipped["unknown_or_no_face"] == 1
    assert train.skipped["no_expression_votes"] == 1 and val.skipped["test_split"] == 1
    assert train.skipped["contempt_votes"] == 3 + 4 + 6 and val.skipped["contempt_votes"] == 0
    assert train.expr_dist_mask.tolist() == [1, 1, 1] and len(logged) == 2
    png = cv2.imread(os.path.join(str(tmp_path / "w"), train.paths[0]), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(png, np.array(fx.pixel_string(0).split(), np.uint8).reshape(48, 48))


@pytest.mark.parametrize(
    "cells, match, value",
    [
        ("Training,fer9.png,1,2,3,0,0,0,0,0,0,3", "add up to 10", "1,2,3,0,0,0,0,0,0,3"),
        ("Training,fer9.png,1,2,3,0,0,0,0,0,0", "expected 12 comma-separated fields", "fer9.png"),
        ("Training,fer9.png,10,0,0,0,0,0,0,0,0,x", "non-negative integers", "x"),
        ("Train,fer9.png,10,0,0,0,0,0,0,0,0,0", "Usage must be", "Train"),
        ("Training,../fer9.png,10,0,0,0,0,0,0,0,0,0", "plain image file name", "../fer9.png"),
        ("Training,fer0.jpg,10,0,0,0,0,0,0,0,0,0", r"listed twice \(first on line 2\)", "fer0.jpg"),
    ],
)
def test_ferplus_bad_rows_name_file_line_and_value(tmp_path, cells, match, value):
    root = fx.write_ferplus(tmp_path, [("Training", f"fer{i}.png", votes(happiness=10)) for i in range(3)])
    labels = os.path.join(root, "fer2013new.csv")
    text = open(labels).read().splitlines()
    fx.write_text(labels, "\n".join(text[:2] + [cells] + text[3:]) + "\n")
    message = raises_one_line(match, ferplus.read, root, str(tmp_path / "w"))
    assert message.startswith(f"{labels}:3: ") and value in message
    out = ferplus.read(root, str(tmp_path / "w"), skip_bad_labels=True)
    assert len(out["train"]) == 2 and out["train"].skipped["bad_line"] == 1


def test_ferplus_joins_by_row_and_finds_fer2013_in_the_parent(tmp_path):
    rows = [("Training", f"fer{i:07d}.png", votes(happiness=10)) for i in range(4)] + [
        ("PublicTest", "fer0000004.png", votes(sadness=10))
    ]
    fx.write_ferplus(tmp_path / "FERPlus", rows)
    os.replace(tmp_path / "FERPlus" / "fer2013.csv", tmp_path / "fer2013.csv")  # the parent folder
    out = ferplus.read(str(tmp_path / "FERPlus"), str(tmp_path / "w"))
    assert len(out["train"]) == 4 and out["validation"].expr.tolist() == [5]
    fx.write_fer2013(tmp_path, fx.fer_rows(6))  # 6 pixel rows for 5 vote rows
    message = raises_one_line("row by row", ferplus.read, str(tmp_path / "FERPlus"), str(tmp_path / "w2"))
    assert "6 data rows" in message and "has 5" in message
    os.remove(tmp_path / "fer2013.csv")
    message = raises_one_line("no fer2013.csv", ferplus.check_path, str(tmp_path / "FERPlus"))
    assert str(tmp_path / "FERPlus" / "fer2013.csv") in message and str(tmp_path / "fer2013.csv") in message


# ---------------------------------------------------------------- RAF-DB


def test_rafdb_splits_label_map_and_missing_images(tmp_path, caplog):
    lines = [
        "train_00001.jpg 1",
        "train_00002.jpg 7",
        "train_00003.jpg 4",
        "test_0001.jpg 6",
        "test_0002.jpg 3",
    ]
    root = fx.write_rafdb(tmp_path, lines, missing=("train_00003.jpg",))
    out, logged = warnings_of(caplog, rafdb.read, root, str(tmp_path / "w"))
    train, val = out["train"], out["validation"]
    assert train.video.tolist() == ["train_00001", "train_00002"] and train.expr.tolist() == [
        6,
        0,
    ]  # Surprise, Neutral
    assert val.video.tolist() == ["test_0001", "test_0002"] and val.expr.tolist() == [1, 2]  # Anger, Disgust
    assert train.paths[0] == "Image/aligned/train_00001_aligned.jpg" and train.data_dir == root
    assert train.skipped["no_image"] == 1 and "train_00003_aligned.jpg" in logged[0]


@pytest.mark.parametrize(
    "line, match, value",
    [
        ("train_00009.jpg 8", "label must be an integer 1-7", "8"),
        ("train_00009.jpg 0", "label must be", "0"),
        ("val_0001.jpg 3", "train_<digits>.jpg or test_<digits>.jpg", "val_0001.jpg"),
        ("../train_00009.jpg 3", "train_<digits>.jpg", "../train_00009.jpg"),
        ("train_00009.jpg 3 x", "expected 2 space-separated fields", "train_00009.jpg 3 x"),
        ("train_00001.jpg 2", "listed twice", "train_00001.jpg"),
    ],
)
def test_rafdb_bad_lines_name_file_line_and_value(tmp_path, line, match, value):
    root = fx.write_rafdb(tmp_path, ["train_00001.jpg 1", line, "test_0001.jpg 2", "train_00002.jpg 3"])
    message = raises_one_line(match, rafdb.read, root, str(tmp_path / "w"))
    assert (
        message.startswith(os.path.join(root, "EmoLabel", "list_patition_label.txt") + ":2: ")
        and value in message
    )
    out = rafdb.read(root, str(tmp_path / "w"), skip_bad_labels=True)
    assert len(out["train"]) == 2 and out["train"].skipped["bad_line"] == 1
    raises_one_line("not a RAF-DB basic folder", rafdb.check_path, str(tmp_path / "w"))


# ---------------------------------------------------------------- the crop cache


def test_preparation_reuses_complete_keeps_partial_and_redoes_stale(tmp_path):
    source = fx.write_text(tmp_path / "labels.txt", "a\n")
    work = str(tmp_path / "w")
    image = np.zeros((4, 4, 3), np.uint8)
    prep = crops.Preparation(work, ".m.json", [source])
    assert prep.needs("x.jpg") and not prep.complete
    prep.write("x.jpg", image)
    prep.fail("y.jpg", "no_face", "y")
    assert not any(n.startswith(".tmp") for n in os.listdir(work))  # written to a temporary name, renamed
    partial = crops.Preparation(work, ".m.json", [source])  # same source, not finished
    assert not partial.needs("x.jpg") and partial.needs("y.jpg")
    partial.fail("y.jpg", "no_face", "y")
    partial.finish()
    again = crops.Preparation(work, ".m.json", [source])
    assert again.complete and not again.needs("x.jpg") and not again.needs("new.jpg")
    assert again.failure("y.jpg") == ("no_face", "y") and again.failure("x.jpg") is None
    st = os.stat(source)
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the source changed
    stale = crops.Preparation(work, ".m.json", [source])
    assert not stale.complete and stale.needs("x.jpg") and stale.failure("y.jpg") is None
    other = crops.Preparation(work, ".m.json", [source], settings={"frame_step": 2})
    assert other.needs("x.jpg")
