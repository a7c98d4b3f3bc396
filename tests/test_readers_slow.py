"""End to end: each dataset reader's fixture trained through the project's own job (tiny settings).

Slow (a tiny model, one generation of one member, two steps, then evaluation): run with -m slow.
"""

import numpy as np
import pytest

from tests import reader_fixtures as fx


def folder_data(root) -> str:
    rows = []
    for i in range(40):
        expr = ["happy", "sad", "neutral", "anger", "fear", "disgust", "surprise"][i % 7]
        au = [str(i % 2), str((i // 2) % 2)] if i % 3 else ["", ""]
        va = [f"{(i % 9 - 4) / 4:.2f}", f"{(i % 5 - 2) / 2:.2f}"] if i % 4 else ["", ""]
        rows.append([f"img/{i:03d}.jpg", expr, *au, *va])
    return fx.write_folder_csv(root, rows)


def fer2013_data(root) -> str:
    return fx.write_fer2013(root, fx.fer_rows(40))


def ferplus_data(root) -> str:
    rows = []
    for i in range(40):
        votes = [0] * 10
        votes[i % 7] += 6
        votes[(i + 1) % 8] += 4
        rows.append(("PublicTest" if i % 4 == 0 else "Training", f"fer{i:07d}.png", votes))
    return fx.write_ferplus(root, rows)


def rafdb_data(root) -> str:
    lines = [f"train_{i:05d}.jpg {i % 7 + 1}" for i in range(1, 31)] + [
        f"test_{i:04d}.jpg {i % 7 + 1}" for i in range(1, 11)
    ]
    return fx.write_rafdb(root, lines)


def affectnet_data(root) -> str:
    rows = [
        fx.affectnet_row(f"{i % 3}/{i:03d}.jpg", i % 8, (i % 9 - 4) / 4, (i % 5 - 2) / 2) for i in range(40)
    ]
    return fx.write_affectnet(root, rows[:30], rows[30:])


def expw_data(root) -> str:
    photos = {f"p{i:03d}.jpg": fx.small_image(i, 120) for i in range(40)}
    return fx.write_expw(root, [f"p{i:03d}.jpg 0 10 10 90 90 90.0 {i % 7}" for i in range(40)], photos)


def afew_va_data(root) -> str:
    clips = {f"{c:03d}": {f"{k:05d}": ((c % 7) - 3.0, 2.0 - k, None) for k in range(4)} for c in range(1, 13)}
    return fx.write_afew_va(root, clips)


def disfa_data(root) -> str:
    subjects = {}
    for i in range(4):
        labels = {
            n: list(np.random.default_rng(i * 10 + n).integers(0, 6, 8)) for n in (1, 2, 4, 6, 12, 15, 25, 26)
        }
        subjects[f"SN00{i + 1}"] = (fx.cartoon_frames(i, 8), labels)
    return fx.write_disfa(root, subjects)


DATA = {
    "folder": folder_data,
    "fer2013": fer2013_data,
    "ferplus": ferplus_data,
    "rafdb": rafdb_data,
    "affectnet": affectnet_data,
    "expw": expw_data,
    "afew_va": afew_va_data,
    "disfa": disfa_data,
}
TASKS = {
    "folder": {"au", "expr", "va"},
    "fer2013": {"expr"},
    "ferplus": {"expr"},
    "rafdb": {"expr"},
    "affectnet": {"expr", "va"},
    "expw": {"expr"},
    "afew_va": {"va"},
    "disfa": {"au"},
}


# Each reader alone, then three together (per-dataset tasks, FER+'s distributions beside datasets without).
RUNS = [(name,) for name in DATA] + [("ferplus", "affectnet", "disfa")]


@pytest.mark.slow
@pytest.mark.parametrize("names", RUNS, ids=["+".join(r) for r in RUNS])
def test_readers_train_end_to_end(tmp_path, names):
    from emenet_tf import job
    from emenet_tf.config import TrainConfig
    from emenet_tf.data import sources
    from emenet_tf.io import read_json
    from emenet_tf.rundir import RunDir

    paths = {name: DATA[name](tmp_path / name) for name in names}
    for name, path in paths.items():
        splits = sources.reader(name).read(path, str(tmp_path / "check" / name))
        assert set(splits["train"].labelled_tasks()) == TASKS[name] and len(splits["validation"]) > 0
    cfg = TrainConfig(
        workdir=str(tmp_path / "run"),
        data=",".join(f"{name}:{path}" for name, path in paths.items()),
        model="tiny",
        ensemble_size=1,
        generations=1,
        epochs=1,
        steps_per_epoch=2,
        batch_size=8,
        verbose=0,
        dirichlet_student=False,
    )
    result = job.run_job(cfg, evaluate=True, export=False)
    assert result["generations_complete"] == 1 and result["metrics"]
    assert result["dropped_images"]["bad_images"] == 0  # every indexed image decodes in the pipeline
    summary = read_json(RunDir(cfg.workdir).data_summary_path)
    assert set(summary["train"]["tasks"]) == set().union(*(TASKS[n] for n in names))
    if len(names) > 1:
        datasets = summary["train"]["datasets"]
        assert {k: set(v["tasks"]) for k, v in datasets.items()} == {n: TASKS[n] for n in names}
        assert summary["train"]["expr_distributions"] == datasets["ferplus"]["frames"]
    metrics = result["metrics"]
    if "ferplus" in names:  # every method scored against the annotators, with their own entropy as the floor
        floor = metrics["limits"]["votes"]["nll_votes"]
        for method, row in metrics["methods"].items():
            expr = row["expr"]
            assert expr["kl_votes"] >= 0.0 and expr["nll_votes"] >= floor, method
            # nll_votes = the votes' entropy + KL on the same rows; float64 sums of a few rows: 1e-9
            assert expr["nll_votes"] == pytest.approx(floor + expr["kl_votes"], abs=1e-9), method
    if len(names) > 1:
        assert set(metrics["by_dataset"]) == set(names)
