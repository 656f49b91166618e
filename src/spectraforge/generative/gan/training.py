"""The two ways of training a GAN here, and Langevin refinement of latent codes.

**Alternating** (``mode="alternating"``): ``n_critic`` discriminator steps, then one generator
step, each player with its own optimiser and learning rate (TTUR, Heusel et al. 2017).

**One loss** (``mode="one_loss"``, kexue.fm/archives/6387): with stop-gradient sg and
x_f = G(z), one scalar

    L = d_loss(D(x_r), D(sg(x_f))) + penalty(sg(x_f))
        + [ g_loss(D(x_r), D(x_f)) − g_loss(D(x_r), D(sg(x_f))) ] + λ_E ‖z − E(x_f)‖²

is minimised by one gradient step over all variables. The bracket is zero in value; its
gradient with respect to D's weights is zero too (both terms are evaluated at the same
point, and differ only in whether the gradient may flow into x_f), so D receives exactly
∇_D d_loss and G exactly ∇_G g_loss: one step of L equals one *simultaneous* update of both
players from the same weights. It saves the second generator forward pass of the
alternating scheme (D runs once on the stacked batch [x_r, sg(x_f), x_f]).
With ``lr_g == lr_d`` one optimiser applies the gradient; with different rates the same
gradient is applied by one Adam per player (Adam is per-coordinate, so this is one Adam with
per-variable learning rates).

Penalties see the critic on real samples (R1) or on interpolates with sg(x_f) (WGAN-GP);
they only train D. The energy loss's encoder E belongs to the generator player.

All randomness (batch indices, z, interpolation weights) comes from one seeded
``tf.random.Generator``; many steps run inside one ``tf.function`` loop to keep Python
overhead out of small models.
"""
from __future__ import annotations

import math
import time

import keras
import tensorflow as tf
from keras import ops

from spectraforge.generative.gan import losses as L
from spectraforge.generative.gan.nets import GANNets

MODES = ("alternating", "one_loss")


class GANTrainer:
    """Holds the networks, the loss, its weights and the optimisers; runs training steps.

    ``opt_d``/``opt_g`` are used by the alternating mode; the one-loss mode uses ``opt_one``
    when given (one optimiser over all variables), else ``opt_d`` for D's and ``opt_g`` for
    the generator player's variables, both fed by the one gradient.
    """

    def __init__(self, nets: GANNets, loss: L.GANLoss, *, mode: str = "alternating", penalty: str = "none",
                 gp_weight: float = 10.0, r1_weight: float = 1.0, encoder_weight: float = 0.0,
                 n_critic: int = 1, opt_d=None, opt_g=None, opt_one=None):
        if mode not in MODES:
            raise ValueError(f"mode '{mode}' is not one of: {', '.join(MODES)}")
        if penalty not in L.PENALTIES:
            raise ValueError(f"penalty '{penalty}' is not one of: {', '.join(L.PENALTIES)}")
        if mode == "one_loss" and n_critic != 1:
            raise ValueError("the one-loss step is a simultaneous update: n_critic must be 1")
        self.nets, self.loss, self.mode, self.penalty = nets, loss, mode, penalty
        self.gp_weight, self.r1_weight = float(gp_weight), float(r1_weight)
        self.encoder_weight = float(encoder_weight) if nets.encoder is not None else 0.0
        self.n_critic = int(n_critic)
        self.opt_d, self.opt_g, self.opt_one = opt_d, opt_g, opt_one
        self._chunk = None

    # ------------------------------------------------------------------ objectives
    def _penalty(self, x_real, y_real, x_fake_sg, alpha):
        critic = lambda x: self.nets.critic(x, y_real, training=False)
        if self.penalty == "wgan_gp":
            return self.gp_weight * L.wgan_gp_penalty(critic, x_real, x_fake_sg, alpha)
        if self.penalty == "r1":
            return self.r1_weight * L.r1_penalty(critic, x_real)
        return ops.zeros((), "float32")

    def _encoder_term(self, z, x_fake):
        if self.encoder_weight == 0.0:
            return ops.zeros((), "float32")
        return self.encoder_weight * L.encoder_loss(z, self.nets.encode(x_fake, training=True))

    def d_objective(self, x_real, y_real, x_fake, alpha):
        """Discriminator objective with x_fake held fixed: d_loss + penalty (scalar, parts)."""
        x_fake = tf.stop_gradient(x_fake)
        n = tf.shape(x_real)[0]
        v = self.nets.critic(tf.concat([x_real, x_fake], 0), tf.concat([y_real, y_real], 0), training=True)
        d = self.loss.d_loss(v[:n], v[n:])
        pen = self._penalty(x_real, y_real, x_fake, alpha)
        return d + pen, {"d_loss": d, "penalty": pen}

    def g_objective(self, x_real, y_real, z):
        """Generator-player objective: g_loss(D(x_r), D(G(z))) + λ_E‖z − E(G(z))‖² (fakes get y_real)."""
        n = tf.shape(x_real)[0]
        x_fake = self.nets.generate(z, y_real, training=True)
        v = self.nets.critic(tf.concat([x_real, x_fake], 0), tf.concat([y_real, y_real], 0), training=True)
        g = self.loss.g_loss(v[:n], v[n:])
        enc = self._encoder_term(z, x_fake)
        return g + enc, {"g_loss": g, "encoder": enc}

    def one_loss_objective(self, x_real, y_real, z, alpha):
        """The single scalar of the one-loss step (module docstring) and its parts."""
        n = tf.shape(x_real)[0]
        x_fake = self.nets.generate(z, y_real, training=True)
        x_sg = tf.stop_gradient(x_fake)
        v = self.nets.critic(tf.concat([x_real, x_sg, x_fake], 0), tf.concat([y_real, y_real, y_real], 0),
                             training=True)
        v_r, v_sg, v_f = v[:n], v[n:2 * n], v[2 * n:]
        d = self.loss.d_loss(v_r, v_sg)
        pen = self._penalty(x_real, y_real, x_sg, alpha)
        g = self.loss.g_loss(v_r, v_f)
        g_route = g - self.loss.g_loss(v_r, v_sg)  # zero in value; gradient only into G
        enc = self._encoder_term(z, x_fake)
        total = d + pen + g_route + enc
        return total, {"d_loss": d, "penalty": pen, "g_loss": g, "encoder": enc}

    # ------------------------------------------------------------------ steps
    def d_step(self, x_real, y_real, z, alpha):
        x_fake = self.nets.generate(z, y_real, training=True)
        var = self.nets.d_variables
        with tf.GradientTape() as tape:
            total, parts = self.d_objective(x_real, y_real, x_fake, alpha)
        self.opt_d.apply(tape.gradient(total, var), var)
        return parts

    def g_step(self, x_real, y_real, z):
        var = self.nets.g_variables
        with tf.GradientTape() as tape:
            total, parts = self.g_objective(x_real, y_real, z)
        self.opt_g.apply(tape.gradient(total, var), var)
        return parts

    def one_loss_step(self, x_real, y_real, z, alpha):
        d_var, g_var = self.nets.d_variables, self.nets.g_variables
        with tf.GradientTape() as tape:
            total, parts = self.one_loss_objective(x_real, y_real, z, alpha)
        grads = tape.gradient(total, d_var + g_var)
        if self.opt_one is not None:
            self.opt_one.apply(grads, d_var + g_var)
        else:
            self.opt_d.apply(grads[: len(d_var)], d_var)
            self.opt_g.apply(grads[len(d_var):], g_var)
        return parts

    # ------------------------------------------------------------------ loops
    def build_optimizers(self) -> None:
        """Create optimiser slots eagerly (variables cannot be created inside the step loop)."""
        d_var, g_var = self.nets.d_variables, self.nets.g_variables
        if self.mode == "one_loss" and self.opt_one is not None:
            self.opt_one.build(d_var + g_var)
        else:
            self.opt_d.build(d_var)
            self.opt_g.build(g_var)

    def make_loop(self, Z, y, batch_size: int, rng: tf.random.Generator):
        """A ``tf.function`` running k steps on batches drawn with ``rng``; returns mean parts."""
        Zt = tf.constant(Z, tf.float32)
        yt = tf.constant(y, tf.int32)
        n_rows = Zt.shape[0]
        latent = self.nets.generator.inputs[0].shape[-1]
        B = int(batch_size)

        def batch():
            idx = rng.uniform((B,), 0, n_rows, dtype=tf.int64)
            return tf.gather(Zt, idx), tf.gather(yt, idx), rng.normal((B, latent)), rng.uniform((B, 1))

        keys = ("d_loss", "g_loss", "penalty", "encoder")

        @tf.function
        def loop(k):
            acc = {key: tf.zeros((), tf.float32) for key in keys}
            for _ in tf.range(k):
                parts = {}
                if self.mode == "one_loss":
                    x_r, y_r, z, a = batch()
                    parts.update(self.one_loss_step(x_r, y_r, z, a))
                else:
                    d_sum = {"d_loss": tf.zeros(()), "penalty": tf.zeros(())}
                    for _ in range(self.n_critic):
                        x_r, y_r, z, a = batch()
                        p = self.d_step(x_r, y_r, z, a)
                        d_sum = {key: d_sum[key] + p[key] for key in d_sum}
                    parts.update({key: val / self.n_critic for key, val in d_sum.items()})
                    x_r, y_r, z, _ = batch()
                    parts.update(self.g_step(x_r, y_r, z))
                acc = {key: acc[key] + tf.cast(parts[key], tf.float32) for key in keys}
            kf = tf.cast(k, tf.float32)
            return {key: val / kf for key, val in acc.items()}

        return loop

    def fit(self, Z, y, *, steps: int, batch_size: int, rng: tf.random.Generator, log_every: int = 100) -> list:
        """Run ``steps`` training steps; returns one dict per ``log_every`` steps: the step count,
        the mean d_loss, g_loss, penalty and encoder term over those steps, and ``seconds``, their
        wall time (the first entry includes tracing the step loop)."""
        self.build_optimizers()
        loop = self.make_loop(Z, y, batch_size, rng)
        history, done = [], 0
        while done < steps:
            k = min(log_every, steps - done)
            t0 = time.perf_counter()
            means = {key: float(val) for key, val in loop(tf.constant(k, tf.int32)).items()}
            done += k
            row = {"step": done, **means, "seconds": time.perf_counter() - t0}
            if not all(math.isfinite(v) for v in means.values()):
                raise FloatingPointError(f"GAN training diverged at step {done}: {row}")
            history.append(row)
        return history


def langevin_refine(energy_fn, z, noise, log_u, step_size: float, mala: bool = True):
    """Refine latent codes by (Metropolis-adjusted) Langevin dynamics on an energy of z.

    With ε = ``step_size`` and ξ_t ~ N(0, I) (``noise[t]``), the proposal is

        z' = z − ε ∇E(z) + √(2ε) ξ_t,

    accepted always (unadjusted Langevin) or, with ``mala``, when log u_t < log α,
        log α = E(z) − E(z') + log q(z | z') − log q(z' | z),  log q(a | b) = −‖a − b + ε∇E(b)‖²/(4ε)
    (Roberts & Tweedie 1996), so the chain targets p(z) ∝ exp(−E(z)) exactly.
    In the energy view (kexue.fm/archives/6331) E(z) = U(G(z)) + ‖z‖²/(2T²).

    z: (n, k); noise: (steps, n, k); log_u: (steps, n). Returns (z, acceptance rate).
    """
    z = tf.convert_to_tensor(z, tf.float32)
    noise = tf.convert_to_tensor(noise, tf.float32)
    log_u = tf.convert_to_tensor(log_u, tf.float32)
    eps = tf.constant(step_size, tf.float32)

    def e_and_grad(v):
        with tf.GradientTape() as tape:
            tape.watch(v)
            e = energy_fn(v)
        return e, tape.gradient(e, v)

    def log_q(a, b, grad_b):
        return -tf.reduce_sum(tf.square(a - b + eps * grad_b), axis=-1) / (4.0 * eps)

    @tf.function
    def run(z, noise, log_u):
        accepted = tf.zeros((), tf.float32)
        for t in tf.range(tf.shape(noise)[0]):
            e, g = e_and_grad(z)
            prop = z - eps * g + tf.sqrt(2.0 * eps) * noise[t]
            if mala:
                e_p, g_p = e_and_grad(prop)
                log_alpha = e - e_p + log_q(z, prop, g_p) - log_q(prop, z, g)
                ok = log_u[t] < log_alpha
                z = tf.where(ok[:, None], prop, z)
                accepted += tf.reduce_mean(tf.cast(ok, tf.float32))
            else:
                z = prop
                accepted += 1.0
        return z, accepted / tf.maximum(tf.cast(tf.shape(noise)[0], tf.float32), 1.0)

    z, rate = run(z, noise, log_u)
    return z, float(rate)


def adam(lr: float, beta_1: float, beta_2: float) -> keras.optimizers.Optimizer:
    return keras.optimizers.Adam(learning_rate=lr, beta_1=beta_1, beta_2=beta_2)
