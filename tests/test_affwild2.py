"""Tests of the Aff-Wild2 reader on small hand-written trees: labels, masks, skips, order, errors."""

import json
import logging
import os

import numpy as np
import pytest

from emenet_tf.data import affwild2
from emenet_tf.data.readers import common
from emenet_tf.errors import ConfigError, DataError
from emenet_tf.labels import AU_HEADER, EXPR_HEADER, VA_HEADER

TASK_DIR = {"au": "AU_Set", "expr": "EXPR_Set", "va": "VA_Set"}
HEADER = {"au": AU_HEADER, "expr": EXPR_HEADER, "va": VA_HEADER}
SPLIT_DIR = {"train": "Train_Set", "validation": "Validation_Set"}
AU_ROW = "1,0,0,1,-1,0,1,0,0,0,1,0"


def write_labels(root, task, video, lines, split="train", header=None, text=None):
    """Write annotations/<Task>_Set/<Split>_Set/<video>.txt; returns its path."""
    folder = root / "annotations" / TASK_DIR[task] / SPLIT_DIR[split]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{video}.txt"
    if text is None:
        text = "\n".join([HEADER[task] if header is None else header] + list(lines)) + "\n"
    path.write_bytes(text.encode())
    return str(path)


def write_images(root, video, frames):
    """Empty cropped_aligned/<video>/<00001>.jpg files: the reader only checks existence."""
    folder = root / "cropped_aligned" / video
    folder.mkdir(parents=True, exist_ok=True)
    for k in frames:
        (folder / f"{k:05d}.jpg").write_bytes(b"")


def write_files(root, video, names):
    """Empty files of the given names in cropped_aligned/<video>/ (images under any name)."""
    folder = root / "cropped_aligned" / video
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")


def counts(**nonzero):
    """The full ``skipped`` dict: every reason, 0 unless given."""
    assert set(nonzero) <= set(affwild2.SKIP_REASONS)
    return {reason: nonzero.get(reason, 0) for reason in affwild2.SKIP_REASONS}


def load_warning(caplog, root, split="train", **kwargs):
    """(index, the text of the split's one warning or "") of load_split on ``root``."""
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        index = affwild2.load_split(str(root), split, **kwargs)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) <= 1, warnings
    return index, (warnings[0] if warnings else "")


def tree(tmp_path):
    """The two top folders of an Aff-Wild2 tree."""
    (tmp_path / "cropped_aligned").mkdir(exist_ok=True)
    (tmp_path / "annotations").mkdir(exist_ok=True)
    return tmp_path


@pytest.fixture
def mixed(tmp_path):
    """vid_b: AU+EXPR+VA over 4 frames (frame 3 has no image); vid_a_left: EXPR only; vid_a_right: VA."""
    root = tree(tmp_path)
    write_labels(root, "au", "vid_b", [AU_ROW, "-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1", AU_ROW, AU_ROW])
    write_labels(root, "expr", "vid_b", ["4", "-1", "0"])  # shorter than the AU file
    write_labels(root, "va", "vid_b", ["0.5,-0.25", "-5,-5", "1,-1", "-5,0.75", "0.125,0.125"])
    write_images(root, "vid_b", [1, 2, 4, 5])
    write_labels(root, "expr", "vid_a_left", ["6", "-1", "2"])
    write_images(root, "vid_a_left", [1, 2, 3])
    write_labels(root, "va", "vid_a_right", ["-1,1"])
    write_images(root, "vid_a_right", [1])
    return root


def test_merges_tasks_with_masks_order_and_paths(mixed):
    index = affwild2.load_split(str(mixed), "train")
    # vid_a_left frame 2 is all missing; vid_b frame 2 is all missing; vid_b frame 3 has no image.
    np.testing.assert_array_equal(index.video, ["vid_a_left", "vid_a_left", "vid_a_right"] + ["vid_b"] * 3)
    np.testing.assert_array_equal(index.frame, [1, 3, 1, 1, 4, 5])
    assert index.paths[0] == "cropped_aligned/vid_a_left/00001.jpg"
    assert index.paths[-1] == "cropped_aligned/vid_b/00005.jpg"
    assert index.skipped == counts(all_missing=2, no_image=1)
    np.testing.assert_array_equal(index.expr, [6, 2, 0, 4, 0, 0])
    np.testing.assert_array_equal(index.expr_mask, [1, 1, 0, 1, 0, 0])
    au_row = np.array(AU_ROW.split(","), float)
    np.testing.assert_array_equal(index.au[3], np.maximum(au_row, 0))
    np.testing.assert_array_equal(index.au_mask[3], au_row != -1)
    np.testing.assert_array_equal(index.au_mask[:3], 0)  # vid_a_* have no AU file
    np.testing.assert_array_equal(index.au_mask[5], 0)  # vid_b frame 5: beyond the AU file
    np.testing.assert_array_equal(
        index.va, [[0, 0], [0, 0], [-1, 1], [0.5, -0.25], [0, 0.75], [0.125, 0.125]]
    )
    np.testing.assert_array_equal(index.va_mask, [[0, 0], [0, 0], [1, 1], [1, 1], [0, 1], [1, 1]])
    assert index.au.dtype == np.float32 and index.expr.dtype == np.int32 and index.frame.dtype == np.int32
    assert index.split == "train" and index.data_dir == str(mixed)
    index.validate()


def test_every_path_exists_and_counts_add_up(mixed):
    index = affwild2.load_split(str(mixed), "train")
    assert all(os.path.isfile(os.path.join(mixed, p)) for p in index.paths)
    annotated_frames = 5 + 3 + 1  # the longest file of each video
    assert len(index) + index.skipped["all_missing"] + index.skipped["no_image"] == annotated_frames


def test_check_images_false_keeps_frames_without_images(mixed):
    index = affwild2.load_split(str(mixed), "train", check_images=False)
    assert index.skipped["no_image"] == 0
    np.testing.assert_array_equal(index.frame[index.video == "vid_b"], [1, 3, 4, 5])


def test_load_splits_and_validation_split(mixed):
    write_labels(mixed, "expr", "val_v", ["3"], split="validation")
    write_images(mixed, "val_v", [1])
    out = affwild2.load_splits(str(mixed))
    assert sorted(out) == ["train", "validation"]
    assert len(out["train"]) == 6
    np.testing.assert_array_equal(out["validation"].expr, [3])
    assert out["validation"].paths[0] == "cropped_aligned/val_v/00001.jpg"


def test_crlf_whitespace_and_six_digit_frames(tmp_path):
    root = tree(tmp_path)
    write_labels(root, "va", "v", [], text=f"  {VA_HEADER} \r\n0.5,0.5\r\n 0.25 , -0.5\r\n\r\n")
    write_labels(root, "expr", "v", [], text=f"{EXPR_HEADER}\n1\n2")  # no final newline
    write_images(root, "v", [1, 2])
    index = affwild2.load_split(str(root), "train")
    np.testing.assert_array_equal(index.va, [[0.5, 0.5], [0.25, -0.5]])
    np.testing.assert_array_equal(index.expr, [1, 2])
    frames, names = affwild2._image_files(
        str(root / "cropped_aligned" / "v"), "v", common.Skips(affwild2.SKIP_REASONS)
    )
    assert frames.tolist() == [1, 2] and names.tolist() == ["00001.jpg", "00002.jpg"]


def test_read_annotation_fast_and_slow_paths_agree(tmp_path):
    lines = ["1,0,-1,1,0,0,0,0,0,0,0,1", "0,0,0,0,0,0,0,0,0,0,0,0", "-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1"]
    good = write_labels(tmp_path, "au", "good", lines)
    values, errors = affwild2.read_annotation(good, "au")
    expected = np.array([line.split(",") for line in lines], float)
    np.testing.assert_array_equal(values, expected)
    assert errors == [] and values.dtype == np.int8
    # "1.0" defeats the small-integer fast path, so the generic float path must give the same.
    floats = write_labels(tmp_path, "au", "floats", [line.replace("0", "0.0") for line in lines])
    np.testing.assert_array_equal(affwild2.read_annotation(floats, "au")[0], expected)


def test_header_only_file_is_empty(tmp_path):
    path = write_labels(tmp_path, "expr", "v", [])
    values, errors = affwild2.read_annotation(path, "expr")
    assert values.shape == (0, 1) and errors == []


def assert_names(err, path, line, value):
    msg = str(err.value)
    assert os.path.basename(path) in msg and f":{line}:" in msg and repr(value) in msg, msg
    assert err.value.line == line and err.value.value == value
    assert "\n" not in msg


@pytest.mark.parametrize(
    "task,lines,line,value,words",
    [
        ("au", [AU_ROW, "1,0,0"], 3, "1,0,0", "expected 12"),
        ("au", [AU_ROW, AU_ROW + ",1"], 3, AU_ROW + ",1", "got 13"),
        ("au", [AU_ROW.replace("1", "2", 1)], 2, "2", "AU1 label must be 0, 1 or -1"),
        ("au", [AU_ROW[:-1] + "x"], 2, "x", "AU26 is not a number"),
        ("au", [AU_ROW, "", AU_ROW], 3, "", "got 0"),
        ("expr", ["1", "7"], 3, "7", "integer in 0..6"),
        ("expr", ["2.5"], 2, "2.5", "integer in 0..6"),
        ("expr", ["-2"], 2, "-2", "integer in 0..6"),
        ("expr", ["abc"], 2, "abc", "not a number"),
        ("expr", ["1,2"], 2, "1,2", "expected 1"),
        ("va", ["0.5,1.5"], 2, "1.5", "arousal value must be in [-1, 1] or -5"),
        ("va", ["-1.01,0"], 2, "-1.01", "valence value"),
        ("va", ["nan,0"], 2, "nan", "valence value"),
        ("va", ["0.5"], 2, "0.5", "expected 2"),
        ("va", ["0,0", "0,0,0", "0"], 3, "0,0,0", "got 3"),  # right total, wrong split per line
    ],
)
def test_bad_line_errors_name_file_line_value(tmp_path, task, lines, line, value, words):
    root = tree(tmp_path)
    path = write_labels(root, task, "vid", lines)
    write_images(root, "vid", range(1, 4))
    with pytest.raises(DataError) as err:
        affwild2.load_split(str(root), "train")
    assert_names(err, path, line, value)
    assert words in str(err.value)


@pytest.mark.parametrize("header", ["AU1,AU2", EXPR_HEADER, AU_HEADER + ",", ""])
def test_wrong_header_raises_even_in_skip_mode(tmp_path, header):
    root = tree(tmp_path)
    path = write_labels(root, "au", "vid", [AU_ROW], header=header)
    write_images(root, "vid", [1])
    for skip in (False, True):
        with pytest.raises(DataError) as err:
            affwild2.load_split(str(root), "train", skip_bad_labels=skip)
        assert_names(err, path, 1, header.strip())
        assert "header" in str(err.value)


def test_skip_mode_counts_bad_lines_and_logs(tmp_path, caplog):
    root = tree(tmp_path)
    write_labels(root, "au", "vid", [AU_ROW, "9,0", AU_ROW, AU_ROW])
    write_labels(root, "expr", "vid", ["1", "1", "8", "x"])
    write_labels(root, "va", "vid", ["0,0", "0,0", "0,0", "3,0"])
    write_images(root, "vid", range(1, 5))
    with caplog.at_level(logging.WARNING):
        index = affwild2.load_split(str(root), "train", skip_bad_labels=True)
    assert index.skipped["bad_line"] == 4
    np.testing.assert_array_equal(index.frame, [1, 2, 3, 4])
    # Frame 2: bad AU line -> AU masked, EXPR and VA kept. Frame 3: bad EXPR. Frame 4: bad EXPR and VA.
    np.testing.assert_array_equal(index.au_mask.sum(1), [11, 0, 11, 11])
    np.testing.assert_array_equal(index.expr_mask, [1, 1, 0, 0])
    np.testing.assert_array_equal(index.va_mask, [[1, 1], [1, 1], [1, 1], [0, 0]])
    text = caplog.text
    assert "4 bad annotation lines" in text and "vid.txt:3" in text, text


def test_skip_mode_frame_left_without_labels_is_all_missing(tmp_path):
    root = tree(tmp_path)
    write_labels(root, "expr", "vid", ["1", "9"])
    write_images(root, "vid", [1, 2])
    index = affwild2.load_split(str(root), "train", skip_bad_labels=True)
    assert len(index) == 1
    assert index.skipped == counts(all_missing=1, bad_line=1)


def test_missing_video_folder_raises_or_is_skipped(mixed):
    path = write_labels(mixed, "expr", "ghost", ["1"])
    with pytest.raises(DataError) as err:
        affwild2.load_split(str(mixed), "train")
    assert "ghost.txt" in str(err.value) and "no images folder" in str(err.value)
    index = affwild2.load_split(str(mixed), "train", skip_bad_labels=True)
    assert index.skipped["no_video_folder"] == 1 and "ghost" not in set(index.video)
    assert len(index) == 6
    assert str(err.value).startswith(path)


@pytest.mark.parametrize("missing", ["cropped_aligned", "annotations"])
def test_check_data_dir(tmp_path, missing):
    tree(tmp_path)
    affwild2.check_data_dir(str(tmp_path))
    os.rmdir(tmp_path / missing)
    with pytest.raises(DataError, match=f"no {missing}/") as err:
        affwild2.check_data_dir(str(tmp_path))
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="not a folder"):
        affwild2.check_data_dir(str(tmp_path / "nope"))


def test_empty_or_missing_split_raises(mixed):
    with pytest.raises(DataError, match="no annotation files for split 'validation'"):
        affwild2.load_split(str(mixed), "validation")
    (mixed / "annotations" / "AU_Set" / "Validation_Set").mkdir(parents=True)
    with pytest.raises(DataError, match="no annotation files"):
        affwild2.load_split(str(mixed), "validation")
    with pytest.raises(ConfigError, match="unknown split"):
        affwild2.load_split(str(mixed), "test")


def test_strings_are_compact_object_arrays(mixed):
    index = affwild2.load_split(str(mixed), "train")
    assert index.paths.dtype == object and index.video.dtype == object
    assert index.video[3] is index.video[4]  # one str per video, shared by its rows
    np.testing.assert_array_equal(index.keys()[:2], ["vid_a_left/1", "vid_a_left/3"])
    sub = index.subset(index.video == "vid_b")
    np.testing.assert_array_equal(sub.frame, [1, 4, 5])


# ---------------------------------------------------------------- frames lost without a word (issue 10)


@pytest.mark.parametrize("names", [["1.jpg", "2.jpg", "3.jpg"], ["00001.JPG", "2.jpeg", "000003.JPEG"]])
def test_unpadded_and_upper_case_image_names_are_frames(tmp_path, names):
    root = tree(tmp_path)
    write_labels(root, "expr", "v", ["1", "2", "3"])
    write_files(root, "v", names)
    index = affwild2.load_split(str(root), "train")
    np.testing.assert_array_equal(index.frame, [1, 2, 3])
    assert index.paths.tolist() == [f"cropped_aligned/v/{n}" for n in names]
    assert all(os.path.isfile(os.path.join(root, p)) for p in index.paths)
    assert index.skipped == counts()


def test_two_images_of_one_frame_are_refused_in_one_line(tmp_path):
    root = tree(tmp_path)
    write_labels(root, "expr", "v", ["1", "2"])
    write_files(root, "v", ["1.jpg", "00001.jpg", "00002.jpg"])
    for skip in (False, True):
        with pytest.raises(DataError, match=r"two images of frame 1: 00001\.jpg and 1\.jpg") as err:
            affwild2.load_split(str(root), "train", skip_bad_labels=skip)
        assert str(err.value).startswith(str(root / "cropped_aligned" / "v")) and "\n" not in str(err.value)


def test_more_images_than_label_lines_are_counted_and_named(tmp_path, caplog):
    root = tree(tmp_path)
    write_labels(root, "expr", "v", ["1", "2", "3"])
    write_labels(root, "va", "v", ["0,0", "0,0"])
    write_images(root, "v", range(1, 7))
    index, warning = load_warning(caplog, root)
    np.testing.assert_array_equal(index.frame, [1, 2, 3])
    assert index.skipped == counts(no_label_line=3)
    examples = ["cropped_aligned/v/00004.jpg", "cropped_aligned/v/00005.jpg", "cropped_aligned/v/00006.jpg"]
    assert index.skip_examples == {"no_label_line": examples}
    assert "3 images after the last annotation line of their video" in warning, warning
    assert "cropped_aligned/v/00004.jpg" in warning and str(root) in warning


def test_images_of_a_video_the_other_split_annotates_are_not_counted(tmp_path):
    root = tree(tmp_path)
    write_labels(root, "expr", "v", ["1"])
    write_labels(root, "va", "v", ["0,0", "0,0", "0,0"], split="validation")
    write_images(root, "v", range(1, 4))
    assert affwild2.load_split(str(root), "train").skipped == counts()
    assert len(affwild2.load_split(str(root), "validation")) == 3


def test_fewer_images_than_label_lines_are_named_in_the_warning(tmp_path, caplog):
    root = tree(tmp_path)
    write_labels(root, "expr", "v", ["1", "2", "3", "4"])
    write_images(root, "v", [1, 4])
    index, warning = load_warning(caplog, root)
    np.testing.assert_array_equal(index.frame, [1, 4])
    assert index.skipped == counts(no_image=2)
    assert index.skip_examples == {"no_image": ["v frame 2", "v frame 3"]}
    assert "2 labelled frames without an image (e.g. v frame 2; v frame 3)" in warning, warning


def test_image_folders_annotated_in_no_split_are_counted(tmp_path, caplog):
    root = tree(tmp_path)
    write_labels(root, "expr", "train_v", ["1"])
    write_images(root, "train_v", [1])
    write_labels(root, "au", "val_v", [AU_ROW], split="validation")
    write_images(root, "val_v", [1])  # annotated in the other split: not an orphan
    write_images(root, "orphan", [1, 2])
    (root / "cropped_aligned" / ".cache").mkdir()  # hidden: ignored
    for split in ("train", "validation"):
        index, warning = load_warning(caplog, root, split)
        assert index.skipped == counts(no_annotation=1), split
        assert index.skip_examples == {"no_annotation": ["cropped_aligned/orphan/"]}
        assert "1 image folders annotated in no split (e.g. cropped_aligned/orphan/)" in warning, warning


def test_files_that_are_not_frame_images_are_counted(tmp_path, caplog):
    root = tree(tmp_path)
    write_labels(root, "expr", "v", ["1", "2"])
    write_files(root, "v", ["00001.jpg", "00002.png", "notes.txt", "x1.jpg", ".DS_Store", "²3.jpg"])
    (root / "cropped_aligned" / "faces.zip").write_bytes(b"")
    index, warning = load_warning(caplog, root)
    np.testing.assert_array_equal(index.frame, [1])
    assert index.skipped == counts(no_image=1, not_frame_image=5)
    assert index.skip_examples["not_frame_image"] == [
        "cropped_aligned/faces.zip",
        "cropped_aligned/v/00002.png",
        "cropped_aligned/v/notes.txt",
    ]
    assert "5 files that are not frame images" in warning, warning


def test_one_warning_per_split_and_a_json_summary(mixed, caplog):
    write_images(mixed, "orphan", [1])
    write_images(mixed, "vid_a_right", [2, 3])  # beyond its one label line
    write_labels(mixed, "expr", "ghost", ["1"])  # no image folder
    index, warning = load_warning(caplog, mixed, skip_bad_labels=True)
    assert index.skipped == counts(
        all_missing=2, no_image=1, no_video_folder=1, no_label_line=2, no_annotation=1
    )
    for reason, n in index.skipped.items():
        assert (f"{n} {affwild2.SKIP_REASONS[reason]}" in warning) == (n > 0), (reason, warning)
    summary = json.loads(json.dumps(index.summary()))
    assert summary["skipped"] == index.skipped
    assert summary["skip_examples"]["no_video_folder"][0].endswith("ghost.txt")
    assert summary["skip_examples"]["no_label_line"] == [
        "cropped_aligned/vid_a_right/00002.jpg",
        "cropped_aligned/vid_a_right/00003.jpg",
    ]
    # A subset keeps the reader's record of what it skipped.
    assert index.subset(index.video == "vid_b").skip_examples == index.skip_examples


def test_examples_are_capped_but_counts_are_not(tmp_path):
    root = tree(tmp_path)
    write_labels(root, "expr", "v", ["1"])
    write_images(root, "v", range(1, 101))
    index = affwild2.load_split(str(root), "train")
    assert index.skipped["no_label_line"] == 99
    assert index.skip_examples["no_label_line"] == [f"cropped_aligned/v/{k:05d}.jpg" for k in (2, 3, 4)]
