"""The run folder as a whole: checks before writes, reruns, copies, concurrent jobs, multi-worker."""

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from emenet_tf import evaluation, job
from emenet_tf.config import TrainConfig
from emenet_tf.data import synthetic
from emenet_tf.errors import ConfigError, DataError, RunError
from emenet_tf.rundir import RunDir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
TINY = [
    "--model=tiny",
    "--ensemble_size=2",
    "--epochs=1",
    "--steps_per_epoch=2",
    "--batch_size=16",
    "--verbose=0",
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run_data") / "data")
    synthetic.generate(
        out, seed=4, train_videos=2, val_videos=1, frames_per_video=24, image_size=32, ood_images=4
    )
    return out


def _train(*args, env=ENV, timeout=600):
    return subprocess.Popen(
        [sys.executable, "train.py", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_rerun_with_other_settings_refuses_and_changes_nothing(tmp_path, data_dir):
    cfg = TrainConfig(
        workdir=str(tmp_path / "w"), data="affwild2:" + str(data_dir), model="tiny", learning_rate=3e-3
    )
    job.prepare(cfg)
    saved = open(RunDir(cfg.workdir).config_path).read()
    other = TrainConfig(
        workdir=cfg.workdir, data="affwild2:" + str(data_dir), model="tiny", learning_rate=0.1, epochs=2
    )
    with pytest.raises(ConfigError) as err:
        job.prepare(other)
    message = str(err.value)
    assert "--learning_rate=0.1 (the run has 0.003)" in message and "--epochs=2 (the run has 6)" in message
    assert "\n" not in message
    assert open(RunDir(cfg.workdir).config_path).read() == saved
    # What may change is applied and said: more generations extend the run.
    job.prepare(
        TrainConfig(
            workdir=cfg.workdir, data="affwild2:" + str(data_dir), model="tiny", generations=4, verbose=0
        )
    )
    assert json.load(open(RunDir(cfg.workdir).config_path))["generations"] == 4


def test_checks_fail_before_anything_is_written(tmp_path, data_dir):
    not_affwild = tmp_path / "plain"
    not_affwild.mkdir()
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    for data, message in (
        (str(not_affwild), "not an Aff-Wild2 folder"),
        (str(a_file), "not a folder"),
    ):
        workdir = tmp_path / f"w{len(message)}"
        with pytest.raises((ConfigError, DataError), match=message):
            job.prepare(TrainConfig(workdir=str(workdir), data="affwild2:" + str(data), model="tiny"))
        assert not workdir.exists()
    # Corrected, the same workdir is accepted (no config.json was left to refuse it).
    job.prepare(TrainConfig(workdir=str(tmp_path / "w22"), data="affwild2:" + str(data_dir), model="tiny"))


def test_train_py_writes_nothing_for_bad_flags(tmp_path):
    for flag in ("--seed=-1", "--learning_rate=inf", "--va_weight=-1", f"--data_dir={ROOT}/README.md"):
        proc = subprocess.run(
            [sys.executable, "train.py", f"--workdir={tmp_path}/w", flag], cwd=ROOT, env=ENV,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("train.py: error: ")
        assert not (tmp_path / "w").exists(), flag


def test_a_folder_of_the_users_at_workdir_data_is_never_replaced(tmp_path):
    data = tmp_path / "w" / "data"
    data.mkdir(parents=True)
    (data / "mine.txt").write_text("keep me")
    with pytest.raises(DataError, match="not a synthetic benchmark"):
        job.ensure_data(TrainConfig(workdir=str(tmp_path / "w"), model="tiny"))
    assert (data / "mine.txt").read_text() == "keep me"


def test_a_copied_run_evaluates_from_another_folder_and_unfinished_members_are_not_used(
    tiny_run, tmp_path, monkeypatch
):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_run.workdir, copy, ignore=shutil.ignore_patterns("eval", "export"))
    assert json.load(open(copy / "config.json"))["workdir"] == tiny_run.workdir  # still the old path
    os.remove(copy / "gen1" / "member1" / "done.json")  # as if killed while training
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(RunError) as err:  # a partial evaluation is asked for, never a surprise
        evaluation.evaluate_run("../copy", mc_passes=2)
    assert "generation 1 is unfinished" in str(err.value) and "--allow_partial" in str(err.value)
    result = evaluation.evaluate_run("../copy", mc_passes=2, allow_partial=True)
    assert set(result["methods"]) == {"gen0_single", "gen0_ensemble", "temperature_scaling", "mc_dropout"}
    assert result["frames"]["partial"].startswith("generation 1 is unfinished")
    assert (copy / "eval_partial" / "metrics.json").exists() and not (copy / "eval").exists()
    assert not os.path.exists(os.path.join(tiny_run.workdir, "eval", "metrics.json")) or os.path.getmtime(
        os.path.join(tiny_run.workdir, "eval", "metrics.json")
    ) < os.path.getmtime(copy / "eval_partial" / "metrics.json")


@pytest.mark.slow
def test_two_member_jobs_run_at_once_and_a_second_full_run_is_refused(tmp_path, data_dir):
    workdir = str(tmp_path / "w")
    jobs = [
        _train(f"--workdir={workdir}", f"--data_dir={data_dir}", *TINY, "--generations=1", f"--member={k}")
        for k in (0, 1)
    ]
    outs = [proc.communicate(timeout=600) for proc in jobs]
    for proc, (_out, err) in zip(jobs, outs, strict=True):
        assert proc.returncode == 0 and "Traceback" not in err, err[-3000:]
    rundir = RunDir(workdir)
    assert rundir.is_done(0, 0) and rundir.is_done(0, 1)
    for k in (0, 1):
        epochs = [
            json.loads(line)["epoch"] for line in open(os.path.join(rundir.member_dir(0, k), "history.jsonl"))
        ]
        assert epochs == [1]
    # A full run while another holds member 0 of generation 1: refused in one line naming the holder.
    first = _train(
        f"--workdir={workdir}",
        f"--data_dir={data_dir}",
        *TINY,
        "--generations=2",
        "--epochs=1",
        "--noexport",
        "--noevaluate",
    )
    lock = os.path.join(rundir.member_dir(1, 0), ".lock")
    while first.poll() is None and not (os.path.exists(lock) and os.path.getsize(lock) > 0):
        pass
    second = subprocess.run(
        [sys.executable, "train.py", f"--workdir={workdir}", f"--data_dir={data_dir}", *TINY, "--generations=2",
         "--noexport", "--noevaluate"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    first.communicate(timeout=600)
    assert first.returncode == 0
    if second.returncode != 0:  # it met the first run's lock (it may also start after the first ended)
        assert second.returncode == 2 and "Traceback" not in second.stderr
        errors = [line for line in second.stderr.splitlines() if line.startswith("train.py: error")]
        assert len(errors) == 1 and f"is in use by pid {first.pid}" in errors[0], second.stderr[-3000:]
        assert errors[0] == second.stderr.strip().splitlines()[-1]  # the last word, after TF's start-up lines
    history = os.path.join(rundir.member_dir(1, 0), "history.jsonl")
    assert [json.loads(line)["epoch"] for line in open(history)] == [1]  # never written twice


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_multi_worker_strategy_with_two_local_workers(tmp_path, data_dir):
    cluster = {"worker": [f"127.0.0.1:{_free_port()}" for _ in range(2)]}
    workdir = str(tmp_path / "mw")
    jobs = []
    for index in range(2):
        env = dict(
            ENV, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        )
        jobs.append(
            _train(f"--workdir={workdir}", f"--data_dir={data_dir}", *TINY, "--ensemble_size=1", "--generations=1",
                   "--epochs=2", "--strategy=multi_worker", "--noevaluate", "--noexport", env=env)
        )  # fmt: skip
    outs = [proc.communicate(timeout=600) for proc in jobs]
    for proc, (_out, err) in zip(jobs, outs, strict=True):
        assert proc.returncode == 0, err[-3000:]
    rundir = RunDir(workdir)
    assert rundir.is_done(0, 0)
    assert "num_workers = 2" in outs[0][1]  # really two workers, one cluster
    history = [json.loads(line) for line in open(os.path.join(rundir.member_dir(0, 0), "history.jsonl"))]
    assert [h["epoch"] for h in history] == [1, 2]  # written once, by the chief only
    cfg = rundir.load_config()
    rundir.load_member(cfg, 0, 0)
    assert rundir.dirichlet_done(cfg), "the chief trains the Dirichlet student alone"


@pytest.mark.slow
def test_unreadable_frames_are_named_in_the_run_summary(tmp_path, data_dir):
    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    frames = sorted((data / "cropped_aligned").glob("syn-train-000/*.jpg"))
    raw = frames[3].read_bytes()
    frames[3].write_bytes(raw[: len(raw) // 2])  # truncated: no end marker
    cfg = TrainConfig(workdir=str(tmp_path / "w"), data="affwild2:" + str(data), model="tiny", ensemble_size=1,
                      generations=1, epochs=1, steps_per_epoch=3, batch_size=16, verbose=0)  # fmt: skip
    result = job.run_job(cfg, evaluate=False, export=False)
    summary = json.load(open(RunDir(cfg.workdir).data_summary_path))
    assert summary["dropped_images"]["bad_images"] == 1 == result["dropped_images"]["bad_images"]
    assert "syn-train-000/" + frames[3].name in summary["dropped_images"]["examples"][0]
    assert "truncated JPEG" in summary["dropped_images"]["examples"][0]
    assert summary["train"]["frames"] > 0 and "skipped" in summary["validation"]


@pytest.mark.slow
def test_a_tiny_run_repeated_on_one_machine_gives_identical_metrics(tmp_path, data_dir):
    """Determinism on one machine (issue 8): every number of metrics.json equal, run to run.

    Across machines the numbers differ (oneDNN picks kernels by CPU, and a few ULPs grow over
    training): claims rest on replicate studies (emenet_tf.study), not on one run's figures.
    """
    metrics = []
    for name in ("a", "b"):
        cfg = TrainConfig(workdir=str(tmp_path / name), data="affwild2:" + str(data_dir), model="tiny", ensemble_size=2,
                          generations=2, epochs=2, steps_per_epoch=3, batch_size=16, verbose=0)  # fmt: skip
        job.run_job(cfg, evaluate=True, export=False)
        metrics.append(json.load(open(os.path.join(cfg.workdir, "eval", "metrics.json"))))
    assert metrics[0]["methods"] == metrics[1]["methods"]
    assert metrics[0] == metrics[1]
