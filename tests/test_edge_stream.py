"""The edge video path: face tracks between detections, stream models carrying GRU state per face, summaries."""

import json
import shutil

import cv2
import numpy as np
import pytest

from edge import predict as cli
from edge.faces import Face, FaceDetector, box_iou
from edge.results import FaceResult
from edge.runtime import EdgeError, EmotionModel, result_to_json
from edge.summary import VideoSummary
from edge.tracking import FaceTracker, face_template, follow_template
from edge.uncertainty import normalised_entropy
from edge.video import FaceStates
from tests.edge_fixtures import (
    HAVE_HAAR,
    draw_face,
    golden_images,
    make_stream_fixture,
    rendered_face,
    shared_dir,
)


@pytest.fixture(scope="module")
def stream_models(tmp_path_factory):
    out = shared_dir(tmp_path_factory)
    return {q: make_stream_fixture(out, quantize=q) for q in ("float", "int8")}


def run_cli(argv, capsys):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, [json.loads(line) for line in captured.out.splitlines()], captured.err


def write_video(path, frames, fps=10.0):
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    for rgb in frames:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return str(path)


class ScriptedDetector:
    """Full detections from a script, one list of boxes per full detection (as Faces); ``detect_near``
    returns the face moved one pixel right, or None for the boxes listed in ``lose``."""

    def __init__(self, script, lose=()):
        self.script, self.lose = list(script), set(lose)
        self.full = self.near = 0

    def detect(self, image):
        self.full += 1
        return [Face(b) for b in self.script.pop(0)] if self.script else []

    def detect_near(self, image, face):
        self.near += 1
        return None if tuple(face.box) in self.lose else face.moved(1, 0)


# ---------------------------------------------------------------- tracking


def test_faces_keep_their_ids_by_overlap_and_a_new_face_gets_a_new_id():
    left, right = (0, 0, 10, 10), (50, 0, 10, 10)
    detector = ScriptedDetector([[left, right], [(51, 1, 10, 10), (1, 0, 10, 10)], [(200, 200, 10, 10)]])
    tracker = FaceTracker(detector, detect_every=1, refine_every=1)  # no images: no templates
    first = tracker.update(None)
    assert [(t.id, t.box) for t in first] == [(0, left), (1, right)]
    second = tracker.update(None)  # listed in the other order: each keeps its id by overlap
    assert [(t.id, t.box) for t in second] == [(0, (1, 0, 10, 10)), (1, (51, 1, 10, 10))]
    third = tracker.update(None)  # no overlap: a new face; both old tracks end (max_missed 0)
    assert [t.id for t in third] == [2] and sorted(tracker.ended) == [0, 1]


def test_full_detection_every_k_frames_and_after_a_loss():
    box = (20, 20, 30, 30)
    detector = ScriptedDetector([[box]] * 10, lose={(21, 20, 30, 30)})
    tracker = FaceTracker(detector, detect_every=4, max_missed=1, refine_every=1)
    ids = [[t.id for t in tracker.update(None)] for _ in range(8)]
    # Frame 0 detects; 1 follows the face to x = 21; 2 loses it near x = 21 (missed, kept: max_missed
    # 1); 3 detects (after a loss), 4 detects (every 4th frame); 5 follows, 6 loses, 7 detects.
    assert detector.full == 4 and detector.near == 4
    assert ids == [[0], [0], [], [0], [0], [0], [], [0]] and tracker.ended == []


def test_a_face_lost_beside_another_brings_a_full_detection_on_the_next_frame():
    left, right = (0, 0, 10, 10), (50, 0, 10, 10)
    detector = ScriptedDetector([[left, right], [(1, 0, 10, 10), right]], lose={(50, 0, 10, 10)})
    tracker = FaceTracker(detector, detect_every=30, refine_every=1)
    tracker.update(None)
    assert [t.id for t in tracker.update(None)] == [0] and tracker.ended == [1]  # right lost near its box
    assert detector.full == 1
    tracker.update(None)  # the next frame looks for faces in the whole frame: right is found again
    assert detector.full == 2 and [t.id for t in tracker.tracks] == [0, 2]


def test_a_track_ends_after_max_missed_frames_without_its_face():
    detector = ScriptedDetector([[(0, 0, 10, 10)], [], [], []])
    tracker = FaceTracker(detector, detect_every=1, max_missed=2, refine_every=1)
    tracker.update(None)
    assert tracker.update(None) == [] and tracker.ended == []
    assert tracker.update(None) == [] and tracker.ended == []
    assert tracker.update(None) == [] and tracker.ended == [0]


def test_two_tracks_on_one_face_become_one():
    detector = ScriptedDetector([[(0, 0, 20, 20), (40, 0, 20, 20)]])
    detector.detect_near = lambda image, face: Face((10, 0, 20, 20))  # both find the same face
    tracker = FaceTracker(detector, detect_every=5, refine_every=1)
    tracker.update(None)
    assert [t.id for t in tracker.update(None)] == [0] and tracker.ended == [1]


@pytest.fixture(scope="module")
def face_canvas(tmp_path_factory):
    """A rendered synthetic face of 170 px placed at (200, 120) on a 640x480 textured frame."""
    face = rendered_face(tmp_path_factory.mktemp("stream_face") / "data")
    rng = np.random.default_rng(0)
    canvas = cv2.resize(
        rng.integers(40, 200, (15, 20, 3), dtype=np.uint8), (640, 480), interpolation=cv2.INTER_CUBIC
    )
    canvas[120:290, 200:370] = cv2.resize(face, (170, 170), interpolation=cv2.INTER_CUBIC)
    return canvas


@pytest.mark.parametrize("backend", ["blazeface", "haar"])
def test_detect_near_finds_the_face_a_full_detection_finds_and_nothing_where_it_left(face_canvas, backend):
    """BlazeFace's short-range model on the region (or Haar on a shrunk region) finds the moved face
    where a full detection finds it, with its keypoints (BlazeFace), and nothing on a blank frame."""
    if backend == "haar" and not HAVE_HAAR:
        pytest.skip("this OpenCV ships no Haar cascade")
    detector = FaceDetector(backend)
    (full,) = detector.detect(face_canvas)
    x, y, w, h = full.box  # the face is about the middle half of the 170 px rendered picture
    assert abs(x + w / 2 - 285) < 20 and abs(y + h / 2 - 205) < 20, full.box
    assert backend == "blazeface" or box_iou(full.box, (200, 120, 170, 170)) > 0.5  # Haar: its square
    moved = np.roll(face_canvas, (6, 8), axis=(0, 1))  # the face 8 px right, 6 px down
    near = detector.detect_near(moved, full)
    (reference,) = detector.detect(moved)
    assert near is not None and box_iou(near.box, reference.box) >= 0.7, (near, reference)
    if backend == "blazeface":  # the two models' keypoints: within 0.15 eye distance of each other
        eyes = np.linalg.norm(reference.keypoints[1] - reference.keypoints[0])
        assert np.abs(near.keypoints[:4] - reference.keypoints[:4]).max() < 0.15 * eyes
    blank = np.full_like(face_canvas, 120)
    assert detector.detect_near(blank, full) is None


def test_template_matching_follows_a_moved_face_and_finds_nothing_on_a_blank_frame(face_canvas):
    box = (200, 120, 170, 170)  # the rendered face's square
    keypoints = np.array([[250, 180], [320, 180], [285, 215], [285, 245], [210, 190], [360, 190]], np.float32)
    template = face_template(face_canvas, box)
    moved = np.roll(face_canvas, (6, 8), axis=(0, 1))  # the face 8 px right, 6 px down
    got = follow_template(moved, Face(box, 0.9, keypoints), template)
    # The match is found on a copy shrunk 170 / 32 = 5.3x: the position is known to about +-3 px,
    # so IoU with the true box >= 0.9 (the size is kept); the keypoints move with the box.
    assert got is not None and got.box[2:] == (170, 170), got
    assert box_iou(got.box, (208, 126, 170, 170)) >= 0.9, got
    np.testing.assert_allclose(got.keypoints - keypoints, [np.subtract(got.box[:2], box[:2])] * 6)
    assert got.score == 0.9
    assert follow_template(np.full_like(face_canvas, 120), Face(box), template) is None


def test_a_face_the_detector_misses_is_followed_by_its_template_for_at_most_detect_every_frames(face_canvas):
    class Detector:  # finds the face once; detect_near never finds it
        full = near = 0

        def detect(self, image):
            self.full += 1
            return [Face((200, 120, 170, 170))] if self.full == 1 else []

        def detect_near(self, image, face):
            self.near += 1

    detector = Detector()
    tracker = FaceTracker(detector, detect_every=6, refine_every=3)
    seen = [[(t.id, t.box) for t in tracker.update(np.roll(face_canvas, 4 * k, axis=1))] for k in range(8)]
    # Frame 0 detects; 1-5 follow by template (3: the detector near the box first, it misses); 6 is a
    # full detection that misses the face, its template still follows it (6 frames since the detector
    # found it: detect_every); 7: the template may no longer be used, the detector misses: lost.
    assert [len(tracks) for tracks in seen] == [1] * 7 + [0] and tracker.ended == [0]
    assert detector.full == 2 and detector.near == 2  # frames 3 and 7 (6 was a full detection)
    for k, ((face, box),) in enumerate(seen[:7]):
        assert face == 0 and box_iou(box, (200 + 4 * k, 120, 170, 170)) >= 0.9, (k, box)


def test_two_faces_side_by_side_keep_their_own_tracks_under_template_matching(face_canvas):
    """Each template's search region reaches into the neighbouring face (20 px apart, half a box
    side of search): each track must still follow its own face."""
    face = cv2.resize(face_canvas[120:290, 200:370], (120, 120))
    other = (face[:, ::-1] * 0.7).astype(np.uint8)  # another face: mirrored and darker
    canvas = face_canvas.copy()
    canvas[120:240, 150:270], canvas[120:240, 290:410] = face, other

    class Detector:  # finds both faces once; detect_near never finds anything
        def __init__(self):
            self.script = [[Face((150, 120, 120, 120)), Face((290, 120, 120, 120))]]

        def detect(self, image):
            return self.script.pop(0) if self.script else []

        def detect_near(self, image, face):
            return None

    tracker = FaceTracker(Detector(), detect_every=12, refine_every=4)
    for k in range(12):  # both move 3 px right per frame
        seen = [(t.id, t.box) for t in tracker.update(np.roll(canvas, 3 * k, axis=1))]
        assert [face_id for face_id, _ in seen] == [0, 1], k
        # Matched on copies shrunk 120 / 32 = 3.75x: positions within ~2 px, IoU >= 0.9.
        for (_, box), x in zip(seen, (150, 290), strict=True):
            assert box_iou(box, (x + 3 * k, 120, 120, 120)) >= 0.9, (k, box)


# ---------------------------------------------------------------- stream models


def test_a_stream_model_carries_its_state(stream_models):
    model = EmotionModel(stream_models["float"])
    assert model.state["inputs"] == ["h_au", "h_expr", "h_va"] and model.state["max_gap"] == 2
    faces = [golden_images()[n] for n in sorted(golden_images())]
    raw, state = model.step(faces[0], None)
    assert set(state) == {"h_au", "h_expr", "h_va"} and state["h_au"].shape == (1, model.state["size"])
    assert "next_h_au" not in raw and raw["expr_probs"].shape == (7,)
    np.testing.assert_array_equal(model.run(faces[0])["expr_probs"], raw["expr_probs"])  # an image: frame 1
    # The same face after another history gives other outputs: the state matters.
    after_a = model.step(faces[1], model.step(faces[2], None)[1])[0]
    after_b = model.step(faces[1], model.step(faces[3], None)[1])[0]
    assert np.abs(after_a["expr_probs"] - after_b["expr_probs"]).max() > 1e-3


def test_a_face_state_is_reset_every_reset_every_frames(stream_models, tmp_path):
    """edge.predict's per-face state: carried within a chunk of state.reset_every frames, reset to
    zero at the next (the clip length the GRU heads were trained on); never reset when the key is 0
    or absent (an export from before the key)."""
    source = stream_models["float"]
    with open(source[: -len(".tflite")] + ".json") as f:
        meta = json.load(f)
    faces = [golden_images()[n] for n in sorted(golden_images())][:3] * 2
    for name, every in (("three", 3), ("zero", 0), ("absent", None)):
        shutil.copy(source, tmp_path / f"{name}.tflite")
        meta["state"].pop("reset_every", None)
        if every is not None:
            meta["state"]["reset_every"] = every
        (tmp_path / f"{name}.json").write_text(json.dumps(meta))
        model = EmotionModel(str(tmp_path / f"{name}.tflite"))
        assert model.state["reset_every"] == (every or 0)
        states = FaceStates(model, None)
        got = [states.outputs(7, face)["expr_probs"] for face in faces]
        fresh = model.step(faces[1], None)[0]["expr_probs"]
        assert np.abs(got[1] - fresh).max() > 1e-3  # the state is carried within a chunk
        same = [np.array_equal(a, b) for a, b in zip(got[:3], got[3:], strict=True)]
        assert same == ([True] * 3 if every else [False] * 3)  # the same crops after a reset: identical


def test_stream_int8_follows_the_float_stream(stream_models):
    f32, i8 = EmotionModel(stream_models["float"]), EmotionModel(stream_models["int8"])
    assert i8.metadata["input"]["dtype"] == "float32"  # the state keeps every input float
    s32 = s8 = None
    for face in [golden_images()[n] for n in sorted(golden_images())] * 2:
        r32, s32 = f32.step(face, s32)
        r8, s8 = i8.step(face, s8)
        # int8 backbone, float GRU and heads over ten frames: the probabilities stay within 0.05.
        assert np.abs(r32["expr_probs"] - r8["expr_probs"]).max() < 0.05


def test_stream_metadata_that_does_not_match_is_one_line(stream_models, tmp_path):
    path = shutil.copy(stream_models["float"], tmp_path / "m.tflite")
    meta = json.loads(open(stream_models["float"][: -len(".tflite")] + ".json").read())
    for change, message in (
        ({"size": 64}, "state.size"),
        ({"inputs": ["h_au"]}, "state.inputs"),
        ({"max_gap": -1}, "state.max_gap"),
        ({"reset_every": -1}, "state.reset_every"),
        ({"reset_every": "8"}, "state.reset_every"),
        ({"reset_every": None}, "state.reset_every"),
    ):
        (tmp_path / "m.json").write_text(json.dumps({**meta, "state": {**meta["state"], **change}}))
        with pytest.raises(EdgeError, match=message):
            EmotionModel(path)
    (tmp_path / "m.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "state"}))
    with pytest.raises(EdgeError, match="does not match model inputs"):
        EmotionModel(path)


def test_cli_video_carries_the_state_frame_to_frame_and_summarises(stream_models, tmp_path, capsys):
    faces = [cv2.resize(golden_images()[n], (48, 48)) for n in sorted(golden_images())]
    video = write_video(tmp_path / "clip.avi", faces + faces[::-1])  # 10 frames
    code, lines, err = run_cli(
        ["--model", stream_models["float"], "--no_face_detection", "--summary", video], capsys
    )
    assert code == 0 and "Traceback" not in err
    frames, (summary,) = lines[:-1], lines[-1:]
    assert [r["frame"] for r in frames] == list(range(10)) and {r["face"] for r in frames} == {0}
    # The state is carried: each line is the model stepped over the decoded frames in order.
    model, state = EmotionModel(stream_models["float"]), None
    capture = cv2.VideoCapture(video)
    for record in frames:
        ok, bgr = capture.read()
        raw, state = model.step(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), state)
        expected = json.loads(result_to_json(model.to_result(raw, record["box"], video, record["frame"])))
        assert record["expression"] == expected["expression"]
    # Frame 9 shows the same picture as frame 0, after nine others: another output.
    assert frames[9]["expression"]["probs"] != frames[0]["expression"]["probs"]
    # The summary line, recomputed from the frame lines (rounded to 4 decimals: 1e-3).
    assert summary["source"] == video and summary["summary"]["results"] == 10
    probs = np.array([list(r["expression"]["probs"].values()) for r in frames])
    weights = 1.0 - np.array([r["expression"]["entropy"] for r in frames])
    mixed = weights @ probs / weights.sum()
    got = summary["summary"]
    assert list(got["expression"]["probs"].values()) == pytest.approx(mixed.tolist(), abs=1e-3)
    assert got["expression"]["entropy"] == pytest.approx(normalised_entropy(mixed), abs=1e-3)
    assert got["valence"] == pytest.approx(np.mean([r["valence"] for r in frames]), abs=1e-3)
    au1 = np.mean([r["au"]["probs"]["AU1"] >= 0.5 for r in frames])
    assert got["au_rates"]["AU1"] == pytest.approx(au1, abs=1e-3)
    assert got["uncertain"] == np.mean([r["uncertain"] for r in frames]) and got["ood"] is None


def test_cli_keeps_state_per_face_and_resets_it_when_a_face_is_new(
    stream_models, tmp_path, capsys, monkeypatch
):
    """Two faces each carry their own state; a face missing for more than max_gap (2) frames ends
    its track, and the face seen there later starts from the initial state."""
    face = cv2.resize(draw_face(64), (40, 40))
    right_present = [True, True, False, True, True, False, False, False, True, True]
    frames, script = [], []
    for k, present in enumerate(right_present):
        image = np.full((48, 120, 3), 90, np.uint8)
        image[4:44, 4:44] = np.roll(face, 2 * k, axis=1)
        if present:  # absent: the frame has no face there (nothing for a template to follow either)
            image[4:44, 76:116] = np.roll(face, -3 * k, axis=0)
        frames.append(image)
        script.append([(4, 4, 40, 40)] + ([(76, 4, 40, 40)] if present else []))
    video = write_video(tmp_path / "two.avi", frames)

    class Detector:  # full detections from the script (no detect_near: detection on every frame)
        def __init__(self, *args, **kwargs):
            self.script = [list(s) for s in script]

        def detect(self, image):
            return [Face(b) for b in self.script.pop(0)]

    monkeypatch.setattr(cli, "FaceDetector", Detector)
    code, lines, err = run_cli(["--model", stream_models["float"], video], capsys)
    assert code == 0 and "Traceback" not in err
    faces = {}
    for r in lines:
        faces.setdefault(r["face"], []).append(r)
    # Left: one track; right: frames 0-4 one track over the 1-frame gap, frames 8-9 a new one.
    assert {f: [r["frame"] for r in rs] for f, rs in faces.items()} == {
        0: list(range(10)), 1: [0, 1, 3, 4], 2: [8, 9]
    }  # fmt: skip
    # Each track's outputs are the model stepped over that face's own decoded crops, from zero.
    model = EmotionModel(stream_models["float"])
    capture = cv2.VideoCapture(video)
    decoded = [cv2.cvtColor(capture.read()[1], cv2.COLOR_BGR2RGB) for _ in frames]
    for face_id, box in ((0, (4, 4, 40, 40)), (1, (76, 4, 40, 40)), (2, (76, 4, 40, 40))):
        state = None
        for record in faces[face_id]:
            raw, state = model.step(Face(box).crop(decoded[record["frame"]]), state)
            # The same interpreter on the same crops: equal up to the JSON's 4 decimals.
            assert list(record["expression"]["probs"].values()) == pytest.approx(
                raw["expr_probs"].tolist(), abs=1e-4
            )


# ---------------------------------------------------------------- summaries


def _result(probs, entropy, valence, au1, uncertain, ood=None, frame=0):
    names = ["a", "b"]
    return FaceResult(
        box=(0, 0, 10, 10),
        frame=frame,
        expression={"label": "a", "probs": dict(zip(names, probs, strict=True)), "entropy": entropy},
        au={"probs": {"AU1": au1}, "entropy": {"AU1": 1.0}},
        valence=valence,
        arousal=-valence,
        va_entropy={"valence": 0.5, "arousal": 0.5},
        uncertain=uncertain,
        ood=ood,
        has_ood=ood is not None,
    )


def test_summary_hand_computed():
    summary = VideoSummary("v.mp4")
    summary.add(_result([1.0, 0.0], 0.0, 0.5, 0.9, False, ood=False), face=0)
    summary.add(_result([0.0, 1.0], 0.5, -0.1, 0.2, True, ood=False), face=1)
    summary.add(_result([0.0, 1.0], 0.0, -0.9, 0.9, False, ood=True), face=2)  # out of domain: left out
    got = summary.summary()
    # weights 1 and 0.5: probs (1 * [1, 0] + 0.5 * [0, 1]) / 1.5 = [2/3, 1/3]; the summary rounds to 4 decimals
    assert got["expression"]["probs"] == pytest.approx({"a": 2 / 3, "b": 1 / 3}, abs=1e-4)
    assert got["expression"]["label"] == "a"
    entropy = normalised_entropy(np.array([2 / 3, 1 / 3]))
    assert got["expression"]["entropy"] == pytest.approx(entropy, abs=1e-4)
    assert got["valence"] == pytest.approx(0.2) and got["arousal"] == pytest.approx(-0.2)
    assert got["au_rates"] == {"AU1": 0.5} and got["uncertain"] == 0.5 and got["ood"] == 0.0
    assert (got["results"], got["frames"], got["faces"]) == (2, 1, 2)
    assert [t["face"] for t in got["tracks"]] == [0, 1, 2] and got["tracks"][2]["valence"] == -0.9
    assert got["left_out"] == [{"face": 2, "reason": "out of domain in 100% of its frames"}]
    empty = VideoSummary("none.mp4").summary()
    assert empty == {"results": 0, "frames": 0, "faces": 0, "tracks": [], "left_out": []}


def test_summary_leaves_out_short_and_mostly_ood_tracks():
    """Over 10 frames: track 0 kept; track 1 seen in 4 frames (< MIN_TRACK_FRAMES); track 2 flagged
    out of domain in 6 of its 10 frames (> MAX_OOD_SHARE); track 3 in exactly half (kept)."""
    summary = VideoSummary("v.mp4")
    for frame in range(10):
        summary.add(_result([0.9, 0.1], 0.1, 0.5, 0.9, False, ood=False, frame=frame), face=0)
        if frame < 4:
            summary.add(_result([0.1, 0.9], 0.1, -0.5, 0.1, False, ood=False, frame=frame), face=1)
        summary.add(_result([0.1, 0.9], 0.1, -0.5, 0.1, False, ood=frame < 6, frame=frame), face=2)
        summary.add(_result([0.9, 0.1], 0.1, 0.3, 0.9, False, ood=frame < 5, frame=frame), face=3)
    got = summary.summary()
    assert got["left_out"] == [
        {"face": 1, "reason": "seen in 4 frame(s), fewer than 5"},
        {"face": 2, "reason": "out of domain in 60% of its frames"},
    ]
    assert (got["faces"], got["results"], got["frames"], len(got["tracks"])) == (2, 20, 10, 4)
    assert got["valence"] == pytest.approx(0.4) and got["ood"] == pytest.approx(0.25)
    assert got["expression"]["probs"] == pytest.approx({"a": 0.9, "b": 0.1})


def test_cli_summary_says_which_tracks_it_left_out(stream_models, tmp_path, capsys, monkeypatch):
    """Through the CLI: a passer-by (2 frames) and a face flagged out of domain in 8 of 10 frames are
    left out of the video's label, each with one note line; the summary's faces counts the one kept."""
    frames = [np.full((48, 150, 3), 60 + 10 * k, np.uint8) for k in range(10)]
    video = write_video(tmp_path / "three.avi", frames)

    class Detector:  # left face always, middle one in frames 0-1, right one always (no detect_near)
        def __init__(self, *args, **kwargs):
            self.frame = -1

        def detect(self, image):
            self.frame += 1
            boxes = [(2, 4, 40, 40)] + [(54, 4, 40, 40)] * (self.frame < 2) + [(106, 4, 40, 40)]
            return [Face(b) for b in boxes]

    def flag_the_right_face(model, result, raw):  # out of domain: the right face in frames 0-7
        result.has_ood, result.ood_score = True, 0.0
        result.ood = result.box[0] > 100 and result.frame < 8

    monkeypatch.setattr(cli, "FaceDetector", Detector)
    monkeypatch.setattr(EmotionModel, "_ood", flag_the_right_face)
    code, lines, err = run_cli(["--model", stream_models["float"], "--summary", video], capsys)
    assert code == 0 and "Traceback" not in err
    summary = lines[-1]["summary"]
    assert [t["face"] for t in summary["tracks"]] == [0, 1, 2] and summary["faces"] == 1
    assert summary["results"] == 10 and summary["ood"] == 0.0  # the kept track's own figures
    notes = [line for line in err.splitlines() if "left out" in line]
    assert notes == [
        f"note: {video}: face 1 left out of the video's label: seen in 2 frame(s), fewer than 5",
        f"note: {video}: face 2 left out of the video's label: out of domain in 80% of its frames",
    ]
