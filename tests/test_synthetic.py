"""Tests of the synthetic Aff-Wild2 benchmark: layout, determinism, truth and label sampling."""

import filecmp
import glob
import json
import os

import cv2
import numpy as np
import pytest

from emenet_tf.data import synthetic
from emenet_tf.errors import DataError
from emenet_tf.labels import AU_HEADER, EXPR_HEADER, NUM_AU, NUM_EXPR, SPLITS, TASK_DIRS, VA_HEADER

TINY = dict(train_videos=4, val_videos=4, frames_per_video=40, image_size=112, ood_images=6, pairs=1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("syn") / "a")
    summary = synthetic.generate(out, seed=3, **TINY)
    return out, summary


def _annotation_files(out):
    return sorted(glob.glob(os.path.join(out, "annotations", "*", "*", "*.txt")))


def _videos(out, split):
    names = set()
    for task_dir in TASK_DIRS.values():
        names |= {
            os.path.basename(p)[:-4]
            for p in glob.glob(os.path.join(out, "annotations", task_dir, SPLITS[split], "*.txt"))
        }
    return sorted(names)


def test_layout_matches_affwild2(tiny):
    out, _ = tiny
    headers = {"AU_Set": AU_HEADER, "EXPR_Set": EXPR_HEADER, "VA_Set": VA_HEADER}
    files = _annotation_files(out)
    assert files
    for path in files:
        lines = open(path, encoding="ascii").read().splitlines()
        task_dir = path.split(os.sep)[-3]
        assert lines[0] == headers[task_dir]
        assert len(lines) == TINY["frames_per_video"] + 1  # one line per frame, images or not
        width = {"AU_Set": NUM_AU, "EXPR_Set": 1, "VA_Set": 2}[task_dir]
        assert all(len(line.split(",")) == width for line in lines[1:])
    for split in SPLITS:
        videos = _videos(out, split)
        assert len(videos) == TINY["train_videos"] if split == "train" else TINY["val_videos"]
        assert any(v.endswith("_left") for v in videos) and any(v.endswith("_right") for v in videos)
        for video in videos:
            names = sorted(os.listdir(os.path.join(out, "cropped_aligned", video)))
            numbers = [int(n[:5]) for n in names]
            assert all(len(n) == 9 and n.endswith(".jpg") for n in names)
            assert 1 <= min(numbers) and max(numbers) <= TINY["frames_per_video"]
    img = cv2.imread(glob.glob(os.path.join(out, "cropped_aligned", "*", "*.jpg"))[0])
    assert img.shape == (112, 112, 3)
    assert not set(_videos(out, "train")) & set(_videos(out, "validation"))


def test_some_labels_and_images_missing_at_default_rates(tmp_path):
    out = str(tmp_path / "m")
    synthetic.generate(out, seed=1, train_videos=6, val_videos=1, frames_per_video=150, ood_images=0)
    values = []
    for path in glob.glob(os.path.join(out, "annotations", "EXPR_Set", "*", "*.txt")):
        values += open(path).read().splitlines()[1:]
    missing = np.mean([v == "-1" for v in values])
    assert 0.01 < missing < 0.12
    images = len(glob.glob(os.path.join(out, "cropped_aligned", "*", "*.jpg")))
    assert 0.9 * 7 * 150 < images < 7 * 150
    per_video = [len(t) for t in synthetic.video_plan(1, "train", 24, 1)]
    assert per_video and all(
        set(t[2]) <= {"au", "expr", "va"} and t[2] for t in synthetic.video_plan(1, "train", 24, 1)
    )


def test_same_seed_same_bytes_other_seed_differs(tiny, tmp_path):
    out, _ = tiny
    again = str(tmp_path / "b")
    synthetic.generate(again, seed=3, **TINY)
    mine = sorted(os.path.relpath(p, out) for p in glob.glob(os.path.join(out, "**", "*"), recursive=True))
    theirs = sorted(
        os.path.relpath(p, again) for p in glob.glob(os.path.join(again, "**", "*"), recursive=True)
    )
    assert mine == theirs
    files = [p for p in mine if os.path.isfile(os.path.join(out, p))]
    _, mismatch, errors = filecmp.cmpfiles(out, again, files, shallow=False)
    assert not mismatch and not errors
    other = str(tmp_path / "c")
    synthetic.generate(other, seed=4, **TINY)
    a = os.path.join(out, "annotations", "VA_Set")
    b = os.path.join(other, "annotations", "VA_Set")
    first = lambda d: open(sorted(glob.glob(os.path.join(d, "*", "*.txt")))[0]).read()  # noqa: E731
    assert first(a) != first(b)


def test_parallel_workers_write_the_same_bytes(tiny, tmp_path):
    out, _ = tiny
    par = str(tmp_path / "p")
    synthetic.generate(par, seed=3, workers=2, **TINY)
    files = [os.path.relpath(p, out) for p in glob.glob(os.path.join(out, "**", "*.*"), recursive=True)]
    _, mismatch, errors = filecmp.cmpfiles(out, par, files, shallow=False)
    assert not mismatch and not errors


def test_truth_covers_exactly_the_frames_with_images(tiny):
    out, _ = tiny
    for split in SPLITS:
        truth = synthetic.load_truth(out, split)
        keys = {(str(v), int(f)) for v, f in zip(truth["video"], truth["frame"], strict=True)}
        images = set()
        for video in _videos(out, split):
            for name in os.listdir(os.path.join(out, "cropped_aligned", video)):
                images.add((video, int(name[:5])))
        assert keys == images and len(keys) == len(truth["frame"])
        order = list(zip(truth["video"], truth["frame"], strict=True))
        assert order == sorted(order)
        np.testing.assert_allclose(truth["expr_probs"].sum(axis=1), 1.0, atol=1e-5)
        assert truth["au_probs"].shape == (len(keys), NUM_AU) and truth["va_std"].min() > 0


def _read_written(out, split, task):
    """{(video, frame): values} of the non-missing written labels of one task."""
    labels = {}
    for path in glob.glob(os.path.join(out, "annotations", TASK_DIRS[task], SPLITS[split], "*.txt")):
        video = os.path.basename(path)[:-4]
        for k, line in enumerate(open(path).read().splitlines()[1:], start=1):
            values = [float(v) for v in line.split(",")]
            if values[0] not in (-1.0, -5.0):
                labels[(video, k)] = values
    return labels


def test_written_labels_follow_the_true_distribution(tmp_path):
    out = str(tmp_path / "s")
    synthetic.generate(out, seed=7, train_videos=12, val_videos=1, frames_per_video=60, ood_images=0, pairs=0)
    truth = synthetic.load_truth(out, "train")
    row = {(str(v), int(f)): i for i, (v, f) in enumerate(zip(truth["video"], truth["frame"], strict=True))}
    expr = _read_written(out, "train", "expr")
    rows = [row[k] for k in expr if k in row]
    counts = np.bincount([int(expr[k][0]) for k in expr if k in row], minlength=NUM_EXPR)
    expected = truth["expr_probs"][rows].sum(axis=0)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 30.0  # df = 6: p < 1e-4 if the labels were drawn from the truth
    au = _read_written(out, "train", "au")
    rows = [row[k] for k in au if k in row]
    rate = np.array([au[k] for k in au if k in row]).mean(axis=0)
    np.testing.assert_allclose(rate, truth["au_probs"][rows].mean(axis=0), atol=0.06)
    va = _read_written(out, "train", "va")
    rows = [row[k] for k in va if k in row]
    np.testing.assert_allclose(
        np.array([va[k] for k in va if k in row]).mean(axis=0), truth["va_mean"][rows].mean(axis=0), atol=0.03
    )


def test_sample_labels_matches_probabilities_closely():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, (20000, NUM_AU)) * (rng.random((20000, NUM_AU)) < 0.4)
    truth = synthetic.true_distribution(a)
    labels = synthetic.sample_labels(np.random.default_rng(1), truth)
    freq = np.bincount(labels["expr"], minlength=NUM_EXPR) / len(a)
    np.testing.assert_allclose(freq, truth["expr_probs"].mean(axis=0), atol=0.01)
    np.testing.assert_allclose(labels["au"].mean(axis=0), truth["au_probs"].mean(axis=0), atol=0.01)
    resid = (labels["va"] - truth["va_mean"]) / truth["va_std"]
    inside = np.all(np.abs(truth["va_mean"]) < 0.6, axis=1)  # clipping bites rarely there
    assert abs(resid[inside].mean()) < 0.03 and abs(resid[inside].std() - 1.0) < 0.03
    assert np.all(np.abs(labels["va"]) <= 1.0) and np.allclose(labels["va"], np.round(labels["va"], 3))


def test_true_distribution_is_ambiguous_where_it_should_be():
    protos = synthetic.PROTOTYPES
    truth = synthetic.true_distribution(
        np.stack([protos[0], protos[4], protos[6], 0.15 * protos[4], 0.5 * protos[4] + 0.5 * protos[5]])
    )
    p = truth["expr_probs"]
    assert p[0].argmax() == 0 and p[1].argmax() == 4 and p[2].argmax() == 6
    assert p[0].max() > 0.75 and p[1].max() > 0.85 and p[2].max() > 0.85
    assert p[3].argmax() == 0 and p[3].max() < 0.8 and p[3, 4] > p[3, 1:4].max()  # weak smile
    assert p[4].max() < 0.6 and min(p[4, 4], p[4, 5]) > 0.15  # blend: happiness / sadness
    assert truth["va_mean"][1, 0] > 0.5 and abs(truth["va_mean"][0]).max() < 1e-6
    assert truth["au_probs"][0].max() < 0.05 and truth["au_probs"][1][6] > 0.95  # AU12 in a smile


def test_bayes_limits_against_hand_computation():
    p = np.array([[0.5, 0.5, 0, 0, 0, 0, 0], [1.0, 0, 0, 0, 0, 0, 0]], np.float32)
    q = np.array([[0.5] * NUM_AU, [0.0] * NUM_AU], np.float32)
    truth = {
        "expr_probs": p,
        "au_probs": q,
        "va_mean": np.array([[0.5, 0.0], [-0.5, 0.0]]),
        "va_std": np.array([[0.5, 0.5], [0.5, 0.5]]),
    }
    lim = synthetic.bayes_limits(truth)
    assert lim["frames"] == 2
    assert lim["expr_accuracy"] == pytest.approx(0.75)
    assert lim["expr_nll"] == pytest.approx(np.log(2) / 2, abs=1e-6)
    assert lim["au_accuracy"] == pytest.approx(0.75)
    assert lim["au_nll"] == pytest.approx(np.log(2) / 2, abs=1e-6)
    # var(m) = (0.25, 0), mean std^2 = 0.25: ccc = (2 * .25 / (.5 + .25) + 0) / 2 = 1 / 3
    assert lim["va_ccc"] == pytest.approx(1.0 / 3.0)


def test_ood_folder_and_meta(tiny):
    out, summary = tiny
    files = sorted(glob.glob(os.path.join(out, "ood", "*.jpg")))
    assert [os.path.basename(f) for f in files] == [f"{i:05d}.jpg" for i in range(1, 7)]
    images = [cv2.imread(f) for f in files]
    assert all(img.shape == (112, 112, 3) for img in images)
    assert len({img.tobytes() for img in images}) == len(images)
    meta = json.load(open(os.path.join(out, "synthetic_meta.json")))
    assert meta["seed"] == 3 and meta["counts"]["ood"] == 6
    assert meta["bayes_limits"]["validation"]["frames"] == len(
        synthetic.load_truth(out, "validation")["frame"]
    )
    assert meta["bayes_limits"] == json.loads(json.dumps(summary["bayes_limits"]))


def test_load_truth_and_out_dir_guards(tiny, tmp_path):
    out, _ = tiny
    assert synthetic.load_truth(str(tmp_path), "train") is None
    assert synthetic.load_truth(out, "Validation_Set") is not None
    with pytest.raises(DataError, match="split"):
        synthetic.load_truth(out, "test")
    real = tmp_path / "real"
    (real / "annotations").mkdir(parents=True)
    with pytest.raises(DataError, match="refusing"):
        synthetic.generate(str(real), seed=0, train_videos=1, val_videos=1, frames_per_video=2)
    with pytest.raises(DataError):
        synthetic.generate(str(tmp_path / "z"), seed=0, train_videos=0)


def test_cli_writes_a_benchmark(tmp_path, capsys):
    out = str(tmp_path / "cli")
    synthetic.main(
        [
            "--out",
            out,
            "--seed",
            "2",
            "--train_videos",
            "1",
            "--val_videos",
            "1",
            "--frames_per_video",
            "5",
            "--ood_images",
            "2",
        ]
    )
    printed = capsys.readouterr().out
    assert "expr_nll" in printed and "frames/s" in printed
    assert synthetic.load_truth(out, "train") is not None and len(os.listdir(os.path.join(out, "ood"))) == 2


def test_reader_loads_the_benchmark(tiny):
    affwild2 = pytest.importorskip("emenet_tf.data.affwild2")
    out, _ = tiny
    for split in SPLITS:
        index = affwild2.load_split(out, split)
        truth = synthetic.load_truth(out, split)
        assert len(index) == len(truth["frame"])
        assert set(index.keys()) == {f"{v}/{f}" for v, f in zip(truth["video"], truth["frame"], strict=True)}
