"""The configuration: one set of defaults shared with train.py's flags, presets, checks, reruns."""

import dataclasses
import json
import os
import re
import subprocess
import sys

import pytest
from absl import flags

from emenet_tf.cli.flags import config_from_flags, define_config_flags
from emenet_tf.config import PRESETS, RESUMABLE, TrainConfig, differences, field_defaults, make_config
from emenet_tf.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _flags(argv):
    values = flags.FlagValues()
    define_config_flags(values)
    values(["prog", *argv])
    return values


def test_every_field_has_a_flag_with_the_same_default_and_help():
    values = _flags([])
    for field in dataclasses.fields(TrainConfig):
        assert values[field.name].default == field.default, field.name
        assert values[field.name].help.endswith(field.metadata["help"]), field.name  # enums: "<a|b>: " first


def test_train_py_helpfull_shows_the_config_defaults():
    proc = subprocess.run(
        [sys.executable, "train.py", "--helpfull"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stderr[-2000:]  # absl: 1
    values = _flags([])
    section = proc.stdout[
        proc.stdout.index("emenet_tf.cli.flags:") : proc.stdout.index("emenet_tf.cli.train:")
    ]
    entries = {}
    for entry in re.split(r"\n  --", section)[1:]:
        name = entry.split(":")[0].removeprefix("[no]")
        entries[name] = " ".join(entry.split())
    assert set(entries) == set(field_defaults())
    for name in field_defaults():
        shown = values[name].default_as_str  # how absl prints the default TrainConfig holds
        assert (f"(default: {shown})" in entries[name]) if shown else ("(default: '" not in entries[name]), (
            name
        )


def test_paper_preset_and_explicit_flags_win(tmp_path):
    cfg = config_from_flags(_flags(["--preset=paper", f"--workdir={tmp_path}"]))
    for name, value in PRESETS["paper"].items():
        assert getattr(cfg, name) == value, name
    assert (cfg.model, cfg.ensemble_size, cfg.epochs, cfg.learning_rate) == ("full", 5, 10, 1e-3)
    cfg = config_from_flags(_flags(["--preset=paper", "--epochs=2", f"--workdir={tmp_path}"]))
    assert cfg.epochs == 2 and cfg.ensemble_size == 5 and cfg.preset == "paper"
    demo = config_from_flags(_flags([f"--workdir={tmp_path}"]))
    assert demo == TrainConfig(workdir=str(tmp_path)), "the demo preset is the defaults"


def test_paper_method_preset_changes_only_the_students_training(tmp_path):
    demo, paper = make_config(workdir=str(tmp_path)), make_config("paper_method", workdir=str(tmp_path))
    changed = {k for k, v in paper.to_dict().items() if demo.to_dict()[k] != v}
    assert changed == {"preset", "hard_label_weight", "teacher_calibration"}
    assert (paper.hard_label_weight, paper.teacher_calibration) == (0.0, "none")
    # the defaults are the measured method (docs/RESEARCH.md), not the paper's
    assert (demo.hard_label_weight, demo.teacher_calibration, demo.selection_split) == (
        1.0,
        "temperature",
        "fit",
    )


def test_paths_are_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = config_from_flags(_flags(["--workdir=w", "--data_dir=d"]))
    assert cfg.workdir == str(tmp_path / "w") and cfg.data_dir == str(tmp_path / "d")


@pytest.mark.parametrize(
    "values, message",
    [
        ({"seed": -1}, "--seed must be in [0, 2147483647], got -1"),
        ({"learning_rate": float("inf")}, "--learning_rate must be a finite number"),
        ({"learning_rate": float("nan")}, "--learning_rate must be a finite number"),
        ({"learning_rate": 0.0}, "--learning_rate must be > 0"),
        ({"va_weight": -1.0}, "--va_weight must be >= 0"),
        ({"au_weight": 0.0, "expr_weight": 0.0, "va_weight": 0.0}, "nothing would be trained"),
        ({"lr_decay_factor": 2.0}, "--lr_decay_factor must be in (0, 1]"),
        ({"synthetic_train_videos": 0}, "--synthetic_train_videos must be >= 1"),
        ({"synthetic_degraded_frames": 1.0}, "--synthetic_degraded_frames must be in [0, 1)"),
        ({"verbose": 5}, "--verbose must be 0, 1 or 2"),
        ({"ensemble_size": 2, "member": 2}, "--member must be in [0, 2)"),
        ({"strategy": "tpu"}, "--strategy must be one of"),
    ],
)
def test_bad_values_are_one_line_config_errors(values, message):
    with pytest.raises(ConfigError) as err:
        TrainConfig(workdir="w", **values)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="--preset must be one of"):
        make_config("fast")


def test_differences_ignore_resumable_fields_and_missing_keys_count_as_defaults():
    cfg = TrainConfig(workdir="a", learning_rate=0.1, generations=5, verbose=0)
    saved = {"workdir": "b", "learning_rate": 0.003, "generations": 3, "verbose": 2}  # an older file
    assert differences(saved, cfg) == {"learning_rate": (0.003, 0.1)}
    assert set(RESUMABLE) >= {"workdir", "member", "verbose", "generations"}


def test_config_round_trips_through_json(tmp_path):
    cfg = TrainConfig(workdir=str(tmp_path), model="tiny", synthetic_train_videos=4, data_dir=None)
    cfg.save(str(tmp_path / "config.json"))
    assert TrainConfig.load(str(tmp_path / "config.json")) == cfg
    assert json.load(open(tmp_path / "config.json"))["synthetic_train_videos"] == 4
