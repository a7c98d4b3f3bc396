"""End to end through the real command lines: synthetic CLI, train.py (killed, then resumed),
evaluate.py, the export CLI and the edge CLI. Slow: run with ``pytest -m slow``."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from emenet_tf.rundir import CHECKPOINTS, DONE, RunDir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
pytestmark = pytest.mark.slow


def _python(*args, timeout=900):
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout
    )


def _has_line(path: str) -> bool:
    return os.path.exists(path) and os.path.getsize(path) > 0


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    data, work = str(root / "data"), str(root / "run")
    proc = _python(
        "-m", "emenet_tf.data.synthetic", "--out", data, "--seed", "3", "--train_videos", "3",
        "--val_videos", "2", "--frames_per_video", "30", "--image_size", "48", "--ood_images", "20",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    cmd = [
        "train.py", f"--data_dir={data}", f"--workdir={work}", "--model=tiny", "--ensemble_size=2",
        "--generations=2", "--epochs=3", "--steps_per_epoch=2", "--batch_size=16", "--verbose=0",
        "--allow_degraded",
    ]  # fmt: skip
    # Kill train.py (SIGKILL, no clean-up) once the first member has completed an epoch.
    first = subprocess.Popen([sys.executable, *cmd], cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # fmt: skip
    # tf.train.CheckpointManager writes its index file "checkpoint" once an epoch's checkpoint is saved.
    index = os.path.join(RunDir(work).member_dir(0, 0), CHECKPOINTS, "checkpoint")
    deadline = time.time() + 600
    while not _has_line(index) and time.time() < deadline and first.poll() is None:
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert _has_line(index), f"train.py never completed an epoch (exit code {first.returncode})"
    assert not os.path.exists(os.path.join(RunDir(work).member_dir(0, 0), DONE))
    proc = _python(*cmd)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr
    return work


def test_resumed_run_has_every_epoch_once_and_all_outputs(run_dir):
    for g in range(2):
        for k in range(2):
            member = os.path.join(run_dir, f"gen{g}", f"member{k}")
            epochs = [json.loads(line)["epoch"] for line in open(os.path.join(member, "history.jsonl"))]
            assert epochs == [1, 2, 3], (member, epochs)
            assert os.path.exists(os.path.join(member, "done.json"))
    assert os.path.exists(os.path.join(run_dir, "gen0", "soft_labels.npz"))
    assert not glob.glob(os.path.join(run_dir, "**", ".tmp-*"), recursive=True)
    metrics = json.load(open(os.path.join(run_dir, "eval", "metrics.json")))
    expected = {
        "gen0_single",
        "gen0_ensemble",
        "gen1_single",
        "gen1_ensemble",
        "temperature_scaling",
        "mc_dropout",
    }
    assert expected <= set(metrics["methods"])
    for method in metrics["methods"].values():
        assert 0.0 <= method["expr"]["ece"] <= 1.0 and 0.0 <= method["ood"]["auroc"] <= 1.0
    assert {"dirichlet_single", "dirichlet_density"} <= set(metrics["methods"])
    for name in ("student_float32", "student_int8", "ensemble_int8", "student_dirichlet_int8"):
        assert os.path.exists(os.path.join(run_dir, "export", f"{name}.tflite"))
        assert os.path.exists(os.path.join(run_dir, "export", f"{name}.json"))


def test_evaluate_py_and_export_cli_rerun_on_the_finished_run(run_dir, tmp_path):
    proc = _python("evaluate.py", f"--workdir={run_dir}", f"--out_dir={tmp_path / 'eval'}", "--mc_passes=3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert os.path.exists(tmp_path / "eval" / "report.md")
    proc = _python(
        "-m", "emenet_tf.export", f"--workdir={run_dir}", f"--out={tmp_path / 'export'}", "--allow_degraded"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert os.path.exists(tmp_path / "export" / "student_int8.tflite")


def test_edge_cli_reads_the_exported_models(run_dir):
    images = sorted(glob.glob(os.path.join(run_dir, "..", "data", "cropped_aligned", "*", "0000[1-3].jpg")))[
        :3
    ]
    for name in ("student_int8", "ensemble_int8"):
        model = os.path.join(run_dir, "export", f"{name}.tflite")
        proc = _python("-m", "edge.predict", "--model", model, "--no_face_detection", *images, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        records = [json.loads(line) for line in proc.stdout.splitlines()]
        assert len(records) == len(images)
        assert abs(sum(records[0]["expression"]["probs"].values()) - 1.0) < 0.02
        assert ("ood" in records[0]) == (name == "ensemble_int8")
