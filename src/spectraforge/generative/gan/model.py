"""The GAN family as a :class:`~spectraforge.generative.base.FeatureModel`.

    model = GANModel(GANConfig(loss="rasgan", mode="one_loss", architecture="dense"))
    model.fit(Z, y, seed=0)                          # Z (n, d) float32, y (n,) codes 0..3
    Z_new = model.sample(y_new, seed=1, temperature=1.0)

``GANConfig.loss`` picks a loss of :data:`spectraforge.generative.gan.losses.LOSSES`,
``mode`` the training scheme (alternating TTUR updates or the one-loss simultaneous step,
:mod:`.training`), ``architecture`` the networks (``conv`` for spectra in pixel space,
``dense`` for PCA features and toys, :mod:`.nets`). A GAN has no tractable density, so
``log_prob`` is not implemented (``has_density`` is False).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from spectraforge.generative.base import ClassScaler, FeatureModel, K
from spectraforge.generative.gan import losses as L
from spectraforge.generative.gan.nets import ARCHITECTURES, CONDITIONINGS, build_nets
from spectraforge.generative.gan.training import (
    MODES,
    GANTrainer,
    adam,
    langevin_refine,
)
from spectraforge.labels import LABELS
from spectraforge.params import ParamsError, build_dataclass, require

PENALTY_CHOICES = ("auto",) + L.PENALTIES


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


@dataclass
class GANConfig:
    """Everything a :class:`GANModel` needs; defaults sized for 2 CPU cores and PCA features.

    loss:            a name of ``LOSSES``: standard, rsgan, rasgan, fgan_{kl,rkl,pearson,hellinger,js,tv},
                     hinge, wgan_gp, energy.
    mode:            ``alternating`` (n_critic D steps, then a G step; lr_d, lr_g) or ``one_loss``
                     (one scalar, one simultaneous step; needs n_critic = 1).
    architecture:    ``dense`` (MLP; widths are hidden units) or ``conv`` (Conv1D; widths are
                     channels per stage: the generator upsamples ×2 between its widths, the
                     discriminator downsamples ×2 at each).
    conditioning:    ``projection`` / ``concat`` discriminator conditioning, or ``none``.
    g_widths, d_widths: generator / discriminator (and encoder) widths.
    latent_dim, label_dim: size of z and of the generator's label embedding.
    spectral_norm:   spectral normalisation of every discriminator kernel.
    steps, batch_size: generator updates and rows per batch (per D step).
    lr_g, lr_d, beta_1, beta_2: Adam settings of the two players (TTUR when lr_g ≠ lr_d).
    n_critic:        D steps per G step (alternating mode).
    penalty:         ``auto`` (the loss's own: wgan_gp for wgan_gp, r1 for energy, else none),
                     ``none``, ``wgan_gp`` (weight gp_weight) or ``r1`` (weight r1_weight).
    encoder_weight:  λ of the energy loss's entropy term λ‖z − E(G(z))‖².
    fgan_generator:  f-GAN generator loss: ``bound`` (−E f*(g_f(v))) or ``nonsaturating`` (−E g_f(v)).
    langevin_steps, langevin_step_size, mala: latent refinement at sampling time (energy loss only).
    log_every:       steps per ``history`` entry.
    standardise:     model each class after subtracting its training mean and dividing by its standard
                     deviation per feature (exact, undone at sampling), so the GAN learns shapes only.
    target_only:     train on the classes that are to be sampled (``classes``, set by the stage) only.
    balanced:        replicate rows so every trained class is drawn equally often: a conditional GAN
                     otherwise sees a 2 % class in one batch row in fifty.
    """

    loss: str = "standard"
    mode: str = "alternating"
    architecture: str = "dense"
    conditioning: str = "projection"
    g_widths: list = field(default_factory=lambda: [128, 128])
    d_widths: list = field(default_factory=lambda: [128, 128])
    latent_dim: int = 16
    label_dim: int = 8
    kernel_size: int = 5
    leak: float = 0.2
    spectral_norm: bool = False
    steps: int = 2000
    batch_size: int = 64
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta_1: float = 0.5
    beta_2: float = 0.999
    n_critic: int = 1
    penalty: str = "auto"
    gp_weight: float = 10.0
    r1_weight: float = 1.0
    encoder_weight: float = 0.1
    fgan_generator: str = "bound"
    langevin_steps: int = 0
    langevin_step_size: float = 0.01
    mala: bool = True
    log_every: int = 100
    standardise: bool = True
    target_only: bool = True
    balanced: bool = True

    @classmethod
    def from_params(cls, data: dict, key: str = "gan") -> GANConfig:
        """Build from a params mapping (unknown keys rejected with suggestions) and validate."""
        cfg = build_dataclass(cls, data, key)
        cfg.validate(key)
        return cfg

    def validate(self, key: str = "gan") -> None:
        """Raise :class:`ParamsError` naming the first bad field ``{key}.{field}`` and what is allowed."""
        def choice(name, options):
            value = getattr(self, name)
            require(value in options, f"{key}.{name}", f"'{value}' is not one of: {', '.join(options)}")

        def positive_int(name, low=1):
            value = getattr(self, name)
            require(_is_int(value) and value >= low, f"{key}.{name}", f"must be an integer >= {low}, got {value!r}")

        def number(name, low, high=None, low_open=False):
            value = getattr(self, name)
            ok = _is_num(value) and np.isfinite(value) and (value > low if low_open else value >= low)
            ok = ok and (high is None or value < high)
            rng = f"{'(' if low_open else '['}{low}, {high if high is not None else 'inf'})"
            require(ok, f"{key}.{name}", f"must be a number in {rng}, got {value!r}")

        def boolean(name):
            value = getattr(self, name)
            require(isinstance(value, bool), f"{key}.{name}", f"must be true or false, got {value!r}")

        choice("loss", tuple(L.LOSSES))
        choice("mode", MODES)
        choice("architecture", ARCHITECTURES)
        choice("conditioning", CONDITIONINGS)
        choice("penalty", PENALTY_CHOICES)
        choice("fgan_generator", L.FGAN_GENERATORS)
        for name in ("g_widths", "d_widths"):
            w = getattr(self, name)
            require(isinstance(w, (list, tuple)) and len(w) >= 1 and all(_is_int(v) and v >= 1 for v in w),
                    f"{key}.{name}", f"must be a non-empty list of positive integers, got {w!r}")
        for name in ("latent_dim", "label_dim", "kernel_size", "steps", "batch_size", "n_critic", "log_every"):
            positive_int(name)
        positive_int("langevin_steps", low=0)
        number("leak", 0.0, 1.0)
        number("lr_g", 0.0, low_open=True)
        number("lr_d", 0.0, low_open=True)
        number("beta_1", 0.0, 1.0)
        number("beta_2", 0.0, 1.0)
        number("gp_weight", 0.0)
        number("r1_weight", 0.0)
        number("encoder_weight", 0.0)
        number("langevin_step_size", 0.0, low_open=True)
        boolean("spectral_norm")
        boolean("standardise")
        boolean("target_only")
        boolean("balanced")
        boolean("mala")
        require(self.mode != "one_loss" or self.n_critic == 1, f"{key}.n_critic",
                f"must be 1 with mode 'one_loss' (one simultaneous step), got {self.n_critic}")
        require(self.langevin_steps == 0 or self.loss == "energy", f"{key}.langevin_steps",
                f"Langevin refinement needs loss 'energy' (the discriminator as an energy), got loss '{self.loss}'")

    @property
    def resolved_penalty(self) -> str:
        return L.LOSSES[self.loss].penalty if self.penalty == "auto" else self.penalty


class GANModel(FeatureModel):
    """A class-conditional GAN of feature vectors (see module docstring).

    After ``fit``: ``nets`` (generator, discriminator, encoder), ``history`` (one dict of mean
    losses per ``log_every`` steps: step, d_loss, g_loss, penalty, encoder), ``dim``.
    """

    def __init__(self, config: GANConfig | None = None, key: str = "gan"):
        self.config = config if config is not None else GANConfig()
        self.config.validate(key)
        self.key = key
        self.history: list[dict] = []
        self.nets = None

    def _check(self, Z, y):
        Z = np.asarray(Z, np.float32)
        y = np.asarray(y)
        if Z.ndim != 2 or Z.shape[0] < 1 or Z.shape[1] < 1:
            raise ValueError(f"{self.key}: features must be a non-empty (n, d) array, got shape {Z.shape}")
        if not np.isfinite(Z).all():
            raise ValueError(f"{self.key}: features hold {int((~np.isfinite(Z)).sum())} non-finite values")
        self._check_labels(y, Z.shape[0])
        return Z, y.astype(np.int32)

    def _check_labels(self, y, n=None):
        if y.ndim != 1 or (n is not None and y.shape[0] != n):
            raise ValueError(f"{self.key}: labels must be a vector of length {n}, got shape {y.shape}")
        if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= K):
            raise ValueError(f"{self.key}: labels must be integer codes 0..{K - 1} ({', '.join(LABELS)})")

    def fit(self, Z: np.ndarray, y: np.ndarray, seed: int = 0) -> GANModel:
        cfg = self.config
        Z, y = self._check(Z, y)
        self.dim = Z.shape[1]
        classes = getattr(self, "classes", None)
        if cfg.target_only and classes is not None:
            keep = np.isin(y, list(classes))
            if not keep.any():
                raise ValueError(f"{self.key}: no training rows of the classes to sample {list(classes)}")
            Z, y = Z[keep], y[keep]
        self.scaler = ClassScaler().fit(Z, y)
        if cfg.standardise:
            Z = self.scaler.transform(Z, y)
        if cfg.balanced:
            counts = np.bincount(y, minlength=K)
            reps = np.where(counts > 0, np.ceil(counts.max() / np.maximum(counts, 1)), 0).astype(int)
            rows = np.concatenate([np.tile(np.flatnonzero(y == c), reps[c]) for c in np.unique(y)])
            Z, y = Z[rows], y[rows]
        self.nets = build_nets(self.dim, cfg, seed=seed, n_classes=K)
        loss = L.get_loss(cfg.loss, cfg.fgan_generator)
        opt_d, opt_g = adam(cfg.lr_d, cfg.beta_1, cfg.beta_2), adam(cfg.lr_g, cfg.beta_1, cfg.beta_2)
        opt_one = adam(cfg.lr_d, cfg.beta_1, cfg.beta_2) if cfg.mode == "one_loss" and cfg.lr_g == cfg.lr_d else None
        self.trainer = GANTrainer(
            self.nets, loss, mode=cfg.mode, penalty=cfg.resolved_penalty, gp_weight=cfg.gp_weight,
            r1_weight=cfg.r1_weight, encoder_weight=cfg.encoder_weight, n_critic=cfg.n_critic,
            opt_d=opt_d, opt_g=opt_g, opt_one=opt_one,
        )
        rng = tf.random.Generator.from_seed(int(seed))
        self.history = self.trainer.fit(Z, y, steps=cfg.steps, batch_size=cfg.batch_size, rng=rng,
                                        log_every=cfg.log_every)
        return self

    def sample(self, y: np.ndarray, seed: int = 0, temperature: float = 1.0, batch: int = 1024) -> np.ndarray:
        """G(z, y) with z ~ N(0, T² I), refined by Langevin/MALA when ``langevin_steps`` > 0."""
        if self.nets is None:
            raise RuntimeError(f"{self.key}: sample() before fit()")
        if not (np.isfinite(temperature) and temperature > 0):
            raise ValueError(f"{self.key}: temperature must be > 0, got {temperature}")
        y = np.asarray(y)
        self._check_labels(y)
        y = y.astype(np.int32)
        cfg = self.config
        rng = np.random.default_rng([int(seed), 1606])
        z = (rng.standard_normal((y.size, cfg.latent_dim)) * temperature).astype(np.float32)
        if cfg.langevin_steps > 0 and y.size:
            noise = rng.standard_normal((cfg.langevin_steps, y.size, cfg.latent_dim)).astype(np.float32)
            log_u = np.log(rng.uniform(size=(cfg.langevin_steps, y.size))).astype(np.float32)
            z = self.refine(z, y, noise, log_u, temperature)
        out = [self.nets.generate(tf.constant(z[i:i + batch]), tf.constant(y[i:i + batch])).numpy()
               for i in range(0, y.size, batch)]
        out = np.concatenate(out, 0).astype(np.float32) if out else np.zeros((0, self.dim), np.float32)
        if cfg.standardise and y.size:
            try:
                out = self.scaler.inverse(out, y)
            except ValueError as exc:
                raise ValueError(f"{self.key}: {exc}") from None
        return out

    def refine(self, z, y, noise, log_u, temperature: float = 1.0) -> np.ndarray:
        """Langevin/MALA on E(z) = U(G(z, y), y) + ‖z‖²/(2T²) (:func:`.training.langevin_refine`)."""
        yt = tf.constant(y)
        inv = 1.0 / (2.0 * temperature**2)

        def energy(zz):
            x = self.nets.generate(zz, yt)
            return self.nets.critic(x, yt) + inv * tf.reduce_sum(tf.square(zz), axis=-1)

        z, self.last_acceptance = langevin_refine(energy, z, noise, log_u, self.config.langevin_step_size,
                                                  mala=self.config.mala)
        return z.numpy()


__all__ = ["GANConfig", "GANModel", "ParamsError"]
