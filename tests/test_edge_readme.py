"""edge/README.md runs as written: its Python block and every ``emenet-predict`` command in it, on the
tests' tiny models laid out under the file names the exporter writes."""

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig

import cv2
import numpy as np
import pytest

from edge import predict as cli
from edge import runner
from tests.edge_fixtures import (
    make_dirichlet_fixture,
    make_fixture_model,
    make_stream_fixture,
    rendered_face,
    shared_dir,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "edge", "README.md")
MARKER = "<!-- tests/test_edge_readme.py runs the next block"
PROGRAMS = (["emenet-predict"], ["python", "-m", "edge.predict"])
EXPORTED = {  # the exporter's file names -> the fixture model laid there (the same kind of model)
    "runs/default/export/student_int8.tflite": lambda out: make_fixture_model(out, "single", quantize="int8"),
    "runs/default/export/ensemble_int8.tflite": lambda out: make_fixture_model(
        out, "ensemble", quantize="int8", quantized_outputs=True
    ),
    "runs/default/export/student_dirichlet_int8.tflite": lambda out: make_dirichlet_fixture(out),
    "runs/temporal/export/student_stream_int8.tflite": lambda out: make_stream_fixture(out, quantize="int8"),
}


def readme() -> str:
    with open(README, encoding="utf-8") as f:
        return f.read()


def python_block(text: str) -> str:
    """The fenced python block that follows MARKER."""
    found = re.search(re.escape(MARKER) + r".*?\n```python\n(.*?)\n```", text, re.S)
    assert found, f"{README}: no python block after {MARKER!r}"
    return found.group(1)


def commands(text: str) -> list:
    """Every command line of the README's ```sh blocks that runs the edge CLI."""
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        lines += [
            line.strip()
            for line in block.splitlines()
            if line.strip().startswith(("emenet-predict", "python -m edge"))
        ]
    return lines


def write_video(path: str, frames: list) -> str:
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 10.0, frames[0].shape[1::-1])
    assert writer.isOpened(), path
    for rgb in frames:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder laid out as the README's commands expect: the models under the export's names, and
    photo.jpg, photos/, crops/, clip.mp4 showing a rendered synthetic face."""
    folder = tmp_path_factory.mktemp("readme")
    models = shared_dir(tmp_path_factory)
    for name, make in EXPORTED.items():
        source = make(models)
        os.makedirs(folder / os.path.dirname(name), exist_ok=True)
        shutil.copy(source, folder / name)
        shutil.copy(source[: -len(".tflite")] + ".json", folder / (name[: -len(".tflite")] + ".json"))
    face = cv2.resize(rendered_face(tmp_path_factory.mktemp("readme_face") / "data"), (160, 160))
    canvas = np.full((240, 320, 3), 90, np.uint8)
    canvas[40:200, 80:240] = face
    cv2.imwrite(str(folder / "photo.jpg"), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    for sub, images in (("photos", [canvas, canvas[:, ::-1]]), ("crops", [face, face[:, ::-1]])):
        (folder / sub).mkdir()
        for k, rgb in enumerate(images):
            cv2.imwrite(
                str(folder / sub / f"{k}.png"), cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
            )
    write_video(str(folder / "clip.mp4"), [np.roll(canvas, 3 * k, axis=1) for k in range(12)])
    return folder


def test_the_readme_commands_use_every_exported_model():
    used = {word for line in commands(readme()) for word in shlex.split(line) if word.endswith(".tflite")}
    assert used == set(EXPORTED)


@pytest.mark.parametrize(
    "line", commands(readme()), ids=[f"command{k}" for k in range(len(commands(readme())))]
)
def test_readme_command_runs_as_written(workspace, line, monkeypatch, capsys):
    """In-process (``edge.predict.main``) in the workspace; a camera is played from clip.mp4."""
    real_capture = cv2.VideoCapture

    def camera(source, *args):
        return real_capture(str(workspace / "clip.mp4") if isinstance(source, int) else source)

    monkeypatch.setattr(runner.cv2, "VideoCapture", camera)
    monkeypatch.chdir(workspace)
    words = shlex.split(line, comments=True)
    program = next(p for p in PROGRAMS if words[: len(p)] == p)
    code = cli.main(words[len(program) :])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Traceback" not in captured.err and "error:" not in captured.err, captured.err
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert any("expression" in r for r in records), captured.out
    for option in ("--draw", "--csv"):
        if option in words:
            path = workspace / words[words.index(option) + 1]
            assert path.exists() and (path.is_dir() and any(path.iterdir()) or path.stat().st_size > 0), path


def test_readme_python_block_runs_as_written(workspace):
    """In a fresh Python in which importing TensorFlow or emenet_tf fails, from the workspace."""
    guard = (
        "import sys\n"
        "for name in ('tensorflow', 'tf_keras', 'keras', 'emenet_tf'):\n"
        "    sys.modules[name] = None\n"
    )
    code = guard + python_block(readme())
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=workspace, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 3, proc.stdout  # one face: its line, its dict, and the crop's answer
    box = ast.literal_eval(lines[0][: lines[0].index(")") + 1])
    assert (
        ast.literal_eval(lines[1])["box"] == list(box) and len(ast.literal_eval(lines[1])["keypoints"]) == 6
    )


@pytest.mark.slow
def test_readme_commands_run_with_pip_install_edge(workspace, tmp_path):
    """CI-style: ``pip install ./edge`` into a fresh virtual environment (its dependencies from this
    one through a .pth file: the packaging is tested, not a download), then every command as written,
    by bash, from the workspace. No camera here: the camera's command must fail in one line."""
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
    bin_dir = tmp_path / "venv" / "bin"
    site = subprocess.run(
        [bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    with open(os.path.join(site, "edge_test_deps.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    install = subprocess.run(
        [bin_dir / "pip", "install", "-q", "--no-deps", os.path.join(ROOT, "edge")],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    for line in commands(readme()):
        proc = subprocess.run(["bash", "-c", line], capture_output=True, text=True, env=env, cwd=workspace)
        assert "Traceback" not in proc.stderr, (line, proc.stderr)
        if "--camera" in line and proc.returncode == 2:
            assert "error: camera 0: cannot open" in proc.stderr, (line, proc.stderr)
            continue
        assert proc.returncode == 0 and "error:" not in proc.stderr, (line, proc.stderr)
        assert all(json.loads(out) for out in proc.stdout.splitlines()), line
