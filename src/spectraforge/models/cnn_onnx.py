"""The CNN's forward pass without TensorFlow: the fold networks of a variant as one ONNX graph
run by onnxruntime, for ``spectraforge predict``.

Why: predicting with the trained Keras folds means importing TensorFlow, rebuilding five
models and compiling them, about 8 s before the first spectrum, and XLA's convolutions spend
4.3 CPU ms a spectrum on the five folds of the default network. onnxruntime starts in 0.1 s,
and its blocked (NCHWc) convolutions spend 3.4 (benchmarks/predict.py).

Two halves:

* :func:`export_network` / :func:`save_export` (TensorFlow side, at training time): a fold's
  layers as plain data, ``{name, class, the config fields the forward pass uses}`` plus their
  weights, in one ``.npz`` (``<fold>.net.npz`` beside ``<fold>.keras``) that ``np.load`` reads
  with ``allow_pickle=False``: nothing in it can run code.
* :class:`NetworkPlan` and :class:`OnnxFolds` (no TensorFlow): the exported layers are matched
  against the one architecture :func:`spectraforge.models.cnn.build_cnn` builds (every layer
  accounted for, every weight of the shape its role needs, float32 everywhere) and turned into
  an ONNX graph; anything else raises :class:`UnsupportedNetwork` and the caller keeps the
  Keras path.

The graph works on (batch, channels, 1, length) tensors, the layout onnxruntime's blocked
convolutions take, and writes the article's channel-halving step (``x[:f] + x[f:]``) as a 1×1
convolution with weights [I I]: the same sum (each output adds exactly two nonzero terms), but
it keeps the tensors in the blocked layout, where a split of the channels costs two reorders
(half the time of the whole network when written as Split + Add).
"""
from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

EXPORT_SUFFIX = ".net.npz"
FORMAT = "spectraforge-cnn-export/1"
MAX_EXPORT_BYTES = 256 * 2**20  # the default network's export is ~3 MB
CONV_CLASSES = ("Conv1D", "ShiftConv1D")
POOL_CLASSES = ("MaxPooling1D", "ReshapeMaxPooling1D")
CONFIG_KEYS = ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "groups",
               "activation", "use_bias", "pool_size", "target_shape", "epsilon", "center", "scale", "axis",
               "units", "max_value", "negative_slope", "threshold")
IGNORED = {"InputLayer", "SpatialDropout1D", "BatchSplit", "BatchConcat"}  # identities at inference


class UnsupportedNetwork(ValueError):
    """The exported layers are not the network this module knows how to run."""


def export_path(fold_file) -> Path:
    """``fold0.keras`` -> ``fold0.net.npz`` (same folder)."""
    fold_file = Path(fold_file)
    return fold_file.with_name(fold_file.name.removesuffix(fold_file.suffix) + EXPORT_SUFFIX)


def _dtype_name(config: dict) -> str:
    dtype = config.get("dtype")
    if isinstance(dtype, dict):
        return str((dtype.get("config") or {}).get("name", dtype.get("class_name")))
    return str(dtype or "float32")


def export_network(model) -> tuple[list[dict], dict[str, list[np.ndarray]]]:
    """(layers, weights) of a Keras model: per layer its name, class and the config fields the
    forward pass uses (and its dtype policy); its weights by layer name."""
    layers, weights = [], {}
    for layer in model.layers:
        config = layer.get_config()
        entry = {"name": layer.name, "class": type(layer).__name__, "dtype": _dtype_name(config),
                 **{k: config[k] for k in CONFIG_KEYS if k in config}}
        layers.append(json.loads(json.dumps(entry, default=_jsonable)))
        arrays = [np.asarray(w) for w in layer.get_weights()]
        if arrays:
            weights[layer.name] = arrays
    return layers, weights


def _jsonable(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    return str(value)


def file_digest(path) -> str:
    import hashlib

    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def save_export(model, path, source=None) -> Path:
    """Write :func:`export_network` of ``model`` to ``path`` (an ``.npz``, no pickles).
    ``source``: the model's saved file (``fold0.keras``), whose SHA-256 the export records so
    that a stale export (the model file replaced since) is never used in its place."""
    layers, weights = export_network(model)
    arrays = {f"w/{name}/{i}": w for name, ws in weights.items() for i, w in enumerate(ws)}
    spec = {"format": FORMAT, "layers": layers, "source_sha256": file_digest(source) if source else None}
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as fh:
        np.savez(fh, spec=np.array(json.dumps(spec)), **arrays)
    tmp.replace(path)
    return path


def load_export(path, source=None) -> tuple[list[dict], dict[str, list[np.ndarray]]]:
    """(layers, weights) from :func:`save_export`'s file; :class:`UnsupportedNetwork` for a file
    that is not one (too large, not an npz, a pickle inside, an unknown format) or, given
    ``source``, one exported from another version of that model file."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_EXPORT_BYTES:
        raise UnsupportedNetwork(f"{path}: {size} bytes, more than the {MAX_EXPORT_BYTES} a network export may have")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if sum(npz.zip.getinfo(f"{k}.npy").file_size for k in npz.files) > 4 * MAX_EXPORT_BYTES:
                raise UnsupportedNetwork(f"{path}: its arrays unpack to more than {4 * MAX_EXPORT_BYTES} bytes")
            spec = json.loads(str(npz["spec"]))
            found: dict[str, dict[int, np.ndarray]] = {}
            for key in npz.files:
                m = re.fullmatch(r"w/(.+)/(\d+)", key)
                if m:
                    found.setdefault(m[1], {})[int(m[2])] = npz[key]
    except UnsupportedNetwork:
        raise
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        raise UnsupportedNetwork(f"{path}: not a network export ({type(exc).__name__}: {exc})") from None
    if not isinstance(spec, dict) or spec.get("format") != FORMAT or not isinstance(spec.get("layers"), list):
        raise UnsupportedNetwork(f"{path}: not a {FORMAT} file")
    if source is not None and spec.get("source_sha256") != file_digest(source):
        raise UnsupportedNetwork(f"{path}: exported from another version of {Path(source).name} (stale)")
    weights = {name: [ws[i] for i in sorted(ws)] for name, ws in found.items()}
    return spec["layers"], weights


# ---------------------------------------------------------------------------------- the plan

@dataclass
class Conv:
    kernel: np.ndarray  # keras layout (k, c_in, c_out)
    bias: np.ndarray | None
    dilation: int
    relu: bool


@dataclass
class BatchNorm:
    gamma: np.ndarray
    beta: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    epsilon: float


@dataclass
class Block:
    pool: int  # max-pooling size before the block (0: none)
    convs: list  # [(Conv, BatchNorm | None)]: conv, its norm (then relu), then the halves sum
    shortcut: Conv | None
    norm: BatchNorm | None  # on the block's output (norm "block")


@dataclass
class NetworkPlan:
    """One fold network as the sequence :func:`build_cnn` builds, checked layer by layer."""

    n_pix: int
    input_bin: int
    asinh: bool
    blocks: list = field(default_factory=list)
    dense: list = field(default_factory=list)  # [(kernel (c_in, c_out), bias, activation)]

    @classmethod
    def from_export(cls, layers: list[dict], weights: dict[str, list[np.ndarray]]) -> "NetworkPlan":
        by_name = {}
        for entry in layers:
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                raise UnsupportedNetwork(f"a layer entry is not a named mapping: {entry!r}")
            by_name[entry["name"]] = entry
        used: set[str] = set()

        def take(name: str, classes, n_weights: int | None = None) -> tuple[dict, list]:
            entry = by_name.get(name)
            if entry is None:
                raise UnsupportedNetwork(f"no layer {name!r}")
            if entry.get("class") not in classes:
                raise UnsupportedNetwork(f"layer {name!r} is a {entry.get('class')}, expected {' or '.join(classes)}")
            if entry.get("dtype") != "float32":
                raise UnsupportedNetwork(f"layer {name!r} computes in {entry.get('dtype')}, not float32")
            ws = [np.asarray(w) for w in weights.get(name, [])]
            if n_weights is not None and len(ws) != n_weights:
                raise UnsupportedNetwork(f"layer {name!r} has {len(ws)} weights, expected {n_weights}")
            if any(w.dtype != np.float32 or not np.all(np.isfinite(w)) for w in ws):
                raise UnsupportedNetwork(f"layer {name!r}: weights must be finite float32")
            used.add(name)
            return entry, ws

        def conv(name: str, c_in: int) -> Conv:
            entry, ws = take(name, CONV_CLASSES)
            expect = {"strides": [1], "padding": "same", "data_format": "channels_last", "groups": 1}
            bad = {k: entry.get(k) for k, v in expect.items() if entry.get(k) != v}
            if bad or entry.get("activation") not in ("relu", "linear"):
                raise UnsupportedNetwork(f"layer {name!r}: unsupported convolution settings {bad or entry}")
            if len(ws) != (2 if entry.get("use_bias") else 1):
                raise UnsupportedNetwork(f"layer {name!r}: {len(ws)} weights for use_bias={entry.get('use_bias')}")
            kernel = ws[0]
            if kernel.ndim != 3 or kernel.shape[1] != c_in:
                raise UnsupportedNetwork(f"layer {name!r}: kernel {kernel.shape} on {c_in} input channels")
            bias = ws[1] if len(ws) == 2 else None
            if bias is not None and bias.shape != (kernel.shape[2],):
                raise UnsupportedNetwork(f"layer {name!r}: bias {bias.shape} for {kernel.shape[2]} filters")
            dilation = entry.get("dilation_rate")
            if not (isinstance(dilation, list) and len(dilation) == 1 and isinstance(dilation[0], int)
                    and dilation[0] >= 1):
                raise UnsupportedNetwork(f"layer {name!r}: dilation_rate {dilation!r}")
            return Conv(kernel, bias, dilation[0], entry["activation"] == "relu")

        def norm(name: str, channels: int) -> BatchNorm:
            entry, ws = take(name, ("BatchNormalization",), 4)
            if entry.get("axis") not in (-1, [-1], 2, [2]) or not entry.get("center") or not entry.get("scale"):
                raise UnsupportedNetwork(f"layer {name!r}: unsupported batch-norm settings")
            if any(w.shape != (channels,) for w in ws) or np.any(ws[3] < 0):
                raise UnsupportedNetwork(f"layer {name!r}: statistics of the wrong shape or a negative variance")
            return BatchNorm(*ws, float(entry.get("epsilon", 1e-3)))

        def pooling(name: str, classes) -> int:
            entry, _ = take(name, classes, 0)
            size, strides = entry.get("pool_size"), entry.get("strides")
            if (entry.get("padding") != "valid" or entry.get("data_format") != "channels_last"
                    or not isinstance(size, list) or len(size) != 1 or strides != size or int(size[0]) < 1):
                raise UnsupportedNetwork(f"layer {name!r}: pooling must be 'valid' with strides = pool size")
            return int(size[0])

        inputs = [e for e in layers if e.get("class") == "InputLayer"]
        reshape, _ = take("to_channels", ("Reshape",), 0)
        target = reshape.get("target_shape")
        if not (isinstance(target, list) and len(target) == 2 and target[1] == 1 and int(target[0]) >= 1):
            raise UnsupportedNetwork(f"to_channels reshapes to {target!r}, expected [n_pix, 1]")
        plan = cls(int(target[0]), 1, False)
        if len(inputs) != 1:
            raise UnsupportedNetwork(f"{len(inputs)} inputs, expected 1")
        if "input_bin" in by_name:
            plan.input_bin = pooling("input_bin", ("AveragePooling1D",))
        if "asinh" in by_name:
            take("asinh", ("Asinh",), 0)
            plan.asinh = True
        c_in, length, i = 1, plan.n_pix // plan.input_bin, 0
        while f"block{i}_conv0" in by_name:
            pool = pooling(f"pool{i}", POOL_CLASSES) if i else 0
            if pool:
                length //= pool
            h_in, convs, j = c_in, [], 0
            while f"block{i}_conv{j}" in by_name:
                c = conv(f"block{i}_conv{j}", h_in)
                bn = None
                if f"block{i}_bn{j}" in by_name:  # norm "batch": conv (linear) -> BN -> ReLU
                    if c.relu:
                        raise UnsupportedNetwork(f"block{i}_conv{j}: relu before its batch norm")
                    bn = norm(f"block{i}_bn{j}", c.kernel.shape[2])
                    relu, _ = take(f"block{i}_relu{j}", ("ReLU",), 0)
                    if relu.get("max_value") is not None or relu.get("negative_slope", 0) or relu.get("threshold", 0):
                        raise UnsupportedNetwork(f"block{i}_relu{j}: not a plain ReLU")
                take(f"block{i}_halves{j}", ("HalvesSum",), 0)
                if c.kernel.shape[2] % 2:
                    raise UnsupportedNetwork(f"block{i}_conv{j}: an odd channel count cannot be halved")
                convs.append((c, bn))
                h_in = c.kernel.shape[2] // 2
                j += 1
            shortcut = conv(f"block{i}_shortcut", c_in) if f"block{i}_shortcut" in by_name else None
            if (shortcut.kernel.shape[2] if shortcut is not None else c_in) != h_in:
                raise UnsupportedNetwork(f"block{i}: the shortcut's channels differ from the block's")
            if shortcut is not None and (shortcut.kernel.shape[0] != 1 or shortcut.relu):
                raise UnsupportedNetwork(f"block{i}_shortcut: expected a linear 1x1 convolution")
            take(f"block{i}_add", ("Add",), 0)
            block_norm = norm(f"block{i}_bn", h_in) if f"block{i}_bn" in by_name else None
            plan.blocks.append(Block(pool, convs, shortcut, block_norm))
            c_in, i = h_in, i + 1
        if not plan.blocks or length < 1:
            raise UnsupportedNetwork("no residual blocks, or nothing left of the input after pooling")
        take("global_max", ("GlobalMaxPooling1D",), 0)
        for name, activation in (("embedding", ("relu",)), ("probs", ("softmax",))):
            entry, ws = take(name, ("Dense",), 2)
            if entry.get("activation") not in activation or ws[0].ndim != 2 or ws[0].shape[0] != c_in \
                    or ws[1].shape != (ws[0].shape[1],):
                raise UnsupportedNetwork(f"layer {name!r}: a Dense({activation[0]}) on {c_in} inputs expected")
            plan.dense.append((ws[0], ws[1], entry["activation"]))
            c_in = ws[0].shape[1]
        for entry in layers:
            if entry["name"] not in used:
                if entry.get("class") not in IGNORED or weights.get(entry["name"]):
                    raise UnsupportedNetwork(f"layer {entry['name']!r} ({entry.get('class')}) has no place in the network")
                used.add(entry["name"])
        return plan

    @property
    def n_classes(self) -> int:
        return int(self.dense[-1][0].shape[1])


# ------------------------------------------------------------------------------- the graph

class _Graph:
    def __init__(self):
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes, self.inits, self.n = [], [], 0

    def _name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}_{self.n}"

    def const(self, array) -> str:
        name = self._name("w")
        self.inits.append(self.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, kind: str, inputs: list[str], **attrs) -> str:
        out = self._name(kind)
        self.nodes.append(self.helper.make_node(kind, inputs, [out], **attrs))
        return out

    def conv(self, x: str, c: Conv) -> str:
        k = c.kernel.shape[0]
        left = c.dilation * (k - 1) // 2  # keras 'same': the odd pixel of padding on the right
        inputs = [x, self.const(c.kernel.transpose(2, 1, 0)[:, :, None, :])]
        if c.bias is not None:
            inputs.append(self.const(c.bias))
        y = self.op("Conv", inputs, kernel_shape=[1, k], dilations=[1, c.dilation],
                    pads=[0, left, 0, c.dilation * (k - 1) - left])
        return self.op("Relu", [y]) if c.relu else y

    def norm(self, x: str, bn: BatchNorm) -> str:
        return self.op("BatchNormalization", [x, *(self.const(a) for a in (bn.gamma, bn.beta, bn.mean, bn.var))],
                       epsilon=bn.epsilon)

    def halves(self, x: str, channels: int) -> str:
        f = channels // 2
        eye = np.eye(f, dtype=np.float32)
        return self.op("Conv", [x, self.const(np.concatenate([eye, eye], axis=1)[:, :, None, None])],
                       kernel_shape=[1, 1])

    def network(self, x: str, plan: NetworkPlan) -> str:
        for block in plan.blocks:
            if block.pool:
                x = self.op("MaxPool", [x], kernel_shape=[1, block.pool], strides=[1, block.pool])
            h = x
            for c, bn in block.convs:
                h = self.conv(h, c)
                if bn is not None:
                    h = self.op("Relu", [self.norm(h, bn)])
                h = self.halves(h, c.kernel.shape[2])
            x = self.op("Add", [self.conv(x, block.shortcut) if block.shortcut is not None else x, h])
            if block.norm is not None:
                x = self.norm(x, block.norm)
        x = self.op("ReduceMax", [x, self.const(np.array([2, 3], np.int64))], keepdims=0)
        for kernel, bias, activation in plan.dense:
            x = self.op("Add", [self.op("MatMul", [x, self.const(kernel)]), self.const(bias)])
            x = self.op("Relu", [x]) if activation == "relu" else self.op("Softmax", [x], axis=1)
        return x


def folds_graph(plans: list[NetworkPlan]) -> bytes:
    """An ONNX model: input ``flux`` (batch, n_pix) float32 -> ``proba`` (batch, n_classes), the
    mean of the folds' softmax outputs."""
    from onnx import TensorProto, helper

    first = plans[0]
    for p in plans[1:]:
        if (p.n_pix, p.input_bin, p.asinh, p.n_classes) != (first.n_pix, first.input_bin, first.asinh, first.n_classes):
            raise UnsupportedNetwork("the folds differ in input length, binning, scaling or classes")
    g = _Graph()
    x = g.op("Reshape", ["flux", g.const(np.array([0, 1, 1, first.n_pix], np.int64))])
    if first.input_bin > 1:
        x = g.op("AveragePool", [x], kernel_shape=[1, first.input_bin], strides=[1, first.input_bin])
    if first.asinh:
        x = g.op("Asinh", [x])
    outs = [g.network(x, p) for p in plans]
    total = g.op("Sum", outs) if len(outs) > 1 else outs[0]
    g.nodes.append(helper.make_node("Mul", [total, g.const(np.array(1.0 / len(outs), np.float32))], ["proba"]))
    graph = helper.make_graph(
        g.nodes, "cnn_folds", [helper.make_tensor_value_info("flux", TensorProto.FLOAT, [None, first.n_pix])],
        [helper.make_tensor_value_info("proba", TensorProto.FLOAT, [None, first.n_classes])], g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="spectraforge")
    model.ir_version = 8
    return model.SerializeToString()


class OnnxFolds:
    """The fold networks of one CNN variant as one onnxruntime session returning their mean
    (float64 on return, as the Keras path gives it), on blocks of ``batch_size`` spectra."""

    def __init__(self, plans: list[NetworkPlan], threads: int = 2, batch_size: int = 256):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = int(threads), 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # no busy-waiting between ops: the reader processes share the cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.session = ort.InferenceSession(folds_graph(plans), options, providers=["CPUExecutionProvider"])
        self.n_pix, self.n_classes, self.batch_size = plans[0].n_pix, plans[0].n_classes, int(batch_size)

    @classmethod
    def from_exports(cls, fold_files, threads: int = 2, batch_size: int = 256) -> "OnnxFolds":
        """From the exports beside ``fold_files`` (each checked against its fold file)."""
        return cls([NetworkPlan.from_export(*load_export(export_path(f), f)) for f in fold_files], threads, batch_size)

    @classmethod
    def from_models(cls, models, threads: int = 2, batch_size: int = 256) -> "OnnxFolds":
        return cls([NetworkPlan.from_export(*export_network(m)) for m in models], threads, batch_size)

    def __call__(self, flux: np.ndarray) -> np.ndarray:
        flux = np.ascontiguousarray(flux, np.float32)
        if flux.ndim != 2 or flux.shape[1] != self.n_pix:
            raise ValueError(f"expected spectra of {self.n_pix} pixels, got shape {flux.shape}")
        out = np.empty((len(flux), self.n_classes), np.float64)
        for s in range(0, len(flux), self.batch_size):
            out[s : s + self.batch_size] = self.session.run(["proba"], {"flux": flux[s : s + self.batch_size]})[0]
        return out
