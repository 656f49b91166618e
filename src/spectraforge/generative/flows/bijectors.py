"""Bijective layers for 1-D sequences (batch, length, channels), in Keras 3 ops.

Every layer has ``forward(x, cond) -> (y, logdet)`` and ``inverse(y, cond) -> x`` with
``logdet = log|det ∂y/∂x|`` per example (shape (batch,)). ``cond`` is the class one-hot
(batch, K) or None; only couplings pass it on, to their conditioner.

Sources: NICE (Dinh, Krueger & Bengio 2014) — additive coupling and the diagonal scaling
layer; RealNVP (Dinh, Sohl-Dickstein & Bengio 2016) — affine coupling, alternating
(checkerboard) and channel masks, squeeze, multi-scale factor-out; Glow (Kingma &
Dhariwal 2018) — actnorm with data-dependent initialisation, the invertible 1×1
convolution in its LU parameterisation. Read with kexue.fm/archives/5776 and 5807.
"""
from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

MASKS = ("alternating", "channel")


def _zeros(x):
    return ops.zeros((ops.shape(x)[0],), dtype=x.dtype)


def split(x, mask: str, parity: int = 0):
    """(x_a, x_b): the conditioning half and the transformed half of ``x``.

    alternating: even / odd positions along the length axis (the 1-D checkerboard);
    channel: first / second half of the channels. ``parity`` 1 swaps the roles.
    """
    if mask == "alternating":
        a, b = x[:, 0::2, :], x[:, 1::2, :]
    elif mask == "channel":
        c = x.shape[-1] // 2
        a, b = x[..., :c], x[..., c:]
    else:
        raise ValueError(f"mask '{mask}' is not one of: {', '.join(MASKS)}")
    return (b, a) if parity else (a, b)


def merge(a, b, mask: str, parity: int = 0):
    """Inverse of :func:`split`."""
    if parity:
        a, b = b, a
    if mask == "alternating":
        stacked = ops.stack([a, b], axis=2)  # (B, L/2, 2, C)
        return ops.reshape(stacked, (-1, a.shape[1] * 2, a.shape[2]))
    return ops.concatenate([a, b], axis=-1)


def check_mask(shape, mask: str) -> None:
    length, channels = shape
    if mask == "alternating" and length % 2:
        raise ValueError(f"alternating mask needs an even length, got shape {tuple(shape)}")
    if mask == "channel" and channels % 2:
        raise ValueError(f"channel mask needs an even number of channels, got shape {tuple(shape)}")


def half_shape(shape, mask: str):
    length, channels = shape
    return (length // 2, channels) if mask == "alternating" else (length, channels // 2)


class Bijector(keras.layers.Layer):
    """Base class: ``call`` is ``forward``."""

    def forward(self, x, cond=None):  # pragma: no cover - abstract
        raise NotImplementedError

    def inverse(self, y, cond=None):  # pragma: no cover - abstract
        raise NotImplementedError

    def call(self, x, cond=None):
        return self.forward(x, cond)


class Reverse(Bijector):
    """NICE's shuffle between couplings: reverse the order of positions and of channels."""

    def forward(self, x, cond=None):
        return ops.flip(ops.flip(x, axis=1), axis=2), _zeros(x)

    def inverse(self, y, cond=None):
        return ops.flip(ops.flip(y, axis=1), axis=2)


class AdditiveCoupling(Bijector):
    """NICE: y_a = x_a, y_b = x_b + m(x_a); log-determinant 0.

    ``conditioner`` maps (x_a, cond) to a tensor shaped like x_b; it is built outside and
    passed in (see :mod:`spectraforge.generative.flows.conditioners`).
    """

    def __init__(self, conditioner, mask: str = "alternating", parity: int = 0, **kw):
        super().__init__(**kw)
        self.conditioner, self.mask, self.parity = conditioner, mask, int(parity)

    def forward(self, x, cond=None):
        a, b = split(x, self.mask, self.parity)
        return merge(a, b + self.conditioner(a, cond), self.mask, self.parity), _zeros(x)

    def inverse(self, y, cond=None):
        a, b = split(y, self.mask, self.parity)
        return merge(a, b - self.conditioner(a, cond), self.mask, self.parity)


class Scaling(Bijector):
    """NICE's diagonal scaling y = exp(s) ⊙ x, one s per dimension; log-det Σ s."""

    def __init__(self, shape, **kw):
        super().__init__(**kw)
        self.s = self.add_weight(shape=tuple(shape), initializer="zeros", name="log_scale")

    def forward(self, x, cond=None):
        return x * ops.exp(self.s), ops.sum(self.s) * ops.ones((ops.shape(x)[0],), x.dtype)

    def inverse(self, y, cond=None):
        return y * ops.exp(-self.s)


class AffineCoupling(Bijector):
    """RealNVP / Glow: y_a = x_a, y_b = x_b ⊙ exp(log s) + t, with (log s, t) = m(x_a).

    The scale is bounded for stability: ``scale="tanh"`` uses log s = B·tanh(r / B)
    (a soft clamp to ±B, RealNVP's tanh scaling), ``scale="sigmoid"`` uses
    s = sigmoid(r + 2) (Glow's choice, s in (0, 1), ≈ 0.88 at initialisation).
    The conditioner outputs 2·C_b channels: the first half is t, the second r.
    log-det = Σ log s.
    """

    def __init__(self, conditioner, mask: str = "alternating", parity: int = 0, scale: str = "tanh",
                 bound: float = 2.0, **kw):
        super().__init__(**kw)
        if scale not in ("tanh", "sigmoid"):
            raise ValueError(f"scale '{scale}' is not one of: tanh, sigmoid")
        self.conditioner, self.mask, self.parity = conditioner, mask, int(parity)
        self.scale, self.bound = scale, float(bound)

    def _shift_logscale(self, a, cond):
        h = self.conditioner(a, cond)
        c = h.shape[-1] // 2
        t, r = h[..., :c], h[..., c:]
        if self.scale == "tanh":
            log_s = self.bound * ops.tanh(r / self.bound)
        else:
            log_s = ops.log_sigmoid(r + 2.0)
        return t, log_s

    def forward(self, x, cond=None):
        a, b = split(x, self.mask, self.parity)
        t, log_s = self._shift_logscale(a, cond)
        y = merge(a, b * ops.exp(log_s) + t, self.mask, self.parity)
        return y, ops.sum(log_s, axis=(1, 2))

    def inverse(self, y, cond=None):
        a, b = split(y, self.mask, self.parity)
        t, log_s = self._shift_logscale(a, cond)
        return merge(a, (b - t) * ops.exp(-log_s), self.mask, self.parity)


class ActNorm(Bijector):
    """Glow's activation normalisation: y = (x + b) ⊙ exp(log s) per channel.

    Data-dependent initialisation: :meth:`initialize` (or the first forward call while
    ``initialized`` is False, in eager mode) sets b = −mean and log s = −log std of the
    channel over batch and length, so the layer's output on that batch has zero mean and
    unit variance. log-det = length · Σ log s.
    """

    def __init__(self, channels: int, eps: float = 1e-6, **kw):
        super().__init__(**kw)
        self.eps = eps
        self.bias = self.add_weight(shape=(channels,), initializer="zeros", name="bias")
        self.log_scale = self.add_weight(shape=(channels,), initializer="zeros", name="log_scale")
        self.initialized = False

    def initialize(self, x) -> None:
        x = np.asarray(x, np.float64)
        mean = x.mean(axis=(0, 1))
        std = x.std(axis=(0, 1))
        self.bias.assign((-mean).astype("float32"))
        self.log_scale.assign((-np.log(std + self.eps)).astype("float32"))
        self.initialized = True

    def forward(self, x, cond=None):
        if not self.initialized:
            self.initialize(ops.convert_to_numpy(x))
        y = (x + self.bias) * ops.exp(self.log_scale)
        return y, x.shape[1] * ops.sum(self.log_scale) * ops.ones((ops.shape(x)[0],), x.dtype)

    def inverse(self, y, cond=None):
        return y * ops.exp(-self.log_scale) - self.bias


class Invertible1x1Conv(Bijector):
    """Glow's invertible 1×1 convolution, LU-parameterised: W = P·L·(U + diag(sign·exp(log|s|))).

    P is a fixed permutation, L unit lower triangular, U strictly upper triangular; all are
    initialised from the LU decomposition of a random rotation. y_i = W x_i at every
    position i, so log|det| = length · Σ log|s| — O(C) instead of O(C³).
    """

    def __init__(self, channels: int, seed: int = 0, **kw):
        super().__init__(**kw)
        import scipy.linalg

        c = int(channels)
        q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(c, c)))
        p, lower, upper = scipy.linalg.lu(q)
        s = np.diag(upper)
        self.c = c
        self.p = ops.convert_to_tensor(p.astype("float32"))
        self.sign_s = ops.convert_to_tensor(np.sign(s).astype("float32"))
        self.lower_mask = ops.convert_to_tensor(np.tril(np.ones((c, c)), -1).astype("float32"))
        self.eye = ops.convert_to_tensor(np.eye(c, dtype="float32"))
        self.lower = self.add_weight(shape=(c, c), name="lower",
                                     initializer=keras.initializers.Constant(lower.astype("float32")))
        self.upper = self.add_weight(shape=(c, c), name="upper",
                                     initializer=keras.initializers.Constant(np.triu(upper, 1).astype("float32")))
        self.log_s = self.add_weight(shape=(c,), name="log_s",
                                     initializer=keras.initializers.Constant(np.log(np.abs(s)).astype("float32")))

    def weight_matrix(self):
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * ops.transpose(self.lower_mask) + ops.diag(self.sign_s * ops.exp(self.log_s))
        return ops.matmul(self.p, ops.matmul(lower, upper))

    def forward(self, x, cond=None):
        w = self.weight_matrix()
        y = ops.einsum("blc,dc->bld", x, w)
        return y, x.shape[1] * ops.sum(self.log_s) * ops.ones((ops.shape(x)[0],), x.dtype)

    def inverse(self, y, cond=None):
        w_inv = ops.inv(self.weight_matrix())
        return ops.einsum("bld,cd->blc", y, w_inv)


class Squeeze(Bijector):
    """Trade length for channels: (B, L, C) → (B, L/f, f·C); a permutation, log-det 0."""

    def __init__(self, factor: int = 2, **kw):
        super().__init__(**kw)
        self.factor = int(factor)

    def forward(self, x, cond=None):
        length, channels = x.shape[1], x.shape[2]
        if length % self.factor:
            raise ValueError(f"squeeze by {self.factor} needs a length divisible by it, got {length}")
        return ops.reshape(x, (-1, length // self.factor, channels * self.factor)), _zeros(x)

    def inverse(self, y, cond=None):
        length, channels = y.shape[1], y.shape[2]
        return ops.reshape(y, (-1, length * self.factor, channels // self.factor))


def gaussian_log_prob(z, mean=None, log_std=None):
    """Σ over all but the batch axis of log N(z; mean, exp(log_std)²)."""
    if mean is None:
        quad = z * z
        log_norm = 0.0
    else:
        quad = ((z - mean) * ops.exp(-log_std)) ** 2
        log_norm = log_std
    per = -0.5 * quad - log_norm - 0.5 * math.log(2 * math.pi)
    return ops.sum(ops.reshape(per, (ops.shape(z)[0], -1)), axis=1)
