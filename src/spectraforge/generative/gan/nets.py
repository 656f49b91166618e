"""Generator, discriminator and encoder networks of the GAN family, for feature vectors.

Two architectures, picked by ``architecture``:

* ``conv`` — for spectra in pixel space (d = number of pixels). The generator maps
  [z, embed(y)] through ``Dense(L0·w0)`` to a (L0, w0) sequence, then for each further width
  w: ``UpSampling1D(2) → Conv1D(w, k, same) → LeakyReLU``, and a linear ``Conv1D(1, k)`` head;
  L0 = ⌈d / 2^(len(widths)−1)⌉ and the surplus pixels are cropped, so any d works. The
  discriminator reshapes x to (d, 1), applies ``Conv1D(w, k, stride 2) → LeakyReLU`` per width,
  flattens (keeping where each feature sits: spectral lines live at fixed wavelengths) and
  maps to a feature vector h = LeakyReLU(Dense(w_last)(·)).
* ``dense`` — an MLP for low-dimensional features (PCA space, 2-D toys): hidden layers
  ``Dense(w) → LeakyReLU`` for the generator and the discriminator alike.

Generator outputs are linear (features are standardised). Class conditioning
(``conditioning``):

* ``projection`` — the projection discriminator of Miyato & Koyama 2018 ("cGANs with
  projection discriminator"): D(x, y) = ψ(h(x)) + ⟨embed(y), h(x)⟩.
* ``concat`` — the one-hot label is concatenated to the input (as K constant channels for
  ``conv``): D(x, y) = ψ(h([x, onehot(y)])).
* ``none`` — unconditional: y is ignored by both networks.

For every conditioning except ``none`` the generator sees [z, embed(y)] with a learned
embedding of ``label_dim`` dimensions. ``spectral_norm`` wraps every kernel of the
discriminator (and its label embedding) in ``keras.layers.SpectralNormalization``
(Miyato et al. 2018: W ← W / σ(W), σ estimated by one power iteration per training call).

The encoder E(x) → z of the energy formulation (SEEDS §6) mirrors the discriminator trunk
with a linear ``latent_dim`` head. Every initialiser is seeded explicitly, so the same seed
builds the same weights without touching global random state.
"""
from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

ARCHITECTURES = ("conv", "dense")
CONDITIONINGS = ("projection", "concat", "none")


class _Seeds:
    """Hands out distinct, reproducible seeds for initialisers."""

    def __init__(self, seed: int):
        self._rng = np.random.default_rng([int(seed), 2016])

    def __call__(self) -> int:
        return int(self._rng.integers(0, 2**31 - 1))

    def glorot(self):
        return keras.initializers.GlorotUniform(seed=self())

    def normal(self, std: float = 0.05):
        return keras.initializers.RandomNormal(stddev=std, seed=self())


def _sn(layer, spectral_norm: bool):
    return keras.layers.SpectralNormalization(layer) if spectral_norm else layer


def _act(leak: float):
    return keras.layers.LeakyReLU(negative_slope=leak)


def build_generator(data_dim: int, latent_dim: int, widths, *, architecture: str = "dense",
                    conditional: bool = True, n_classes: int = 4, label_dim: int = 16,
                    kernel_size: int = 5, leak: float = 0.2, seed: int = 0) -> keras.Model:
    """G([z, y]) → x of shape (batch, data_dim); inputs z (batch, latent_dim), y (batch,) int."""
    s = _Seeds(seed)
    z_in = keras.Input((latent_dim,), name="z")
    y_in = keras.Input((), dtype="int32", name="y")
    h = z_in
    if conditional:
        e = keras.layers.Embedding(n_classes, label_dim, embeddings_initializer=s.normal(1.0), name="g_embed")(y_in)
        h = keras.layers.Concatenate(name="g_cond")([z_in, e])
    if architecture == "dense":
        for i, w in enumerate(widths):
            h = keras.layers.Dense(w, kernel_initializer=s.glorot(), name=f"g_dense{i}")(h)
            h = _act(leak)(h)
        x = keras.layers.Dense(data_dim, kernel_initializer=s.glorot(), name="g_out")(h)
    elif architecture == "conv":
        n_up = len(widths) - 1
        L0 = math.ceil(data_dim / 2**n_up)
        h = keras.layers.Dense(L0 * widths[0], kernel_initializer=s.glorot(), name="g_project")(h)
        h = _act(leak)(keras.layers.Reshape((L0, widths[0]))(h))
        for i, w in enumerate(widths[1:]):
            h = keras.layers.UpSampling1D(2, name=f"g_up{i}")(h)
            h = keras.layers.Conv1D(w, kernel_size, padding="same", kernel_initializer=s.glorot(), name=f"g_conv{i}")(h)
            h = _act(leak)(h)
        h = keras.layers.Conv1D(1, kernel_size, padding="same", kernel_initializer=s.glorot(), name="g_out")(h)
        surplus = L0 * 2**n_up - data_dim
        if surplus:
            h = keras.layers.Cropping1D((0, surplus), name="g_crop")(h)
        x = keras.layers.Reshape((data_dim,), name="g_flat")(h)
    else:
        raise ValueError(f"architecture '{architecture}' is not one of: {', '.join(ARCHITECTURES)}")
    inputs = [z_in, y_in] if conditional else [z_in]
    return keras.Model(inputs, x, name="generator")


def _trunk(x_in, widths, architecture, spectral_norm, kernel_size, leak, s: _Seeds, prefix: str,
           extra_channels=None):
    """Shared discriminator / encoder trunk: x (batch, d) → feature vector h (batch, w_last)."""
    if architecture == "dense":
        h = x_in if extra_channels is None else keras.layers.Concatenate(name=f"{prefix}_cond")([x_in, extra_channels])
        for i, w in enumerate(widths):
            h = _sn(keras.layers.Dense(w, kernel_initializer=s.glorot()), spectral_norm)(h)
            h = _act(leak)(h)
        return h
    if architecture == "conv":
        d = x_in.shape[-1]
        h = keras.layers.Reshape((d, 1), name=f"{prefix}_seq")(x_in)
        if extra_channels is not None:  # the one-hot label as K constant channels
            c = keras.layers.RepeatVector(d, name=f"{prefix}_cond_rep")(extra_channels)
            h = keras.layers.Concatenate(name=f"{prefix}_cond")([h, c])
        for w in widths:
            h = _sn(keras.layers.Conv1D(w, kernel_size, strides=2, padding="same", kernel_initializer=s.glorot()),
                    spectral_norm)(h)
            h = _act(leak)(h)
        h = keras.layers.Flatten(name=f"{prefix}_flat")(h)
        h = _sn(keras.layers.Dense(widths[-1], kernel_initializer=s.glorot()), spectral_norm)(h)
        return _act(leak)(h)
    raise ValueError(f"architecture '{architecture}' is not one of: {', '.join(ARCHITECTURES)}")


class _Projection(keras.layers.Layer):
    """⟨embed(y), h⟩ per row (the projection term of Miyato & Koyama 2018).

    The embedding is a bias-free Dense on onehot(y) (the same map as an Embedding), so that
    ``SpectralNormalization`` can wrap it (Keras' wrapper casts its output to the input dtype,
    which breaks on integer labels).
    """

    def __init__(self, n_classes: int, spectral_norm: bool, initializer, **kw):
        super().__init__(**kw)
        self.n_classes, self.spectral_norm, self.initializer = n_classes, spectral_norm, initializer

    def build(self, input_shape):
        h_shape, _ = input_shape
        self.embed = _sn(keras.layers.Dense(h_shape[-1], use_bias=False, kernel_initializer=self.initializer),
                         self.spectral_norm)
        self.embed.build((None, self.n_classes))

    def call(self, inputs, training=False):
        h, y = inputs
        e = self.embed(ops.one_hot(ops.cast(y, "int32"), self.n_classes), training=training)
        return ops.sum(e * h, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], 1)


def build_discriminator(data_dim: int, widths, *, architecture: str = "dense", conditioning: str = "projection",
                        n_classes: int = 4, spectral_norm: bool = False, kernel_size: int = 5,
                        leak: float = 0.2, seed: int = 0) -> keras.Model:
    """D([x, y]) → raw output v of shape (batch,) (no activation; each loss reads v its own way)."""
    if conditioning not in CONDITIONINGS:
        raise ValueError(f"conditioning '{conditioning}' is not one of: {', '.join(CONDITIONINGS)}")
    s = _Seeds(seed + 1)
    x_in = keras.Input((data_dim,), name="x")
    y_in = keras.Input((), dtype="int32", name="y")
    extra = None
    if conditioning == "concat":
        extra = keras.layers.Lambda(lambda t: ops.one_hot(t, n_classes), name="d_onehot")(y_in)
    h = _trunk(x_in, widths, architecture, spectral_norm, kernel_size, leak, s, "d", extra)
    v = _sn(keras.layers.Dense(1, kernel_initializer=s.glorot(), name="d_psi"), spectral_norm)(h)
    if conditioning == "projection":
        proj = _Projection(n_classes, spectral_norm, s.normal(0.05), name="d_proj")([h, y_in])
        v = keras.layers.Add(name="d_add")([v, proj])
    v = keras.layers.Reshape((), name="d_out")(v)
    inputs = [x_in] if conditioning == "none" else [x_in, y_in]
    model = keras.Model(inputs, v, name="discriminator")
    _seed_power_iteration(model, s)
    return model


def build_encoder(data_dim: int, latent_dim: int, widths, *, architecture: str = "dense", kernel_size: int = 5,
                  leak: float = 0.2, seed: int = 0) -> keras.Model:
    """E(x) → ẑ of shape (batch, latent_dim): the encoder of the energy formulation (linear head)."""
    s = _Seeds(seed + 2)
    x_in = keras.Input((data_dim,), name="x")
    h = _trunk(x_in, widths, architecture, False, kernel_size, leak, s, "e")
    z = keras.layers.Dense(latent_dim, kernel_initializer=s.glorot(), name="e_out")(h)
    return keras.Model(x_in, z, name="encoder")


def _seed_power_iteration(model: keras.Model, s: _Seeds) -> None:
    """Give every SpectralNormalization's power-iteration vector u a seeded start.

    Keras draws u from an unseeded initialiser (global random state); overwrite it so the
    same seed gives the same network.
    """
    rng = np.random.default_rng(s())
    for layer in _walk(model):
        if isinstance(layer, keras.layers.SpectralNormalization):
            u = layer.vector_u
            u.assign(np.clip(rng.normal(0.0, 0.02, u.shape), -0.04, 0.04).astype(u.dtype))


def _walk(layer):
    for sub in getattr(layer, "_layers", None) or getattr(layer, "layers", []):
        yield sub
        yield from _walk(sub)
    if isinstance(layer, _Projection):
        yield layer.embed


class GANNets:
    """The networks of one GAN and uniform call helpers (y is dropped when unconditional)."""

    def __init__(self, generator: keras.Model, discriminator: keras.Model, encoder: keras.Model | None,
                 conditional: bool):
        self.generator, self.discriminator, self.encoder = generator, discriminator, encoder
        self.conditional = conditional

    def generate(self, z, y, training: bool = False):
        return self.generator([z, y] if self.conditional else [z], training=training)

    def critic(self, x, y, training: bool = False):
        return self.discriminator([x, y] if self.conditional else [x], training=training)

    def encode(self, x, training: bool = False):
        return self.encoder(x, training=training)

    @property
    def g_variables(self) -> list:
        """The generator player's variables: G, plus the encoder E when there is one."""
        extra = self.encoder.trainable_variables if self.encoder is not None else []
        return list(self.generator.trainable_variables) + list(extra)

    @property
    def d_variables(self) -> list:
        return list(self.discriminator.trainable_variables)


def build_nets(data_dim: int, cfg, seed: int = 0, n_classes: int = 4) -> GANNets:
    """All networks of a :class:`~spectraforge.generative.gan.model.GANConfig`."""
    conditional = cfg.conditioning != "none"
    common = {"architecture": cfg.architecture, "kernel_size": cfg.kernel_size, "leak": cfg.leak}
    g = build_generator(data_dim, cfg.latent_dim, cfg.g_widths, conditional=conditional, n_classes=n_classes,
                        label_dim=cfg.label_dim, seed=seed, **common)
    d = build_discriminator(data_dim, cfg.d_widths, conditioning=cfg.conditioning, n_classes=n_classes,
                            spectral_norm=cfg.spectral_norm, seed=seed, **common)
    with_encoder = cfg.loss == "energy" and cfg.encoder_weight > 0
    e = build_encoder(data_dim, cfg.latent_dim, cfg.d_widths, seed=seed, **common) if with_encoder else None
    return GANNets(g, d, e, conditional)
