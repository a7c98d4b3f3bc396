"""Tests of emenet_tf.export: TFLite round trip, post-processing vs numpy, metadata, ensemble, parity refusal, QAT."""

import json
import os

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from edge import uncertainty as npu
from emenet_tf import export
from emenet_tf.data import affwild2
from emenet_tf.errors import ExportError
from emenet_tf.labels import AU_NAMES, EXPR_NAMES, va_bin_centres
from emenet_tf.training import load_member, resolved_image_size

MODELS = ("student_float32", "student_int8", "ensemble_float32", "ensemble_int8")


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    """export_run on the tiny run (degraded allowed: 2 training steps leave near-tie predictions)."""
    out_dir = str(tmp_path_factory.mktemp("export"))
    summary = export.export_run(
        tiny_run.workdir, out_dir=out_dir, allow_degraded=True, representative_frames=32, float_backbone_max=0
    )
    splits = affwild2.load_splits(tiny_run.data_dir)
    frames = export.load_frames(splits["validation"], resolved_image_size(tiny_run), 24)
    return {"cfg": tiny_run, "out_dir": out_dir, "summary": summary, "frames": frames, "splits": splits}


def _run(exported, name):
    with open(os.path.join(exported["out_dir"], f"{name}.tflite"), "rb") as f:
        return export.run_tflite(f.read(), exported["frames"]["image"])


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _member_probs(cfg, member, images):
    """Numpy probabilities of one member from its Keras logits."""
    logits = {
        k: v.numpy().astype(np.float64)
        for k, v in load_member(cfg, cfg.generations - 1, member)(images).items()
    }
    return {
        "expr": _softmax(logits["expr"]),
        "au": 1.0 / (1.0 + np.exp(-logits["au"])),
        "va": _softmax(logits["va"]),
    }


def _numpy_outputs(probs):
    """The contract's single-model outputs computed in numpy with edge.uncertainty."""
    value = npu.va_expectation(probs["va"], va_bin_centres())
    va_h = npu.normalised_entropy(probs["va"])
    return {
        "expr_probs": probs["expr"],
        "expr_entropy": npu.normalised_entropy(probs["expr"])[:, None],
        "au_probs": probs["au"],
        "au_entropy": npu.bernoulli_entropy(probs["au"]),
        "valence": value[:, :1],
        "arousal": value[:, 1:],
        "valence_entropy": va_h[:, :1],
        "arousal_entropy": va_h[:, 1:],
        "va_probs": probs["va"],
    }


def test_files_signatures_and_ranges(exported):
    for name in MODELS:
        path = os.path.join(exported["out_dir"], f"{name}.tflite")
        assert os.path.isfile(path) and os.path.isfile(path[: -len(".tflite")] + ".json")
        runner = Interpreter(model_path=path).get_signature_runner("serving_default")
        expected = export.ENSEMBLE_OUTPUTS if name.startswith("ensemble") else export.SINGLE_OUTPUTS
        assert set(runner.get_output_details()) == set(expected)
        assert list(runner.get_input_details()) == ["image"]
        out = _run(exported, name)
        n = len(exported["frames"]["image"])
        assert out["expr_probs"].shape == (n, 7) and out["va_probs"].shape == (n, 2, 20)
        np.testing.assert_allclose(out["expr_probs"].sum(-1), 1.0, atol=1e-5)
        np.testing.assert_allclose(out["va_probs"].sum(-1), 1.0, atol=1e-5)
        for key, value in out.items():
            assert value.dtype == np.float32, key
            low = -1.0 if key in ("valence", "arousal") else 0.0
            assert value.min() >= low - 1e-6 and value.max() <= 1.0 + 1e-6, key
    assert not [f for f in os.listdir(exported["out_dir"]) if f.startswith(".tmp")]


def test_float_tflite_equals_numpy_on_keras_logits(exported):
    """Float TFLite == softmax/sigmoid/entropies computed in numpy from the Keras logits (<= 1e-4)."""
    cfg, images = exported["cfg"], exported["frames"]["image"]
    expected = _numpy_outputs(_member_probs(cfg, 0, images))
    got = _run(exported, "student_float32")
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, atol=1e-4, err_msg=key)
    parity = exported["summary"]["parity"]["student_float32"]
    assert parity["float_max_abs_diff"] <= 1e-4 and parity["passed"]


def test_int8_entropy_outputs_equal_numpy_on_their_probabilities(exported):
    """The post-processing in the int8 graph is float: entropies match numpy on its own probs."""
    out = _run(exported, "student_int8")
    expected = _numpy_outputs({"expr": out["expr_probs"], "au": out["au_probs"], "va": out["va_probs"]})
    for key in ("expr_entropy", "au_entropy", "valence", "arousal", "valence_entropy", "arousal_entropy"):
        np.testing.assert_allclose(out[key], expected[key], atol=2e-6, err_msg=key)


def test_ensemble_equals_mean_of_members(exported):
    cfg, images = exported["cfg"], exported["frames"]["image"]
    members = [_member_probs(cfg, k, images) for k in range(cfg.ensemble_size)]
    got = _run(exported, "ensemble_float32")
    tasks = {"expr": ("expr", "categorical"), "au": ("au", "bernoulli"), "va": ("va", "categorical")}
    for task, (key, kind) in tasks.items():
        ref = npu.ensemble_uncertainty(np.stack([m[key] for m in members]), kind)
        np.testing.assert_allclose(got[f"{task}_probs"], ref["mean_probs"], atol=1e-5)
        for part in ("aleatoric", "epistemic"):
            expected = ref[part][:, None] if task == "expr" else ref[part]
            np.testing.assert_allclose(got[f"{task}_{part}"], expected, atol=1e-4, err_msg=f"{task}_{part}")
    total = npu.ensemble_uncertainty(np.stack([m["expr"] for m in members]))["total"]
    np.testing.assert_allclose(got["expr_entropy"][:, 0], total, atol=1e-4)


def test_metadata_schema(exported):
    centres = va_bin_centres()
    for name in MODELS:
        with open(os.path.join(exported["out_dir"], f"{name}.json")) as f:
            meta = json.load(f)
        ensemble = name.startswith("ensemble")
        assert set(meta) == {
            "format", "kind", "members", "input", "outputs", "expr_names", "au_names", "va_bin_centres", "thresholds"
        }  # fmt: skip
        assert meta["format"] == "emenet-tflite/1"
        assert meta["kind"] == ("ensemble" if ensemble else "single")
        assert meta["members"] == (exported["cfg"].ensemble_size if ensemble else 1)
        assert meta["expr_names"] == list(EXPR_NAMES) and meta["au_names"] == list(AU_NAMES)
        np.testing.assert_allclose(meta["va_bin_centres"], centres, atol=1e-7)
        runner = Interpreter(
            model_path=os.path.join(exported["out_dir"], f"{name}.tflite")
        ).get_signature_runner()
        assert set(meta["outputs"]) == set(runner.get_output_details())
        detail = runner.get_input_details()["image"]
        spec = meta["input"]
        assert spec["name"] == "image" and spec["channels"] == "RGB" and spec["range"] == [0, 1]
        assert spec["size"] == resolved_image_size(exported["cfg"]) == detail["shape"][1]
        assert (
            spec["dtype"]
            == np.dtype(detail["dtype"]).name
            == ("uint8" if name.endswith("int8") else "float32")
        )
        if name.endswith("int8"):
            # pinned by the black/white calibration frames: uint8 pixel values feed the model as is
            assert spec["zero_point"] == 0 and spec["scale"] == pytest.approx(1 / 255, rel=1e-5)
            assert (spec["scale"], spec["zero_point"]) == pytest.approx(detail["quantization"])
        else:
            assert spec["scale"] is None and spec["zero_point"] is None
        thresholds = meta["thresholds"]
        assert 0.0 <= thresholds["expr_entropy"] <= 1.0 and thresholds["target"]
        assert (thresholds["ood_epistemic"] is not None) == ensemble


def test_thresholds_are_validation_quantiles(exported):
    cfg = exported["cfg"]
    frames = export.load_frames(
        exported["splits"]["validation"], resolved_image_size(cfg), export.VALIDATION_FRAMES
    )
    with open(os.path.join(exported["out_dir"], "ensemble_float32.tflite"), "rb") as f:
        out = export.run_tflite(f.read(), frames["image"])
    with open(os.path.join(exported["out_dir"], "ensemble_float32.json")) as f:
        thresholds = json.load(f)["thresholds"]
    assert thresholds["expr_entropy"] == pytest.approx(np.quantile(out["expr_entropy"], 0.8), abs=1e-6)
    assert thresholds["ood_epistemic"] == pytest.approx(np.quantile(out["expr_epistemic"], 0.95), abs=1e-6)
    entropy = out["expr_entropy"][:, 0]  # ties are common in an undertrained model
    assert (
        (entropy < thresholds["expr_entropy"]).mean() <= 0.8 <= (entropy <= thresholds["expr_entropy"]).mean()
    )


def test_parity_json(exported):
    with open(os.path.join(exported["out_dir"], "parity.json")) as f:
        parity = json.load(f)
    assert set(parity["parity"]) == set(MODELS)
    assert parity["targets"] == export.TARGETS
    for name in ("student_int8", "ensemble_int8"):
        figures = parity["parity"][name]
        assert 0.0 <= figures["expr_top1_agreement"] <= 1.0 and figures["quantize"] == "float_post"
        assert figures["passed"] == (not export.parity_failures(figures))


def test_int8_parity_figures_by_hand():
    ref = {
        "expr_probs": np.array([[0.6, 0.3, 0.1], [0.34, 0.33, 0.33], [0.1, 0.2, 0.7]]),
        "expr_entropy": np.array([[0.5], [0.9], [0.4]]),
        "au_probs": np.array([[0.2, 0.7], [0.5, 0.1], [0.9, 0.4]]),
        "au_entropy": np.zeros((3, 2)),
        "valence": np.zeros((3, 1)),
        "arousal": np.zeros((3, 1)),
    }
    quant = {k: v.copy() for k, v in ref.items()}
    quant["expr_probs"][1] = [0.33, 0.34, 0.33]  # a near-tie flips
    quant["expr_entropy"][0] = 0.53
    quant["au_probs"][1, 0] = 0.49  # one of 6 AU decisions flips
    figures = export.int8_parity(quant, ref)
    assert figures["expr_top1_agreement"] == pytest.approx(2 / 3)
    assert figures["expr_top1_agreement_clear_margin"] == 1.0 and figures["clear_margin_frames"] == 2
    assert figures["expr_entropy_mean_abs_diff"] == pytest.approx(0.01)
    assert figures["au_decision_agreement"] == pytest.approx(5 / 6)
    failures = export.parity_failures(figures)
    assert len(failures) == 2 and failures[0].startswith("expr_top1_agreement")
    assert export.parity_failures({"float_max_abs_diff": 2e-4}) and not export.parity_failures(
        {"float_max_abs_diff": 1e-5}
    )


def test_quantize_input():
    detail = {"dtype": np.uint8, "quantization": (1 / 255, 0)}
    x = np.array([0.0, 0.6, 1.0, 1.2], np.float32)  # 0.6 * 255 = 153
    np.testing.assert_array_equal(export.quantize_input(x, detail), [0, 153, 255, 255])
    detail = {"dtype": np.int8, "quantization": (1 / 255, -128)}
    np.testing.assert_array_equal(export.quantize_input(x, detail), [-128, 25, 127, 127])


def test_refuses_model_that_misses_a_target(exported, tmp_path, monkeypatch):
    cfg = exported["cfg"]
    member = load_member(cfg, cfg.generations - 1, 0)
    frames, rep = exported["frames"], exported["frames"]["image"][:8]
    monkeypatch.setitem(export.TARGETS, "expr_top1_agreement", 1.01)  # no model can meet it
    result = export.export_model([member], "student", str(tmp_path), frames, rep)
    assert sorted(os.listdir(tmp_path)) == ["student_float32.json", "student_float32.tflite"]
    assert result["failures"] and result["failures"][0].startswith("student_int8: expr_top1_agreement")
    assert result["parity"]["student_int8"]["passed"] is False


def test_export_run_raises_export_error_after_writing_parity(tiny_run, tmp_path, monkeypatch):
    def fake_export_model(members, name, out_dir, **kwargs):
        return {
            "files": {},
            "parity": {f"{name}_int8": {"passed": False}},
            "failures": [f"{name}_int8: missed"],
        }

    monkeypatch.setattr(export, "export_model", fake_export_model)
    with pytest.raises(ExportError, match="student_int8: missed .* ensemble_int8: missed"):
        export.export_run(
            tiny_run.workdir, out_dir=str(tmp_path), representative_frames=4, validation_frames=4
        )
    with open(tmp_path / "parity.json") as f:
        assert json.load(f)["failures"] == ["student_int8: missed", "ensemble_int8: missed"]
    summary = export.export_run(tiny_run.workdir, str(tmp_path), allow_degraded=True, validation_frames=4)
    assert summary["failures"] == ["student_int8: missed", "ensemble_int8: missed"]


def test_cli_rejects_a_folder_without_a_run(tmp_path):
    with pytest.raises(SystemExit):
        export.main(["--workdir", str(tmp_path)])


@pytest.mark.slow
def test_qat_builds_and_converts(exported, tmp_path):
    cfg = exported["cfg"]
    student = load_member(cfg, cfg.generations - 1, 0)
    qat = export.qat_finetune(cfg, student, exported["splits"]["train"], epochs=1, steps=1)
    frames, rep = exported["frames"], exported["frames"]["image"][:8]
    result = export.export_model(
        [qat], "student_qat", str(tmp_path), frames, rep, allow_degraded=True, int8_reference=[qat]
    )
    path = result["files"]["student_qat_int8"]
    runner = Interpreter(model_path=path).get_signature_runner()
    assert set(runner.get_output_details()) == set(export.SINGLE_OUTPUTS)
    assert 0.0 <= result["parity"]["student_qat_int8"]["expr_top1_agreement"] <= 1.0


def test_float_layers_are_float_and_backbone_is_int8(exported):
    """The deny-listed heads run in float, the backbone convs in int8, and no LOGISTIC/SOFTMAX
    (whose outputs the quantizer rounds to int8 even when deny-listed) is left in the graph."""
    with open(os.path.join(exported["out_dir"], "student_int8.tflite"), "rb") as f:
        ops = export.op_dtypes(f.read())
    heads = [
        (op, dtype)
        for op, name, dtype in ops
        if op == "FULLY_CONNECTED" and {"expr", "au", "va_logits"} & set(name.replace(";", "/").split("/"))
    ]
    assert len(heads) == 3 and all(dtype == "float32" for _, dtype in heads)
    convs = [dtype for op, _, dtype in ops if op in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    assert convs and all(dtype == "int8" for dtype in convs)
    assert not {op for op, _, _ in ops} & {"LOGISTIC", "SOFTMAX"}
    assert [op for op, _, dtype in ops if dtype == "int8"][0] == "QUANTIZE"  # uint8 input -> int8


def test_float_nodes_matches_layer_names_and_prefixes(monkeypatch):
    import types

    names = [
        "member0/emenet_small/stem_relu/Relu6;member0/emenet_small/stem_bn/FusedBatchNormV3",
        "member0/emenet_small/block0_0_dw_relu/Relu6",
        "member0/emenet_small/embedding/MatMul;member0/emenet_small/embedding_bn/batchnorm/mul_1",
        "member0/emenet_small/expr/MatMul;member0/emenet_small/expr/BiasAdd",
        "member0/emenet_small/expression_x/MatMul",  # "expression" is not the layer "expr"
        "Exp_1",
    ]
    fake = types.SimpleNamespace(
        get_tensor_details=lambda: [{"name": n} for n in names],
        _get_ops_details=lambda: [{"outputs": [i]} for i in range(len(names))],
    )
    monkeypatch.setattr(export, "Interpreter", lambda model_content: fake)
    assert export.float_nodes(b"", ("expr",)) == [names[3], names[5]]
    assert export.float_nodes(b"", ("stem", "block0", "embedding")) == names[:3] + [names[5]]


def test_on_uint8_grid():
    x = np.array([0.0, 0.31, 0.6, 1.0, 1.2, -0.1], np.float32)  # 0.31 * 255 = 79.05, 0.6 * 255 = 153
    np.testing.assert_allclose(export.on_uint8_grid(x) * 255, [0, 79, 153, 255, 255, 0], atol=1e-4)


def test_parity_search_keeps_leading_stages_float_only_while_targets_are_missed(
    exported, tmp_path, monkeypatch
):
    cfg = exported["cfg"]
    member = load_member(cfg, cfg.generations - 1, 0)
    frames, rep = exported["frames"], exported["frames"]["image"][:8]
    monkeypatch.setitem(export.TARGETS, "expr_top1_agreement", 1.01)  # never met: the search goes to its end
    missed = export.export_model([member], "student", str(tmp_path / "a"), frames, rep, float_backbone_max=2)
    assert missed["parity"]["student_int8"]["float_layers"] == list(export.FLOAT_LAYERS) + ["stem", "block0"]
    assert missed["failures"]
    for key in ("expr_top1_agreement", "au_decision_agreement"):
        monkeypatch.setitem(export.TARGETS, key, 0.0)  # always met: no stage needs to stay float
    monkeypatch.setitem(export.TARGETS, "expr_entropy_mean_abs_diff", 1.0)
    met = export.export_model([member], "student", str(tmp_path / "b"), frames, rep, float_backbone_max=2)
    assert met["parity"]["student_int8"]["float_layers"] == list(export.FLOAT_LAYERS)
    assert not met["failures"]
