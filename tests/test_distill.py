"""Distillation: soft labels are the ensemble mean, students approach a fixed target, teachers stay put."""

import json
import os

import numpy as np
import pytest

from emenet_tf import calibration, distill
from emenet_tf._keras import keras
from emenet_tf.config import TrainConfig
from emenet_tf.data import affwild2, pipeline, synthetic
from emenet_tf.errors import ConfigError, DataError
from emenet_tf.inference import predict_dataset
from emenet_tf.losses import class_weights
from emenet_tf.models import build_emenet
from emenet_tf.rundir import RunDir
from emenet_tf.temperature import TemperatureScaler
from emenet_tf.training.member import train_member
from emenet_tf.training.objectives import LossSetup
from emenet_tf.training.trainers import MultitaskTrainer


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("distill_data") / "data")
    synthetic.generate(
        out, seed=2, train_videos=2, val_videos=1, frames_per_video=24, image_size=32, ood_images=2
    )
    return affwild2.load_splits(out)


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _logits(model, dataset) -> dict:
    """The model's logits over ``dataset``, batch by batch, as float64 arrays."""
    outs = [model.predict_on_batch(batch["image"]) for batch in dataset]
    return {k: np.concatenate([np.asarray(o[k], np.float64) for o in outs]) for k in ("au", "expr", "va")}


def test_soft_labels_are_the_mean_of_member_probabilities(splits):
    train = splits["train"].subset(np.arange(len(splits["train"])))
    train.expr_mask[:5] = 0  # frames without ground truth get soft labels all the same
    train.au_mask[:5] = 0
    train.va_mask[:5] = 0
    members = [build_emenet("tiny", seed=s, dropout=0.0) for s in (1, 2, 3)]
    for m in members:  # give the untrained BatchNorm statistics a spread so members differ visibly
        for layer in m.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.moving_variance.assign(np.full(layer.moving_variance.shape, 1e-3, np.float32))
    soft = distill.ensemble_probabilities(members, train, 32, 16)
    # The reference runs every member on the SAME batches of 16: a different batching takes other
    # oneDNN kernel paths, and with these amplified activations that alone moved probabilities by
    # 1.4e-4 on an AMD EPYC (5e-6 on an Intel CPU). With the batches equal, only the final
    # softmax / sigmoid differ (TF float32 vs numpy float64, ~1e-7), so 1e-5 holds on any CPU.
    ds = pipeline.make_dataset(train, 32, 16, training=False)
    logits = [_logits(m, ds) for m in members]
    expect_expr = np.mean([_softmax(lg["expr"]) for lg in logits], axis=0)
    expect_au = np.mean([1 / (1 + np.exp(-np.clip(lg["au"], -50, 50))) for lg in logits], axis=0)
    expect_va = np.mean([_softmax(lg["va"]) for lg in logits], axis=0)
    np.testing.assert_allclose(soft["expr"], expect_expr, atol=1e-5)
    np.testing.assert_allclose(soft["au"], expect_au, atol=1e-5)
    np.testing.assert_allclose(soft["va"], expect_va, atol=1e-5)
    assert soft["va"].shape == (len(train), 2, 20) and soft["predicted"].all()
    np.testing.assert_allclose(soft["expr"][:5].sum(1), 1.0, atol=1e-5)
    # every member's logits, frame axis first, float16: probabilities to < 1% of their value
    for task, key in pipeline.MEMBER_LOGITS.items():
        stored = soft[key]
        assert stored.dtype == np.float16 and stored.shape[:2] == (len(train), 3), task
        for m in range(3):
            z = stored[:, m].astype(np.float64)
            got = 1 / (1 + np.exp(-z)) if task == "au" else _softmax(z)
            want = 1 / (1 + np.exp(-logits[m]["au"])) if task == "au" else _softmax(logits[m][task])
            np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-6, err_msg=task)


def test_distillation_on_a_fixed_target_approaches_it(splits):
    train = splits["train"].subset(np.arange(32))
    rng = np.random.default_rng(0)
    target = {
        "au": rng.uniform(0.1, 0.9, (len(train), 12)).astype(np.float32),
        "expr": _softmax(rng.normal(size=(len(train), 7)) * 1.5).astype(np.float32),
        "va": _softmax(rng.normal(size=(len(train), 2, 20))).astype(np.float32),
    }
    weights = class_weights(train)
    setup = LossSetup(tuple(weights["au_pos_weight"]), tuple(weights["expr_class_weight"]), soft=True)
    keras.utils.set_random_seed(0)
    net = build_emenet("tiny", seed=0, dropout=0.0)
    trainer = MultitaskTrainer(net, setup)
    trainer.compile(optimizer=keras.optimizers.Adam(5e-3))
    ds = pipeline.make_dataset(train, 32, 16, training=False, soft_labels=target).cache()

    def kl_to_target():
        pred = predict_dataset(net, ds)
        p, q = target["expr"][pred["frame_id"]], np.clip(pred["expr"], 1e-12, 1)
        return float(np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=1)))

    trainer.fit(ds, epochs=1, verbose=0)
    before = kl_to_target()
    trainer.fit(ds, epochs=60, verbose=0)
    after = kl_to_target()
    assert after < 0.5 * before, (before, after)


@pytest.mark.slow
def test_teacher_weights_do_not_change_while_students_train(tmp_path, splits):
    cfg = TrainConfig(
        workdir=str(tmp_path / "run"), data="affwild2:" + str(splits["train"].data_dir), model="tiny", ensemble_size=2,
        generations=2, epochs=1, steps_per_epoch=2, batch_size=16, verbose=0,
    )  # fmt: skip
    weights = class_weights(splits["train"])
    for k in range(2):
        train_member(cfg, 0, k, splits["train"], None, weights)
    run = RunDir(cfg.workdir)
    teachers = [run.load_member(cfg, 0, k).get_weights() for k in range(2)]
    stamps = [os.path.getmtime(run.best_weights_path(0, k)) for k in range(2)]
    stale = os.path.join(run.generation_dir(0), ".tmp-1-abc-soft_labels.npz")  # a kill mid-write
    open(stale, "wb").close()
    distill.run_generations(cfg, splits["train"], splits["validation"], weights)
    assert not os.path.exists(stale)
    for k in range(2):
        after = run.load_member(cfg, 0, k).get_weights()
        for a, b in zip(teachers[k], after, strict=True):
            np.testing.assert_array_equal(a, b)
        assert os.path.getmtime(run.best_weights_path(0, k)) == stamps[k]
        assert run.is_done(1, k)
    # The stored soft labels belong to these frames and are reused, not recomputed.
    path = run.soft_labels_path(0)
    stored = distill.load_soft_labels(path, splits["train"])
    assert stored["expr"].shape == (len(splits["train"]), 7)
    np.testing.assert_allclose(stored["expr"].sum(1), 1.0, atol=1e-5)
    with pytest.raises(DataError, match="soft labels were made for"):
        distill.load_soft_labels(path, splits["train"].subset(np.arange(5)))
    # --teacher_calibration temperature (the default): the soft labels are the teachers' mean
    # probabilities scaled by the temperatures stored beside them (fit on the validation fit half).
    saved = json.loads(open(run.teacher_temperatures_path(0)).read())
    scaler = TemperatureScaler(expr=saved["expr"], au=tuple(saved["au"]), va=tuple(saved["va"]))
    teachers_now = [run.load_member(cfg, 0, k) for k in range(2)]
    raw = distill.ensemble_probabilities(teachers_now, splits["train"], 32, cfg.batch_size)
    expected = calibration.calibrate(raw, scaler)
    for task in ("au", "expr", "va"):  # the same batches and kernels: float32 rounding only
        np.testing.assert_allclose(stored[task], expected[task], atol=1e-5, err_msg=task)
    assert not np.allclose(stored["expr"], raw["expr"], atol=1e-4), "the temperature changed nothing"
    # After the last generation: the Dirichlet student of its ensemble, and its density
    assert run.dirichlet_done(cfg) and os.path.isfile(run.density_path(cfg))
    # it is the last generation's member 0 (the exported student) plus trained precision heads
    student, dirichlet = run.load_member(cfg, 1, 0), run.load_member(cfg, 2, "dirichlet")
    for layer in student.layers:
        for a, b in zip(layer.get_weights(), dirichlet.get_layer(layer.name).get_weights(), strict=True):
            np.testing.assert_array_equal(a, b, err_msg=layer.name)
    fresh = build_emenet("tiny", seed=cfg.member_seed(2, "dirichlet"), dirichlet=True)
    assert not np.array_equal(
        fresh.get_layer("expr_precision").get_weights()[0],
        dirichlet.get_layer("expr_precision").get_weights()[0],
    )
    assert run.dirichlet_dir(cfg) == os.path.join(run.generation_dir(2), "dirichlet")
    last = distill.load_soft_labels(
        run.soft_labels_path(1), splits["train"], tuple(pipeline.MEMBER_LOGITS.values())
    )
    assert last["member_expr_logits"].shape == (len(splits["train"]), 2, 7)


def _fake_predictions(rng, n: int) -> dict:
    """A predict_frames-like dict over n validation rows: probabilities and labels with masks."""
    expr = rng.dirichlet(np.ones(7), n).astype(np.float32)
    return {
        "frame_id": np.arange(n),
        "expr": expr,
        "au": rng.uniform(0.05, 0.95, (n, 12)).astype(np.float32),
        "va": rng.dirichlet(np.ones(20), (n, 2)).astype(np.float32),
        "label_expr": rng.integers(0, 7, n),
        "label_expr_mask": np.ones(n, np.float32),
        "label_au": rng.integers(0, 2, (n, 12)).astype(np.float32),
        "label_au_mask": np.ones((n, 12), np.float32),
        "label_va": rng.uniform(-1, 1, (n, 2)).astype(np.float32),
        "label_va_mask": np.ones((n, 2), np.float32),
    }


def test_teacher_temperatures_are_fit_on_the_fit_half_only():
    rng = np.random.default_rng(0)
    pred = _fake_predictions(rng, 200)
    fit, held_out = calibration.split_halves(np.ones(200, bool))
    before = calibration.fit_teacher_temperatures(pred, 200).to_dict()
    changed = {k: v.copy() for k, v in pred.items()}
    changed["label_expr"][held_out] = (changed["label_expr"][held_out] + 3) % 7  # other evaluation labels
    changed["label_au"][held_out] = 1 - changed["label_au"][held_out]
    assert calibration.fit_teacher_temperatures(changed, 200).to_dict() == before
    changed["label_expr"][fit] = (changed["label_expr"][fit] + 3) % 7
    assert calibration.fit_teacher_temperatures(changed, 200).to_dict()["expr"] != before["expr"]
    # the split is the evaluation's: the same rows at the same seed

    assert np.array_equal(calibration.split_halves(np.ones(200, bool), calibration.SPLIT_SEED)[0], fit)


def test_teacher_calibration_without_validation_frames_is_refused_before_training(tmp_path, splits):
    cfg = TrainConfig(workdir=str(tmp_path / "run"), model="tiny", generations=2, verbose=0)
    with pytest.raises(ConfigError, match="--teacher_calibration temperature needs validation frames"):
        distill.run_generations(cfg, splits["train"], None, class_weights(splits["train"]))
    assert not os.path.exists(RunDir(cfg.workdir).generation_dir(0)), "nothing was trained"
