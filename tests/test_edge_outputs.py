"""The edge CLI's outputs besides its JSON lines: --draw pictures, --csv rows, the progress line, the
FaceResult API, models with untrained heads, and options refused before anything opens."""

import csv
import re

import cv2
import numpy as np
import pytest

from edge import predict as cli
from edge.draw import COLOURS, caption
from edge.faces import Face
from edge.outputs import Outputs
from edge.results import FaceResult, result_to_json
from edge.runtime import EmotionModel
from edge.video import Progress
from tests.edge_fixtures import golden_images, make_fixture_model, shared_dir, write_golden_images
from tests.test_edge import copy_model, edit_metadata, run_cli, write_bgr, write_video

BOX = (40, 30, 64, 64)  # the stand-in detector's face (x, y, w, h) in a 160 x 120 frame
GREY = 90  # the frames' background


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    out = shared_dir(tmp_path_factory)
    return {kind: make_fixture_model(out, kind=kind) for kind in ("single", "ensemble")}


class FixedFace:
    """A stand-in for edge.predict's FaceDetector: one box-only face at BOX in every frame."""

    def __init__(self, *args, **kwargs):
        pass

    def detect(self, image_rgb):
        return [Face(BOX)]


@pytest.fixture
def fixed_face(monkeypatch):
    monkeypatch.setattr(cli, "FaceDetector", FixedFace)


def grey_frames(count: int, width: int = 160, height: int = 120, step: int = 3) -> list:
    """Flat frames, each ``step`` grey levels brighter than the last (so each gives its own result)."""
    return [np.full((height, width, 3), GREY + step * k, np.uint8) for k in range(count)]


def model_in_state(models, tmp_path, state: str) -> str:
    """A copy of a fixture model whose thresholds put every face in ``state``: 'confident' (entropy
    threshold 1), 'uncertain' (0) or 'ood' (the ensemble, epistemic threshold 0)."""
    name, changes = {
        "confident": ("single", {"thresholds.expr_entropy": 1.0}),
        "uncertain": ("single", {"thresholds.expr_entropy": 0.0}),
        "ood": ("ensemble", {"thresholds.ood_epistemic": 0.0}),
    }[state]
    path = copy_model(models, name, tmp_path)
    edit_metadata(path, **changes)
    return str(path)


def edge_pixels(image: np.ndarray, box) -> np.ndarray:
    """(N, 3) pixels on the box's left, right and bottom edges, corners left out (the label covers the top)."""
    x, y, w, h = box
    rows, cols = slice(y + 4, y + h - 4), slice(x + 4, x + w - 4)
    return np.concatenate([image[rows, x], image[rows, x + w - 1], image[y + h - 1, cols]])


# ---------------------------------------------------------------- --draw


@pytest.mark.parametrize("state", ["confident", "uncertain", "ood"])
def test_draw_image_has_the_box_in_its_state_colour(models, tmp_path, capsys, fixed_face, state):
    path = model_in_state(models, tmp_path, state)
    image = write_bgr(tmp_path / "in.png", grey_frames(1)[0])
    out = tmp_path / "drawn.png"
    code, (record,), err = run_cli(["--model", path, image, "--draw", out], capsys)
    assert code == 0 and "Traceback" not in err
    assert (record.get("ood") is True, record["uncertain"]) == (state == "ood", state == "uncertain")
    drawn = cv2.imread(str(out))
    assert drawn.shape == (120, 160, 3)
    np.testing.assert_array_equal(edge_pixels(drawn, BOX), [COLOURS[state]] * len(edge_pixels(drawn, BOX)))
    assert (drawn[60:90, 60:90] == GREY).all() and (drawn[100:, 120:] == GREY).all()  # inside, far outside
    others = [c for s, c in COLOURS.items() if s != state]
    assert not any((drawn == c).all(axis=2).any() for c in others)


def test_draw_video_has_the_box_in_every_frame(models, tmp_path, capsys, fixed_face):
    video = write_video(tmp_path / "clip.avi", grey_frames(6, step=20))
    out = tmp_path / "drawn.avi"
    path = model_in_state(models, tmp_path, "uncertain")
    code, records, err = run_cli(["--model", path, video, "--draw", out], capsys)
    assert code == 0 and len(records) == 6 and "Traceback" not in err
    capture = cv2.VideoCapture(str(out))
    drawn = [frame for ok, frame in iter(capture.read, (False, None)) if ok]
    assert len(drawn) == 6 and capture.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0)
    colour = np.array(COLOURS["uncertain"])
    for k, frame in enumerate(drawn):
        # MJPG is lossy (colours bleed, 4:2:0 chroma; the input was MJPG too: grey levels move by up to
        # 8): each edge pixel within 60 of the colour, at least 90 from every background; the frames in
        # their order (20 grey levels apart).
        assert np.abs(edge_pixels(frame, BOX).astype(int) - colour).max(axis=1).max() < 60, k
        assert np.abs(frame[60:90, 60:90].astype(int) - (GREY + 20 * k)).max() < 10, k


def test_draw_marks_blazeface_keypoints_and_the_aligned_square(models, tmp_path, capsys):
    pytest.importorskip("skimage")
    from tests.edge_fixtures import astronaut

    image = write_bgr(tmp_path / "astronaut.png", astronaut(256))
    out = tmp_path / "drawn.png"
    path = model_in_state(models, tmp_path, "confident")
    code, (record,), err = run_cli(["--model", path, image, "--draw", out], capsys)
    assert code == 0 and len(record["keypoints"]) == 6
    drawn = cv2.imread(str(out))
    for x, y in record["keypoints"]:  # a dot of radius 2 on each keypoint
        assert tuple(drawn[int(round(y)), int(round(x))]) == COLOURS["confident"], (x, y)
    x, y, w, h = record["box"]
    assert (edge_pixels(drawn, record["box"]) == COLOURS["confident"]).all(axis=1).mean() > 0.9


def test_draw_folder_gets_one_picture_per_input_and_a_bad_path_is_one_error(
    models, tmp_path, capsys, fixed_face
):
    images = tmp_path / "images"
    images.mkdir()
    for k, frame in enumerate(grey_frames(2)):
        write_bgr(images / f"f{k}.png", frame)
    video = write_video(tmp_path / "clip.avi", grey_frames(3))
    out = tmp_path / "pictures"
    code, records, err = run_cli(["--model", models["single"], images, video, "--draw", out], capsys)
    assert code == 0 and len(records) == 5 and "error" not in err
    assert sorted(p.name for p in out.iterdir()) == ["clip.avi", "f0.png", "f1.png"]
    bad = tmp_path / "missing_folder" / "x.avi"
    code, records, err = run_cli(["--model", models["single"], video, "--draw", bad], capsys)
    assert code == 0 and len(records) == 3 and "Traceback" not in err
    assert f"error: {video}: {bad}: cannot write a .avi video here" in err
    for inputs, draw, message in (
        ([images / "f0.png"], "x.avi", "is a video file: give an image file or a folder for images"),
        ([images], "x.png", "names one file: give a folder for several inputs or a folder of images"),
        ([video, video], "x.avi", "names one file: give a folder for several inputs"),
    ):
        with pytest.raises(SystemExit):
            cli.main(["--model", models["single"], *map(str, inputs), "--draw", str(tmp_path / draw)])
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    camera_draw = cli.parse_args(["--model", "m.tflite", "--camera", "0", "--draw", "cam.avi"])
    assert camera_draw.draw == "cam.avi" and not Outputs(camera_draw).draw_folder  # one file


# ---------------------------------------------------------------- --csv


def test_csv_rows_hold_the_json_lines_numbers(models, tmp_path, capsys):
    """Both round the same floats to 4 decimals: the numbers are equal, not just close."""
    folder = write_golden_images(tmp_path / "images")
    frames = [cv2.resize(rgb, (48, 48)) for rgb in golden_images().values()]
    video = write_video(tmp_path / "clip.avi", frames)
    out = tmp_path / "results.csv"
    argv = ["--model", models["ensemble"], "--no_face_detection", folder, video, "--csv", out]
    code, records, err = run_cli(argv, capsys)
    assert code == 0 and len(records) == 10
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(records)
    for row, record in zip(rows, records, strict=True):
        assert_row_is_record(row, record)


def assert_row_is_record(row: dict, record: dict) -> None:
    assert row["source"] == record["source"] and row["frame"] == str(
        record["frame"] if record["frame"] is not None else ""
    )
    assert row["face"] == str(record.get("face", ""))
    assert [int(row[k]) for k in "xywh"] == record["box"]
    expression = record["expression"]
    assert row["expression"] == expression["label"]
    assert float(row["expression_prob"]) == expression["probs"][expression["label"]]
    assert float(row["expression_entropy"]) == expression["entropy"]
    assert {n: float(row[f"p_{n}"]) for n in expression["probs"]} == expression["probs"]
    assert {n: float(row[n]) for n in record["au"]["probs"]} == record["au"]["probs"]
    assert [float(row[k]) for k in ("valence", "arousal")] == [record["valence"], record["arousal"]]
    assert float(row["valence_entropy"]) == record["va_entropy"]["valence"]
    assert float(row["arousal_entropy"]) == record["va_entropy"]["arousal"]
    assert row["uncertain"] == str(record["uncertain"]) and row["ood"] == str(record["ood"])
    assert float(row["ood_score"]) == record["ood_score"]


# ---------------------------------------------------------------- progress


def test_progress_line_and_the_frames_per_second_figure(models, tmp_path, capsys, monkeypatch):
    video = write_video(tmp_path / "clip.avi", grey_frames(12, 48, 48))
    argv = ["--model", models["single"], "--no_face_detection", "--every", "3", video]
    monkeypatch.setattr(Progress, "every", 0.0)  # a line after every processed frame
    code, records, err = run_cli(argv, capsys)
    assert code == 0 and [r["frame"] for r in records] == [0, 3, 6, 9]
    line = re.compile(rf"progress: {re.escape(video)}: (\d+)/12 frames \((\d+)%\), (\d+\.\d) frames/s")
    found = [line.fullmatch(text) for text in err.splitlines() if text.startswith("progress:")]
    assert len(found) == 4 and all(found), err
    assert [(int(m[1]), int(m[2])) for m in found] == [(1, 8), (4, 33), (7, 58), (10, 83)]
    assert re.search(rf"info: {re.escape(video)}: 4 of 12 frames in \d+\.\d\d s \((\d+\.\d) frames/s\)", err)
    monkeypatch.setattr(Progress, "every", 2.0)  # the CLI's default: a clip this short ends first
    code, _, err = run_cli(argv, capsys)
    assert code == 0 and "progress:" not in err and "frames/s)" in err


# ---------------------------------------------------------------- FaceResult


def test_face_result_top_emotion_to_dict_and_csv_row():
    probs = {"Neutral": 0.2, "Happiness": 0.8}
    result = FaceResult(
        box=(10, 20, 30, 30),
        score=0.93,
        keypoints=[(11.0, 22.0)] * 6,
        expression={"label": "Happiness", "probs": probs, "entropy": 0.72193},
        valence=0.123456,
        arousal=-0.5,
        va_entropy={"valence": 0.5, "arousal": 0.25},
        uncertain=False,
        ood_score=0.0312,
        ood=False,
        has_ood=True,
        source="a.png",
    )
    assert result.top_emotion() == ("Happiness", 0.8)
    assert result.to_dict() == {
        "source": "a.png", "frame": None, "box": [10, 20, 30, 30], "score": 0.93,
        "keypoints": [[11.0, 22.0]] * 6,
        "expression": {"label": "Happiness", "probs": probs, "entropy": 0.72193},
        "valence": 0.123456, "arousal": -0.5, "va_entropy": {"valence": 0.5, "arousal": 0.25},
        "uncertain": False, "ood_score": 0.0312, "ood": False,
    }  # fmt: skip
    assert list(result.to_dict())[:6] == ["source", "frame", "box", "score", "keypoints", "expression"]
    assert '"valence": 0.1235' in result_to_json(result)
    row = result.csv_row()
    assert row["expression"] == "Happiness" and row["expression_prob"] == 0.8 and row["valence"] == 0.1235
    haar = FaceResult(box=(0, 0, 5, 5), valence=0.1, arousal=0.2, va_entropy={"valence": 1, "arousal": 1})
    assert haar.top_emotion() is None
    assert haar.to_dict() == {
        "source": None, "frame": None, "box": [0, 0, 5, 5], "valence": 0.1, "arousal": 0.2,
        "va_entropy": {"valence": 1, "arousal": 1},
    }  # fmt: skip


# ---------------------------------------------------------------- untrained heads


def untrained_model(models, tmp_path, tasks: list) -> str:
    path = copy_model(models, "single", tmp_path)
    changes = {"untrained": tasks}
    if "expr" in tasks:  # no expression head: no expression threshold (what the exporter writes)
        changes["thresholds.expr_entropy"] = None
    edit_metadata(path, **changes)
    return str(path)


def test_untrained_tasks_are_left_out_of_results_csv_and_summary(models, tmp_path, capsys):
    path = untrained_model(models, tmp_path, ["au", "va"])
    video = write_video(
        tmp_path / "clip.avi", [cv2.resize(rgb, (48, 48)) for rgb in golden_images().values()]
    )
    out = tmp_path / "results.csv"
    code, lines, err = run_cli(
        ["--model", path, "--no_face_detection", "--summary", "--csv", out, video], capsys
    )
    assert code == 0 and len(lines) == 6
    for record in lines[:-1]:
        assert sorted(record) == ["box", "expression", "face", "frame", "source", "uncertain"]
    with open(out, newline="") as f:
        header = next(csv.reader(f))
    assert "expression" in header and not {"valence", "arousal", "valence_entropy", "AU1", "AU26"} & set(
        header
    )
    summary = lines[-1]["summary"]
    assert sorted(summary) == [
        "expression",
        "faces",
        "frames",
        "left_out",
        "ood",
        "results",
        "tracks",
        "uncertain",
    ]
    assert sorted(summary["tracks"][0]) == ["expression", "face", "ood", "results", "uncertain"]
    (result,) = EmotionModel(path).predict(golden_images()["g4_face.png"], color="rgb", detect_faces=False)
    assert (result.au, result.valence, result.arousal, result.va_entropy) == (None,) * 4


def test_a_model_without_an_expression_head_gives_no_label(models, tmp_path, capsys):
    path = untrained_model(models, tmp_path, ["expr"])
    model = EmotionModel(path)
    (result,) = model.predict(golden_images()["g4_face.png"], color="rgb", detect_faces=False)
    assert result.expression is None and result.uncertain is None and result.top_emotion() is None
    assert "expression" not in result.to_dict() and "uncertain" not in result.to_dict()
    assert result.au is not None and result.valence is not None
    assert caption(result) == "no expression head"
    image = write_bgr(tmp_path / "face.png", golden_images()["g4_face.png"])
    code, (record,), err = run_cli(
        ["--model", path, "--no_face_detection", "--csv", tmp_path / "r.csv", image], capsys
    )
    assert code == 0 and "expression" not in record and "valence" in record
    with open(tmp_path / "r.csv", newline="") as f:
        assert not {"expression", "uncertain", "p_Neutral"} & set(next(csv.reader(f)))


# ---------------------------------------------------------------- options refused in one line


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--camera", "-1"], "argument --camera: must be >= 0, got -1"),
        (["--camera", "zero"], "argument --camera: invalid int value: 'zero'"),
        (["--max_frames", "-1", "clip.mp4"], "argument --max_frames: must be >= 0, got -1"),
        (["--max_frames", "-1", "--camera", "0"], "argument --max_frames: must be >= 0, got -1"),
        (["--face_model", "yunet.onnx", "a.png"], "--face_model was retired: BlazeFace is vendored"),
    ],
)
def test_bad_options_are_refused_in_one_line_before_any_capture_opens(
    models, capsys, monkeypatch, argv, message
):
    opened = []
    monkeypatch.setattr(cv2, "VideoCapture", lambda *args: opened.append(args))
    monkeypatch.setattr(cli, "EmotionModel", lambda *args, **kwargs: opened.append("model"))
    with pytest.raises(SystemExit) as stop:
        cli.main(["--model", models["single"], *argv])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and opened == []
    assert err.startswith(f"python -m edge.predict: error: {message}") and err.count("\n") == 1, err
