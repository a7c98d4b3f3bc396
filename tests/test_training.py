"""Training: a short run lowers the loss, resume after an interruption, strategies, train.py flags."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from emenet_tf._keras import keras, tf
from emenet_tf.config import TrainConfig
from emenet_tf.data import affwild2, pipeline, synthetic
from emenet_tf.errors import ConfigError, RunError, TrainingError, WriteError
from emenet_tf.losses import class_weights
from emenet_tf.models import build_emenet
from emenet_tf.rundir import RunDir
from emenet_tf.training import checkpoints, objectives, trainers
from emenet_tf.training import member as member_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("train_data") / "data")
    synthetic.generate(
        out, seed=1, train_videos=2, val_videos=1, frames_per_video=40, image_size=32, ood_images=4
    )
    return out


@pytest.fixture(scope="module")
def splits(data_dir):
    return affwild2.load_splits(data_dir)


def _cfg(tmp_path, data_dir, **kw):
    base = dict(
        workdir=str(tmp_path / "run"), data="affwild2:" + str(data_dir), model="tiny", ensemble_size=1, epochs=3,
        steps_per_epoch=2, batch_size=16, verbose=0,
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


def test_a_short_training_lowers_the_loss(splits):
    train = splits["train"]
    keras.utils.set_random_seed(0)
    weights = class_weights(train)
    setup = objectives.LossSetup(tuple(weights["au_pos_weight"]), tuple(weights["expr_class_weight"]))
    trainer = trainers.MultitaskTrainer(build_emenet("tiny", seed=0), setup)
    trainer.compile(optimizer=keras.optimizers.Adam(3e-3))
    ds = pipeline.make_dataset(train.subset(np.arange(32)), 32, 16, training=False).cache()
    before = trainer.evaluate(ds, verbose=0, return_dict=True)
    trainer.fit(ds, epochs=25, verbose=0)
    after = trainer.evaluate(ds, verbose=0, return_dict=True)
    assert after["loss"] < 0.9 * before["loss"], (before, after)
    assert after["expr"] < before["expr"] and after["au"] < before["au"]
    # Inference mode must see the images: BatchNorm moving statistics have caught up with the
    # batch statistics (with a too-slow momentum every frame got the same prediction).
    # Measured: spread ~0.27 with momentum 0.9, ~1e-4 with 0.99 after a few hundred steps.
    images = next(iter(ds))["image"]
    spread_eval = trainer.net(images, training=False)["expr"].numpy().std(axis=0).mean()
    assert spread_eval > 0.05, spread_eval


def test_soft_label_mode_uses_soft_targets_only(splits):
    train = splits["train"]
    weights = class_weights(train)
    setup = objectives.LossSetup(
        tuple(weights["au_pos_weight"]), tuple(weights["expr_class_weight"]), soft=True
    )
    net = build_emenet("tiny", seed=0)
    batch = next(
        iter(pipeline.make_dataset(train, 32, 8, training=False, soft_labels=_uniform_soft(len(train))))
    )
    hard_labels_scrambled = dict(batch, expr=batch["expr"] * 0 + 3, au=1.0 - batch["au"])
    a = objectives.task_losses(setup, batch, net(batch["image"]))
    b = objectives.task_losses(setup, hard_labels_scrambled, net(batch["image"]))
    for task in ("au", "expr", "va"):
        assert float(a[task]) == pytest.approx(float(b[task]))
    mixed = objectives.LossSetup(
        setup.au_pos_weight, setup.expr_class_weight, soft=True, hard_label_weight=0.5
    )
    c = objectives.task_losses(mixed, hard_labels_scrambled, net(batch["image"]))
    assert float(c["expr"]) != pytest.approx(float(a["expr"]))


def _dirichlet_soft(n, members=3, seed=0):
    """Soft labels with every member's logits (float16, as stored), members that disagree."""
    rng = np.random.default_rng(seed)
    soft = _uniform_soft(n)
    shapes = {"au": (12,), "expr": (7,), "va": (2, 20)}
    for task, key in pipeline.MEMBER_LOGITS.items():
        soft[key] = rng.normal(size=(n, members) + shapes[task]).astype(np.float16)
    return soft


def test_the_dirichlet_term_moves_only_the_precision_heads(splits):
    """The mean is the paper's student: the Dirichlet term's gradient reaches only the precision heads,
    and the whole Dirichlet student's loss is its soft losses plus that term."""
    from emenet_tf._keras import tf

    train = splits["train"]
    weights = class_weights(train)
    setup = objectives.LossSetup(
        tuple(weights["au_pos_weight"]), tuple(weights["expr_class_weight"]), soft=True, dirichlet=True
    )
    net = build_emenet("tiny", seed=0, dirichlet=True)
    soft = _dirichlet_soft(len(train))
    batch = next(iter(pipeline.make_dataset(train, 32, 8, training=False, soft_labels=soft)))
    assert batch["soft_member_va_logits"].dtype == tf.float16 and batch["soft_member_va_logits"].shape == (
        8,
        3,
        2,
        20,
    )
    with tf.GradientTape(persistent=True) as tape:
        outputs = net(batch["image"])
        total = objectives.task_losses(setup, batch, outputs)
        paper = objectives.soft_losses(setup, batch, outputs)
        term = tf.add_n([total[t] - paper[t] for t in total])
    variables = net.trainable_variables
    grads = dict(zip([v.name for v in variables], tape.gradient(term, variables), strict=True))
    moved = {name for name, g in grads.items() if g is not None and float(tf.reduce_max(tf.abs(g))) > 0}
    assert moved and all("precision" in name for name in moved), sorted(moved)
    assert {n.split("/")[0] for n in moved} >= {
        "precision_hidden",
        "expr_precision",
        "au_precision",
        "va_precision",
    }
    assert all(np.isfinite(float(v)) for v in total.values())


def _uniform_soft(n):
    return {"au": np.full((n, 12), 0.5), "expr": np.full((n, 7), 1 / 7), "va": np.full((n, 2, 20), 0.05)}


def test_member_writes_checkpoints_best_weights_and_logs(tmp_path, data_dir, splits):
    cfg = _cfg(tmp_path, data_dir, epochs=2)
    weights = class_weights(splits["train"])
    best = member_lib.train_member(cfg, 0, 0, splits["train"], splits["validation"], weights)
    run = RunDir(cfg.workdir)
    member = run.member_dir(0, 0)
    assert os.path.exists(best) and run.is_done(0, 0)
    history = [json.loads(line) for line in open(os.path.join(member, "history.jsonl"))]
    assert [h["epoch"] for h in history] == [1, 2]
    assert {"train/loss", "validation/score", "validation/expr_score"} <= set(history[0])
    assert os.listdir(os.path.join(member, "tensorboard"))
    assert not [f for f in os.listdir(member) if f.startswith(".tmp")]
    assert not os.path.exists(os.path.join(member, "ckpt"))  # removed once the member is done
    done = json.load(open(run.done_path(0, 0)))
    best_epoch = max(history, key=lambda h: h["validation/score"])["epoch"]
    assert done["best_epoch"] == best_epoch
    assert done["best_score"] == pytest.approx(max(h["validation/score"] for h in history))
    net = run.load_member(cfg, 0, 0)
    assert net.count_params() == build_emenet("tiny").count_params()


def test_resume_continues_from_the_last_completed_epoch(tmp_path, data_dir, splits, monkeypatch):
    cfg = _cfg(tmp_path, data_dir, epochs=3, lr_decay_epochs=1, learning_rate=1e-2)
    weights = class_weights(splits["train"])
    original = checkpoints.EpochEnd.on_epoch_end

    def killed_after_two(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch + 1 == 2:
            raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(checkpoints.EpochEnd, "on_epoch_end", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        member_lib.train_member(cfg, 0, 0, splits["train"], splits["validation"], weights)
    run = RunDir(cfg.workdir)
    member = run.member_dir(0, 0)
    assert open(os.path.join(member, "ckpt", "checkpoint")).read().count("ckpt-2") >= 1
    assert not run.is_done(0, 0)
    with pytest.raises(RunError, match="has not finished"):
        run.load_member(cfg, 0, 0)
    # A torn line from the kill must not survive the resume.
    with open(os.path.join(member, "history.jsonl"), "a") as f:
        f.write('{"epoch": 3, "train/lo')
    stale = os.path.join(member, ".tmp-1-abc-best.weights.h5")  # a write the kill interrupted
    open(stale, "wb").close()
    monkeypatch.setattr(checkpoints.EpochEnd, "on_epoch_end", original)
    member_lib.train_member(cfg, 0, 0, splits["train"], splits["validation"], weights)
    history = [json.loads(line) for line in open(os.path.join(member, "history.jsonl"))]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert not os.path.exists(stale)
    # The step decay continued from the restored optimizer step: x0.1 per epoch.
    np.testing.assert_allclose([h["lr"] for h in history], [1e-2, 1e-3, 1e-4], rtol=1e-5)
    # A finished member is skipped: nothing is appended.
    member_lib.train_member(cfg, 0, 0, splits["train"], splits["validation"], weights)
    assert len(open(os.path.join(member, "history.jsonl")).readlines()) == 3


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="ensemble_size"):
        TrainConfig(workdir="w", ensemble_size=0)
    with pytest.raises(ConfigError, match="member"):
        TrainConfig(workdir="w", ensemble_size=2, member=2)
    with pytest.raises(ConfigError, match="strategy"):
        TrainConfig(workdir="w", strategy="tpu")


def _run_python(code, timeout=300):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


@pytest.mark.slow
def test_mirrored_strategy_over_two_logical_cpus_trains(tmp_path, data_dir):
    code = f"""
        from emenet_tf._keras import tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from emenet_tf.training import member as member_lib, trainers
        from emenet_tf.config import TrainConfig
        from emenet_tf.data import affwild2
        from emenet_tf.losses import class_weights
        cfg = TrainConfig(workdir={str(tmp_path / "m")!r}, data="affwild2:" + {data_dir!r}, model="tiny", ensemble_size=1,
                          epochs=1, steps_per_epoch=2, batch_size=16, verbose=0, strategy="mirrored")
        strategy = trainers.make_strategy("mirrored")
        assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
        s = affwild2.load_splits(cfg.sources()[0].path)
        member_lib.train_member(cfg, 0, 0, s["train"], None, class_weights(s["train"]), strategy=strategy)
        from emenet_tf.rundir import RunDir
        print("REPLICAS", strategy.num_replicas_in_sync, RunDir(cfg.workdir).is_done(0, 0))
    """
    proc = _run_python(code)
    assert "REPLICAS 2 True" in proc.stdout, proc.stderr[-3000:]


@pytest.mark.slow
def test_mixed_precision_trains_on_cpu(tmp_path, data_dir):
    code = f"""
        from emenet_tf._keras import keras
        keras.mixed_precision.set_global_policy("mixed_float16")
        from emenet_tf.training import member as member_lib, trainers
        from emenet_tf.config import TrainConfig
        from emenet_tf.data import affwild2
        from emenet_tf.losses import class_weights
        cfg = TrainConfig(workdir={str(tmp_path / "mp")!r}, data="affwild2:" + {data_dir!r}, model="tiny", ensemble_size=1,
                          epochs=1, steps_per_epoch=2, batch_size=16, verbose=0, mixed_precision=True)
        s = affwild2.load_splits(cfg.sources()[0].path)
        member_lib.train_member(cfg, 0, 0, s["train"], s["validation"], class_weights(s["train"]))
        from emenet_tf.rundir import RunDir
        net = RunDir(cfg.workdir).load_member(cfg, 0, 0)
        print("DTYPE", net.layers[2].compute_dtype, RunDir(cfg.workdir).is_done(0, 0))
    """
    proc = _run_python(code)
    assert "DTYPE float16 True" in proc.stdout, proc.stderr[-3000:]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--model=giant"], "--model 'giant' is unknown"),
        (["--model=tiny", "--image_size=8"], "--image_size 8 is too small"),
        (["--ensemble_size=0"], "--ensemble_size must be >= 1"),
        (["--data_dir=/nonexistent/affwild2"], "no such file or folder"),
    ],
)
def test_train_py_bad_flags_give_one_line_errors(tmp_path, flags, message):
    proc = subprocess.run(
        [sys.executable, "train.py", f"--workdir={tmp_path}/w", *flags], cwd=ROOT,
        capture_output=True, text=True, timeout=120, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )  # fmt: skip
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_train_py_refuses_a_folder_that_is_not_affwild2(tmp_path):
    (tmp_path / "not_affwild").mkdir()
    proc = subprocess.run(
        [sys.executable, "train.py", f"--workdir={tmp_path}/w", f"--data_dir={tmp_path}/not_affwild"], cwd=ROOT,
        capture_output=True, text=True, timeout=120, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "not_affwild" in proc.stderr


def test_a_non_finite_loss_stops_with_one_error_and_nothing_finished(tmp_path, data_dir, splits, monkeypatch):
    cfg = _cfg(tmp_path, data_dir, epochs=2)
    original = trainers.MultitaskTrainer._total

    def exploding(self, batch, training):  # a learning rate that blows up, made deterministic
        total, parts = original(self, batch, training)
        return total * float("nan"), parts

    monkeypatch.setattr(trainers.MultitaskTrainer, "_total", exploding)
    with pytest.raises(TrainingError, match="loss became nan in epoch 1"):
        member_lib.train_member(
            cfg, 0, 0, splits["train"], splits["validation"], class_weights(splits["train"])
        )
    run = RunDir(cfg.workdir)
    assert not run.is_done(0, 0) and not os.path.exists(run.best_weights_path(0, 0))


def test_a_failed_checkpoint_write_is_one_error_naming_the_folder(tmp_path, data_dir, splits, monkeypatch):
    cfg = _cfg(tmp_path, data_dir, epochs=1)

    def disk_full(self, *args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")

    monkeypatch.setattr(tf.train.CheckpointManager, "save", disk_full)
    with pytest.raises(WriteError, match=r"ckpt: cannot write the checkpoint \(No space left on device\)"):
        member_lib.train_member(cfg, 0, 0, splits["train"], None, class_weights(splits["train"]))
    assert not RunDir(cfg.workdir).is_done(0, 0)


def test_a_failed_weights_write_leaves_no_file_a_rerun_would_trust(tmp_path, data_dir, splits, monkeypatch):
    cfg = _cfg(tmp_path, data_dir, epochs=1)
    real_open = open

    def full_disk_open(path, mode="r", *args, **kwargs):
        if "best.weights.h5" in str(path) and "w" in mode and ".tmp-" in str(path):
            raise OSError(28, "No space left on device")
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", full_disk_open)
    with pytest.raises(WriteError, match=r"best\.weights\.h5: cannot write \(No space left on device\)"):
        member_lib.train_member(cfg, 0, 0, splits["train"], None, class_weights(splits["train"]))
    monkeypatch.undo()
    run = RunDir(cfg.workdir)
    assert not run.is_done(0, 0) and not os.path.exists(run.best_weights_path(0, 0))
    assert not [f for f in os.listdir(run.member_dir(0, 0)) if f.startswith(".tmp")]
    # The rerun resumes from the saved checkpoint (no epoch to train) and finishes the member.
    member_lib.train_member(cfg, 0, 0, splits["train"], None, class_weights(splits["train"]))
    assert run.is_done(0, 0)
    assert len(open(os.path.join(run.member_dir(0, 0), "history.jsonl")).readlines()) == 1


def test_a_truncated_weights_file_is_one_error_naming_it(tmp_path, data_dir, splits):
    cfg = _cfg(tmp_path, data_dir, epochs=1)
    member_lib.train_member(cfg, 0, 0, splits["train"], None, class_weights(splits["train"]))
    run = RunDir(cfg.workdir)
    path = run.best_weights_path(0, 0)
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 3])
    with pytest.raises(RunError) as err:
        run.load_member(cfg, 0, 0)
    message = str(err.value)
    assert message.startswith(f"{path}: cannot read the member's weights") and "\n" not in message


def test_a_second_writer_of_a_member_is_refused_naming_the_holder(tmp_path, data_dir, splits):
    from emenet_tf import locks

    cfg = _cfg(tmp_path, data_dir, epochs=1)
    run = RunDir(cfg.workdir)
    os.makedirs(run.member_dir(0, 0))
    holder = subprocess.Popen(  # another process holding the member's lock
        [sys.executable, "-c", "import fcntl, json, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT);"
         "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, json.dumps({'pid': os.getpid(), 'host': 'h', 'since': 's',"
         "'command': 'train.py'}).encode()); print('held', flush=True); time.sleep(60)",
         os.path.join(run.member_dir(0, 0), ".lock")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(locks.LockHeld, match=rf"member0 .*is in use by pid {holder.pid} on h"):
            member_lib.train_member(cfg, 0, 0, splits["train"], None, class_weights(splits["train"]))
    finally:
        holder.kill()
        holder.wait()
    # The holder was killed: its lock is gone with it, and the next run takes over.
    member_lib.train_member(cfg, 0, 0, splits["train"], None, class_weights(splits["train"]))
    assert run.is_done(0, 0)
