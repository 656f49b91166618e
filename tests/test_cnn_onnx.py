"""The CNN's TensorFlow-free forward pass (models.cnn_onnx) against the Keras model it replaces:
the same probabilities for every architecture switch, and a refusal (the caller keeps Keras)
for anything it does not know or any export that is not exactly the model's."""
import json
import zipfile

import keras
import numpy as np
import pytest

from spectraforge.models.cnn import CNNConfig, build_cnn
from spectraforge.models.cnn_onnx import (
    NetworkPlan,
    OnnxFolds,
    UnsupportedNetwork,
    export_network,
    export_path,
    load_export,
    save_export,
)

N_PIX = 480


def _net(seed: int, reference: bool = False, **cfg) -> keras.Model:
    """A network with random weights and random batch-norm statistics (so every term counts)."""
    keras.utils.set_random_seed(seed)
    model = build_cnn(CNNConfig(n_pix=N_PIX, **{"channels": [4, 4, 8, 8], **cfg}), reference=reference)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, _, _ = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape).astype(np.float32), rng.normal(0, 0.1, b.shape).astype(np.float32),
                               rng.normal(0, 0.2, g.shape).astype(np.float32), rng.uniform(0.5, 2, g.shape).astype(np.float32)])
    return model


def _spectra(n: int = 37, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, N_PIX)
    return (1 + rng.uniform(-0.5, 0.5, (n, 1)) * x + 0.3 * np.sin(rng.uniform(5, 60, (n, 1)) * x)
            + rng.normal(0, 0.1, (n, N_PIX))).astype(np.float32)


CONFIGS = {
    "article": {},
    "batch-norm, asinh, binned": {"norm": "batch", "scale": "asinh", "input_bin": 2},
    "block-norm, even kernel, odd pool": {"norm": "block", "kernel_size": 4, "dilations": [1, 3], "pool_size": 3},
    "micro-batches": {"micro_batches": 4, "micro_blocks": 2},
    "default": {"norm": "block", "scale": "asinh", "input_bin": 2},
}


@pytest.mark.parametrize("name", CONFIGS)
def test_the_onnx_folds_give_the_keras_folds_mean(name):
    folds = [_net(k, **CONFIGS[name]) for k in range(2)]
    X = _spectra()
    want = np.mean([f(X, training=False).numpy() for f in folds], axis=0)
    runner = OnnxFolds.from_models(folds, threads=2, batch_size=16)  # 37 rows: three calls, the last short
    got = runner(X)
    assert got.dtype == np.float64 and got.shape == (len(X), 4)
    np.testing.assert_allclose(got, want, atol=2e-6)
    assert runner(X[:0]).shape == (0, 4)


def test_the_reference_build_converts_too():
    """keras' own Conv1D / MaxPooling1D (build_cnn(reference=True)) are the same layers."""
    net = _net(3, reference=True, norm="block")
    X = _spectra(8)
    np.testing.assert_allclose(OnnxFolds.from_models([net])(X), net(X, training=False).numpy(), atol=2e-6)


def test_an_export_round_trips_and_a_stale_one_is_refused(tmp_path):
    net, path = _net(1, norm="block", scale="asinh"), tmp_path / "fold0.keras"
    net.save(path)
    save_export(net, export_path(path), source=path)
    assert export_path(path).name == "fold0.net.npz"
    X = _spectra(9)
    np.testing.assert_allclose(OnnxFolds.from_exports([path])(X), net(X, training=False).numpy(), atol=2e-6)
    _net(2, norm="block", scale="asinh").save(path)  # the model file replaced, its export not
    with pytest.raises(UnsupportedNetwork, match="stale"):
        OnnxFolds.from_exports([path])


def test_what_the_converter_does_not_know_is_refused():
    with pytest.raises(UnsupportedNetwork, match="bfloat16"):
        NetworkPlan.from_export(*export_network(_net(0, mixed_precision=True)))
    layers, weights = export_network(_net(0))

    def refused(layers, weights, match):
        with pytest.raises(UnsupportedNetwork, match=match):
            NetworkPlan.from_export(layers, weights)

    refused(layers + [{"name": "extra", "class": "Dense", "dtype": "float32"}], weights, "no place")
    conv = next(e for e in layers if e["name"] == "block1_conv0")
    refused([{**e, "dilation_rate": [0]} if e is conv else e for e in layers], weights, "dilation_rate")
    refused([{**e, "padding": "valid"} if e is conv else e for e in layers], weights, "convolution settings")
    refused([{**e, "activation": "tanh"} if e["name"] == "embedding" else e for e in layers], weights, "Dense")
    short = {**weights, "block1_conv0": [weights["block1_conv0"][0][:, :2]] + weights["block1_conv0"][1:]}
    refused(layers, short, "input channels")
    nan = {**weights, "probs": [np.full_like(weights["probs"][0], np.nan), weights["probs"][1]]}
    refused(layers, nan, "finite float32")
    refused([e for e in layers if e["name"] != "block2_add"], weights, "block2_add")


def test_a_hostile_export_file_is_refused_not_run(tmp_path, monkeypatch):
    path = tmp_path / "fold0.net.npz"
    np.savez(path, spec=np.array([{"format": "x"}], dtype=object))  # a pickled object inside
    with pytest.raises(UnsupportedNetwork, match="not a network export"):
        load_export(path)
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(UnsupportedNetwork, match="not a network export"):
        load_export(path)
    np.savez(path, spec=np.array(json.dumps({"format": "something else", "layers": []})))
    with pytest.raises(UnsupportedNetwork, match="not a spectraforge-cnn-export"):
        load_export(path)
    save_export(_net(0), path)
    monkeypatch.setattr("spectraforge.models.cnn_onnx.MAX_EXPORT_BYTES", 1000)
    with pytest.raises(UnsupportedNetwork, match="more than the 1000"):
        load_export(path)
    monkeypatch.setattr("spectraforge.models.cnn_onnx.MAX_EXPORT_BYTES", path.stat().st_size)
    with zipfile.ZipFile(path, "a") as zf:  # a member that inflates far beyond the file's size
        zf.writestr("bomb.npy", b"\0" * 10**7, compress_type=zipfile.ZIP_DEFLATED)
    monkeypatch.setattr("spectraforge.models.cnn_onnx.MAX_EXPORT_BYTES", path.stat().st_size)
    with pytest.raises(UnsupportedNetwork, match="unpack to more than"):
        load_export(path)
