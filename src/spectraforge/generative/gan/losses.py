"""GAN losses as pure functions of discriminator outputs (and penalties of samples + critic).

Convention: the discriminator returns a raw, unbounded value v per sample (shape (batch,)).
Every loss reads v its own way and is a pair of scalar functions

    d_loss(v_real, v_fake)   minimised by the discriminator,
    g_loss(v_real, v_fake)   minimised by the generator (most ignore v_real),

both means over the batch. For all losses but ``energy``, larger v means "more real"; for
``energy`` v is the energy U(x), low on data. The pairs are registered in :data:`LOSSES`
by name; gradient penalties are separate functions of a critic callable and samples
(:func:`wgan_gp_penalty`, :func:`r1_penalty`), added by the trainer with their weights.

softplus(s) = log(1 + eˢ), so −log σ(s) = softplus(−s) and −log(1 − σ(s)) = softplus(s).
The functions use ``keras.ops`` (numpy arrays or tensors in, a scalar tensor out);
the penalties differentiate with ``tf.GradientTape`` (the project runs Keras 3 on TensorFlow).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import tensorflow as tf
from keras import ops

LOG2 = math.log(2.0)


def _mean(t):
    return ops.mean(ops.convert_to_tensor(t, "float32"))


def _f32(*ts):
    return [ops.cast(ops.convert_to_tensor(t), "float32") for t in ts]


# --------------------------------------------------------------------------- standard GAN
def standard_d_loss(v_real, v_fake):
    """Discriminator loss of the original GAN (Goodfellow et al. 2014), D(x) = σ(v):

        L_D = −E_r log σ(v_r) − E_f log(1 − σ(v_f)) = E_r softplus(−v_r) + E_f softplus(v_f)
    """
    v_real, v_fake = _f32(v_real, v_fake)
    return _mean(ops.softplus(-v_real)) + _mean(ops.softplus(v_fake))


def standard_g_loss(v_real, v_fake):
    """Non-saturating generator loss (Goodfellow et al. 2014, §3):

        L_G = −E_f log σ(v_f) = E_f softplus(−v_f)
    """
    (v_fake,) = _f32(v_fake)
    return _mean(ops.softplus(-v_fake))


# --------------------------------------------------------------------------- relativistic
def rsgan_d_loss(v_real, v_fake):
    """Relativistic standard GAN (Jolicoeur-Martineau 2018, arXiv:1807.00734; kexue.fm/archives/6110):

        L_D = −E log σ(v_r − v_f) = E softplus(−(v_r − v_f))

    over pairs (real i, fake i) of the batch.
    """
    v_real, v_fake = _f32(v_real, v_fake)
    return _mean(ops.softplus(-(v_real - v_fake)))


def rsgan_g_loss(v_real, v_fake):
    """RSGAN generator loss: L_G = −E log σ(v_f − v_r) = E softplus(−(v_f − v_r))."""
    v_real, v_fake = _f32(v_real, v_fake)
    return _mean(ops.softplus(-(v_fake - v_real)))


def rasgan_d_loss(v_real, v_fake):
    """Relativistic average standard GAN (Jolicoeur-Martineau 2018): each sample against the
    mean critic value of the other batch,

        L_D = E_r softplus(−(v_r − Ē_f)) + E_f softplus(v_f − Ē_r),   Ē_f = mean v_f, Ē_r = mean v_r
    """
    v_real, v_fake = _f32(v_real, v_fake)
    mr, mf = ops.mean(v_real), ops.mean(v_fake)
    return _mean(ops.softplus(-(v_real - mf))) + _mean(ops.softplus(v_fake - mr))


def rasgan_g_loss(v_real, v_fake):
    """RaSGAN generator loss (roles swapped):

        L_G = E_f softplus(−(v_f − Ē_r)) + E_r softplus(v_r − Ē_f)
    """
    v_real, v_fake = _f32(v_real, v_fake)
    mr, mf = ops.mean(v_real), ops.mean(v_fake)
    return _mean(ops.softplus(-(v_fake - mr))) + _mean(ops.softplus(v_real - mf))


# --------------------------------------------------------------------------- hinge, WGAN
def hinge_d_loss(v_real, v_fake):
    """Hinge loss (Lim & Ye 2017, arXiv:1705.02894; Miyato et al. 2018):

        L_D = E_r relu(1 − v_r) + E_f relu(1 + v_f)

    (kexue.fm/archives/6387 writes it with the opposite sign of v; same loss.)
    """
    v_real, v_fake = _f32(v_real, v_fake)
    return _mean(ops.relu(1.0 - v_real)) + _mean(ops.relu(1.0 + v_fake))


def hinge_g_loss(v_real, v_fake):
    """Hinge generator loss: L_G = −E_f v_f."""
    (v_fake,) = _f32(v_fake)
    return -_mean(v_fake)


def wgan_d_loss(v_real, v_fake):
    """Wasserstein critic loss (Arjovsky et al. 2017; with the gradient penalty of Gulrajani et
    al. 2017, :func:`wgan_gp_penalty`, added by the trainer):

        L_D = E_f v_f − E_r v_r
    """
    v_real, v_fake = _f32(v_real, v_fake)
    return _mean(v_fake) - _mean(v_real)


def wgan_g_loss(v_real, v_fake):
    """Wasserstein generator loss: L_G = −E_f v_f."""
    (v_fake,) = _f32(v_fake)
    return -_mean(v_fake)


# --------------------------------------------------------------------------- energy view
def energy_d_loss(u_real, u_fake):
    """Energy formulation (Su 2019, kexue.fm/archives/6316 and 6331): the discriminator output is
    an energy U(x), pushed down on data and up on generated samples,

        L_U = E_r U(x_r) − E_f U(G(z))

    plus the zero-centred real-sample penalty λ·E_r ‖∇ₓU(x_r)‖² (:func:`r1_penalty`) added by
    the trainer, which keeps U smooth around the data and the loss bounded.
    """
    u_real, u_fake = _f32(u_real, u_fake)
    return _mean(u_real) - _mean(u_fake)


def energy_g_loss(u_real, u_fake):
    """Energy-formulation generator loss: move samples downhill, L_G = E_f U(G(z)).

    The entropy term −H(G(z)) that must accompany it is added by the trainer as
    λ_E·:func:`encoder_loss` (a tractable lower bound through an encoder E).
    """
    (u_fake,) = _f32(u_fake)
    return _mean(u_fake)


def encoder_loss(z, z_hat):
    """Entropy surrogate of the energy formulation (kexue.fm/archives/6316):

        L_E = E ‖z − E(G(z))‖²   (squared norm summed over latent dimensions, mean over the batch)

    For a deterministic G, H(G(z)) ≥ I(z; G(z)) = H(z) − H(z | G(z)), and with a Gaussian
    q(z | x) = N(E(x), σ²I), I(z; x) ≥ H(z) + E log q(z | x) = const − E‖z − E(x)‖²/(2σ²)
    (Barber & Agakov 2003). Minimising L_E over G and E therefore raises a lower bound of
    the generator's entropy and fights mode collapse.
    """
    z, z_hat = _f32(z, z_hat)
    return ops.mean(ops.sum(ops.square(z - z_hat), axis=-1))


# --------------------------------------------------------------------------- f-GAN
@dataclass(frozen=True)
class FDivergence:
    """One f-divergence D_f(P‖Q) = E_Q f(p/q) in the f-GAN form of Nowozin, Cseke & Tomioka 2016
    (arXiv:1606.00709, Table 2 and 6; kexue.fm/archives/6016).

    f:          the convex generator f(u), u > 0, f(1) = 0.
    f_prime:    f'(u), the maximiser of t·u − f*(t) (Fenchel–Young equality point).
    conjugate:  f*(t) = sup_u (u t − f(u)), on its domain ``domain`` = (low, high) (open ends,
                except total variation whose domain is the closed [−½, ½]).
    activation: g_f(v), mapping any discriminator output into the domain of f*.
    conj_act:   f*(g_f(v)) in a closed form that is stable for large |v|.
    """

    name: str
    f: Callable
    f_prime: Callable
    conjugate: Callable
    activation: Callable
    conj_act: Callable
    domain: tuple


def _xlogx(u):
    return u * ops.log(u)


DIVERGENCES = {
    "kl": FDivergence(
        "Kullback-Leibler",
        f=lambda u: _xlogx(u),
        f_prime=lambda u: 1.0 + ops.log(u),
        conjugate=lambda t: ops.exp(t - 1.0),
        activation=lambda v: v,
        conj_act=lambda v: ops.exp(v - 1.0),
        domain=(-math.inf, math.inf),
    ),
    "rkl": FDivergence(
        "reverse KL",
        f=lambda u: -ops.log(u),
        f_prime=lambda u: -1.0 / u,
        conjugate=lambda t: -1.0 - ops.log(-t),
        activation=lambda v: -ops.exp(-v),
        conj_act=lambda v: v - 1.0,  # −1 − log(exp(−v))
        domain=(-math.inf, 0.0),
    ),
    "pearson": FDivergence(
        "Pearson chi2",
        f=lambda u: ops.square(u - 1.0),
        f_prime=lambda u: 2.0 * (u - 1.0),
        conjugate=lambda t: ops.square(t) / 4.0 + t,
        activation=lambda v: v,
        conj_act=lambda v: ops.square(v) / 4.0 + v,
        domain=(-math.inf, math.inf),
    ),
    "hellinger": FDivergence(
        "squared Hellinger",
        f=lambda u: ops.square(ops.sqrt(u) - 1.0),
        f_prime=lambda u: 1.0 - 1.0 / ops.sqrt(u),
        conjugate=lambda t: t / (1.0 - t),
        activation=lambda v: 1.0 - ops.exp(-v),
        conj_act=lambda v: ops.exp(v) - 1.0,  # (1 − e^{−v}) / e^{−v}
        domain=(-math.inf, 1.0),
    ),
    "js": FDivergence(
        "Jensen-Shannon",
        f=lambda u: -(u + 1.0) * ops.log((1.0 + u) / 2.0) + _xlogx(u),
        f_prime=lambda u: ops.log(2.0 * u / (1.0 + u)),
        conjugate=lambda t: -ops.log(2.0 - ops.exp(t)),
        activation=lambda v: LOG2 - ops.softplus(-v),
        conj_act=lambda v: ops.softplus(v) - LOG2,  # 2 − e^{g(v)} = 2σ(−v)
        domain=(-math.inf, LOG2),
    ),
    "tv": FDivergence(
        "total variation",
        f=lambda u: 0.5 * ops.abs(u - 1.0),
        f_prime=lambda u: 0.5 * ops.sign(u - 1.0),  # a subgradient; any t in [−½, ½] at u = 1
        conjugate=lambda t: t,
        activation=lambda v: 0.5 * ops.tanh(v),
        conj_act=lambda v: 0.5 * ops.tanh(v),
        domain=(-0.5, 0.5),
    ),
}

FGAN_GENERATORS = ("bound", "nonsaturating")


def fgan_d_loss(div: FDivergence, v_real, v_fake):
    """f-GAN discriminator loss: the negated variational bound (Nowozin et al. 2016, eq. 6),

        L_T = −( E_P g_f(v_r) − E_Q f*(g_f(v_f)) )

    P the data, Q the generator; at the optimum −L_T estimates D_f(P‖Q).
    """
    v_real, v_fake = _f32(v_real, v_fake)
    return -_mean(div.activation(v_real)) + _mean(div.conj_act(v_fake))


def fgan_g_loss_bound(div: FDivergence, v_real, v_fake):
    """f-GAN generator loss, minimising the bound itself (Nowozin et al. 2016, eq. 6; the
    E_P term does not depend on G): L_G = −E_Q f*(g_f(v_f))."""
    (v_fake,) = _f32(v_fake)
    return -_mean(div.conj_act(v_fake))


def fgan_g_loss_nonsaturating(div: FDivergence, v_real, v_fake):
    """f-GAN generator loss of Nowozin et al. 2016 §3.2 (their experiments' choice): maximise
    E_Q g_f(v_f), i.e. L_G = −E_Q g_f(v_f). For Jensen–Shannon this is the non-saturating
    GAN loss up to the constant log 2."""
    (v_fake,) = _f32(v_fake)
    return -_mean(div.activation(v_fake))


# --------------------------------------------------------------------------- penalties
def _grad_x(critic, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        v = critic(x)
    return tape.gradient(v, x)  # sum over the batch: each row's output depends on its own x only


def wgan_gp_penalty(critic, x_real, x_fake, alpha):
    """Two-sided gradient penalty of WGAN-GP (Gulrajani et al. 2017, arXiv:1704.00028):

        GP = E_x̂ (‖∇_x̂ D(x̂)‖₂ − 1)²,   x̂ = α x_r + (1 − α) x_f,  α ~ U(0, 1) per sample

    ``critic`` maps a batch x (batch, d) to v (batch,); ``alpha`` has shape (batch, 1).
    For a linear critic D(x) = w·x + b it equals (‖w‖ − 1)².
    """
    x_real, x_fake, alpha = _f32(x_real, x_fake, alpha)
    x_hat = alpha * x_real + (1.0 - alpha) * x_fake
    g = _grad_x(critic, x_hat)
    norm = ops.sqrt(ops.sum(ops.square(g), axis=-1) + 1e-12)
    return ops.mean(ops.square(norm - 1.0))


def r1_penalty(critic, x_real):
    """Zero-centred gradient penalty on real samples (R1; Mescheder, Geiger & Nowozin 2018,
    arXiv:1801.04406; kexue.fm/archives/6316 for the energy U):

        R1 = E_r ‖∇ₓ D(x_r)‖₂²

    (without the ½ of Mescheder et al.: the weight absorbs it). For D(x) = w·x + b it is ‖w‖².
    """
    (x_real,) = _f32(x_real)
    g = _grad_x(critic, x_real)
    return ops.mean(ops.sum(ops.square(g), axis=-1))


PENALTIES = ("none", "wgan_gp", "r1")


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class GANLoss:
    """A registered loss: its two scalar functions, its default penalty and its source.

    ``energy`` marks the energy reading of v (low = real) and the encoder entropy term.
    """

    name: str
    d_loss: Callable
    g_loss: Callable
    penalty: str = "none"
    energy: bool = False
    reference: str = ""


def _fgan(key: str, generator: str) -> GANLoss:
    div = DIVERGENCES[key]
    g = fgan_g_loss_bound if generator == "bound" else fgan_g_loss_nonsaturating
    return GANLoss(
        f"fgan_{key}",
        d_loss=lambda vr, vf: fgan_d_loss(div, vr, vf),
        g_loss=lambda vr, vf: g(div, vr, vf),
        reference=f"f-GAN, {div.name} (Nowozin et al. 2016)",
    )


FGAN_KEYS = {"fgan_kl": "kl", "fgan_rkl": "rkl", "fgan_pearson": "pearson",
             "fgan_hellinger": "hellinger", "fgan_js": "js", "fgan_tv": "tv"}

LOSSES: dict[str, GANLoss] = {
    "standard": GANLoss("standard", standard_d_loss, standard_g_loss,
                        reference="non-saturating GAN (Goodfellow et al. 2014)"),
    "rsgan": GANLoss("rsgan", rsgan_d_loss, rsgan_g_loss, reference="RSGAN (Jolicoeur-Martineau 2018)"),
    "rasgan": GANLoss("rasgan", rasgan_d_loss, rasgan_g_loss, reference="RaSGAN (Jolicoeur-Martineau 2018)"),
    **{name: _fgan(key, "bound") for name, key in FGAN_KEYS.items()},
    "hinge": GANLoss("hinge", hinge_d_loss, hinge_g_loss, reference="hinge (Lim & Ye 2017; Miyato et al. 2018)"),
    "wgan_gp": GANLoss("wgan_gp", wgan_d_loss, wgan_g_loss, penalty="wgan_gp",
                       reference="WGAN-GP (Gulrajani et al. 2017)"),
    "energy": GANLoss("energy", energy_d_loss, energy_g_loss, penalty="r1", energy=True,
                      reference="energy view of GANs (Su 2019, kexue.fm/archives/6316, 6331)"),
}


def get_loss(name: str, fgan_generator: str = "bound") -> GANLoss:
    """The registered loss ``name``; ``fgan_generator`` picks the f-GAN generator loss
    (``bound``: −E f*(g_f(v_f)); ``nonsaturating``: −E g_f(v_f)) and is ignored otherwise."""
    if name not in LOSSES:
        raise ValueError(f"GAN loss '{name}' is not one of: {', '.join(LOSSES)}")
    if fgan_generator not in FGAN_GENERATORS:
        raise ValueError(f"f-GAN generator loss '{fgan_generator}' is not one of: {', '.join(FGAN_GENERATORS)}")
    if name in FGAN_KEYS and fgan_generator != "bound":
        return _fgan(FGAN_KEYS[name], fgan_generator)
    return LOSSES[name]
