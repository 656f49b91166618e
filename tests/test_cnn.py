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


@pytest.mark.parametrize("k,d,cin,cout,length", [(3, 1, 1, 32, 50), (3, 2, 16, 32, 40), (3, 4, 8, 6, 9),
                                                 (5, 3, 4, 4, 30), (2, 2, 3, 5, 17), (1, 1, 16, 8, 12)])
def test_shift_conv_equals_keras_conv1d_values_and_gradients(k, d, cin, cout, length, monkeypatch):
    """The shifted-copies matmul is the same function as Conv1D('same', dilation d): outputs and
    gradients with respect to input, kernel and bias agree, and no convolution op is used."""
    import tensorflow as tf

    from spectraforge.models import cnn

    rng = np.random.default_rng(k * 100 + d)
    x = tf.constant(rng.normal(size=(3, length, cin)).astype("float32"))
    ref = keras.layers.Conv1D(cout, k, padding="same", dilation_rate=d, activation="relu")
    new = cnn.ShiftConv1D(cout, k, padding="same", dilation_rate=d, activation="relu")
    ref.build(x.shape), new.build(x.shape)
    assert [w.shape for w in new.weights] == [w.shape for w in ref.weights]
    new.set_weights(ref.get_weights())
    results = {}
    for name, layer in (("ref", ref), ("new", new)):
        if name == "new":  # the shifted path must not fall back on a convolution
            monkeypatch.setattr(keras.src.ops, "conv", lambda *a, **kw: pytest.fail("ops.conv called"))
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * tf.sin(tf.range(y.shape[-1], dtype=tf.float32)))
        results[name] = (y, *tape.gradient(loss, [x, *layer.trainable_weights]))
    for a, b in zip(results["ref"], results["new"]):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-5)


def test_the_network_uses_shift_convs_that_round_trip_through_a_saved_model(tmp_path):
    from spectraforge.models.cnn import ShiftConv1D

    model = build_cnn(TINY)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv1D)]
    assert convs and all(isinstance(layer, ShiftConv1D) for layer in convs)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    assert all(isinstance(layer, ShiftConv1D) for layer in again.layers if isinstance(layer, keras.layers.Conv1D))
    x = np.random.default_rng(2).normal(size=(4, 128)).astype("float32")
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(model(x)), rtol=1e-6, atol=1e-6)


def _outputs_and_gradients(model, x, y_weights):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        p = model(x, training=False)
        loss = tf.reduce_sum(p * y_weights)
    return p, tape.gradient(loss, model.trainable_weights)


@pytest.mark.parametrize("cfg,batch", [(CNNConfig(micro_batches=16), 7), (CNNConfig(micro_batches=16), 1),
                                       (CNNConfig(n_pix=90, channels=[4, 4, 8], micro_batches=3, micro_blocks=2), 5),
                                       (CNNConfig(n_pix=90, channels=[4, 8], micro_batches=4, micro_blocks=9), 2)])
def test_the_fast_network_is_the_reference_network(cfg, batch):
    """ShiftConv1D, ReshapeMaxPooling1D and micro-batches change nothing but the speed: the same
    weights, in the same order, give the reference network's outputs and gradients, also when the
    batch is smaller than the number of micro-batches (empty slices)."""
    import tensorflow as tf

    from spectraforge.models.cnn import BatchSplit

    fast, ref = build_cnn(cfg), build_cnn(cfg, reference=True)
    assert any(isinstance(layer, BatchSplit) for layer in fast.layers)
    assert not any(isinstance(layer, BatchSplit) for layer in ref.layers)
    assert [(w.path, w.shape) for w in fast.weights] == [(w.path, w.shape) for w in ref.weights]
    ref.set_weights(fast.get_weights())
    x = tf.constant(np.random.default_rng(batch).normal(size=(batch, cfg.n_pix)).astype("float32"))
    weights = tf.constant([1.0, -2.0, 3.0, 0.5])
    p_fast, g_fast = _outputs_and_gradients(fast, x, weights)
    p_ref, g_ref = _outputs_and_gradients(ref, x, weights)
    np.testing.assert_allclose(np.asarray(p_fast), np.asarray(p_ref), rtol=1e-5, atol=1e-6)
    for a, b in zip(g_fast, g_ref):
        scale = float(np.abs(np.asarray(b)).max()) or 1.0
        np.testing.assert_allclose(np.asarray(a) / scale, np.asarray(b) / scale, atol=1e-5)


@pytest.mark.parametrize("pool,length", [(2, 10), (2, 11), (3, 14), (1, 5)])
def test_reshape_max_pooling_equals_keras_max_pooling_with_ties(pool, length):
    """Values and gradients agree with MaxPooling1D, including the trailing positions it drops
    and exact ties (the gradient goes to the first of the tied positions)."""
    import tensorflow as tf

    from spectraforge.models.cnn import ReshapeMaxPooling1D

    rng = np.random.default_rng(pool * 10 + length)
    x = rng.integers(0, 3, size=(4, length, 5)).astype("float32")  # small integers: many ties
    x = tf.constant(x)
    results = []
    for layer in (keras.layers.MaxPooling1D(pool), ReshapeMaxPooling1D(pool)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * tf.range(1.0, 1.0 + y.shape[1])[None, :, None])
        results.append((np.asarray(y), np.asarray(tape.gradient(loss, x))))
    (y_ref, g_ref), (y_new, g_new) = results
    assert y_new.shape == (4, length // pool, 5)
    np.testing.assert_array_equal(y_new, y_ref)
    np.testing.assert_array_equal(g_new, g_ref)


@pytest.mark.parametrize("batch,groups,sizes", [(5, 3, [1, 2, 2]), (2, 4, [0, 1, 0, 1]), (160, 16, [10] * 16)])
def test_batch_split_slices_in_order_and_concat_undoes_it(batch, groups, sizes):
    from spectraforge.models.cnn import BatchConcat, BatchSplit

    x = np.arange(batch * 3, dtype="float32").reshape(batch, 3, 1)
    parts = BatchSplit(groups)(x)
    assert [int(p.shape[0]) for p in parts] == sizes
    np.testing.assert_array_equal(np.asarray(BatchConcat()(parts)), x)


def test_micro_batches_are_off_by_default_and_the_layers_are_still_the_fast_ones():
    from spectraforge.models.cnn import BatchSplit, ReshapeMaxPooling1D, ShiftConv1D

    model = build_cnn(TINY)
    assert not any(isinstance(layer, BatchSplit) for layer in model.layers)
    assert all(isinstance(layer, ReshapeMaxPooling1D) for layer in model.layers
               if isinstance(layer, keras.layers.MaxPooling1D))
    ref = build_cnn(TINY, reference=True)
    assert not any(isinstance(layer, (ShiftConv1D, ReshapeMaxPooling1D)) for layer in ref.layers)


def test_micro_batched_model_round_trips_through_a_saved_model(tmp_path):
    cfg = CNNConfig(n_pix=128, channels=[4, 4, 8], micro_batches=4, micro_blocks=2)
    model = build_cnn(cfg)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    for n in (1, 6):
        x = np.random.default_rng(n).normal(size=(n, 128)).astype("float32")
        np.testing.assert_allclose(np.asarray(again(x)), np.asarray(model(x)), rtol=1e-6, atol=1e-6)


def test_micro_batch_settings_are_checked():
    with pytest.raises(ValueError, match="cnn.micro_batches"):
        build_cnn(CNNConfig(micro_batches=0))
    with pytest.raises(ValueError, match="cnn.micro_blocks"):
        build_cnn(CNNConfig(micro_blocks=-1))


def test_batch_norm_and_asinh_switches_build_the_documented_network(tmp_path):
    """norm: batch puts BatchNormalization between each convolution (now without bias) and its
    relu; scale: asinh feeds asinh(flux); both round-trip through a saved model."""
    cfg = CNNConfig(n_pix=128, channels=[4, 4, 8], norm="batch", scale="asinh")
    model = build_cnn(cfg)
    conv = model.get_layer("block0_conv0")
    assert conv.activation is keras.activations.linear and not conv.use_bias
    assert isinstance(model.get_layer("block0_bn0"), keras.layers.BatchNormalization)
    assert model.get_layer("block0_bn0").momentum == 0.9
    assert isinstance(model.get_layer("block0_relu0"), keras.layers.ReLU)
    n_bn = sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    assert n_bn == len(cfg.channels) * len(cfg.dilations)
    x = np.random.default_rng(5).normal(0, 30, size=(3, 128)).astype("float32")
    probe = keras.Model(model.input, model.get_layer("asinh").output)
    np.testing.assert_allclose(np.asarray(probe(x))[..., 0], np.arcsinh(x), rtol=1e-5, atol=1e-6)
    model.save(tmp_path / "bn.keras")
    again = keras.saving.load_model(tmp_path / "bn.keras")
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(model(x)), rtol=1e-5, atol=1e-6)
    plain = build_cnn(CNNConfig(n_pix=128, channels=[4, 4, 8]))
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in plain.layers)
    assert "asinh" not in [layer.name for layer in plain.layers]


def test_block_norm_normalises_each_block_output_once(tmp_path):
    """norm: block keeps the article's convolutions (bias, relu) and adds one BatchNormalization
    per block, on the residual sum; in inference it is the affine map of its moving statistics."""
    cfg = CNNConfig(n_pix=128, channels=[4, 4, 8], norm="block")
    model = build_cnn(cfg)
    conv = model.get_layer("block0_conv0")
    assert conv.activation is keras.activations.relu and conv.use_bias
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert [layer.name for layer in bns] == [f"block{i}_bn" for i in range(len(cfg.channels))]
    assert all(layer.momentum == 0.9 for layer in bns)
    # the block's output is BN(add): check block 1 against its own add output
    x = np.random.default_rng(6).normal(size=(3, 128)).astype("float32")
    bn = model.get_layer("block1_bn")
    bn.moving_mean.assign(np.full(4, 0.5, "float32"))
    bn.moving_variance.assign(np.full(4, 4.0, "float32"))
    added = np.asarray(keras.Model(model.input, model.get_layer("block1_add").output)(x))
    out = np.asarray(keras.Model(model.input, bn.output)(x))
    gamma, beta = np.asarray(bn.gamma), np.asarray(bn.beta)
    np.testing.assert_allclose(out, gamma * (added - 0.5) / np.sqrt(4.0 + bn.epsilon) + beta, rtol=1e-5, atol=1e-5)
    model.save(tmp_path / "block.keras")
    again = keras.saving.load_model(tmp_path / "block.keras")
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(model(x)), rtol=1e-5, atol=1e-6)


def test_input_bin_averages_adjacent_pixels_before_the_scale():
    cfg = CNNConfig(n_pix=128, channels=[4, 4, 8], input_bin=2, scale="asinh", norm="block")
    model = build_cnn(cfg)
    x = np.random.default_rng(7).normal(0, 5, size=(3, 128)).astype("float32")
    binned = np.asarray(keras.Model(model.input, model.get_layer("input_bin").output)(x))[..., 0]
    np.testing.assert_allclose(binned, x.reshape(3, 64, 2).mean(axis=2), rtol=1e-6, atol=1e-6)
    scaled = np.asarray(keras.Model(model.input, model.get_layer("asinh").output)(x))[..., 0]
    np.testing.assert_allclose(scaled, np.arcsinh(binned), rtol=1e-5, atol=1e-6)
    assert model.get_layer("block0_conv0").output.shape[1] == 64
    assert "input_bin" not in [layer.name for layer in build_cnn(CNNConfig(n_pix=128, channels=[4, 4, 8])).layers]
    with pytest.raises(ValueError, match="input_bin 64"):
        CNNConfig(n_pix=128, channels=[4, 4, 8], input_bin=64).validate()


@pytest.mark.parametrize("bad,field", [(dict(norm="layer"), "norm"), (dict(scale="log"), "scale"),
                                       (dict(norm="batch", micro_batches=4), "micro_batches"),
                                       (dict(norm="block", micro_batches=4), "micro_batches"),
                                       (dict(input_bin=0), "input_bin")])
def test_norm_and_scale_settings_are_checked(bad, field):
    with pytest.raises(ValueError, match=rf"cnn\.{field}"):
        CNNConfig(**bad).validate()
