"""pip install . (and ./edge) gives entry points that run from any folder. Slow: builds real wheels."""

import os
import subprocess
import sys
import sysconfig

import pytest

from emenet_tf.data import synthetic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow


def _venv(path) -> str:
    """A fresh virtualenv whose dependencies (TensorFlow & co.) come from this interpreter's
    site-packages through a .pth file: the packaging is what is tested, not a 600 MB download."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    site = subprocess.run(
        [os.path.join(path, "bin", "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    with open(os.path.join(site, "emenet_test_deps.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    return os.path.join(path, "bin")


def _run(args, cwd, **kw):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, **kw)


def test_pip_install_gives_entry_points_that_run_from_any_folder(tmp_path):
    bin_dir = _venv(tmp_path / "venv")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = _run([os.path.join(bin_dir, "pip"), "install", "-q", "--no-deps", ROOT], elsewhere)
    assert proc.returncode == 0, proc.stderr[-3000:]
    where = _run(
        [
            os.path.join(bin_dir, "python"),
            "-c",
            "import emenet_tf, edge; print(emenet_tf.__file__, edge.__file__)",
        ],
        elsewhere,
    )
    assert str(tmp_path / "venv") in where.stdout and ROOT not in where.stdout, where.stdout
    help_text = _run([os.path.join(bin_dir, "emenet-train"), "--helpfull"], elsewhere)
    assert "--preset" in help_text.stdout and "Traceback" not in help_text.stderr
    bad = _run([os.path.join(bin_dir, "emenet-evaluate"), "--workdir", "nowhere"], elsewhere)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith(
        "evaluate.py: error: nowhere"
    )
    assert _run([os.path.join(bin_dir, "emenet-predict"), "--help"], elsewhere).returncode == 0
    exported = _run([os.path.join(bin_dir, "emenet-export"), "--helpfull"], elsewhere)  # absl: exit 0 or 1
    assert "--[no]allow_degraded" in exported.stdout and "Traceback" not in exported.stderr, exported.stderr[
        -2000:
    ]
    prepared = _run([os.path.join(bin_dir, "emenet-prepare"), "--helpfull"], elsewhere)
    assert "--detector" in prepared.stdout and "Traceback" not in prepared.stderr, prepared.stderr[-2000:]
    study = _run([os.path.join(bin_dir, "emenet-study"), "--helpfull"], elsewhere)
    assert "--replicates" in study.stdout and "--teacher_calibration" in study.stdout, study.stderr[-2000:]
    data = str(tmp_path / "data")
    synthetic.generate(
        data, seed=0, train_videos=2, val_videos=1, frames_per_video=20, image_size=32, ood_images=4
    )
    train = _run(
        [os.path.join(bin_dir, "emenet-train"), f"--data_dir={data}", "--workdir=run", "--model=tiny",
         "--ensemble_size=1", "--generations=1", "--epochs=1", "--steps_per_epoch=1", "--batch_size=8",
         "--verbose=0", "--noexport", "--noevaluate"], elsewhere,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    assert (elsewhere / "run" / "gen0" / "member0" / "done.json").exists()
    evaluated = _run([os.path.join(bin_dir, "emenet-evaluate"), "--workdir=run", "--mc_passes=2"], elsewhere)
    assert evaluated.returncode == 0 and (elsewhere / "run" / "eval" / "metrics.json").exists(), (
        evaluated.stderr[-3000:]
    )


def test_pip_install_edge_alone(tmp_path):
    bin_dir = _venv(tmp_path / "venv")
    proc = _run(
        [os.path.join(bin_dir, "pip"), "install", "-q", "--no-deps", os.path.join(ROOT, "edge")], tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    check = _run(
        [os.path.join(bin_dir, "python"), "-c",
         "import sys, edge.predict, edge; print(edge.__version__, 'emenet_tf' in sys.modules, 'tensorflow' in sys.modules)"],
        tmp_path,
    )  # fmt: skip
    assert check.returncode == 0 and check.stdout.split()[1:] == ["False", "False"], check.stderr[-2000:]
    assert _run([os.path.join(bin_dir, "emenet-predict"), "--help"], tmp_path).returncode == 0
