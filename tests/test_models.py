"""EMENet: output names and shapes, pinned sizes, round trips, MC dropout, quantization, a short fit."""

import numpy as np
import pytest

from emenet_tf import losses
from emenet_tf._keras import keras, tf
from emenet_tf.errors import ConfigError, DataError
from emenet_tf.models import (
    VARIANTS,
    build_emenet,
    load_backbone_weights,
    min_image_size,
    save_backbone_weights,
)

# Exact parameter counts: update only when the architecture deliberately changes.
PARAM_COUNTS = {"full": 1_395_131, "small": 138_299, "tiny": 24_507}
PAPER_PARAMS = 1_680_000


def _images(n, size, seed=0):
    return np.random.default_rng(seed).random((n, size, size, 3), dtype=np.float32)


def _outputs(model, x, **kwargs):
    return {k: v.numpy() for k, v in model(x, **kwargs).items()}


def test_every_variant_is_pinned():
    assert set(PARAM_COUNTS) == set(VARIANTS)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_outputs_names_shapes_and_size(variant):
    model = build_emenet(variant, seed=0)
    size = VARIANTS[variant].image_size
    assert model.input.name == "image" and model.input.shape.as_list() == [None, size, size, 3]
    assert model.input.dtype == tf.float32
    out = model(_images(2, size), training=False)
    assert set(out) == {"au", "expr", "va"}
    assert out["au"].shape == (2, 12) and out["expr"].shape == (2, 7) and out["va"].shape == (2, 2, 20)
    for name in ("au", "expr", "va", "va_logits", "head_dropout"):
        model.get_layer(name)  # raises ValueError when missing
    assert model.get_layer("head_dropout").rate == 0.5
    assert model.count_params() == PARAM_COUNTS[variant]
    assert all(np.isfinite(v.numpy()).all() for v in out.values())


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_dirichlet_student_adds_only_the_precision_heads(variant):
    """Same backbone and mean heads as the paper's model, plus one shared hidden layer and three
    log-precision outputs; the full variant stays within the paper's parameter budget."""
    spec = VARIANTS[variant]
    model = build_emenet(variant, seed=0, dirichlet=True)
    out = model(_images(2, spec.image_size), training=False)
    shapes = {k: tuple(v.shape) for k, v in out.items()}
    assert shapes == {
        "au": (2, 12), "expr": (2, 7), "va": (2, 2, 20),
        "au_precision": (2, 12), "expr_precision": (2, 1), "va_precision": (2, 2),
    }  # fmt: skip
    h = spec.head_units
    extra = (spec.embedding + 1) * h + (h + 1) * (12 + 1 + 2)
    assert model.count_params() == PARAM_COUNTS[variant] + extra
    assert model.count_params() <= PAPER_PARAMS or variant != "full"


def test_full_variant_within_paper_budget():
    assert PARAM_COUNTS["full"] <= PAPER_PARAMS
    assert VARIANTS["full"].image_size == 112 and VARIANTS["full"].width == 1.0
    assert VARIANTS["small"].image_size == 64


def test_image_size_and_width_are_parameters():
    model = build_emenet("tiny", image_size=48, width_multiplier=0.5, name="m", dropout=0.25)
    assert model.name == "m" and model.input.shape.as_list() == [None, 48, 48, 3]
    assert model.get_layer("stem_conv").filters == 32  # 64 * 0.5, a multiple of 8
    assert build_emenet("tiny", width_multiplier=0.3).get_layer("stem_conv").filters == 24  # 19.2 -> 24
    assert model.get_layer("head_dropout").rate == 0.25
    assert model(_images(1, 48))["va"].shape == (1, 2, 20)


def test_config_errors_are_one_line():
    with pytest.raises(ConfigError, match="too small") as err:
        build_emenet("small", image_size=min_image_size("small") - 1)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="full, small, tiny"):
        build_emenet("huge")
    with pytest.raises(ConfigError):
        build_emenet("tiny", width_multiplier=0.0)
    with pytest.raises(ConfigError):
        build_emenet("tiny", dropout=1.0)


def test_seed_makes_weights_reproducible_and_seeds_differ():
    a, b, c = (build_emenet("tiny", seed=s) for s in (3, 3, 4))
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)
    kernels = [(wa, wc) for wa, wc in zip(a.get_weights(), c.get_weights(), strict=True) if wa.ndim > 1]
    assert kernels and all(not np.array_equal(wa, wc) for wa, wc in kernels)


def test_save_load_and_config_round_trip(tmp_path):
    model = build_emenet("tiny", image_size=40, dropout=0.3, seed=1, width_multiplier=0.5, name="rt")
    x = _images(3, 40)
    expected = _outputs(model, x, training=False)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    for k, v in _outputs(loaded, x, training=False).items():
        np.testing.assert_allclose(v, expected[k], rtol=1e-5, atol=1e-6)
    rebuilt = keras.Model.from_config(model.get_config())
    rebuilt.set_weights(model.get_weights())
    assert rebuilt.name == "rt" and rebuilt.get_layer("head_dropout").rate == 0.3
    for k, v in _outputs(rebuilt, x, training=False).items():
        np.testing.assert_allclose(v, expected[k], rtol=1e-5, atol=1e-6)


def _dropout_view(model):
    return keras.Model(
        model.input, [model.get_layer("head_dropout").input, model.get_layer("head_dropout").output]
    )


def test_mc_dropout_is_active_at_inference_and_shares_weights(tmp_path):
    plain = build_emenet("tiny", seed=5)
    mc = build_emenet("tiny", seed=6, mc_dropout=True)
    mc.set_weights(plain.get_weights())
    x = _images(4, 32)
    for a, b in zip(mc.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    feature, dropped = (t.numpy() for t in _dropout_view(mc)(x, training=False))
    kept = dropped != 0
    assert 0.3 < kept.mean() < 0.7  # rate 0.5
    np.testing.assert_allclose(dropped[kept], 2.0 * feature[kept], rtol=1e-5)  # inverted dropout scaling
    first, second = _outputs(mc, x, training=False), _outputs(mc, x, training=False)
    assert not np.allclose(first["expr"], second["expr"])
    np.testing.assert_array_equal(plain(x)["expr"].numpy(), plain(x)["expr"].numpy())
    feature, dropped = (t.numpy() for t in _dropout_view(plain)(x))
    np.testing.assert_array_equal(feature, dropped)
    path = str(tmp_path / "mc.keras")
    mc.save(path)
    loaded = keras.models.load_model(path)
    _, dropped_again = (t.numpy() for t in _dropout_view(loaded)(x))
    assert 0.3 < (dropped_again != 0).mean() < 0.7


@pytest.mark.parametrize("how", ["backbone_h5", "model_h5", "keras"])
def test_load_backbone_weights_round_trip(tmp_path, how):
    source = build_emenet("tiny", seed=10)
    target = build_emenet("tiny", seed=11, mc_dropout=True)
    heads_before = {n: target.get_layer(n).get_weights() for n in ("au", "expr_hidden", "va_logits")}
    if how == "backbone_h5":
        path = str(tmp_path / "bb.h5")
        save_backbone_weights(source, path)
    elif how == "model_h5":
        path = str(tmp_path / "all.h5")
        source.save_weights(path)
    else:
        path = str(tmp_path / "all.keras")
        source.save(path)
    loaded = load_backbone_weights(target, path)
    assert "stem_conv" in loaded and "embedding_bn" in loaded and "au" not in loaded
    for name in ("stem_conv", "stem_bn", "block1_0_expand_conv", "embedding", "embedding_bn"):
        for a, b in zip(
            target.get_layer(name).get_weights(), source.get_layer(name).get_weights(), strict=True
        ):
            np.testing.assert_array_equal(a, b)
    for name, weights in heads_before.items():
        for a, b in zip(target.get_layer(name).get_weights(), weights, strict=True):
            np.testing.assert_array_equal(a, b)


def test_load_backbone_weights_errors(tmp_path):
    model = build_emenet("tiny")
    with pytest.raises(DataError, match="not found"):
        load_backbone_weights(model, str(tmp_path / "missing.h5"))
    path = str(tmp_path / "other.h5")
    other = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(2, name="stem_conv")]
    )  # name clash, shape not
    other.save_weights(path)
    with pytest.raises(DataError, match="no backbone layer"):
        load_backbone_weights(model, path)
    # a different width: only the layers whose shapes still agree are loaded (skip mismatches)
    wide = build_emenet("tiny", width_multiplier=1.0)
    save_backbone_weights(wide, path)
    assert load_backbone_weights(model, path) == ["last_bn", "embedding", "embedding_bn"]


def test_quantization_aware_training_builds_and_runs():
    import tensorflow_model_optimization as tfmot

    model = build_emenet("small", seed=0)
    qat = tfmot.quantization.keras.quantize_model(model)
    assert any("quantize" in layer.name for layer in qat.layers)
    out = qat(_images(2, 64), training=False)
    assert out["au"].shape == (2, 12) and out["expr"].shape == (2, 7) and out["va"].shape == (2, 2, 20)
    assert all(np.isfinite(v.numpy()).all() for v in out.values())


def test_full_int8_conversion_runs_and_agrees_roughly():
    from ai_edge_litert.interpreter import Interpreter

    model = build_emenet("tiny", seed=0)
    x = _images(16, 32, seed=1)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[i : i + 1]] for i in range(len(x)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    runner = Interpreter(model_content=converter.convert()).get_signature_runner("serving_default")
    detail = runner.get_input_details()["image"]
    assert detail["dtype"] == np.int8
    scale, zero = detail["quantization"]
    got = runner(image=np.clip(np.round(x[:1] / scale + zero), -128, 127).astype(np.int8))
    assert set(got) == {"au", "expr", "va"} and got["va"].shape == (1, 2, 20)
    reference = model(x[:1], training=False)
    for task in ("au", "expr"):
        o_scale, o_zero = runner.get_output_details()[task]["quantization"]
        dequantised = ((got[task].astype(np.float32) - o_zero) * o_scale).ravel()
        expected = reference[task].numpy().ravel()
        assert np.abs(dequantised - expected).max() < 0.1 * np.abs(expected).max() + 4 * o_scale
        assert np.corrcoef(dequantised, expected)[0, 1] > 0.95


def test_short_fit_with_the_losses_lowers_the_loss():
    model = build_emenet("small", dropout=0.0, seed=0)
    rng = np.random.default_rng(0)
    n = 8
    x = _images(n, 64, seed=2)
    au, au_mask = (
        rng.integers(0, 2, (n, 12)).astype(np.float32),
        (rng.random((n, 12)) > 0.2).astype(np.float32),
    )
    expr, expr_mask = rng.integers(0, 7, n), np.array([1, 1, 1, 0, 1, 1, 0, 1], np.float32)
    va, va_mask = rng.uniform(-1, 1, (n, 2)).astype(np.float32), np.ones((n, 2), np.float32)
    optimizer = keras.optimizers.Adam(3e-3)

    def total_loss():
        out = model(x, training=True)
        return (
            losses.au_bce(au, au_mask, out["au"])
            + losses.expr_ce(expr, expr_mask, out["expr"])
            + losses.va_loss(va, va_mask, out["va"])
        )

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = total_loss()
        optimizer.apply_gradients(
            zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables, strict=True)
        )
        return loss

    before = float(total_loss())
    for _ in range(15):
        step()
    after = float(total_loss())
    assert np.isfinite(before) and after < 0.8 * before
