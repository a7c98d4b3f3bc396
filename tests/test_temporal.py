"""Temporal EMENet: GRU heads over frames, masking, the streaming step, training on clips, segment inference."""

import json
import os

import numpy as np
import pytest

from emenet_tf._keras import keras, tf
from emenet_tf.config import TrainConfig, make_config
from emenet_tf.data import affwild2, clips, synthetic
from emenet_tf.errors import ConfigError
from emenet_tf.losses import class_weights
from emenet_tf.models import build_emenet
from emenet_tf.models import temporal as tm
from emenet_tf.temporal_inference import Segments, predict_segments
from emenet_tf.training.member import training_data
from emenet_tf.training.objectives import LossSetup
from emenet_tf.training.trainers import TemporalTrainer

TASK_SHAPES = {"au": (12,), "expr": (7,), "va": (2, 20)}


@pytest.fixture(scope="module")
def net():
    return tm.build_temporal_emenet("tiny", seed=0)


def test_the_model_keeps_its_backbone_and_heads_as_objects(net):
    """The backbone and the heads are attributes (no layer found by a name string), each task's GRU
    of the paper's size, and the backbone is build_emenet's (the same embedding)."""
    assert isinstance(net.frame_net, keras.Model) and isinstance(net.heads, tm.TemporalHeads)
    assert set(net.heads.grus) == set(TASK_SHAPES) == set(net.heads.logits)
    assert (
        net.heads.units == tm.GRU_UNITS and tm.is_temporal(net) and not tm.is_temporal(build_emenet("tiny"))
    )
    per_frame = build_emenet("tiny", seed=0)
    assert net.frame_net.output.shape[-1] == per_frame.get_layer("embedding_bn").output.shape[-1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("temporal_data") / "data")
    synthetic.generate(
        out, seed=2, train_videos=2, val_videos=1, frames_per_video=40, image_size=32, ood_images=4
    )
    return out


def _frames(batch, steps, seed=0):
    return np.random.default_rng(seed).random((batch, steps, 32, 32, 3)).astype(np.float32)


def test_outputs_per_frame_for_any_clip_length(net):
    for steps in (1, 5):
        out = net({"image": _frames(2, steps), "frame_mask": np.ones((2, steps), np.float32)})
        assert {k: tuple(v.shape) for k, v in out.items()} == {
            k: (2, steps, *s) for k, s in TASK_SHAPES.items()
        }
    heads = net.heads
    assert [heads.grus[t].cell.units for t in ("au", "expr", "va")] == [tm.GRU_UNITS] * 3 == [128] * 3
    # The backbone is build_emenet's: its embedding layer by name, per frame.
    assert net.frame_net.get_layer("embedding_bn").output.shape[-1] == 32


def test_the_output_at_a_frame_depends_on_earlier_frames_only(net):
    # On the heads (an untrained backbone in inference mode gives near-constant embeddings).
    heads = net.heads
    x = np.random.default_rng(0).standard_normal((1, 6, 32)).astype(np.float32)
    mask = np.ones((1, 6), np.float32)
    base = heads([x, mask])["expr"].numpy()
    changed = x.copy()
    changed[0, 1] *= -1.0
    after = heads([changed, mask])["expr"].numpy()
    np.testing.assert_array_equal(after[0, 0], base[0, 0])  # before the change: identical
    assert np.abs(after[0, 2:] - base[0, 2:]).min(axis=-1).max() > 1e-3  # later frames remember it


def test_a_masked_step_carries_the_state_and_ignores_its_image(net):
    x = _frames(1, 5)
    mask = np.array([[1, 1, 0, 1, 1]], np.float32)
    base = net({"image": x, "frame_mask": mask})
    garbage = x.copy()
    garbage[0, 2] = 1.0
    other = net({"image": garbage, "frame_mask": mask})
    # A different image at the masked step changes nothing at the present frames (no loss, metric
    # or stream reads a masked step's output; the gru head's repeats the last one).
    present = [0, 1, 3, 4]
    for task in TASK_SHAPES:
        np.testing.assert_array_equal(base[task].numpy()[:, present], other[task].numpy()[:, present])
        np.testing.assert_array_equal(base[task].numpy()[0, 2], base[task].numpy()[0, 1])
    # Skipping the masked step entirely gives the same outputs at the present frames.
    kept = net({"image": x[:, present], "frame_mask": np.ones((1, 4), np.float32)})
    # Same ops in another order of batching: float32 rounding only.
    np.testing.assert_allclose(kept["expr"].numpy()[0], base["expr"].numpy()[0, present], atol=1e-5)


def test_the_streaming_step_unrolled_is_the_sequence_model(net):
    step = tm.build_stream_step(net)
    assert {t.name.split(":")[0] for t in step.inputs} == {"image", "h_au", "h_expr", "h_va"}
    x = _frames(2, 5, seed=1)
    seq = net({"image": x, "frame_mask": np.ones((2, 5), np.float32)})
    state = {k: v.numpy() for k, v in tm.zero_states(2, net.heads.units).items()}
    for t in range(5):
        out = step({"image": x[:, t], **state})
        for task in TASK_SHAPES:
            # The same kernels on the same values; one frame at a time vs a batch of frames: 1e-5.
            np.testing.assert_allclose(out[task].numpy(), seq[task].numpy()[:, t], atol=1e-5)
        state = {f"h_{task}": out[f"next_h_{task}"].numpy() for task in TASK_SHAPES}


def test_the_streaming_step_converts_to_tflite_builtins(net):
    step = tm.build_stream_step(net)
    converter = tf.lite.TFLiteConverter.from_keras_model(step)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex ops allowed
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=converter.convert())
    runner = interpreter.get_signature_runner()
    x = _frames(1, 3, seed=2)
    state = {k: v.numpy() for k, v in tm.zero_states(1, net.heads.units).items()}
    for t in range(3):
        keras_out = step({"image": x[:, t], **state})
        lite_out = runner(image=x[:, t], **state)
        for name, value in keras_out.items():
            # float32 TFLite kernels vs TF kernels over 3 steps: a few ulps of the logits.
            np.testing.assert_allclose(lite_out[name], value.numpy(), atol=1e-4)
        state = {f"h_{task}": lite_out[f"next_h_{task}"] for task in TASK_SHAPES}


def _setup(index):
    weights = class_weights(index)
    return LossSetup(tuple(weights["au_pos_weight"]), tuple(weights["expr_class_weight"]))


def test_training_on_clips_lowers_the_loss(data_dir):
    train = affwild2.load_split(data_dir, "train")
    keras.utils.set_random_seed(0)
    trainer = TemporalTrainer(tm.build_temporal_emenet("tiny", seed=0), _setup(train))
    trainer.compile(optimizer=keras.optimizers.Adam(3e-3))
    table = clips.clip_table(train, size=4, stride=4, max_gap=2)
    # Clips spread over both videos: a batch of four clips of neighbouring frames would give BatchNorm
    # batch statistics far narrower than the data's, and inference (moving statistics) would differ.
    table = table[np.linspace(0, len(table) - 1, 8).astype(int)]
    ds = clips.make_clip_dataset(train, table, 32, 4, training=False).cache()
    start = trainer.net.get_weights()
    history = trainer.fit(ds, epochs=15, verbose=0).history
    # The training objective (BatchNorm on batch statistics, dropout on) falls; inference on two
    # videos is too noisy a measure at this size (the run-level test scores whole videos).
    assert history["loss"][-1] < 0.6 * history["loss"][0], history["loss"]
    assert history["expr"][-1] < history["expr"][0] and history["va"][-1] < history["va"][0]
    moved = [not np.array_equal(a, b) for a, b in zip(start, trainer.net.get_weights(), strict=True)]
    assert all(moved[: len(moved) // 2]) and moved[-1]  # backbone weights and the last head layer


def test_masked_steps_never_reach_the_backbone_in_training(data_dir):
    net = tm.build_temporal_emenet("tiny", seed=0, dropout=0.0)
    trainer = TemporalTrainer(net, _setup(affwild2.load_split(data_dir, "train")))
    mask = np.array([[1, 1, 0, 1], [1, 0, 0, 0]], np.float32)
    x = _frames(2, 4, seed=3)
    spoilt = np.where(mask[..., None, None, None] > 0, x, 1.0).astype(np.float32)
    start = net.get_weights()
    seen = []
    for images in (x, spoilt):
        net.set_weights(start)
        batch = {"image": images, "frame_mask": mask, "expr": np.arange(8).reshape(2, 4) % 7}
        labels, logits = trainer._forward(batch, training=True)  # BatchNorm on batch statistics
        moving = [w.numpy() for w in net.weights if "moving_mean" in w.name]
        seen.append((labels["expr"].numpy(), logits["expr"].numpy(), moving))
    # One row per present frame, in (clip, step) order.
    np.testing.assert_array_equal(seen[0][0], [0, 1, 3, 4])
    assert seen[0][1].shape == (4, 7)
    # Garbage on the masked steps changes neither the logits nor the moving statistics: exact.
    np.testing.assert_array_equal(seen[0][1], seen[1][1])
    for a, b in zip(seen[0][2], seen[1][2], strict=True):
        np.testing.assert_array_equal(a, b)


def _whole_model_oracle(net, val, timelines) -> dict:
    """{index row: EXPR probabilities} of each timeline through the whole model at once, from a zero state."""
    out = {}
    for steps in timelines:
        present = steps >= 0
        images = np.zeros((1, len(steps), 32, 32, 3), np.float32)
        for k, row in enumerate(steps):
            if row >= 0:
                images[0, k] = (
                    np.asarray(
                        tf.image.resize(
                            tf.io.decode_jpeg(tf.io.read_file(os.path.join(val.data_dir, val.paths[row]))),
                            (32, 32),
                            method="area",
                            antialias=True,
                        )
                    )
                    / 255.0
                )
        logits = net({"image": images, "frame_mask": present[None].astype(np.float32)})["expr"][0]
        out.update(zip(steps[present].tolist(), tf.nn.softmax(logits).numpy()[present], strict=True))
    return out


def test_segment_inference_carries_state_within_a_segment_and_resets_between(data_dir):
    val = affwild2.load_split(data_dir, "validation")
    net = tm.build_temporal_emenet("tiny", seed=1)
    for reset_every in (0, 4):
        pred = predict_segments(net, Segments(val, 32, 16, max_gap=5, reset_every=reset_every))
        np.testing.assert_array_equal(pred["frame_id"], np.arange(len(val)))
        assert pred["expr"].shape == (len(val), 7) and pred["va"].shape == (len(val), 2, 20)
        # Oracle: each segment (each chunk of 4 seen frames with resets) through the whole model at once.
        timelines = [c for steps in clips.segments(val, 5) for c in clips.chunks(steps, reset_every)]
        if reset_every:
            assert len(timelines) > len(clips.segments(val, 5))  # the resets happen
        oracle = _whole_model_oracle(net, val, timelines)
        rows = np.array(sorted(oracle))
        # Same kernels, different batching of the backbone (a batch of frames vs one segment): 1e-5.
        np.testing.assert_allclose(pred["expr"][rows], np.stack([oracle[r] for r in rows]), atol=1e-5)
    # max_gap None: every frame alone, as from a zero state.
    alone = predict_segments(net, Segments(val.subset(np.arange(3)), 32, 16, max_gap=None))
    first = predict_segments(net, Segments(val.subset(np.arange(1, 2)), 32, 16, max_gap=5))
    np.testing.assert_allclose(alone["expr"][1], first["expr"][0], atol=1e-6)


def test_chunks_hold_reset_every_seen_frames_with_masked_steps_kept_before_the_next():
    m = clips.MASKED
    steps = np.array([m, 10, 11, m, m, 12, 13, 14, m, 15])
    got = clips.chunks(steps, 2)
    assert [c.tolist() for c in got] == [[10, 11, m, m], [12, 13], [14, m, 15]], got
    assert [c.tolist() for c in clips.chunks(steps, 0)] == [steps.tolist()]
    assert [c.tolist() for c in clips.chunks(steps, 100)] == [steps[1:].tolist()]


def test_temporal_flags_are_checked():
    assert TrainConfig().temporal == 0  # the per-frame model stays the default
    with pytest.raises(ConfigError, match="--temporal must be >= 0"):
        TrainConfig(temporal=-1)
    with pytest.raises(ConfigError, match="--temporal_stride must be >= 1"):
        make_config(temporal=8, temporal_stride=0)
    with pytest.raises(ConfigError, match="--temporal_max_gap must be >= 0"):
        make_config(temporal=8, temporal_max_gap=-1)
    with pytest.raises(ConfigError, match="--dirichlet_student is for per-frame runs"):
        TrainConfig(temporal=8, dirichlet_student=True)
    cfg = make_config(temporal=8, batch_size=64)
    assert cfg.clip_stride() == 8 and cfg.clips_per_batch() == 8
    assert not cfg.dirichlet_student, "a temporal run has no Dirichlet student unless asked"
    with pytest.raises(ConfigError, match="--dirichlet_student is for per-frame runs"):
        make_config(temporal=8, dirichlet_student=True)


def test_temporal_training_batches_hold_single_frames_and_clips(data_dir, tmp_path):
    train = affwild2.load_split(data_dir, "train")
    cfg = make_config(
        workdir=str(tmp_path), data="affwild2:" + str(data_dir), model="tiny", temporal=4, batch_size=8
    )
    ds, steps = training_data(cfg, train, None, seed=0)
    assert steps == len(train) // 8  # the steps of a per-frame epoch
    batch = next(iter(ds))
    assert batch["frames"]["image"].shape == (8, 1, 32, 32, 3)
    assert batch["clips"]["image"].shape == (2, 4, 32, 32, 3)
    assert batch["clips"]["expr"].shape == (2, 4) and batch["frames"]["va_mask"].shape == (8, 1, 2)


@pytest.fixture(scope="module")
def temporal_run(data_dir, tmp_path_factory):
    """A finished tiny temporal run (2 generations of 2 members, T = 4), evaluated: (cfg, metrics)."""
    from emenet_tf import job

    cfg = make_config(
        workdir=str(tmp_path_factory.mktemp("temporal_run") / "run"), data="affwild2:" + str(data_dir), model="tiny",
        ensemble_size=2, generations=2, epochs=1, steps_per_epoch=2, batch_size=16, verbose=0, temporal=4,
    )  # fmt: skip
    return cfg, job.run_job(cfg, evaluate=True, export=False)["metrics"]


@pytest.mark.slow
def test_a_temporal_run_trains_distils_and_evaluates_like_a_per_frame_run(temporal_run, data_dir):
    cfg, metrics = temporal_run
    methods = metrics["methods"]
    # The rows and metrics of a per-frame run (metrics.json's schema), each measured over whole videos.
    assert list(methods) == [
        "gen0_single", "gen0_ensemble", "gen1_single", "gen1_ensemble", "temperature_scaling", "mc_dropout",
    ]  # fmt: skip
    for row in methods.values():
        assert set(row["expr"]) == {"f1", "acc", "score", "nll", "ece", "brier", "aurc", "kl_true"}
        assert set(row["va"]) >= {"ccc_valence", "ccc_arousal", "score", "nll"} and set(row["ood"]) == {
            "auroc",
            "aupr",
        }
        assert np.isfinite(row["expr"]["nll"]) and np.isfinite(row["va"]["nll"])
    assert metrics["frames"]["predicted"] == len(affwild2.load_split(data_dir, "validation"))
    from emenet_tf.rundir import RunDir

    assert tm.is_temporal(RunDir(cfg.workdir).load_member(cfg, 1, 0))


@pytest.mark.slow
def test_a_temporal_run_exports_stream_models_that_equal_the_sequence_model(temporal_run, tmp_path):
    from emenet_tf.export import export_run, private_tf, stream
    from emenet_tf.export.tflite import run_tflite
    from emenet_tf.rundir import RunDir

    cfg, _ = temporal_run
    summary = export_run(
        cfg.workdir, out_dir=str(tmp_path / "export"), representative_frames=16, validation_frames=24,
        float_backbone_max=0, allow_degraded=True,
    )  # fmt: skip
    names = {
        "student_stream_float32",
        "student_stream_int8",
        "ensemble_stream_float32",
        "ensemble_stream_int8",
    }
    assert set(summary["files"]) == names
    meta = json.loads(open(summary["files"]["student_stream_int8"][: -len(".tflite")] + ".json").read())
    assert meta["state"] == {
        "inputs": ["h_au", "h_expr", "h_va"], "outputs": ["next_h_au", "next_h_expr", "next_h_va"],
        "size": 128, "max_gap": cfg.temporal_max_gap, "reset_every": cfg.temporal,
    }  # fmt: skip
    assert summary["parity"]["student_stream_float32"]["float_max_abs_diff"] <= 1e-4
    # Independently: the float stream over video segments, state carried and reset every cfg.temporal
    # frames, is the Keras sequence model over the same chunks.
    member = RunDir(cfg.workdir).load_member(cfg, 1, 0)
    two_videos = affwild2.load_split(cfg.sources()[0].path, "train")  # (validation holds one video)
    frames = stream.sequence_frames(two_videos, 32, 30, cfg.temporal_max_gap, cfg.temporal)
    with open(summary["files"]["student_stream_float32"], "rb") as f:
        lite = run_tflite(f.read(), frames["image"], starts=frames["start"])
    keras_out = stream.StreamModule([member], 32, cfg.temporal_max_gap, cfg.temporal).keras_outputs(
        frames["image"], frames["start"]
    )
    # float32 TFLite vs TF kernels through a GRU over a few frames: 1e-4 (the export's own target).
    np.testing.assert_allclose(lite["expr_probs"], keras_out["expr_probs"], atol=1e-4)
    assert frames["start"].sum() >= 30 // cfg.temporal  # resets within segments and between them
    # Builtin ops only (no Flex), and every input of the int8 model float32 (the state stays float).
    with open(summary["files"]["student_stream_int8"], "rb") as f:
        content = f.read()
    ops, tensors = private_tf.ops_details(content)
    assert not [op["op_name"] for op in ops if "Flex" in op["op_name"] or op["op_name"] == "CUSTOM"]
    assert meta["input"]["dtype"] == "float32"
