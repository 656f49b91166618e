"""Multi-scale flows and the NICE, RealNVP and Glow recipes stacked from :mod:`bijectors`.

A :class:`Flow` is a list of *levels*; each level is a list of bijectors, and after every
level but the last half of the channels is factored out (RealNVP's multi-scale
architecture) under a learned conditional prior N(μ(h, y), σ(h, y)) given the kept half
``h`` and the class. The last level's output has the top prior: N(0, I), or a learned
class-dependent N(μ_y, σ_y) when the flow is label-conditioned.

    log p(x | y) = log|det ∂f/∂x| + Σ_levels log p(z_l | h_l, y) + log p(z_top | y)

``forward`` returns the latent parts and the bijection's log-determinant only, so the
change of variables can be checked on its own; ``log_prob`` adds the priors.
Sampling draws every Gaussian at ``temperature`` × its standard deviation (Glow; the NICE
article samples at 0.75) from noise the caller supplies, so a seed fixes the samples.
"""
from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops

from spectraforge.generative.flows.bijectors import (
    ActNorm, AdditiveCoupling, AffineCoupling, Invertible1x1Conv, Reverse, Scaling, Squeeze,
    check_mask, gaussian_log_prob, half_shape,
)


class SplitPrior(keras.layers.Layer):
    """Factor out the second half of the channels: z ~ N(μ(h, y), exp(log σ(h, y))²)."""

    def __init__(self, shape, factory, cond_dim: int, **kw):
        super().__init__(**kw)
        length, channels = shape
        if channels % 2:
            raise ValueError(f"factor-out needs an even number of channels, got shape {tuple(shape)}")
        self.kept_shape = (length, channels // 2)
        self.out_shape = (length, channels - channels // 2)
        self.net = factory(self.kept_shape, (length, 2 * self.out_shape[1]), cond_dim, name=f"{self.name}_net")

    def _params(self, h, cond):
        p = self.net(h, cond)
        c = p.shape[-1] // 2
        return p[..., :c], p[..., c:]

    def merge(self, h, z):
        return ops.concatenate([h, z], axis=-1)

    def sample(self, h, cond, eps, temperature: float):
        mean, log_std = self._params(h, cond)
        return mean + temperature * ops.exp(log_std) * eps


class TopPrior(keras.layers.Layer):
    """N(0, I), or with ``cond_dim`` a learned N(μ_y, σ_y) per class (zero-initialised)."""

    def __init__(self, shape, cond_dim: int, **kw):
        super().__init__(**kw)
        self.shape_, self.cond_dim = tuple(shape), int(cond_dim)
        if cond_dim:
            self.net = layers.Dense(2 * math.prod(shape), kernel_initializer="zeros", use_bias=False)

    def _params(self, cond, n):
        if not self.cond_dim:
            return None, None
        p = ops.reshape(self.net(ops.cast(cond, "float32")), (-1,) + self.shape_[:-1] + (2 * self.shape_[-1],))
        c = self.shape_[-1]
        return p[..., :c], p[..., c:]

    def log_prob(self, z, cond):
        mean, log_std = self._params(cond, None)
        return gaussian_log_prob(z, mean, log_std)

    def sample(self, cond, eps, temperature: float):
        mean, log_std = self._params(cond, None)
        if mean is None:
            return temperature * eps
        return mean + temperature * ops.exp(log_std) * eps


class Flow(keras.Model):
    """Levels of bijectors with factor-out between them (see module docstring)."""

    def __init__(self, levels, event_shape, factory, cond_dim: int = 0, **kw):
        super().__init__(**kw)
        self.event_shape, self.cond_dim = tuple(event_shape), int(cond_dim)
        self.bijectors = [b for level in levels for b in level]  # flat, so Keras tracks them
        self.level_sizes = [len(level) for level in levels]
        self.priors, self.latent_shapes = [], []
        shape = self.event_shape
        for i, level in enumerate(levels):
            shape = _trace_shape(level, shape)
            if i < len(levels) - 1:
                prior = SplitPrior(shape, factory, cond_dim, name=f"split{i}")
                self.priors.append(prior)
                self.latent_shapes.append(prior.out_shape)
                shape = prior.kept_shape
        self.top = TopPrior(shape, cond_dim, name="top")
        self.latent_shapes.append(shape)

    def _levels(self):
        start = 0
        for size in self.level_sizes:
            yield self.bijectors[start : start + size]
            start += size

    def _run(self, x, cond):
        """x → (latent parts, kept halves at each split, log-determinant)."""
        h, logdet, zs, kept = x, 0.0, [], []
        levels = list(self._levels())
        for i, level in enumerate(levels):
            for b in level:
                h, ld = b.forward(h, cond)
                logdet = logdet + ld
            if i < len(levels) - 1:
                c = self.priors[i].kept_shape[1]
                zs.append(h[..., c:])
                h = h[..., :c]
                kept.append(h)
        zs.append(h)
        return zs, kept, logdet

    def forward(self, x, cond=None):
        """x → (latent parts, log|det ∂f/∂x|); parts are the factored-out halves, then the top."""
        zs, _, logdet = self._run(x, cond)
        return zs, logdet

    def inverse(self, zs, cond=None):
        levels = list(self._levels())
        h = zs[-1]
        for i in range(len(levels) - 1, -1, -1):
            if i < len(levels) - 1:
                h = self.priors[i].merge(h, zs[i])
            for b in reversed(levels[i]):
                h = b.inverse(h, cond)
        return h

    def log_prob(self, x, cond=None):
        """log p(x | y) in nats per example."""
        zs, kept, total = self._run(x, cond)
        for prior, h, z in zip(self.priors, kept, zs):
            mean, log_std = prior._params(h, cond)
            total = total + gaussian_log_prob(z, mean, log_std)
        return total + self.top.log_prob(zs[-1], cond)

    def sample_from_noise(self, noise, cond=None, temperature: float = 1.0):
        """Samples from standard-normal ``noise`` (one array per latent part, as latent_shapes)."""
        levels = list(self._levels())
        h = self.top.sample(cond, noise[-1], temperature)
        for i in range(len(levels) - 1, -1, -1):
            if i < len(levels) - 1:
                h = self.priors[i].merge(h, self.priors[i].sample(h, cond, noise[i], temperature))
            for b in reversed(levels[i]):
                h = b.inverse(h, cond)
        return h

    def noise(self, n: int, rng: np.random.Generator) -> list:
        return [rng.standard_normal((n,) + s).astype("float32") for s in self.latent_shapes]

    def call(self, x, cond=None):
        return self.log_prob(x, cond)


def _trace_shape(level, shape):
    for b in level:
        if isinstance(b, Squeeze):
            if shape[0] % b.factor:
                raise ValueError(f"squeeze by {b.factor} needs a length divisible by it, got shape {shape}")
            shape = (shape[0] // b.factor, shape[1] * b.factor)
    return shape


# ---------------------------------------------------------------------------- recipes

RECIPES = ("nice", "realnvp", "glow")


def _couplings(kind, shape, mask, n, factory, cond_dim, prefix, **kw):
    check_mask(shape, mask)
    half = half_shape(shape, mask)
    out = []
    for j in range(n):
        if kind == "additive":
            out.append(AdditiveCoupling(factory(half, half, cond_dim, name=f"{prefix}_m{j}"), mask, parity=j % 2,
                                        name=f"{prefix}_add{j}"))
        else:
            out.append(AffineCoupling(factory(half, (half[0], 2 * half[1]), cond_dim, name=f"{prefix}_m{j}"),
                                      mask, parity=j % 2, name=f"{prefix}_aff{j}", **kw))
    return out


def nice(event_shape, factory, cond_dim: int = 0, n_couplings: int = 4) -> Flow:
    """NICE: additive couplings over alternating positions, reversed between couplings,
    then the diagonal scaling layer that carries the whole log-determinant."""
    shape = tuple(event_shape)
    check_mask(shape, "alternating")
    half = half_shape(shape, "alternating")
    level = []
    for j in range(n_couplings):
        level.append(AdditiveCoupling(factory(half, half, cond_dim, name=f"nice_m{j}"), "alternating",
                                      name=f"nice_add{j}"))
        level.append(Reverse(name=f"nice_rev{j}"))
    level.append(Scaling(shape, name="nice_scale"))
    return Flow([level], shape, factory, cond_dim, name="nice")


def realnvp(event_shape, factory, cond_dim: int = 0, n_levels: int = 2, steps: int = 3) -> Flow:
    """RealNVP: per level, ``steps`` affine couplings on alternating positions, a squeeze,
    ``steps`` on channel halves; half the channels factored out between levels."""
    shape, levels = tuple(event_shape), []
    for i in range(n_levels):
        level = _couplings("affine", shape, "alternating", steps, factory, cond_dim, f"rnvp{i}a", scale="tanh")
        level.append(Squeeze(2, name=f"rnvp{i}_sq"))
        shape = _trace_shape(level[-1:], shape)
        level += _couplings("affine", shape, "channel", steps, factory, cond_dim, f"rnvp{i}c", scale="tanh")
        levels.append(level)
        if i < n_levels - 1:
            shape = (shape[0], shape[1] // 2)
    return Flow(levels, event_shape, factory, cond_dim, name="realnvp")


def glow(event_shape, factory, cond_dim: int = 0, n_levels: int = 2, steps: int = 4, seed: int = 0) -> Flow:
    """Glow: per level a squeeze, then ``steps`` × (actnorm, invertible 1×1 convolution,
    affine coupling on channel halves with Glow's sigmoid scale); factor-out between levels."""
    shape, levels = tuple(event_shape), []
    for i in range(n_levels):
        level = [Squeeze(2, name=f"glow{i}_sq")]
        shape = _trace_shape(level, shape)
        check_mask(shape, "channel")
        half = half_shape(shape, "channel")
        for j in range(steps):
            level.append(ActNorm(shape[1], name=f"glow{i}_an{j}"))
            level.append(Invertible1x1Conv(shape[1], seed=seed + 100 * i + j, name=f"glow{i}_w{j}"))
            level.append(AffineCoupling(factory(half, (half[0], 2 * half[1]), cond_dim, name=f"glow{i}_m{j}"),
                                        "channel", parity=0, scale="sigmoid", name=f"glow{i}_aff{j}"))
        levels.append(level)
        if i < n_levels - 1:
            shape = (shape[0], shape[1] // 2)
    return Flow(levels, event_shape, factory, cond_dim, name="glow")


def build_flow(recipe: str, event_shape, factory, cond_dim: int = 0, n_levels: int = 2, steps: int = 4,
               seed: int = 0) -> Flow:
    if recipe == "nice":
        return nice(event_shape, factory, cond_dim, n_couplings=steps)
    if recipe == "realnvp":
        return realnvp(event_shape, factory, cond_dim, n_levels=n_levels, steps=steps)
    if recipe == "glow":
        return glow(event_shape, factory, cond_dim, n_levels=n_levels, steps=steps, seed=seed)
    raise ValueError(f"flow recipe '{recipe}' is not one of: {', '.join(RECIPES)}")
