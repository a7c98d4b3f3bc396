"""Faults a user meets: folders that must not be replaced, files cut short in a run folder, flags that size
memory, parity of unbounded outputs, a finished training whose export withholds a model.

Each fault ends in one line (an error a command prints as ``prog: error: ...``) or is recovered from,
never in a traceback, never with wrong numbers.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from emenet_tf import job
from emenet_tf.config import TrainConfig
from emenet_tf.data.synthetic_config import SyntheticConfig
from emenet_tf.errors import ConfigError, DataError, ExportError, RunError, TrainingError
from emenet_tf.export import parity
from emenet_tf.rundir import RunDir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=ROOT)
ONE_LINE_ERRORS = (ConfigError, DataError, ExportError, RunError, TrainingError)  # what train.py prints


def _copy(tiny_run, tmp_path, name="copy") -> TrainConfig:
    copy = str(tmp_path / name)
    shutil.copytree(tiny_run.workdir, copy, ignore=shutil.ignore_patterns("export"))
    return RunDir(copy).load_config()


def _cut(path: str) -> None:
    """Cut a file to half its length (a kill during a write, a disk fault)."""
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)


def _imports_tensorflow(stderr: str) -> bool:
    """TensorFlow's import prints its oneDNN / CUDA lines on stderr."""
    return "oneDNN" in stderr or "cuda" in stderr.lower()


# ---------------------------------------------------------------- folders that are not ours


def test_export_never_replaces_a_folder_of_the_users(tiny_run, tmp_path):
    out = tmp_path / "mine"
    (out / "sub").mkdir(parents=True)
    (out / "precious.txt").write_text("keep")
    (out / "sub" / "thesis.tex").write_text("keep too")
    from emenet_tf.export import export_run

    with pytest.raises(RunError) as err:
        export_run(tiny_run.workdir, out_dir=str(out), representative_frames=4, validation_frames=4)
    assert str(out) in str(err.value) and "refusing" in str(err.value) and "\n" not in str(err.value)
    assert (out / "precious.txt").read_text() == "keep" and (
        out / "sub" / "thesis.tex"
    ).read_text() == "keep too"
    with pytest.raises(RunError, match="not empty and not an export of this run"):
        export_run(tiny_run.workdir, out_dir=tiny_run.workdir)  # the run folder itself
    assert os.path.isfile(RunDir(tiny_run.workdir).config_path)


def test_an_export_folder_of_another_run_is_refused(tiny_run, tmp_path):
    from emenet_tf.export import exporter

    out = tmp_path / "exported"
    out.mkdir()
    (out / exporter.MARKER).write_text(json.dumps({"run": "/some/other/run"}))
    with pytest.raises(RunError, match="holds the export of another run"):
        exporter.check_out_dir(str(out), RunDir(tiny_run.workdir))
    (out / exporter.MARKER).write_text(json.dumps({"run": RunDir(tiny_run.workdir).root}))
    exporter.check_out_dir(str(out), RunDir(tiny_run.workdir))  # its own earlier export: replaced


def test_training_never_writes_into_a_folder_of_the_users(tmp_path):
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "todo.txt").write_text("x")
    with pytest.raises(ConfigError, match="not empty and not a training run"):
        job.check_paths(TrainConfig(workdir=str(mine)))
    assert os.listdir(mine) == ["todo.txt"]


def test_a_study_replicate_folder_with_only_its_time_ledger_is_a_run_folder(tmp_path):
    # A study writes rep<r>/replicate_time.json before the replicate's job writes config.json; a
    # write killed before its rename leaves a temporary. Neither is a user's file.
    from emenet_tf.rundir import REPLICATE_TIME, TEMPORARY_PREFIX
    from emenet_tf.study.runner import Stopwatch

    rep = tmp_path / "rep0"
    rep.mkdir()
    with Stopwatch(str(rep / REPLICATE_TIME)):
        (rep / f"{TEMPORARY_PREFIX}killed").write_text("x")
        job.check_paths(TrainConfig(workdir=str(rep)))


def test_evaluation_and_study_never_write_into_a_folder_of_the_users(tiny_run, tmp_path):
    from emenet_tf import evaluation
    from emenet_tf.study.runner import check_study_dir

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "metrics_notes.md").write_text("x")
    with pytest.raises(RunError, match="not an evaluation folder"):
        evaluation.evaluate_run(tiny_run.workdir, out_dir=str(mine), mc_passes=2)
    with pytest.raises(ConfigError, match="not a study folder"):
        check_study_dir(str(mine))
    assert os.listdir(mine) == ["metrics_notes.md"]


# ---------------------------------------------------------------- files cut short


def test_a_checkpoint_cut_short_restarts_the_member_with_one_warning(tiny_run, tmp_path, caplog):
    from emenet_tf.training.checkpoints import readable_checkpoint

    cfg = _copy(tiny_run, tmp_path)
    folder = os.path.join(RunDir(cfg.workdir).member_dir(0, 0), "ckpt_probe")
    from emenet_tf._keras import tf

    ckpt = tf.train.Checkpoint(v=tf.Variable(np.arange(1000, dtype=np.float32)))
    manager = tf.train.CheckpointManager(ckpt, folder, max_to_keep=1)
    manager.save()
    assert readable_checkpoint(folder) is not None
    (data,) = [os.path.join(folder, n) for n in os.listdir(folder) if ".data-" in n]
    _cut(data)
    assert readable_checkpoint(folder) is None and not os.path.exists(folder)
    assert "is unreadable" in caplog.text and "starts again from its first epoch" in caplog.text


def test_soft_labels_cut_short_are_recomputed(tiny_run, tmp_path, caplog):
    from emenet_tf import distill
    from emenet_tf.data import sources

    cfg = _copy(tiny_run, tmp_path)
    run = RunDir(cfg.workdir)
    path = run.soft_labels_path(0)
    before = open(path, "rb").read()
    _cut(path)
    splits, _ = sources.load_splits(cfg.sources(), run.synthetic_dir, run.prepared_dir)
    got = distill.make_soft_labels(cfg, 0, splits["train"], val_index=splits["validation"])
    assert "is unreadable" in caplog.text and "recomputing the soft labels" in caplog.text
    assert open(path, "rb").read() == before  # the same teachers give the same file
    assert set(got) == {"au", "expr", "va"}


def test_damaged_best_weights_train_the_member_again(tiny_run, tmp_path, caplog):
    cfg = _copy(tiny_run, tmp_path)
    run = RunDir(cfg.workdir)
    _cut(run.best_weights_path(1, 1))
    assert not run.reopen_if_damaged(1, 1) and not run.is_done(1, 1)
    assert "best.weights.h5 is unreadable" in caplog.text and "trains again" in caplog.text
    assert run.reopen_if_damaged(0, 0)  # an intact member is left alone


# ---------------------------------------------------------------- flags that size memory


@pytest.mark.parametrize(
    "flag, said",
    [
        ("--image_size=100000", "--image_size must be <= 1024, got 100000"),
        ("--image_size=8", "--image_size 8 is too small for --model=small: it needs at least 32"),
        ("--batch_size=10000000", "--batch_size must be <= 4096"),
        ("--synthetic_frames_per_video=1000000000", "--synthetic_frames_per_video must be in [1, 100000]"),
        (
            "--workdir=/proc/x",
            "--workdir /proc/x: cannot create a folder in /proc (No such file or directory)",
        ),
    ],
)
def test_flags_that_size_memory_are_refused_before_tensorflow_loads(tmp_path, flag, said):
    args = [f"--workdir={tmp_path}/w", flag] if not flag.startswith("--workdir") else [flag]
    proc = subprocess.run(
        [sys.executable, "train.py", *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and not _imports_tensorflow(proc.stderr), proc.stderr
    assert proc.stderr.strip().splitlines() == [f"train.py: error: {said}"] or said in proc.stderr, (
        proc.stderr
    )
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "w").exists()


def test_error_messages_print_plain_numbers():
    err = DataError("bad", path="f.txt", line=3, value=np.int32(1))
    assert str(err) == "f.txt:3: bad (value: 1)"
    assert str(DataError("bad", value=[np.float64(0.5), np.int64(2)])) == "bad (value: [0.5, 2])"


# ---------------------------------------------------------------- parity of unbounded outputs


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e2, 1e4, 1e6])
def test_float_parity_of_unbounded_outputs_is_relative_to_their_scale(scale):
    """The gate on a log density of any size: float32 rounding (relative ~1e-7) passes, a real error
    (relative 1e-3) fails, at every scale; bounded outputs keep their absolute 1e-4."""
    rng = np.random.default_rng(int(scale * 1000) % 2**32)
    ref = {"expr_probs": rng.random((50, 7)), "ood_score": rng.normal(0.0, scale, (50, 1))}
    rounding = {
        "expr_probs": ref["expr_probs"] + 1e-7,
        "ood_score": (ref["ood_score"].astype(np.float32) * np.float32(1 + 1e-7)).astype(np.float64),
    }
    assert not parity.parity_failures(parity.float_parity(rounding, ref))
    wrong = {**rounding, "ood_score": ref["ood_score"] * (1 + 1e-3) + 1e-3 * max(scale, 1.0)}
    figures = parity.float_parity(wrong, ref)
    assert [f.split(" = ")[0] for f in parity.parity_failures(figures)] == ["float_max_rel_diff"]
    off = {**rounding, "expr_probs": ref["expr_probs"] + 2e-4}
    assert [f.split(" = ")[0] for f in parity.parity_failures(parity.float_parity(off, ref))] == [
        "float_max_abs_diff"
    ]


@pytest.mark.slow
def test_a_withheld_export_does_not_fail_a_finished_training(tiny_run, tmp_path, monkeypatch):
    from emenet_tf.export.options import ExportOptions

    cfg = _copy(tiny_run, tmp_path)
    monkeypatch.setitem(parity.TARGETS, "expr_top1_agreement", 1.01)  # no int8 model can meet it
    options = ExportOptions(representative_frames=4, validation_frames=8)
    result = job.run_job(cfg, evaluate=False, export=True, export_options=options)
    (note,) = result["notes"]
    assert note.startswith("training finished; the export withheld a model: withheld the models that miss")
    assert "--allow_degraded" in note and "student_int8" in note and "\n" not in note
    assert os.path.isfile(os.path.join(cfg.workdir, "export", "student_float32.tflite"))


@pytest.mark.slow
def test_an_export_write_failure_names_the_destination_not_its_temporary(tiny_run, tmp_path, monkeypatch):
    from emenet_tf.errors import WriteError
    from emenet_tf.export import exporter, model

    def full_disk(path, content):
        raise WriteError(f"{path}: cannot write (No space left on device); nothing was replaced")

    monkeypatch.setattr(model, "write_file", full_disk)
    out = str(tmp_path / "out")
    with pytest.raises(WriteError) as err:
        exporter.export_run(tiny_run.workdir, out_dir=out, representative_frames=4, validation_frames=4,
                            float_backbone_max=0, allow_degraded=True)  # fmt: skip
    assert f"{out}/student_float32" in str(err.value) and ".tmp-" not in str(err.value)


# ---------------------------------------------------------------- every file kind, cut short


def _kind(rel: str) -> str:
    """A file's kind: its path with numbers as #, and the benchmark's many files grouped by folder."""
    stem, ext = os.path.splitext(rel)
    rel = re.sub(r"\d+", "#", stem) + ext  # the extension kept: best.weights.h5, not .h#
    parts = rel.split(os.sep)
    if parts[0] == "data" and len(parts) > 2:
        return f"data/{parts[1]}/*{os.path.splitext(rel)[1]}"
    if "tensorboard" in parts:
        return os.sep.join(parts[: parts.index("tensorboard") + 1]) + "/*"
    return rel


def _figures(metrics: dict) -> dict:
    """metrics.json less the folder it names (``frames.ood_dir`` is the copy's own)."""
    frames = {k: v for k, v in metrics["frames"].items() if k != "ood_dir"}
    return {**metrics, "frames": frames}


@pytest.mark.slow
def test_every_file_kind_of_a_run_cut_short_ends_in_one_line_or_is_recovered(tmp_path, caplog):
    """A finished run on its own tiny benchmark; every kind of file in its folder (the list comes from
    the folder: a new kind is covered automatically) is cut to half in a fresh copy, and the job is
    run again: it raises one of the errors train.py prints in one line, or it finishes with the same
    metrics (a frame or OOD image of the benchmark cut short is instead dropped and named)."""
    cfg = TrainConfig(
        workdir=str(tmp_path / "base"), model="tiny", ensemble_size=2, generations=2, epochs=1, steps_per_epoch=2,
        batch_size=16, verbose=0,
        synthetic=SyntheticConfig(train_videos=2, val_videos=2, frames_per_video=24, image_size=32, ood_images=8),
    )  # fmt: skip
    base = job.run_job(cfg, evaluate=True, export=False)["metrics"]
    kinds = {}
    for dirpath, _, files in os.walk(cfg.workdir):
        for name in sorted(files):
            rel = os.path.relpath(os.path.join(dirpath, name), cfg.workdir)
            if os.path.getsize(os.path.join(dirpath, name)) > 1:
                kinds.setdefault(_kind(rel), rel)
    assert {
        "config.json",
        "gen#/soft_labels.npz",
        "gen#/member#/best.weights.h5",
        "eval/metrics.json",
    } <= set(kinds)
    outcomes = {}
    for kind, rel in sorted(kinds.items()):
        copy = str(tmp_path / "copy")
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(cfg.workdir, copy)
        _cut(os.path.join(copy, rel))
        caplog.clear()
        again = TrainConfig(**{**cfg.to_dict(), "workdir": copy, "synthetic": cfg.synthetic})
        try:
            metrics = job.run_job(again, evaluate=True, export=False)["metrics"]
        except ONE_LINE_ERRORS as err:
            assert "\n" not in str(err), (kind, str(err))
            outcomes[kind] = "one line"
            continue
        if kind in ("data/cropped_aligned/*.jpg", "data/ood/*.jpg"):
            # a frame no step of the rerun reads (training is finished) changes nothing; one it reads is
            # dropped, counted (fewer frames predicted) and named in a warning
            named = f"Skipping unreadable or corrupt image {os.path.join(copy, rel)}" in caplog.text
            fewer = metrics["frames"]["predicted"] < base["frames"]["predicted"] or (
                metrics["frames"]["ood"] < base["frames"]["ood"]
            )
            assert (named and fewer) or _figures(metrics) == _figures(base), kind
            outcomes[kind] = "dropped and named" if named else "not read"
        else:
            assert _figures(metrics) == _figures(base), kind
            outcomes[kind] = "recovered"
    assert outcomes["config.json"] == "one line"
    assert outcomes["gen#/soft_labels.npz"] == outcomes["gen#/member#/best.weights.h5"] == "recovered"


def test_int8_targets_of_untrained_heads_are_not_checked():
    """An AU-only run's EXPR head never learnt: its near-tie outputs flip under int8 rounding, which must
    not withhold the model; its AU decisions are still held to their target."""
    figures = {"expr_top1_agreement": 0.5, "expr_entropy_mean_abs_diff": 0.2, "au_decision_agreement": 0.95}
    assert len(parity.parity_failures(figures)) == 3
    assert [f.split(" = ")[0] for f in parity.parity_failures(figures, untrained=("expr", "va"))] == [
        "au_decision_agreement"
    ]
