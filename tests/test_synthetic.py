"""Tests of the synthetic Aff-Wild2 benchmark writer: layout, determinism, the truth file, write failures."""

import errno
import filecmp
import glob
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from emenet_tf.cli import synthetic as synthetic_cli
from emenet_tf.data import label_model, render, synthetic
from emenet_tf.errors import DataError
from emenet_tf.labels import AU_HEADER, EXPR_HEADER, NUM_AU, NUM_EXPR, SPLITS, TASK_DIRS, VA_HEADER

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(train_videos=4, val_videos=4, frames_per_video=40, image_size=112, ood_images=6, pairs=1)
SMALL = dict(train_videos=1, val_videos=1, frames_per_video=4, image_size=32, ood_images=2)


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
    synthetic_cli.main(
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


def test_video_frames_do_not_depend_on_skipped_frames():
    ident = render.identity(np.random.default_rng(0))
    a, _ = label_model.au_track(np.random.default_rng(1), 6)
    skip = np.array([False, True, False, False, True, False])
    every = dict(render.video_frames(a, ident, np.random.default_rng(2), np.zeros(6, bool), 48))
    some = dict(render.video_frames(a, ident, np.random.default_rng(2), skip, 48))
    assert sorted(every) == list(range(6)) and sorted(some) == [0, 2, 3, 5]
    for i, img in some.items():
        assert img.dtype == np.uint8 and img.shape == (48, 48, 3)
        np.testing.assert_array_equal(img, every[i])
    assert not np.array_equal(every[0], every[5])


def test_refuses_files_and_foreign_entries(tmp_path):
    out = str(tmp_path / "b")
    synthetic.generate(out, seed=0, **SMALL)
    synthetic.generate(out, seed=1, **SMALL)  # a benchmark may be regenerated in place
    open(os.path.join(out, "notes.txt"), "w").write("mine")
    with pytest.raises(DataError, match="not the benchmark's.*notes.txt"):
        synthetic.generate(out, seed=2, **SMALL)
    assert open(os.path.join(out, "notes.txt")).read() == "mine"
    with pytest.raises(DataError, match="not a folder"):
        synthetic.generate(os.path.join(out, "notes.txt"), seed=0, **SMALL)
    with pytest.raises(DataError, match="is a file") as err:
        synthetic.generate(os.path.join(out, "notes.txt", "deeper", "b"), seed=0, **SMALL)
    assert err.value.path == os.path.join(out, "notes.txt")


class _FullDisk:
    """A real open file whose writes fail as on a full disk."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def _disk_full(real_open, path, *args, **kwargs):
    return _FullDisk(real_open(path, *args, **kwargs))


def _no_permission(real_open, path, *args, **kwargs):
    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)


@pytest.mark.parametrize(
    "where, fail, reason",
    [
        ("cropped_aligned", _disk_full, errno.ENOSPC),
        ("annotations", _disk_full, errno.ENOSPC),
        ("synthetic_truth", _disk_full, errno.ENOSPC),
        (os.sep + "ood" + os.sep, _disk_full, errno.ENOSPC),
        ("synthetic_meta.json", _disk_full, errno.ENOSPC),
        ("annotations", _no_permission, errno.EACCES),
        ("synthetic_truth", _no_permission, errno.EACCES),
    ],
)
def test_a_failed_write_is_one_line_naming_the_file(tmp_path, monkeypatch, where, fail, reason):
    """Writes into paths containing ``where`` fail (the module's ``open`` is replaced: no disk is filled)."""
    real_open = open

    def fake_open(path, *args, **kwargs):
        if where in str(path):
            return fail(real_open, path, *args, **kwargs)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(synthetic, "open", fake_open, raising=False)
    out = str(tmp_path / "b")
    with pytest.raises(DataError) as err:
        synthetic.generate(out, seed=0, **SMALL)
    message = str(err.value)
    assert "\n" not in message and os.strerror(reason) in message
    assert err.value.path.startswith(out) and where in err.value.path and message.startswith(err.value.path)
    assert not os.path.exists(os.path.join(out, "synthetic_meta.json"))  # never looks finished


def test_a_jpeg_that_does_not_encode_names_its_file(tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic.cv2, "imencode", lambda *args, **kwargs: (False, None))
    out = str(tmp_path / "b")
    with pytest.raises(DataError, match="JPEG encoding failed") as err:
        synthetic.generate(out, seed=0, **SMALL)
    assert err.value.path.startswith(os.path.join(out, "cropped_aligned")) and err.value.path.endswith(".jpg")
    with pytest.raises(DataError, match="JPEG encoding failed") as err:
        synthetic.write_ood(out, seed=0, count=1, size=32)
    assert err.value.path == os.path.join(out, "ood", "00001.jpg")


def test_cli_failure_is_one_line_and_keeps_the_old_benchmark(tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "cli")
    args = ["--out", out, "--train_videos", "1", "--val_videos", "1", "--frames_per_video", "3"]
    args += ["--image_size", "32", "--ood_images", "1"]
    monkeypatch.setattr(synthetic.cv2, "imencode", lambda *a, **k: (False, None))
    with pytest.raises(SystemExit) as exit_:
        synthetic_cli.main(args)
    assert exit_.value.code == 2 and os.listdir(tmp_path) == []  # no folder, finished or not
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "JPEG encoding failed" in err
    monkeypatch.undo()
    synthetic_cli.main(args)
    files = sorted(glob.glob(os.path.join(out, "**", "*.*"), recursive=True))
    before = {p: open(p, "rb").read() for p in files}
    monkeypatch.setattr(synthetic.cv2, "imencode", lambda *a, **k: (False, None))
    with pytest.raises(SystemExit):
        synthetic_cli.main(args + ["--seed", "9"])
    assert os.listdir(tmp_path) == ["cli"]
    assert {p: open(p, "rb").read() for p in files} == before
    assert sorted(glob.glob(os.path.join(out, "**", "*.*"), recursive=True)) == files


def test_cli_process_prints_one_line_for_a_bad_out_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cmd = [
        sys.executable,
        "-m",
        "emenet_tf.data.synthetic",
        "--out",
        str(blocker / "b"),
        "--train_videos",
        "1",
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (
        proc.stderr.strip().splitlines()[-1]
        == f"error: {blocker}: is a file: cannot create the output folder under it"
    )
    bad = subprocess.run(
        cmd[:4] + [str(tmp_path / "c"), "--image_size", "8"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: --image_size must be in [32, 1024], got 8"
    ]


def test_degraded_frames_spoil_only_images(tiny, tmp_path):
    """--synthetic_degraded_frames changes some images and nothing else: the labels, the truth and
    every clean frame are byte-identical to the clean benchmark of the same seed."""
    out, _ = tiny
    spoilt = str(tmp_path / "d")
    summary = synthetic.generate(spoilt, seed=3, degraded_frames=0.3, **TINY)
    images = sorted(
        os.path.relpath(p, out) for p in glob.glob(os.path.join(out, "cropped_aligned", "*", "*"))
    )
    _, changed, errors = filecmp.cmpfiles(out, spoilt, images, shallow=False)
    assert not errors
    degraded = sum(summary["counts"][s]["degraded_images"] for s in ("train", "validation"))
    assert len(changed) == degraded  # exactly the degraded frames differ
    assert 0.15 < degraded / len(images) < 0.45  # about the share asked for (runs: a loose band)
    rest = [os.path.relpath(p, out) for p in _annotation_files(out)]
    rest += [os.path.join("synthetic_truth", f"{s}.npz") for s in SPLITS] + sorted(
        os.path.relpath(p, out) for p in glob.glob(os.path.join(out, "ood", "*"))
    )
    _, mismatch, errors = filecmp.cmpfiles(out, spoilt, rest, shallow=False)
    assert not mismatch and not errors
    with open(os.path.join(spoilt, "synthetic_meta.json")) as f:
        assert json.load(f)["degraded_frames"] == 0.3
    with pytest.raises(DataError, match="degraded_frames must be in"):
        synthetic.generate(str(tmp_path / "e"), seed=0, degraded_frames=1.0, **SMALL)


def test_degradation_plan_share_and_runs():
    plan = render.degradation_plan(np.random.default_rng(0), 20000, 0.3)
    spoilt = plan >= 0
    # Runs start with p = rate / mean length and last 1..3 frames (mean 2), overlaps merge:
    # 1 - (1 - 0.15) ** 2 = 0.2775 expected; 20000 frames put the sampling sd below 0.01.
    assert abs(spoilt.mean() - 0.2775) < 0.02
    assert set(np.unique(plan)) == {-1, *range(len(render.DEGRADATIONS))}
    starts = np.flatnonzero(spoilt[1:] & ~spoilt[:-1]) + 1
    assert 1.5 < spoilt.sum() / len(starts) < 3.0  # short runs, not single frames nor long stretches
    assert (render.degradation_plan(np.random.default_rng(0), 100, 0.0) == -1).all()


@pytest.mark.parametrize("kind", render.DEGRADATIONS)
def test_each_degradation_hides_part_of_the_face(kind):
    ident = render.identity(np.random.default_rng(1))
    a = np.zeros((1, NUM_AU))
    ((_, clean),) = render.video_frames(a, ident, np.random.default_rng(2), np.zeros(1, bool), 64)
    spoilt = render.degrade(clean, kind, np.random.default_rng(3), ident)
    assert spoilt.shape == clean.shape and spoilt.dtype == np.uint8
    diff = np.abs(spoilt.astype(int) - clean.astype(int)).mean(axis=-1)
    assert (diff > 20).mean() > 0.05  # a visible share of the pixels changed, not sensor-noise level
    with pytest.raises(ValueError, match="unknown degradation"):
        render.degrade(clean, "fog", np.random.default_rng(3), ident)
