"""Face preparation (emenet_tf.prepare): raw photographs -> aligned crops + labels.csv, the same crop as the
device's, and (slow) the documented path from photographs to a trained, evaluated, exported EXPR-only model."""

import csv
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from skimage import data as photos  # public-domain photographs (scikit-image ships them)

from edge.faces import FaceDetector
from emenet_tf import prepare
from emenet_tf.errors import DataError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")


def _write(path, rgb):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    cv2.imwrite(str(path), rgb[..., ::-1])
    return str(path)


def _turned(rgb, angle):
    h, w = rgb.shape[:2]
    return cv2.warpAffine(rgb, cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0), (w, h))


@pytest.fixture
def photo_csv(tmp_path):
    root = tmp_path / "photos"
    _write(root / "a" / "astronaut.jpg", photos.astronaut())
    _write(root / "a" / "turned.png", _turned(photos.astronaut(), 15))
    _write(root / "coffee.jpg", photos.coffee())
    (root / "broken.jpg").write_bytes(b"not an image")
    table = root / "labels.csv"
    table.write_text(
        "path,expr,split\na/astronaut.jpg,happy,train\na/turned.png,Happiness,validation\n"
        "coffee.jpg,neutral,train\nbroken.jpg,sad,train\n"
    )
    return str(table)


def test_photographs_become_aligned_crops_and_a_labels_csv(photo_csv, tmp_path):
    out = str(tmp_path / "prepared")
    summary = prepare.prepare(photo_csv, out)
    assert summary["kept"] == 2 and summary["inputs"] == 4 and summary["detector"] == "blazeface"
    assert summary["skipped"] == {"no_face": 1, "unreadable": 1, "several_faces": 0}
    rows = list(csv.DictReader(open(os.path.join(out, "labels.csv"))))
    assert [r["path"] for r in rows] == ["crops/a/astronaut.jpg", "crops/a/turned.jpg"]
    assert [(r["expr"], r["split"], r["source"]) for r in rows] == [
        ("happy", "train", "a/astronaut.jpg"),
        ("Happiness", "validation", "a/turned.png"),
    ]
    assert all(0.5 < float(r["face_score"]) <= 1.0 for r in rows)
    assert open(os.path.join(out, "no_face.txt")).read().splitlines() == ["coffee.jpg", "broken.jpg"]
    crop = cv2.imread(os.path.join(out, rows[1]["path"]))
    assert crop.shape == (112, 112, 3)
    # the turned photograph's crop is level: its eyes, found again in the crop, within 6 degrees of level
    # (the 15 degrees of the photograph are gone; BlazeFace's keypoints move by a few pixels at this size)
    padded = cv2.copyMakeBorder(crop[..., ::-1], 56, 56, 56, 56, cv2.BORDER_CONSTANT)  # a face, not all face
    (face,) = FaceDetector().detect(np.ascontiguousarray(padded))
    right, left = face.keypoints[0], face.keypoints[1]
    angle = np.degrees(np.arctan2(left[1] - right[1], left[0] - right[0]))
    assert abs(angle) < 6.0 and right[0] < left[0], angle
    # the prepared folder is the data of a run: the folder reader reads it as it is
    from emenet_tf.data.readers import folder

    splits = folder.read(os.path.join(out, "labels.csv"), str(tmp_path / "work"))
    assert len(splits["train"]) == 1 and len(splits["validation"]) == 1
    assert splits["train"].expr.tolist() == [4] and splits["train"].labelled_tasks() == ("expr",)


def test_an_output_folder_of_the_users_is_refused_and_an_earlier_preparation_redone(photo_csv, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("x")
    with pytest.raises(DataError, match="not empty and not an earlier preparation"):
        prepare.prepare(photo_csv, str(mine))
    assert os.listdir(mine) == ["keep.txt"]
    out = str(tmp_path / "again")
    first = prepare.prepare(photo_csv, out)
    assert prepare.prepare(photo_csv, out) == first


def test_a_path_outside_the_csv_folder_is_one_line_naming_the_line(tmp_path):
    table = tmp_path / "labels.csv"
    table.write_text("path,expr\n../elsewhere.jpg,happy\n")
    with pytest.raises(DataError) as err:
        prepare.prepare(str(table), str(tmp_path / "out"))
    assert f"{table}:2" in str(err.value) and "outside" in str(err.value) and "\n" not in str(err.value)


def test_training_crops_and_device_crops_match(photo_csv, tmp_path):
    """One photograph cropped both ways: prepare's crop (written as JPEG, read back by the training
    pipeline and resized to the model's input) against the device's (edge.faces: the same detector and
    aligned crop, resized by EmotionModel.preprocess). JPEG at quality 95 moves a pixel by a few levels
    and the two resizes (TensorFlow's area and OpenCV's INTER_AREA) differ at the last bit, so the
    model inputs agree to a mean of 0.01 (in [0, 1]) and the crops to a few levels."""
    from emenet_tf._keras import tf
    from emenet_tf.data import pipeline

    out = str(tmp_path / "prepared")
    prepare.prepare(photo_csv, out)
    rgb = cv2.imread(os.path.join(os.path.dirname(photo_csv), "a", "astronaut.jpg"))[..., ::-1].copy()
    (face,) = FaceDetector().detect(rgb)
    device = face.crop(rgb)
    written = open(os.path.join(out, "crops", "a", "astronaut.jpg"), "rb").read()
    training = pipeline.decode_image_bytes(tf.constant(written)).numpy()
    assert np.abs(training.astype(int) - device.astype(int)).mean() < 2.0
    size = 64
    trained_on = tf.image.resize(training, (size, size), method="area", antialias=True).numpy() / 255.0
    seen = cv2.resize(device, (size, size), interpolation=cv2.INTER_AREA) / 255.0
    assert np.abs(trained_on - seen).mean() < 0.01


def test_the_command_prints_one_summary_line_and_errors_in_one_line(photo_csv, tmp_path):
    out = str(tmp_path / "out")
    proc = subprocess.run([sys.executable, "-m", "emenet_tf.prepare", photo_csv, "--out", out], cwd=ROOT,
                          env=ENV, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "2 of 4 inputs kept" in proc.stdout and f"--data folder:{out}/labels.csv" in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "emenet_tf.prepare", str(tmp_path / "none.csv"), "--out", out],
                         cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        f"python -m emenet_tf.prepare: error: {tmp_path / 'none.csv'}: no such file or folder"
    ]


def _cartoon_photos(root, count: int, seed: int = 0) -> str:
    """``count`` photographs (224 px canvases) of cartoon faces of the synthetic benchmark, each labelled
    with the expression its action units show most (happiness: AU12, surprise: AU1 + AU2 + AU26, ...),
    in a class-folder tree: what a user's folder of labelled photographs looks like."""
    from emenet_tf.data import label_model, render

    rng = np.random.default_rng(seed)
    names = ("neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise")
    for i in range(count):
        ident = render.identity(rng)
        units = rng.uniform(0, 1, 12) * (rng.random(12) < 0.5)
        label = int(np.argmax(label_model.true_distribution(units[None])["expr_probs"][0]))
        ((_, face),) = list(render.video_frames(units[None], ident, rng, np.zeros(1, bool), 112))
        canvas = np.empty((224, 224, 3), np.uint8)
        canvas[:] = face[0, 0]
        canvas[56:168, 56:168] = face
        _write(root / names[label] / f"{i:03d}.jpg", canvas)
    return str(root)


@pytest.mark.slow
def test_from_labelled_photographs_to_an_exported_expr_only_model(tmp_path):
    """The README's path: prepare a folder of labelled photographs, train on labels.csv (EXPR only: no AU,
    no VA label anywhere), evaluate and export; the AU and VA heads are named untrained everywhere."""
    photos_dir = _cartoon_photos(tmp_path / "photos", 60)
    out = str(tmp_path / "prepared")
    summary = prepare.prepare(photos_dir, out)
    assert summary["kept"] >= 50, summary
    work = str(tmp_path / "run")
    cmd = [sys.executable, "train.py", f"--data=folder:{out}/labels.csv", f"--workdir={work}", "--model=tiny",
           "--ensemble_size=2", "--generations=2", "--epochs=1", "--steps_per_epoch=2", "--batch_size=16",
           "--verbose=0", "--representative_frames=8", "--validation_frames=16", "--allow_degraded"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    metrics = json.load(open(os.path.join(work, "eval", "metrics.json")))
    assert metrics["frames"]["untrained"] == ["au", "va"]
    for name, row in metrics["methods"].items():
        assert set(row) == {"expr"}, name  # no AU / VA figures, and no OOD images to score
    report = open(os.path.join(work, "eval", "report.md")).read()
    assert "No AU labels in this run's training data" in report and "No VA labels" in report
    meta = json.load(open(os.path.join(work, "export", "student_int8.json")))
    assert meta["untrained"] == ["au", "va"]
    edge = subprocess.run([sys.executable, "-m", "edge.predict", "--model", os.path.join(work, "export", "student_int8.tflite"),
                           os.path.join(photos_dir, "happiness")], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert edge.returncode == 0, edge.stderr
    for line in edge.stdout.splitlines():
        record = json.loads(line)
        assert "expression" in record and "au" not in record and "valence" not in record
