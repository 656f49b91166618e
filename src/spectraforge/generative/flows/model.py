"""Class-conditional flows as a :class:`~spectraforge.generative.base.FeatureModel`.

Two ways to condition on the class (``conditioning``):
- ``label``: one flow for all classes; every conditioner and the top prior see the class
  one-hot, so the rare classes share what the flow learns from the common ones;
- ``per_class``: an unconditional flow for each class that is to be sampled.

Training maximises the likelihood (Adam, gradient-norm clipping) in epochs over the
training features, with a stratified ``val_fraction`` of them held back to stop early
and keep the best weights: the held-back part is still the fold's training part, never
its validation spectra. Actnorm layers are initialised from the first batch (Glow).

Before the flow, each class is standardised by its own training mean and standard deviation
per feature (a fixed affine map whose log-determinant is added back to log p). The flow
then models only the shape of each class, not its location and scale, which it would
otherwise learn slowly from a rare class's few spectra.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from spectraforge.generative.base import K, ClassScaler, FeatureModel, by_class
from spectraforge.params import require


@dataclass
class FlowConfig:
    recipe: str = "glow"  # nice | realnvp | glow
    conditioning: str = "label"  # label | per_class
    n_levels: int = 2  # realnvp, glow: levels of the multi-scale architecture
    steps: int = 4  # couplings (nice) or steps per level (realnvp, glow)
    conditioner: str = "dense"  # dense (feature vectors) | conv (pixel space)
    hidden: list = field(default_factory=lambda: [128, 128])  # dense conditioner widths
    filters: int = 32  # conv conditioner
    kernel_size: int = 5
    epochs: int = 200
    batch_size: int = 256
    lr: float = 1e-3
    clipnorm: float = 5.0
    val_fraction: float = 0.1
    patience: int = 15
    jit_compile: bool = False

    def validate(self, key: str) -> None:
        from spectraforge.generative.flows.flow import RECIPES

        require(self.recipe in RECIPES, f"{key}.recipe", f"'{self.recipe}' is not one of: {', '.join(RECIPES)}")
        require(self.conditioning in ("label", "per_class"), f"{key}.conditioning",
                f"'{self.conditioning}' is not one of: label, per_class")
        require(self.conditioner in ("dense", "conv"), f"{key}.conditioner",
                f"'{self.conditioner}' is not one of: dense, conv")
        require(self.n_levels >= 1, f"{key}.n_levels", f"must be >= 1, got {self.n_levels}")
        require(self.steps >= 1, f"{key}.steps", f"must be >= 1, got {self.steps}")
        require(self.epochs >= 1, f"{key}.epochs", f"must be >= 1, got {self.epochs}")
        require(self.batch_size >= 2, f"{key}.batch_size", f"must be >= 2, got {self.batch_size}")
        require(self.lr > 0, f"{key}.lr", f"must be > 0, got {self.lr}")
        require(0.0 <= self.val_fraction < 0.5, f"{key}.val_fraction", f"must be in [0, 0.5), got {self.val_fraction}")
        require(self.patience >= 1, f"{key}.patience", f"must be >= 1, got {self.patience}")


def _one_hot(y, n):
    out = np.zeros((len(y), n), np.float32)
    out[np.arange(len(y)), y] = 1.0
    return out


def _holdout(y, fraction, rng):
    """Stratified split of row indices into (fit, stop) for early stopping."""
    if fraction <= 0:
        return np.arange(len(y)), np.zeros(0, np.int64)
    stop = []
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        k = int(round(fraction * len(members)))
        if len(members) - k >= 2:
            stop.append(members[:k])
    stop = np.sort(np.concatenate(stop)) if stop else np.zeros(0, np.int64)
    return np.setdiff1d(np.arange(len(y)), stop), stop


class _Trainer:
    """Fits one Flow by maximum likelihood with early stopping on held-back rows."""

    def __init__(self, flow, cfg: FlowConfig, dim: int):
        import keras
        import tensorflow as tf

        self.flow, self.cfg, self.dim = flow, cfg, dim
        self.opt = keras.optimizers.Adam(cfg.lr, clipnorm=cfg.clipnorm)

        def loss_fn(x, c):
            return -tf.reduce_mean(flow.log_prob(x, c)) / dim

        def step(x, c):
            with tf.GradientTape() as tape:
                loss = loss_fn(x, c)
            grads = tape.gradient(loss, flow.trainable_variables)
            self.opt.apply_gradients(zip(grads, flow.trainable_variables))
            return loss

        self.step = tf.function(step, jit_compile=cfg.jit_compile, reduce_retracing=True)
        self.eval = tf.function(loss_fn, jit_compile=cfg.jit_compile, reduce_retracing=True)

    def fit(self, X, C, rng):
        cfg = self.cfg
        fit_rows, stop_rows = _holdout(C.argmax(1) if C.shape[1] else np.zeros(len(X), int), cfg.val_fraction, rng)
        init = rng.choice(fit_rows, size=min(len(fit_rows), 512), replace=False)
        self.flow.log_prob(X[init], C[init])  # eager pass: builds layers, initialises actnorm
        self.opt.build(self.flow.trainable_variables)
        best, best_w, wait, self.history = np.inf, self.flow.get_weights(), 0, []
        bs = min(cfg.batch_size, len(fit_rows))
        for epoch in range(cfg.epochs):
            order = rng.permutation(fit_rows)
            losses = [float(self.step(X[b], C[b])) for b in
                      (order[i : i + bs] for i in range(0, len(order) - bs + 1, bs))]
            train_loss = float(np.mean(losses))
            stop_loss = self.evaluate(X[stop_rows], C[stop_rows]) if len(stop_rows) else train_loss
            self.history.append({"epoch": epoch, "train_bpd": train_loss / math.log(2),
                                 "stop_bpd": stop_loss / math.log(2)})
            if not np.isfinite(train_loss):
                raise FloatingPointError(f"flow training diverged at epoch {epoch} (loss {train_loss}); "
                                         "lower lr or clipnorm")
            if stop_loss < best - 1e-4:
                best, best_w, wait = stop_loss, self.flow.get_weights(), 0
            else:
                wait += 1
                if wait >= cfg.patience:
                    break
        self.flow.set_weights(best_w)
        return self

    def evaluate(self, X, C, batch: int = 2048) -> float:
        total = 0.0
        for i in range(0, len(X), batch):
            total += float(self.eval(X[i : i + batch], C[i : i + batch])) * len(X[i : i + batch])
        return total / len(X)


class FlowModel(FeatureModel):
    """NICE / RealNVP / Glow over feature vectors, label-conditioned or one per class."""

    def __init__(self, cfg: FlowConfig | None = None, classes=None):
        self.cfg = cfg or FlowConfig()
        self.classes = classes  # per_class: the classes to fit (None: every class present)

    def _build(self, dim: int, cond_dim: int, seed: int):
        import keras

        from spectraforge.generative.flows.conditioners import conditioner_factory
        from spectraforge.generative.flows.flow import build_flow

        keras.utils.set_random_seed(seed)
        cfg = self.cfg
        factory = conditioner_factory(cfg.conditioner, hidden=cfg.hidden, filters=cfg.filters,
                                      kernel_size=cfg.kernel_size)
        return build_flow(cfg.recipe, (dim, 1), factory, cond_dim, n_levels=cfg.n_levels, steps=cfg.steps, seed=seed)

    def fit(self, Z, y, seed: int = 0):
        Z = np.asarray(Z, np.float32)
        y = np.asarray(y, np.int64)
        self.dim = Z.shape[1]
        self.scaler = ClassScaler().fit(Z, y)
        X = self.scaler.transform(Z, y)[:, :, None]
        rng = np.random.default_rng(seed)
        self.flows, self.history = {}, []
        if self.cfg.conditioning == "label":
            flow = self._build(self.dim, K, seed)
            trainer = _Trainer(flow, self.cfg, self.dim).fit(X, _one_hot(y, K), rng)
            self.flows[None] = flow
            self.history = [{"class": "all", **h} for h in trainer.history]
        else:
            classes = np.unique(y) if self.classes is None else np.asarray(self.classes)
            for c in classes:
                rows = np.flatnonzero(y == c)
                if len(rows) < 4:
                    raise ValueError(f"per-class flow: class {int(c)} has {len(rows)} training rows, need >= 4")
                flow = self._build(self.dim, 0, seed + int(c))
                trainer = _Trainer(flow, self.cfg, self.dim).fit(X[rows], np.zeros((len(rows), 0), np.float32), rng)
                self.flows[int(c)] = flow
                self.history += [{"class": int(c), **h} for h in trainer.history]
        return self

    def _flow_and_cond(self, c: int, n: int):
        if None in self.flows:
            return self.flows[None], _one_hot(np.full(n, c), K)
        if c not in self.flows:
            raise ValueError(f"no flow was fitted for class {c} (fitted: {sorted(self.flows)})")
        return self.flows[c], np.zeros((n, 0), np.float32)

    def log_prob(self, Z, y):
        y = np.asarray(y, np.int64)
        Z = self.scaler.transform(np.asarray(Z, np.float32), y)[:, :, None]
        out = np.zeros(len(y))
        for c, rows in by_class(y):
            flow, cond = self._flow_and_cond(c, len(rows))
            for i in range(0, len(rows), 2048):
                r = rows[i : i + 2048]
                out[r] = np.asarray(flow.log_prob(Z[r], cond[i : i + 2048]))
            out[rows] += self.scaler.log_det(c)
        return out

    def sample(self, y, seed: int = 0, temperature: float = 1.0):
        y = np.asarray(y, np.int64)
        out = np.zeros((len(y), self.dim), np.float32)
        for c, rows in by_class(y):
            flow, cond = self._flow_and_cond(c, len(rows))
            noise = flow.noise(len(rows), np.random.default_rng([seed, c]))
            out[rows] = np.asarray(flow.sample_from_noise(noise, cond, temperature))[:, :, 0]
        return self.scaler.inverse(out, y)
