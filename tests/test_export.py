"""Tests of emenet_tf.export: TFLite round trip, post-processing vs numpy, metadata, ensemble, parity
refusal, QAT, the run folder (copied runs, unfinished members) and atomic, failure-safe writes."""

import errno
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from edge import uncertainty as npu
from edge.contract import ENSEMBLE_OUTPUTS, SINGLE_OUTPUTS, output_shapes
from edge.runtime import input_tensor
from emenet_tf import export
from emenet_tf import io as io_lib
from emenet_tf.cli.export import print_summary
from emenet_tf.data import affwild2
from emenet_tf.errors import ExportError, RunError, WriteError
from emenet_tf.export import convert as convert_lib
from emenet_tf.export import exporter as run_lib
from emenet_tf.export import model as model_lib
from emenet_tf.export import parity, qat, tflite
from emenet_tf.export.graph import contract_outputs, keras_outputs
from emenet_tf.export.options import VALIDATION_FRAMES
from emenet_tf.labels import AU_NAMES, EXPR_NAMES, va_bin_centres
from emenet_tf.models import input_size
from emenet_tf.rundir import RunDir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MODELS = (
    "student_float32", "student_int8", "ensemble_float32", "ensemble_int8",
    "student_dirichlet_float32", "student_dirichlet_int8",
)  # fmt: skip


def _kind(name):
    return "dirichlet" if "dirichlet" in name else "ensemble" if name.startswith("ensemble") else "single"


FAST = dict(representative_frames=8, validation_frames=8, float_backbone_max=0, allow_degraded=True)


def _size(cfg):
    return input_size(cfg.model, cfg.image_size)


def _load(cfg, member, generation=None):
    return RunDir(cfg.workdir).load_member(
        cfg, cfg.generations - 1 if generation is None else generation, member
    )


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    """export_run on the tiny run (degraded allowed: 2 training steps leave near-tie predictions)."""
    out_dir = str(tmp_path_factory.mktemp("export") / "export")
    summary = export.export_run(
        tiny_run.workdir, out_dir=out_dir, allow_degraded=True, representative_frames=32, float_backbone_max=0
    )
    splits = affwild2.load_splits(tiny_run.sources()[0].path)
    frames = run_lib.load_frames(splits["validation"], _size(tiny_run), 24)
    return {"cfg": tiny_run, "out_dir": out_dir, "summary": summary, "frames": frames, "splits": splits}


def _content(exported, name):
    with open(os.path.join(exported["out_dir"], f"{name}.tflite"), "rb") as f:
        return f.read()


def _run(exported, name, images=None):
    images = exported["frames"]["image"] if images is None else images
    return tflite.run_tflite(_content(exported, name), images)


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _member_probs(cfg, member, images):
    """Numpy probabilities of one member from its Keras logits."""
    logits = {k: v.numpy().astype(np.float64) for k, v in _load(cfg, member)(images).items()}
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


# ---------------------------------------------------------------- the exported models


def test_files_signatures_and_ranges(exported):
    for name in MODELS:
        path = os.path.join(exported["out_dir"], f"{name}.tflite")
        assert os.path.isfile(path) and os.path.isfile(path[: -len(".tflite")] + ".json")
        runner = Interpreter(model_path=path).get_signature_runner("serving_default")
        assert set(runner.get_output_details()) == set(output_shapes(_kind(name), 7, 12, 20))
        assert list(runner.get_input_details()) == ["image"]
        out = _run(exported, name)
        n = len(exported["frames"]["image"])
        assert out["expr_probs"].shape == (n, 7) and out["va_probs"].shape == (n, 2, 20)
        np.testing.assert_allclose(out["expr_probs"].sum(-1), 1.0, atol=1e-5)
        np.testing.assert_allclose(out["va_probs"].sum(-1), 1.0, atol=1e-5)
        for key, value in out.items():
            assert value.dtype == np.float32, key
            if key == "ood_score":  # a negative log density: any finite number
                assert np.all(np.isfinite(value))
                continue
            low = -1.0 if key in ("valence", "arousal") else 0.0
            assert value.min() >= low - 1e-6 and value.max() <= 1.0 + 1e-6, key
    parent = os.path.dirname(exported["out_dir"])
    assert not [f for f in os.listdir(parent) + os.listdir(exported["out_dir"]) if f.startswith(".tmp")]


def test_float_tflite_equals_numpy_on_keras_logits(exported):
    """Float TFLite == softmax/sigmoid/entropies computed in numpy from the Keras logits (<= 1e-4)."""
    cfg, images = exported["cfg"], exported["frames"]["image"]
    expected = _numpy_outputs(_member_probs(cfg, 0, images))
    got = _run(exported, "student_float32")
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, atol=1e-4, err_msg=key)
    figures = exported["summary"]["parity"]["student_float32"]
    assert figures["float_max_abs_diff"] <= 1e-4 and figures["passed"] and figures["reference"] == "keras"


def test_single_model_graph_is_the_decomposition_of_one_member(exported):
    """contract_outputs with M = 1: the single outputs only, equal to the M = 2 formula on (p, p)."""
    member = _load(exported["cfg"], 0)
    images = exported["frames"]["image"][:4]
    one = {k: v.numpy() for k, v in contract_outputs([member(images)]).items()}
    twice = {k: v.numpy() for k, v in contract_outputs([member(images), member(images)]).items()}
    assert set(one) == set(SINGLE_OUTPUTS) and set(twice) == set(ENSEMBLE_OUTPUTS)
    for key in SINGLE_OUTPUTS:
        np.testing.assert_allclose(one[key], twice[key], atol=1e-6, err_msg=key)
    np.testing.assert_allclose(twice["expr_epistemic"], 0.0, atol=1e-6)


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
        kind = _kind(name)
        ensemble = kind == "ensemble"
        assert set(meta) == {
            "format", "kind", "members", "input", "outputs", "expr_names", "au_names", "va_bin_centres", "thresholds"
        }  # fmt: skip
        assert meta["format"] == "emenet-tflite/1"
        assert meta["kind"] == kind
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
        assert spec["size"] == _size(exported["cfg"]) == detail["shape"][1]
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
        assert (thresholds["ood_epistemic"] is not None) == (kind != "single")
        assert (thresholds["ood"] is not None) == (kind == "dirichlet")


def _dirichlet_keras(cfg):
    """The run's Dirichlet student (Keras) and its density."""
    from emenet_tf.density import GaussianDensity

    run = RunDir(cfg.workdir)
    net = run.load_member(cfg, run.dirichlet_generation(cfg), "dirichlet")
    return net, GaussianDensity.load(run.density_path(cfg))


def test_dirichlet_float_tflite_equals_numpy_closed_form(exported):
    """student_dirichlet_float32 == numpy from the Keras outputs: mean, the closed-form decomposition
    (edge.uncertainty with its own digamma) and the density score (float64) - TFLite == Keras."""
    from emenet_tf.density import predict_features
    from emenet_tf.distributions import dirichlet_log_concentrations

    cfg, images = exported["cfg"], parity.on_uint8_grid(exported["frames"]["image"])
    net, density = _dirichlet_keras(cfg)
    raw = predict_features(net, [{"image": images, "frame_id": np.arange(len(images))}], density.layers)
    log_alpha = dirichlet_log_concentrations(raw["outputs"])
    parts = {t: npu.dirichlet_uncertainty(np.exp(v.numpy().astype(np.float64))) for t, v in log_alpha.items()}
    got = _run(exported, "student_dirichlet_float32", images)
    np.testing.assert_allclose(got["expr_probs"], parts["expr"]["mean_probs"], atol=1e-5)
    np.testing.assert_allclose(got["au_probs"], parts["au"]["mean_probs"][..., 0], atol=1e-5)
    for task in ("expr", "au", "va"):
        for part in ("aleatoric", "epistemic"):
            expected = parts[task][part][:, None] if task == "expr" else parts[task][part]
            # float32 digamma series and entropies: ~1e-6; 1e-4 is the bound
            np.testing.assert_allclose(got[f"{task}_{part}"], expected, atol=1e-4, err_msg=f"{task}_{part}")
    score = density.score(raw["features"])
    # per-feature nats in float32: relative 1e-4 of the score's size
    np.testing.assert_allclose(got["ood_score"][:, 0], score, rtol=1e-4, atol=1e-4 * np.abs(score).max())
    figures = exported["summary"]["parity"]["student_dirichlet_float32"]
    assert figures["reference"] == "keras" and "ood_auroc" in figures


def test_edge_reports_the_dirichlet_ood_score(exported):
    """edge.predict's results from student_dirichlet_int8: ood_score is its output, ood its threshold."""
    from edge.runtime import EmotionModel

    model = EmotionModel(os.path.join(exported["out_dir"], "student_dirichlet_int8.tflite"))
    assert model.kind == "dirichlet" and model.thresholds["ood"] is not None
    face = (exported["frames"]["image"][0] * 255).round().astype(np.uint8)
    raw = model.run(face)
    result = model.predict_face(face, color="rgb")
    assert result.ood_score == pytest.approx(raw["ood_score"][0])
    assert result.ood == (raw["ood_score"][0] > model.thresholds["ood"])
    assert raw["expr_epistemic"].shape == (1,) and raw["au_epistemic"].shape == (12,)


def test_thresholds_are_validation_quantiles(exported):
    cfg = exported["cfg"]
    frames = run_lib.load_frames(exported["splits"]["validation"], _size(cfg), VALIDATION_FRAMES)
    out = _run(exported, "ensemble_float32", parity.on_uint8_grid(frames["image"]))
    with open(os.path.join(exported["out_dir"], "ensemble_float32.json")) as f:
        thresholds = json.load(f)["thresholds"]
    assert thresholds["expr_entropy"] == pytest.approx(np.quantile(out["expr_entropy"], 0.8), abs=1e-6)
    assert thresholds["ood_epistemic"] == pytest.approx(np.quantile(out["expr_epistemic"], 0.95), abs=1e-6)
    dirichlet = _run(exported, "student_dirichlet_float32", parity.on_uint8_grid(frames["image"]))
    with open(os.path.join(exported["out_dir"], "student_dirichlet_float32.json")) as f:
        assert json.load(f)["thresholds"]["ood"] == pytest.approx(
            np.quantile(dirichlet["ood_score"], 0.95), rel=1e-6
        )
    entropy = out["expr_entropy"][:, 0]  # ties are common in an undertrained model
    assert (
        (entropy < thresholds["expr_entropy"]).mean() <= 0.8 <= (entropy <= thresholds["expr_entropy"]).mean()
    )


def test_parity_json_holds_the_figures_of_the_written_models(exported):
    """parity.json's int8 figures are those of the written int8 file against the written float file,
    recomputed here on the same validation frames (the same interpreter runs: equal to float rounding)."""
    with open(os.path.join(exported["out_dir"], "parity.json")) as f:
        summary = json.load(f)
    assert set(summary["parity"]) == set(MODELS) and summary["targets"] == parity.TARGETS
    assert summary["files"] == {m: os.path.join(exported["out_dir"], f"{m}.tflite") for m in MODELS}
    cfg = exported["cfg"]
    frames = run_lib.load_frames(exported["splits"]["validation"], _size(cfg), VALIDATION_FRAMES)
    images = parity.on_uint8_grid(frames["image"])
    for kind in ("student", "ensemble"):
        figures = summary["parity"][f"{kind}_int8"]
        expected = parity.int8_parity(
            _run(exported, f"{kind}_int8", images), _run(exported, f"{kind}_float32", images)
        )
        assert figures["frames"] == len(images) and figures["reference"] == "float32_tflite"
        for key in ("expr_top1_agreement", "au_decision_agreement", "expr_entropy_mean_abs_diff"):
            assert figures[key] == pytest.approx(expected[key], abs=1e-6), (kind, key)
        assert figures["passed"] == (not parity.parity_failures(figures))
        assert figures["size_bytes"] == len(_content(exported, f"{kind}_int8"))


def test_check_signature_rejects_another_kind_or_size(exported):
    content, size = _content(exported, "student_float32"), _size(exported["cfg"])
    tflite.check_signature(content, "single", size)
    with pytest.raises(ExportError, match="breaks the contract"):
        tflite.check_signature(content, "ensemble", size)
    with pytest.raises(ExportError, match="breaks the contract"):
        tflite.check_signature(content, "single", size + 1)


def test_float_layers_are_float_and_backbone_is_int8(exported):
    """The deny-listed heads run in float, the backbone convs in int8, and no LOGISTIC/SOFTMAX
    (whose outputs the quantizer rounds to int8 even when deny-listed) is left in the graph."""
    ops = tflite.op_dtypes(_content(exported, "student_int8"))
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


# ---------------------------------------------------------------- parity figures and targets


def test_int8_parity_figures_by_hand():
    ref = {
        "expr_probs": np.array([[0.6, 0.3, 0.1], [0.34, 0.33, 0.33], [0.1, 0.2, 0.7], [0.4, 0.4, 0.2]]),
        "expr_entropy": np.array([[0.5], [0.9], [0.4], [0.8]]),
        "au_probs": np.array([[0.2, 0.7], [0.5, 0.1], [0.9, 0.4], [0.9, 0.9]]),
        "au_entropy": np.zeros((4, 2)),
        "valence": np.zeros((4, 1)),
        "arousal": np.zeros((4, 1)),
    }
    quant = {k: v.copy() for k, v in ref.items()}
    quant["expr_probs"][1] = [0.33, 0.34, 0.33]  # a near-tie flips: disagreement
    quant["expr_probs"][3] = [0.39, 0.41, 0.2]  # the reference ties exactly: class 1 is a top class too
    quant["expr_entropy"][0] = 0.54
    quant["au_probs"][1, 0] = 0.49  # one of 8 AU decisions flips
    figures = parity.int8_parity(quant, ref)
    assert figures["expr_top1_agreement"] == pytest.approx(3 / 4)
    assert figures["expr_top1_agreement_clear_margin"] == 1.0 and figures["clear_margin_frames"] == 2
    assert figures["expr_entropy_mean_abs_diff"] == pytest.approx(0.01)
    assert figures["au_decision_agreement"] == pytest.approx(7 / 8)
    failures = parity.parity_failures(figures)
    assert len(failures) == 2 and failures[0].startswith("expr_top1_agreement")
    quant["expr_probs"][3] = [0.41, 0.39, 0.2]  # the other tied class: agrees as well
    assert parity.int8_parity(quant, ref)["expr_top1_agreement"] == pytest.approx(3 / 4)
    quant["expr_probs"][3] = [0.3, 0.3, 0.4]  # not a top class of the reference
    assert parity.int8_parity(quant, ref)["expr_top1_agreement"] == pytest.approx(2 / 4)
    assert parity.parity_failures({"float_max_abs_diff": 2e-4}) and not parity.parity_failures(
        {"float_max_abs_diff": 1e-5}
    )
    assert parity.parity_failures({"expr_top1_agreement": float("nan")})


def test_input_tensor_quantises_as_the_edge_runtime():
    """The exporter feeds its parity frames through the edge runtime's one input quantisation."""
    detail = {"dtype": np.uint8, "quantization": (1 / 255, 0)}
    x = np.array([0.0, 0.6, 1.0, 1.2], np.float32)  # 0.6 * 255 = 153
    np.testing.assert_array_equal(input_tensor(x, detail), [0, 153, 255, 255])
    detail = {"dtype": np.int8, "quantization": (1 / 255, -128)}
    np.testing.assert_array_equal(input_tensor(x, detail), [-128, 25, 127, 127])
    detail = {"dtype": np.float32, "quantization": (0.0, 0)}
    assert input_tensor(x, detail).dtype == np.float32 and np.array_equal(input_tensor(x, detail), x)


def test_on_uint8_grid():
    x = np.array([0.0, 0.31, 0.6, 1.0, 1.2, -0.1], np.float32)  # 0.31 * 255 = 79.05, 0.6 * 255 = 153
    np.testing.assert_allclose(parity.on_uint8_grid(x) * 255, [0, 79, 153, 255, 255, 0], atol=1e-4)


@pytest.mark.slow
def test_refuses_model_that_misses_a_target(exported, tmp_path, monkeypatch):
    member = _load(exported["cfg"], 0)
    frames, rep = exported["frames"], exported["frames"]["image"][:8]
    monkeypatch.setitem(parity.TARGETS, "expr_top1_agreement", 1.01)  # no model can meet it
    result = model_lib.export_model([member], "student", str(tmp_path), frames, rep)
    assert sorted(os.listdir(tmp_path)) == ["student_float32.json", "student_float32.tflite"]
    assert result["failures"] and result["failures"][0].startswith("student_int8: expr_top1_agreement")
    assert result["parity"]["student_int8"]["passed"] is False


@pytest.mark.slow
def test_parity_search_keeps_leading_stages_float_only_while_targets_are_missed(
    exported, tmp_path, monkeypatch
):
    member = _load(exported["cfg"], 0)
    frames, rep = exported["frames"], exported["frames"]["image"][:8]
    monkeypatch.setitem(parity.TARGETS, "expr_top1_agreement", 1.01)  # never met: the search goes to its end
    missed = model_lib.export_model(
        [member], "student", str(tmp_path / "a"), frames, rep, float_backbone_max=2
    )
    assert missed["parity"]["student_int8"]["float_layers"] == list(convert_lib.FLOAT_LAYERS) + [
        "stem",
        "block0",
    ]
    assert missed["failures"]
    for key in ("expr_top1_agreement", "au_decision_agreement"):
        monkeypatch.setitem(parity.TARGETS, key, 0.0)  # always met: no stage needs to stay float
    monkeypatch.setitem(parity.TARGETS, "expr_entropy_mean_abs_diff", 1.0)
    met = model_lib.export_model([member], "student", str(tmp_path / "b"), frames, rep, float_backbone_max=2)
    assert met["parity"]["student_int8"]["float_layers"] == list(convert_lib.FLOAT_LAYERS)
    assert not met["failures"]


def test_float_nodes_matches_layer_names_and_prefixes(monkeypatch):
    names = [
        "member0/emenet_small/stem_relu/Relu6;member0/emenet_small/stem_bn/FusedBatchNormV3",
        "member0/emenet_small/block0_0_dw_relu/Relu6",
        "member0/emenet_small/embedding/MatMul;member0/emenet_small/embedding_bn/batchnorm/mul_1",
        "member0/emenet_small/expr/MatMul;member0/emenet_small/expr/BiasAdd",
        "member0/emenet_small/expression_x/MatMul",  # "expression" is not the layer "expr"
        "Exp_1",
    ]
    ops = [{"outputs": [i]} for i in range(len(names))]
    monkeypatch.setattr(
        convert_lib.private_tf, "ops_details", lambda content: (ops, [{"name": n} for n in names])
    )
    assert convert_lib.float_nodes(b"", ("expr",)) == [names[3], names[5]]
    assert convert_lib.float_nodes(b"", ("stem", "block0", "embedding")) == names[:3] + [names[5]]


# ---------------------------------------------------------------- the run folder


def _fake_export_model(calls):
    def fake(members, name, out_dir, *frames_and_representative, **kwargs):
        calls.append((name, members))
        return {
            "files": {},
            "parity": {f"{name}_int8": {"passed": False}},
            "failures": [f"{name}_int8: missed"],
        }

    return fake


def test_export_run_raises_export_error_after_writing_parity(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setattr(run_lib, "export_model", _fake_export_model([]))
    missed = ["student_int8: missed", "ensemble_int8: missed", "student_dirichlet_int8: missed"]
    with pytest.raises(
        ExportError, match="student_int8: missed .* ensemble_int8: missed .* student_dirichlet"
    ):
        export.export_run(
            tiny_run.workdir, out_dir=str(tmp_path / "out"), representative_frames=4, validation_frames=4
        )
    with open(tmp_path / "out" / "parity.json") as f:
        assert json.load(f)["failures"] == missed
    summary = export.export_run(
        tiny_run.workdir, str(tmp_path / "out"), allow_degraded=True, validation_frames=4
    )
    assert summary["failures"] == missed


def _copy_run(tiny_run, tmp_path):
    copy = str(tmp_path / "copied_run")
    shutil.copytree(tiny_run.workdir, copy)
    return copy


def test_a_copied_run_exports_its_own_members_from_anywhere(tiny_run, tmp_path, monkeypatch):
    """config.json of the copy still names the original folder: the copy's members must be exported."""
    copy = _copy_run(tiny_run, tmp_path)
    run = RunDir(copy)
    g = tiny_run.generations - 1
    shutil.copy(run.best_weights_path(g - 1, 1), run.best_weights_path(g, 0))  # the copy's student differs
    calls = []
    monkeypatch.setattr(run_lib, "export_model", _fake_export_model(calls))
    monkeypatch.chdir(tmp_path)
    summary = export.export_run("copied_run", **FAST)
    assert summary["out_dir"] == run.export_dir and os.path.isfile(
        os.path.join(run.export_dir, "parity.json")
    )
    assert not os.path.exists(os.path.join(tiny_run.workdir, "export"))
    (_, student), (_, ensemble), (name, dirichlet) = calls
    assert name == "student_dirichlet" and len(dirichlet) == 1 and "au_precision" in dirichlet[0].output
    expected = _load(tiny_run, 1, generation=g - 1).get_weights()
    for got, want in zip(student[0].get_weights(), expected, strict=True):
        np.testing.assert_array_equal(got, want)
    original = _load(tiny_run, 0).get_weights()
    assert not all(np.array_equal(a, b) for a, b in zip(student[0].get_weights(), original, strict=True))
    assert ensemble[0] is student[0] and len(ensemble) == tiny_run.ensemble_size


def test_a_member_without_done_json_is_never_exported(tiny_run, tmp_path):
    run = RunDir(_copy_run(tiny_run, tmp_path))
    os.remove(run.done_path(tiny_run.generations - 1, 1))
    with pytest.raises(RunError, match=r"not finished .*member1"):
        export.export_run(run.root, **FAST)
    assert not os.path.exists(run.export_dir)


@pytest.mark.slow
def test_a_failed_export_leaves_the_previous_export_untouched(tiny_run, tmp_path, monkeypatch):
    """A conversion that fails after the student was written: the old folder is as it was, no temporary left."""
    out_dir = tmp_path / "export"
    out_dir.mkdir()
    (out_dir / "parity.json").write_text('{"old": true}')
    (out_dir / "student_int8.tflite").write_bytes(b"old model")
    (out_dir / run_lib.MARKER).write_text(
        json.dumps({"run": RunDir(tiny_run.workdir).root})
    )  # an earlier export
    real_convert, calls = model_lib.convert, []

    def convert_then_fail(*args, **kwargs):
        calls.append(args)
        if len(calls) > 2:  # the student's float32 and int8 models are converted and written first
            raise RuntimeError("simulated failure")
        return real_convert(*args, **kwargs)

    monkeypatch.setattr(model_lib, "convert", convert_then_fail)
    with pytest.raises(RuntimeError, match="simulated failure"):
        export.export_run(tiny_run.workdir, out_dir=str(out_dir), **FAST)
    assert len(calls) == 3
    assert sorted(os.listdir(out_dir)) == [run_lib.MARKER, "parity.json", "student_int8.tflite"]
    assert (out_dir / "parity.json").read_text() == '{"old": true}'
    assert (out_dir / "student_int8.tflite").read_bytes() == b"old model"
    assert os.listdir(tmp_path) == ["export"]


def test_stale_temporaries_of_a_killed_export_are_removed(tmp_path):
    out_dir = tmp_path / "export"
    dead = tmp_path / ".tmp-999999999-abc-export"  # no such process
    alive = tmp_path / f".tmp-{os.getpid()}-def-export"  # an export running now
    other = tmp_path / ".tmp-999999999-abc-data"
    for folder in (dead, alive, other):
        folder.mkdir()
    run_lib._remove_stale_temporaries(str(out_dir))
    assert sorted(os.listdir(tmp_path)) == sorted([alive.name, other.name])


def test_a_write_failure_names_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    class FullDisk:
        def __init__(self, path, mode):
            self.path = path
            open(path, "wb").close()  # the temporary exists, as on a real full disk

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(io_lib, "open", FullDisk, raising=False)
    path = str(tmp_path / "student_int8.tflite")
    with pytest.raises(WriteError, match=r"student_int8\.tflite: cannot write \(No space left on device\)"):
        model_lib.write_file(path, b"model")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- the CLI


def _export_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "emenet_tf.export", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_rejects_a_folder_without_a_run(tmp_path):
    proc = _export_cli("--workdir", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"python -m emenet_tf.export: error: {tmp_path} holds no config.json (not a training run)"
    ]


def test_cli_failure_is_one_line(tiny_run, tmp_path):
    copy = _copy_run(tiny_run, tmp_path)
    os.remove(RunDir(copy).done_path(1, 0))
    proc = _export_cli("--workdir", copy, "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("python -m emenet_tf.export")]
    assert line.startswith("python -m emenet_tf.export: error: export failed: ") and "not finished" in line
    assert proc.stderr.strip().splitlines()[-1] == line


def test_cli_prints_the_parity_summary(tmp_path, capsys):
    model = tmp_path / "student_int8.tflite"
    model.write_bytes(b"12345")
    figures = {"expr_top1_agreement": 0.995, "per_output_max_abs_diff": {}, "passed": True}
    print_summary(
        {"out_dir": str(tmp_path), "parity": {"student_int8": figures}, "files": {"student_int8": str(model)}}
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == 'parity student_int8: {"expr_top1_agreement": 0.995, "passed": true}'
    assert lines[1] == f"wrote {model} (5 bytes)"


# ---------------------------------------------------------------- QAT


@pytest.mark.slow
def test_qat_int8_is_checked_against_the_qat_model_itself(exported, tmp_path):
    """The QAT int8 file's figures are measured against the fine-tuned QAT Keras model (recomputed
    here), not against the student before the fine-tune."""
    cfg = exported["cfg"]
    student = _load(cfg, 0)
    model = qat.qat_finetune(
        RunDir(cfg.workdir), cfg, student, exported["splits"]["train"], epochs=1, steps=2
    )
    frames = exported["frames"]
    result = qat.export_qat(model, "student_qat", str(tmp_path), frames, allow_degraded=True)
    path = result["files"]["student_qat_int8"]
    runner = Interpreter(model_path=path).get_signature_runner()
    assert set(runner.get_output_details()) == set(SINGLE_OUTPUTS)
    figures = result["parity"]["student_qat_int8"]
    assert figures["reference"] == "qat_keras" and figures["quantize"] == "qat"
    images = parity.on_uint8_grid(frames["image"])
    with open(path, "rb") as f:
        int8 = tflite.run_tflite(f.read(), images)
    expected = parity.int8_parity(int8, keras_outputs([model], images))
    for key in ("expr_top1_agreement", "expr_entropy_mean_abs_diff", "au_decision_agreement"):
        assert figures[key] == pytest.approx(expected[key], abs=1e-6), key
    before = parity.int8_parity(int8, keras_outputs([student], images))
    assert before["expr_entropy_mean_abs_diff"] != pytest.approx(
        figures["expr_entropy_mean_abs_diff"], abs=1e-6
    )
