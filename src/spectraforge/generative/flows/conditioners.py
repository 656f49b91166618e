"""Conditioner networks for couplings and learned priors, passed into the bijectors.

A *conditioner factory* is called as ``factory(in_shape, out_shape, cond_dim, name)`` and
returns a layer ``m(a, cond) -> tensor of out_shape`` (shapes exclude the batch axis). The
last layer starts at zero, so every coupling starts as the identity and every learned
prior as N(0, I) (Glow's zero initialisation), which keeps deep flows trainable.

- :class:`DenseConditioner`: flatten, append the class one-hot, MLP. For short feature
  vectors (PCA space) and toys, where positions carry no locality.
- :class:`ConvConditioner`: 1-D convolutions with the one-hot broadcast along the length,
  for pixel-space spectra where neighbouring pixels belong together.
"""
from __future__ import annotations

import math

import keras
from keras import layers, ops


class _Conditioner(keras.layers.Layer):
    def __init__(self, in_shape, out_shape, cond_dim: int, **kw):
        super().__init__(**kw)
        self.in_shape, self.out_shape, self.cond_dim = tuple(in_shape), tuple(out_shape), int(cond_dim)


class DenseConditioner(_Conditioner):
    def __init__(self, in_shape, out_shape, cond_dim: int = 0, hidden=(128, 128), **kw):
        super().__init__(in_shape, out_shape, cond_dim, **kw)
        self.hidden_layers = [layers.Dense(h, activation="relu") for h in hidden]
        self.out = layers.Dense(math.prod(self.out_shape), kernel_initializer="zeros")

    def call(self, a, cond=None):
        h = ops.reshape(a, (ops.shape(a)[0], math.prod(self.in_shape)))
        if self.cond_dim:
            h = ops.concatenate([h, ops.cast(cond, h.dtype)], axis=-1)
        for layer in self.hidden_layers:
            h = layer(h)
        return ops.reshape(self.out(h), (-1,) + self.out_shape)


class ConvConditioner(_Conditioner):
    """Conv1D stack; the input length must equal the output length (true for both masks)."""

    def __init__(self, in_shape, out_shape, cond_dim: int = 0, filters: int = 32, kernel_size: int = 5,
                 n_layers: int = 2, **kw):
        super().__init__(in_shape, out_shape, cond_dim, **kw)
        if in_shape[0] != out_shape[0]:
            raise ValueError(f"conv conditioner keeps the length: {in_shape} -> {out_shape}")
        self.hidden_layers = [layers.Conv1D(filters, kernel_size, padding="same", activation="relu")
                              for _ in range(n_layers)]
        self.out = layers.Conv1D(out_shape[1], kernel_size, padding="same", kernel_initializer="zeros")

    def call(self, a, cond=None):
        h = a
        if self.cond_dim:
            c = ops.cast(cond, a.dtype)[:, None, :] * ops.ones((1, self.in_shape[0], 1), a.dtype)
            h = ops.concatenate([h, c], axis=-1)
        for layer in self.hidden_layers:
            h = layer(h)
        return self.out(h)


def conditioner_factory(kind: str, hidden=(128, 128), filters: int = 32, kernel_size: int = 5, n_layers: int = 2):
    """A factory for :mod:`recipes`: ``kind`` dense or conv with its sizes."""
    if kind == "dense":
        return lambda i, o, c, name=None: DenseConditioner(i, o, c, hidden=tuple(hidden), name=name)
    if kind == "conv":
        return lambda i, o, c, name=None: ConvConditioner(i, o, c, filters=filters, kernel_size=kernel_size,
                                                          n_layers=n_layers, name=name)
    raise ValueError(f"conditioner '{kind}' is not one of: dense, conv")
