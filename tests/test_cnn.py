"""The Conv1D residual classifier: shapes, parameter count, channel-wise dropout, halves-sum."""
import numpy as np
import pytest

import keras

from spectraforge.models.cnn import CNNConfig, HalvesSum, build_cnn, embedding_model

TINY = CNNConfig(n_pix=128, channels=[4, 4, 8])


def conv_params(c_in, c_out, k):
    return k * c_in * c_out + c_out


def expected_params(cfg: CNNConfig) -> int:
    """Count by hand: per block, convs c_in→2f then f→2f (halves-sum), a 1×1 shortcut if c_in≠f; two Dense."""
    total, c_in = 0, 1
    for f in cfg.channels:
        widths = [c_in] + [f] * (len(cfg.dilations) - 1)
        total += sum(conv_params(w, 2 * f, cfg.kernel_size) for w in widths)
        total += conv_params(c_in, f, 1) if c_in != f else 0
        c_in = f
    total += (c_in + 1) * cfg.dense_units + (cfg.dense_units + 1) * cfg.n_classes
    return total


def test_default_parameter_count_matches_the_architecture():
    cfg = CNNConfig()
    model = build_cnn(cfg)
    assert model.count_params() == expected_params(cfg)
    # the article's trunk: 8 blocks, 7 poolings; projected shortcuts at 1→16, 16→32, 32→64, 64→128
    assert sum(isinstance(layer, keras.layers.MaxPooling1D) for layer in model.layers) == 7
    assert sum(layer.name.endswith("_shortcut") for layer in model.layers) == 4


def test_default_model_takes_flat_2600_pixel_batches():
    model = build_cnn()
    out = model(np.random.default_rng(0).normal(size=(2, 2600)).astype("float32"))
    assert tuple(out.shape) == (2, 4)
    assert model.get_layer("embedding").output.shape[-1] == 128


def test_output_is_a_probability_per_class():
    model = build_cnn(TINY)
    p = np.asarray(model(np.random.default_rng(1).normal(size=(5, 128)).astype("float32")))
    assert p.shape == (5, 4)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    assert (p >= 0).all()


def test_each_conv_doubles_and_the_halves_sum_restores_f_channels():
    model = build_cnn(TINY)
    for i, f in enumerate(TINY.channels):
        for j in range(len(TINY.dilations)):
            conv = model.get_layer(f"block{i}_conv{j}")
            assert conv.output.shape[-1] == 2 * f
            assert conv.dilation_rate == (TINY.dilations[j],)
            assert model.get_layer(f"block{i}_halves{j}").output.shape[-1] == f
        assert model.get_layer(f"block{i}_add").output.shape[-1] == f
    x = np.arange(2 * 3 * 6, dtype="float32").reshape(2, 3, 6)
    np.testing.assert_array_equal(np.asarray(HalvesSum()(x)), x[..., :3] + x[..., 3:])


def test_dropout_drops_whole_channels():
    layer = build_cnn(TINY).get_layer("channel_dropout")
    x = np.ones((8, 30, 16), dtype="float32")
    y = np.asarray(layer(x, training=True))
    # each (sample, channel) is either zero at every position or kept (scaled 1/(1-rate)) at every one
    assert (y.min(axis=1) == y.max(axis=1)).all()
    assert set(np.unique(y).round(5)) == {0.0, round(1 / (1 - TINY.dropout), 5)}
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)


def test_bf16_mixed_precision_keeps_float32_probabilities():
    model = build_cnn(CNNConfig(n_pix=64, channels=[4, 8], mixed_precision=True))
    assert model.get_layer("block0_conv0").compute_dtype == "bfloat16"
    assert model.get_layer("block0_conv0").variable_dtype == "float32"
    p = model(np.zeros((3, 64), dtype="float32"))
    assert p.dtype == "float32"
    np.testing.assert_allclose(np.asarray(p).sum(axis=1), 1.0, rtol=1e-5)


def test_embedding_model_and_save_load_round_trip(tmp_path):
    model = build_cnn(TINY)
    x = np.random.default_rng(2).normal(size=(3, 128)).astype("float32")
    assert tuple(embedding_model(model)(x).shape) == (3, TINY.dense_units)
    model.save(tmp_path / "cnn.keras")
    again = keras.saving.load_model(tmp_path / "cnn.keras")
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(model(x)), rtol=1e-6)


@pytest.mark.parametrize("bad", [dict(dropout=1.0), dict(channels=[]), dict(n_pix=16, channels=[4] * 6)])
def test_bad_config_is_rejected_with_the_field_name(bad):
    with pytest.raises(ValueError, match="cnn"):
        build_cnn(CNNConfig(**bad))
