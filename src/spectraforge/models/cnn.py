"""The Conv1D residual spectral classifier of kexue.fm/archives/5505 (Su Jianlin, 2018).

Block(f) = three times [Conv1D(2f, k, dilation d, relu) → sum of the two channel halves]
plus a residual connection (1×1 convolution on the shortcut when the channel counts differ).
The trunk stacks such blocks with max pooling between them, then channel-wise dropout,
global max pooling, Dense(128, relu) ("embedding") and Dense(n_classes, softmax) ("probs").
Every choice sits in :class:`CNNConfig`; the defaults are the article's.

Three implementation choices make the same function cheaper on a CPU, none changes the
weights or the outputs (``build_cnn(cfg, reference=True)`` builds the textbook version, on keras'
Conv1D and MaxPooling1D with the whole batch at once, for tests and benchmarks to compare):

* :class:`ShiftConv1D`: each convolution as one matmul over shifted copies of its input;
* :class:`ReshapeMaxPooling1D`: max pooling as an elementwise maximum of strided views, whose
  gradient is a fused select instead of XLA's slow select-and-scatter (ties go to the first
  position, as in MaxPooling1D);
* micro-batches: the first ``micro_blocks`` blocks, where the sequence is long and the
  channels few, run on ``micro_batches`` consecutive slices of the batch with shared layers.
  Each slice's activations then stay in the CPU caches from one layer to the next instead of
  streaming the whole batch through memory at every step. The price is a larger graph to
  trace and compile once per model, so it pays on long schedules only (benchmarks/training.py
  measures both sides; off by default, 16 for the full competition schedule).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import keras

from spectraforge.labels import LABELS
from spectraforge.params import require

MIXED_POLICY = "mixed_bfloat16"
NORMS = ("none", "batch", "block")
SCALES = ("linear", "asinh")


@dataclass
class CNNConfig:
    """Architecture of :func:`build_cnn`; defaults follow the article.

    channels: f of each Block(f), one max pooling between consecutive blocks.
    dilations: one Conv1D(2f) + halves-sum per entry, in order.
    mixed_precision: compute in bfloat16 (variables and the softmax stay float32).
    micro_batches, micro_blocks: run the first ``micro_blocks`` blocks (all, if there are
        fewer) on ``micro_batches`` slices of the batch (the same function; faster on a CPU,
        see the module docstring).
        ``micro_batches: 1`` or ``micro_blocks: 0`` switch it off.
    norm: "none" (the article) or "batch": batch normalisation between each convolution and its
        relu (Ioffe & Szegedy 2015), the one change to the article's network that lets it
        converge within a short budget (benchmarks/learning_curve.py measures both); "block": one
        batch normalisation per block, on its output after the residual sum (f channels instead of
        2f after each of its convolutions: a sixth of the normalised activations, so a cheaper
        step). Batch statistics are per micro-batch slice, so either needs ``micro_batches: 1``.
    input_bin: average every ``input_bin`` adjacent pixels before the first block (1: the
        article, the network sees all n_pix pixels). 2 halves every layer's length, and so the
        cost of a step; a 2-pixel bin of the default grid (log-spaced 3690–9100 Å, 2600 pixels,
        104 km/s each) spans 208 km/s, about LAMOST's resolution element (R ≈ 1800, 167 km/s)
        and far narrower than galaxy and quasar lines (hundreds to thousands of km/s).
    scale: "linear" (the article: the prepared flux as it is) or "asinh": the network sees
        asinh(flux), linear near the continuum (≈ 1 after median normalisation) and logarithmic
        in the tails (Lupton, Gunn & Szalay 1999), so the few spectra whose median-normalised
        flux reaches 10²–10³ (faint continua, sky residuals) do not dominate its global max pool.
    """

    n_pix: int = 2600
    channels: list = field(default_factory=lambda: [16, 16, 32, 32, 64, 64, 128, 128])
    dilations: list = field(default_factory=lambda: [1, 2, 4])
    kernel_size: int = 3
    pool_size: int = 2
    dropout: float = 0.5
    dense_units: int = 128
    n_classes: int = len(LABELS)
    mixed_precision: bool = False
    micro_batches: int = 1
    micro_blocks: int = 4
    norm: str = "none"
    scale: str = "linear"
    input_bin: int = 1

    def validate(self, key: str = "cnn") -> None:
        """Raise ParamsError (a ValueError) naming the bad field and what is allowed."""
        checks = [
            (self.n_pix >= 1, "n_pix", "must be >= 1"),
            (len(self.channels) >= 1 and min(self.channels) >= 1, "channels", "must list positive widths"),
            (len(self.dilations) >= 1 and min(self.dilations) >= 1, "dilations", "must list positive rates"),
            (self.kernel_size >= 1, "kernel_size", "must be >= 1"),
            (self.pool_size >= 1, "pool_size", "must be >= 1"),
            (0.0 <= self.dropout < 1.0, "dropout", "must be in [0, 1)"),
            (self.dense_units >= 1, "dense_units", "must be >= 1"),
            (self.n_classes >= 2, "n_classes", "must be >= 2"),
            (self.micro_batches >= 1, "micro_batches", "must be >= 1"),
            (self.micro_blocks >= 0, "micro_blocks", "must be >= 0"),
            (self.input_bin >= 1, "input_bin", "must be >= 1"),
            (self.norm in NORMS, "norm", f"must be one of {', '.join(NORMS)}"),
            (self.scale in SCALES, "scale", f"must be one of {', '.join(SCALES)}"),
            (self.norm == "none" or self.micro_batches == 1, "micro_batches",
             "must be 1 with batch normalisation (batch statistics would be per slice)"),
        ]
        for ok, name, msg in checks:
            require(ok, f"{key}.{name}", f"{msg}, got {getattr(self, name)!r}")
        length = self.n_pix // self.input_bin // self.pool_size ** (len(self.channels) - 1)
        require(length >= 1, key, f"{len(self.channels) - 1} poolings of size {self.pool_size} leave nothing of "
                f"n_pix={self.n_pix} (input_bin {self.input_bin}); use fewer blocks or a longer input")


@keras.saving.register_keras_serializable(package="spectraforge")
class HalvesSum(keras.layers.Layer):
    """x[..., :f] + x[..., f:] for 2f input channels: the article's channel-halving step."""

    def call(self, x):
        f = x.shape[-1] // 2
        return x[..., :f] + x[..., f:]

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] // 2)


@keras.saving.register_keras_serializable(package="spectraforge")
class Asinh(keras.layers.Layer):
    """asinh(x), elementwise: the input scale of ``CNNConfig.scale = "asinh"``."""

    def call(self, x):
        return keras.ops.arcsinh(x)


@keras.saving.register_keras_serializable(package="spectraforge")
class ShiftConv1D(keras.layers.Conv1D):
    """Conv1D ('same' padding, stride 1) computed as one matmul over k shifted copies of the input.

    y[t] = Σ_i x[t + (i − (k−1)/2)·d] · W_i + b: the k dilated taps of every position are
    concatenated along the channels, (B, L, k·Cin), and multiplied by the kernel reshaped to
    (k·Cin, Cout). Same weights, shapes, parameter count and outputs as keras' Conv1D, which
    this class is (other paddings, strides and layouts go to it unchanged); on the CPU one
    large matmul beats the convolution kernel XLA picks for 1–128 channels
    (benchmarks/training.py measures both in the same run).
    """

    def _shifted(self, inputs) -> bool:
        return (self.padding == "same" and tuple(self.strides) == (1,) and self.groups == 1
                and self.data_format == "channels_last" and inputs.shape[1] is not None)

    def call(self, inputs):
        if not self._shifted(inputs):
            return super().call(inputs)
        k, d, length = self.kernel_size[0], self.dilation_rate[0], inputs.shape[1]
        cols = inputs
        if k > 1:
            left = d * (k - 1) // 2
            padded = keras.ops.pad(inputs, [[0, 0], [left, d * (k - 1) - left], [0, 0]])
            cols = keras.ops.concatenate([padded[:, i * d : i * d + length] for i in range(k)], axis=-1)
        kernel = keras.ops.reshape(self.kernel, (k * self.kernel.shape[1], self.filters))
        outputs = keras.ops.matmul(cols, kernel)
        if self.use_bias:
            outputs = outputs + self.bias
        return self.activation(outputs) if self.activation is not None else outputs


@keras.saving.register_keras_serializable(package="spectraforge")
class ReshapeMaxPooling1D(keras.layers.MaxPooling1D):
    """MaxPooling1D (stride = pool size, 'valid', channels last) as a maximum of strided views.

    y[t] = max(x[s·t], …, x[s·t + s − 1]), the trailing ``L mod s`` positions dropped, as in
    MaxPooling1D, which this class is (other settings go to it unchanged). The chain of
    ``maximum`` sends the gradient of a tie to the first position, as MaxPooling1D's does, and
    XLA fuses it into one elementwise pass where MaxPooling1D's gradient is a select-and-scatter.
    """

    def _reshaped(self, inputs) -> bool:
        return (self.padding == "valid" and tuple(self.strides) == tuple(self.pool_size)
                and self.data_format == "channels_last" and inputs.shape[1] is not None)

    def call(self, inputs):
        if not self._reshaped(inputs):
            return super().call(inputs)
        s, n = self.pool_size[0], inputs.shape[1] // self.pool_size[0]
        windows = keras.ops.reshape(inputs[:, : n * s], (-1, n, s, inputs.shape[-1]))
        out = windows[:, :, 0]
        for i in range(1, s):
            out = keras.ops.maximum(out, windows[:, :, i])
        return out


@keras.saving.register_keras_serializable(package="spectraforge")
class BatchSplit(keras.layers.Layer):
    """The batch as ``groups`` consecutive slices of near-equal size (empty ones if B < groups)."""

    def __init__(self, groups: int, **kwargs):
        super().__init__(**kwargs)
        self.groups = int(groups)

    def call(self, x):
        n = x.shape[0] if x.shape[0] is not None else keras.ops.shape(x)[0]
        bounds = [(k * n) // self.groups for k in range(self.groups + 1)]
        return [x[bounds[k]:bounds[k + 1]] for k in range(self.groups)]

    def compute_output_shape(self, input_shape):
        return [(None, *input_shape[1:])] * self.groups

    def get_config(self):
        return {**super().get_config(), "groups": self.groups}


@keras.saving.register_keras_serializable(package="spectraforge")
class BatchConcat(keras.layers.Layer):
    """The inverse of :class:`BatchSplit`: the slices concatenated back along the batch."""

    def call(self, parts):
        return keras.ops.concatenate(list(parts), axis=0)

    def compute_output_shape(self, input_shapes):
        return (None, *input_shapes[0][1:])


class ResidualBlock:
    """Block(f)'s layers, created once: len(cfg.dilations) × [Conv1D(2f) → halves-sum] plus the
    (projected) shortcut, preceded by the max pooling for every block but the first. Calling it
    on several tensors shares the layers (and weights) between them."""

    def __init__(self, index: int, c_in: int, f: int, cfg: CNNConfig, dtype=None, reference: bool = False):
        conv = keras.layers.Conv1D if reference else ShiftConv1D
        pool = keras.layers.MaxPooling1D if reference else ReshapeMaxPooling1D
        name = f"block{index}"
        self.pool = pool(cfg.pool_size, dtype=dtype, name=f"pool{index}") if index > 0 else None
        self.stack = []
        norm = cfg.norm == "batch"
        self.block_norm = (keras.layers.BatchNormalization(momentum=0.9, dtype=dtype, name=f"{name}_bn")
                           if cfg.norm == "block" else None)
        for j, d in enumerate(cfg.dilations):
            self.stack.append(conv(2 * f, cfg.kernel_size, padding="same", dilation_rate=d, use_bias=not norm,
                                   activation=None if norm else "relu", dtype=dtype, name=f"{name}_conv{j}"))
            if norm:
                # momentum 0.9: the moving statistics follow the weights within a few dozen batches
                self.stack.append(keras.layers.BatchNormalization(momentum=0.9, dtype=dtype, name=f"{name}_bn{j}"))
                self.stack.append(keras.layers.ReLU(dtype=dtype, name=f"{name}_relu{j}"))
            self.stack.append(HalvesSum(dtype=dtype, name=f"{name}_halves{j}"))
        self.shortcut = conv(f, 1, padding="same", dtype=dtype, name=f"{name}_shortcut") if c_in != f else None
        self.add = keras.layers.Add(dtype=dtype, name=f"{name}_add")

    def __call__(self, x):
        if self.pool is not None:
            x = self.pool(x)
        h = x
        for layer in self.stack:
            h = layer(h)
        out = self.add([self.shortcut(x) if self.shortcut is not None else x, h])
        return self.block_norm(out) if self.block_norm is not None else out


def build_cnn(cfg: CNNConfig | None = None, name: str = "cnn", reference: bool = False) -> keras.Model:
    """The classifier: inputs (batch, n_pix) float32, outputs (batch, n_classes) float32 probabilities.

    ``reference``: the same network on keras' Conv1D and MaxPooling1D without micro-batches (the
    same weights, in the same order, give the same outputs; for tests and benchmarks).
    """
    cfg = cfg or CNNConfig()
    cfg.validate()
    dtype = MIXED_POLICY if cfg.mixed_precision else None
    inputs = keras.Input(shape=(cfg.n_pix,), name="flux")
    x = keras.layers.Reshape((cfg.n_pix, 1), name="to_channels")(inputs)
    if cfg.input_bin > 1:  # flux averaged over input_bin pixels: a coarser grid, before any scaling
        x = keras.layers.AveragePooling1D(cfg.input_bin, name="input_bin")(x)
    if cfg.scale == "asinh":
        x = Asinh(name="asinh")(x)
    split = 0 if reference or cfg.micro_batches == 1 else min(cfg.micro_blocks, len(cfg.channels))
    widths = [1, *cfg.channels]
    blocks = [ResidualBlock(i, widths[i], f, cfg, dtype, reference) for i, f in enumerate(cfg.channels)]
    if split:
        parts = BatchSplit(cfg.micro_batches, name="micro_split")(x)
        for block in blocks[:split]:
            parts = [block(p) for p in parts]
        x = BatchConcat(name="micro_concat")(parts)
    for block in blocks[split:]:
        x = block(x)
    # SpatialDropout1D: noise shape (batch, 1, C), the same channels dropped at every position
    x = keras.layers.SpatialDropout1D(cfg.dropout, dtype=dtype, name="channel_dropout")(x)
    x = keras.layers.GlobalMaxPooling1D(dtype=dtype, name="global_max")(x)
    x = keras.layers.Dense(cfg.dense_units, activation="relu", dtype=dtype, name="embedding")(x)
    # softmax in float32 even under bf16: probabilities feed log-losses and argmax ties
    outputs = keras.layers.Dense(cfg.n_classes, activation="softmax", dtype="float32", name="probs")(x)
    return keras.Model(inputs, outputs, name=name)


def embedding_model(model: keras.Model) -> keras.Model:
    """The same network cut at the Dense "embedding" layer (for Fréchet distances)."""
    return keras.Model(model.input, model.get_layer("embedding").output, name=f"{model.name}_embedding")
