"""The Conv1D residual spectral classifier of kexue.fm/archives/5505 (Su Jianlin, 2018).

Block(f) = three times [Conv1D(2f, k, dilation d, relu) → sum of the two channel halves]
plus a residual connection (1×1 convolution on the shortcut when the channel counts differ).
The trunk stacks such blocks with max pooling between them, then channel-wise dropout,
global max pooling, Dense(128, relu) ("embedding") and Dense(n_classes, softmax) ("probs").
Every choice sits in :class:`CNNConfig`; the defaults are the article's.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import keras

from spectraforge.io.spectrum import LABELS

MIXED_POLICY = "mixed_bfloat16"


@dataclass
class CNNConfig:
    """Architecture of :func:`build_cnn`; defaults follow the article.

    channels: f of each Block(f), one max pooling between consecutive blocks.
    dilations: one Conv1D(2f) + halves-sum per entry, in order.
    mixed_precision: compute in bfloat16 (variables and the softmax stay float32).
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

    def validate(self, key: str = "cnn") -> None:
        """Raise ValueError naming the bad field and what is allowed."""
        checks = [
            (self.n_pix >= 1, "n_pix", "must be >= 1"),
            (len(self.channels) >= 1 and min(self.channels) >= 1, "channels", "must list positive widths"),
            (len(self.dilations) >= 1 and min(self.dilations) >= 1, "dilations", "must list positive rates"),
            (self.kernel_size >= 1, "kernel_size", "must be >= 1"),
            (self.pool_size >= 1, "pool_size", "must be >= 1"),
            (0.0 <= self.dropout < 1.0, "dropout", "must be in [0, 1)"),
            (self.dense_units >= 1, "dense_units", "must be >= 1"),
            (self.n_classes >= 2, "n_classes", "must be >= 2"),
        ]
        for ok, name, msg in checks:
            if not ok:
                raise ValueError(f"{key}.{name}: {msg}, got {getattr(self, name)!r}")
        length = self.n_pix // self.pool_size ** (len(self.channels) - 1)
        if length < 1:
            raise ValueError(
                f"{key}: {len(self.channels) - 1} poolings of size {self.pool_size} leave nothing of "
                f"n_pix={self.n_pix}; use fewer blocks or a longer input"
            )


@keras.saving.register_keras_serializable(package="spectraforge")
class HalvesSum(keras.layers.Layer):
    """x[..., :f] + x[..., f:] for 2f input channels: the article's channel-halving step."""

    def call(self, x):
        f = x.shape[-1] // 2
        return x[..., :f] + x[..., f:]

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] // 2)


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


def residual_block(x, f: int, cfg: CNNConfig, name: str, dtype=None):
    """Block(f): len(cfg.dilations) × [Conv1D(2f) → halves-sum] plus the (projected) shortcut."""
    h = x
    for j, d in enumerate(cfg.dilations):
        h = ShiftConv1D(
            2 * f, cfg.kernel_size, padding="same", dilation_rate=d, activation="relu",
            dtype=dtype, name=f"{name}_conv{j}",
        )(h)
        h = HalvesSum(dtype=dtype, name=f"{name}_halves{j}")(h)
    shortcut = x
    if x.shape[-1] != f:
        shortcut = ShiftConv1D(f, 1, padding="same", dtype=dtype, name=f"{name}_shortcut")(x)
    return keras.layers.Add(dtype=dtype, name=f"{name}_add")([shortcut, h])


def build_cnn(cfg: CNNConfig | None = None, name: str = "cnn") -> keras.Model:
    """The classifier: inputs (batch, n_pix) float32, outputs (batch, n_classes) float32 probabilities."""
    cfg = cfg or CNNConfig()
    cfg.validate()
    dtype = MIXED_POLICY if cfg.mixed_precision else None
    inputs = keras.Input(shape=(cfg.n_pix,), name="flux")
    x = keras.layers.Reshape((cfg.n_pix, 1), name="to_channels")(inputs)
    for i, f in enumerate(cfg.channels):
        if i > 0:
            x = keras.layers.MaxPooling1D(cfg.pool_size, dtype=dtype, name=f"pool{i}")(x)
        x = residual_block(x, f, cfg, name=f"block{i}", dtype=dtype)
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
