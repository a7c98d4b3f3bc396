"""Face detection in the edge runtime: BlazeFace by default, its aligned crop, the Haar fallback when
BlazeFace cannot load, and ``predict``'s required colour order."""

import math

import cv2
import numpy as np
import pytest

from edge import blazeface
from edge.blazeface import BlazeFace
from edge.faces import DetectorFallbackWarning, Face, FaceDetector
from edge.runtime import EdgeError, EmotionModel
from tests.edge_fixtures import HAVE_HAAR, face_on_grey_canvas, make_fixture_model, shared_dir
from tests.test_edge import run_cli, write_bgr


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return make_fixture_model(shared_dir(tmp_path_factory), kind="single")


@pytest.fixture(scope="module")
def face_image(tmp_path_factory):
    """A rendered synthetic face (seeded), 160 px at (80, 40) on a 320 x 240 grey canvas: RGB."""
    return face_on_grey_canvas(tmp_path_factory.mktemp("detection_face") / "data")


def eye_angle(keypoints) -> float:
    """Degrees of the line from the right eye to the left eye (0: level)."""
    (x0, y0), (x1, y1) = keypoints[0], keypoints[1]
    return math.degrees(math.atan2(y1 - y0, x1 - x0))


# ---------------------------------------------------------------- the aligned crop


@pytest.mark.parametrize("turn", [-25.0, 25.0])
def test_blazeface_crop_of_a_turned_face_has_level_eyes(turn):
    """The astronaut turned by 25 degrees: BlazeFace's short-range model, run again on the 112 px crop
    the model is fed, finds her eyes level there (measured within 6 degrees: the model's own keypoint
    error); the crop of her box alone (no keypoints: not turned back) keeps the tilt (measured 23-28)."""
    data = pytest.importorskip("skimage.data")
    image = data.astronaut()
    matrix = cv2.getRotationMatrix2D((222.0, 126.0), turn, 1.0)  # about her face
    turned = cv2.warpAffine(image, matrix, (512, 512))
    (face,) = FaceDetector("blazeface").detect(turned)
    assert abs(eye_angle(face.keypoints)) > 15.0  # the detector sees the turn
    short = BlazeFace("short")
    (aligned,) = short.detect(face.crop(turned))
    (boxed,) = short.detect(Face(face.box).crop(turned))
    assert abs(eye_angle(aligned.keypoints)) < 8.0, eye_angle(aligned.keypoints)
    assert abs(eye_angle(boxed.keypoints)) > 15.0, eye_angle(boxed.keypoints)
    assert face.crop(turned).shape == (112, 112, 3)


# ---------------------------------------------------------------- the Haar fallback


@pytest.mark.skipif(not HAVE_HAAR, reason="this OpenCV ships no Haar cascade")
def test_haar_takes_over_with_one_warning_when_blazeface_files_are_missing(
    model_path, face_image, tmp_path, capsys, monkeypatch
):
    missing = tmp_path / "no_models"
    monkeypatch.setattr(blazeface, "MODEL_DIR", str(missing))
    with pytest.warns(DetectorFallbackWarning, match="BlazeFace cannot be used"):
        detector = FaceDetector()
    assert detector.backend == "haar"
    image = write_bgr(tmp_path / "face.png", face_image)
    code, records, err = run_cli(["--model", model_path, image, image], capsys)
    assert code == 0 and len(records) == 2 and "Traceback" not in err
    warnings = [line for line in err.splitlines() if not line.startswith(("summary:", "INFO:"))]
    assert len(warnings) == 1, err
    assert warnings[0].startswith(f"warning: BlazeFace cannot be used ({missing}/")
    assert warnings[0].endswith("faces are found with OpenCV's Haar cascade, whose crops are not aligned "
                                "(edge/README.md, 'Face detection')")  # fmt: skip
    assert all("score" not in r and "keypoints" not in r for r in records)
    code, records, err = run_cli(["--model", model_path, "--detector", "haar", image], capsys)
    assert code == 0 and len(records) == 1 and "warning" not in err  # asked for: no warning


def test_blazeface_is_the_cli_default_and_its_lines_carry_score_and_keypoints(
    model_path, face_image, tmp_path, capsys
):
    image = write_bgr(tmp_path / "face.png", face_image)
    code, (record,), err = run_cli(["--model", model_path, image], capsys)
    assert code == 0 and "warning" not in err
    assert 0.6 <= record["score"] <= 1.0 and np.asarray(record["keypoints"]).shape == (6, 2)
    (face,) = FaceDetector().detect(face_image)
    np.testing.assert_allclose(record["keypoints"], face.keypoints, atol=1e-4)  # JSON: 4 decimals


# ---------------------------------------------------------------- colour order


def test_predict_needs_its_colour_order(model_path, face_image):
    model = EmotionModel(model_path)
    bgr = np.ascontiguousarray(face_image[..., ::-1])
    as_rgb = [r.to_dict() for r in model.predict(face_image, color="rgb")]
    assert len(as_rgb) == 1 and "keypoints" in as_rgb[0]
    assert [r.to_dict() for r in model.predict(bgr, color="bgr")] == as_rgb  # exactly the same
    assert [r.to_dict() for r in model.predict(bgr, color="rgb")] != as_rgb  # the mistake color= prevents
    crop = Face((80, 40, 160, 160)).crop(face_image)
    expected = model.predict_face(crop, color="rgb").to_dict()
    assert model.predict_face(np.ascontiguousarray(crop[..., ::-1]), color="bgr").to_dict() == expected
    for call in (lambda: model.predict(face_image), lambda: model.predict_face(crop)):
        with pytest.raises(EdgeError, match=r"^color is required: 'bgr' for OpenCV's images"):
            call()
    for color in ("BGR", "gray", 1):
        with pytest.raises(EdgeError, match=rf"^color must be 'bgr' .* or 'rgb', got {color!r}$"):
            model.predict(face_image, color=color)
