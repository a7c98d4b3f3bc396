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
from emenet_tf.config import PRESETS, RESUMABLE, TrainConfig, differences, flat, make_config
from emenet_tf.data.synthetic_config import SyntheticConfig
from emenet_tf.errors import ConfigError
from emenet_tf.export.options import ExportOptions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _flags(argv):
    values = flags.FlagValues()
    define_config_flags(values)
    values(["prog", *argv])
    return values


def test_every_field_has_a_flag_with_the_same_default_and_help():
    values = _flags([])
    fields = [(f.name, f) for f in dataclasses.fields(TrainConfig) if f.name != "synthetic"]
    fields += [(f"synthetic_{f.name}", f) for f in dataclasses.fields(SyntheticConfig)]
    for name, field in fields:
        assert values[name].default == field.default, name
        assert values[name].help.endswith(field.metadata["help"]), name  # enums: "<a|b>: " first


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
    config = set(flat(TrainConfig().to_dict())) | {"data_dir"}
    export = {f.name for f in dataclasses.fields(ExportOptions)}  # export's own options, train.py takes them
    assert set(entries) == config | export
    for name in config:
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


def test_paths_are_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = config_from_flags(_flags(["--workdir=w", "--data_dir=d"]))
    assert cfg.workdir == str(tmp_path / "w") and cfg.data == f"affwild2:{tmp_path / 'd'}"
    cfg = config_from_flags(_flags(["--workdir=w", "--data=affwild2:x,affwild2:d:0.5"]))
    assert cfg.data == f"affwild2:{tmp_path / 'x'},affwild2:{tmp_path / 'd'}:0.5"


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
        ({"synthetic": {"train_videos": 0}}, "--synthetic_train_videos must be in [1, 10000]"),
        ({"synthetic": {"degraded_frames": 1.0}}, "--synthetic_degraded_frames must be in [0, 1)"),
        ({"image_size": 100000}, "--image_size must be <= 1024"),
        ({"batch_size": 10**6}, "--batch_size must be <= 4096"),
        ({"data": "affwild"}, "unknown dataset 'affwild'"),
        ({"data": "affwild2"}, "give the dataset's path"),
        ({"data": "synthetic:/x"}, "takes no path"),
        ({"data": "affwild2:/a:0"}, "the weight must be a number > 0"),
        ({"data": "affwild2:/a,affwild2:/a"}, "names one dataset twice"),
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
    cfg = TrainConfig(workdir=str(tmp_path), model="tiny", synthetic=SyntheticConfig(train_videos=4))
    cfg.save(str(tmp_path / "config.json"))
    assert TrainConfig.load(str(tmp_path / "config.json")) == cfg
    assert json.load(open(tmp_path / "config.json"))["synthetic"]["train_videos"] == 4


def test_an_older_config_json_is_read_with_its_documented_meaning(tmp_path):
    """A config.json from before the data and benchmark settings moved: flat synthetic_* fields (None:
    the generator's default then), data_dir, retired fields holding the behaviour that remains."""
    old = {**{k: v for k, v in TrainConfig(workdir="w").to_dict().items() if k not in ("data", "synthetic")}}
    old.update(data_dir=None, synthetic_seed=3, synthetic_train_videos=None, synthetic_val_videos=18)
    old.update(temporal_head="gru", dirichlet_target="members", ood_score="epistemic", preset="paper_method")
    path = tmp_path / "config.json"
    path.write_text(json.dumps(old))
    cfg = TrainConfig.load(str(path))
    assert cfg.data == "synthetic" and cfg.preset == "demo"
    assert cfg.synthetic == SyntheticConfig(seed=3, train_videos=24, val_videos=18)
    assert differences(old, cfg) == {}
    path.write_text(json.dumps({**old, "data_dir": "/data/aw2"}))
    assert TrainConfig.load(str(path)).data == "affwild2:/data/aw2"


@pytest.mark.parametrize(
    "field, value", [("temporal_head", "residual"), ("dirichlet_target", "proxy"), ("ood_score", "total")]
)
def test_an_older_run_of_a_retired_option_is_refused_in_one_line(tmp_path, field, value):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**TrainConfig(workdir="w").to_dict(), field: value}))
    with pytest.raises(ConfigError) as err:
        TrainConfig.load(str(path))
    message = str(err.value)
    assert str(path) in message and f"--{field}" in message and "retired" in message and "\n" not in message


@pytest.mark.parametrize(
    "argv, said",
    [
        (["--temporal_head=residual"], "--temporal_head was retired: the GRU head is the temporal head"),
        (["--dirichlet_target", "proxy"], "--dirichlet_target was retired"),
        (["--ood_score=total"], "--ood_score was retired"),
        (["--preset=paper_method"], "--preset=paper_method was retired: use --hard_label_weight 0"),
        (["--preset=Paper"], "value should be one of <demo|paper>"),
        (["--no_such_flag"], "Unknown command line flag 'no_such_flag'"),
    ],
)
def test_retired_and_bad_flags_end_in_one_line(argv, said):
    proc = subprocess.run(
        [sys.executable, "train.py", *argv], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train.py: error: ") and said in lines[0], proc.stderr
