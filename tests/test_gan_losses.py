"""GAN losses: closed-form values, f-GAN conjugates, gradient penalties, the registry."""
import math

import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from spectraforge.generative.gan import losses as L

V_REAL = np.array([1.5, -0.3, 0.7, 2.0], np.float32)
V_FAKE = np.array([-1.0, 0.4, -2.2, 0.1], np.float32)


def num(x) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(x), np.float64)


def sig(v):
    return 1.0 / (1.0 + np.exp(-np.asarray(v, np.float64)))


# ----------------------------------------------------------------------------- closed forms
def test_hinge_wgan_energy_hand_computed():
    # relu(1 - v_r) = [0, 1.3, 0.3, 0] -> 0.4 ; relu(1 + v_f) = [0, 1.4, 0, 1.1] -> 0.625
    assert num(L.hinge_d_loss(V_REAL, V_FAKE)) == pytest.approx(1.025, abs=1e-6)
    # mean v_f = -2.7/4 = -0.675 ; mean v_r = 3.9/4 = 0.975
    assert num(L.hinge_g_loss(V_REAL, V_FAKE)) == pytest.approx(0.675, abs=1e-6)
    assert num(L.wgan_d_loss(V_REAL, V_FAKE)) == pytest.approx(-1.65, abs=1e-6)
    assert num(L.wgan_g_loss(V_REAL, V_FAKE)) == pytest.approx(0.675, abs=1e-6)
    assert num(L.energy_d_loss(V_REAL, V_FAKE)) == pytest.approx(1.65, abs=1e-6)
    assert num(L.energy_g_loss(V_REAL, V_FAKE)) == pytest.approx(-0.675, abs=1e-6)


def test_standard_gan_at_zero_logits_is_log2():
    z = np.zeros(5, np.float32)
    assert num(L.standard_d_loss(z, z)) == pytest.approx(2 * math.log(2), rel=1e-6)
    assert num(L.standard_g_loss(z, z)) == pytest.approx(math.log(2), rel=1e-6)


def test_standard_gan_matches_cross_entropy_of_sigmoid():
    d_ref = -np.mean(np.log(sig(V_REAL))) - np.mean(np.log(1 - sig(V_FAKE)))
    g_ref = -np.mean(np.log(sig(V_FAKE)))
    assert num(L.standard_d_loss(V_REAL, V_FAKE)) == pytest.approx(d_ref, rel=1e-5)
    assert num(L.standard_g_loss(V_REAL, V_FAKE)) == pytest.approx(g_ref, rel=1e-5)


def test_rsgan_pairs_real_and_fake():
    d_ref = -np.mean([np.log(sig(a - b)) for a, b in zip(V_REAL, V_FAKE)])
    g_ref = -np.mean([np.log(sig(b - a)) for a, b in zip(V_REAL, V_FAKE)])
    assert num(L.rsgan_d_loss(V_REAL, V_FAKE)) == pytest.approx(d_ref, rel=1e-5)
    assert num(L.rsgan_g_loss(V_REAL, V_FAKE)) == pytest.approx(g_ref, rel=1e-5)


def test_rasgan_compares_with_the_other_batch_mean():
    mr, mf = V_REAL.mean(), V_FAKE.mean()
    d_ref = -np.mean(np.log(sig(V_REAL - mf))) - np.mean(np.log(1 - sig(V_FAKE - mr)))
    g_ref = -np.mean(np.log(sig(V_FAKE - mr))) - np.mean(np.log(1 - sig(V_REAL - mf)))
    assert num(L.rasgan_d_loss(V_REAL, V_FAKE)) == pytest.approx(d_ref, rel=1e-5)
    assert num(L.rasgan_g_loss(V_REAL, V_FAKE)) == pytest.approx(g_ref, rel=1e-5)


# The f-GAN table (SEEDS.md §4) written out in numpy: activation g_f and conjugate f*.
TABLE = {
    "kl": (lambda v: v, lambda t: np.exp(t - 1)),
    "rkl": (lambda v: -np.exp(-v), lambda t: -1 - np.log(-t)),
    "pearson": (lambda v: v, lambda t: t**2 / 4 + t),
    "hellinger": (lambda v: 1 - np.exp(-v), lambda t: t / (1 - t)),
    "js": (lambda v: np.log(2) - np.log(1 + np.exp(-v)), lambda t: -np.log(2 - np.exp(t))),
    "tv": (lambda v: 0.5 * np.tanh(v), lambda t: t),
}


@pytest.mark.parametrize("key", list(TABLE))
def test_fgan_losses_match_the_table(key):
    g, fstar = TABLE[key]
    vr, vf = V_REAL.astype(np.float64), V_FAKE.astype(np.float64)
    d_ref = -np.mean(g(vr)) + np.mean(fstar(g(vf)))
    loss = L.LOSSES[f"fgan_{key}"]
    assert num(loss.d_loss(V_REAL, V_FAKE)) == pytest.approx(d_ref, rel=1e-5, abs=1e-6)
    assert num(loss.g_loss(V_REAL, V_FAKE)) == pytest.approx(-np.mean(fstar(g(vf))), rel=1e-5, abs=1e-6)
    ns = L.get_loss(f"fgan_{key}", fgan_generator="nonsaturating")
    assert num(ns.g_loss(V_REAL, V_FAKE)) == pytest.approx(-np.mean(g(vf)), rel=1e-5, abs=1e-6)
    assert num(ns.d_loss(V_REAL, V_FAKE)) == pytest.approx(d_ref, rel=1e-5, abs=1e-6)


# optimal critic T*(x) = f'(p(x)/q(x)) turns -d_loss into D_f(P||Q); v* = g_f^{-1}(T*)
INVERSE_ACT = {
    "kl": lambda t: t,
    "rkl": lambda t: -np.log(-t),
    "pearson": lambda t: t,
    "hellinger": lambda t: -np.log(1 - t),
    "js": lambda t: -np.log(2 * np.exp(-t) - 1),
    "tv": lambda t: 12.0 * np.sign(t),  # tanh(±12) = ±1 in float32: the supremum ±1/2
}
P, Q = np.array([0.75, 0.25]), np.array([0.5, 0.5])
DIVERGENCE_VALUE = {
    "kl": np.sum(P * np.log(P / Q)),
    "rkl": np.sum(Q * np.log(Q / P)),
    "pearson": np.sum((P - Q) ** 2 / Q),
    "hellinger": np.sum((np.sqrt(P) - np.sqrt(Q)) ** 2),
    "js": np.sum(P * np.log(2 * P / (P + Q)) + Q * np.log(2 * Q / (P + Q))),  # 2·JSD
    "tv": 0.5 * np.sum(np.abs(P - Q)),
}


@pytest.mark.parametrize("key", list(TABLE))
def test_fgan_bound_is_tight_at_the_optimal_critic(key):
    div = L.DIVERGENCES[key]
    ratio = P / Q
    t_star = num(div.f_prime(ratio))
    v_star = INVERSE_ACT[key](t_star)
    real = v_star[[0, 0, 0, 1]]  # a batch with the proportions of P = (3/4, 1/4)
    fake = v_star[[0, 1]]  # and of Q = (1/2, 1/2)
    est = -num(L.fgan_d_loss(div, real.astype(np.float32), fake.astype(np.float32)))
    assert est == pytest.approx(DIVERGENCE_VALUE[key], rel=1e-5, abs=1e-6)
    # and f itself gives the same divergence: D_f = E_Q f(p/q)
    assert np.sum(Q * num(div.f(ratio))) == pytest.approx(DIVERGENCE_VALUE[key], rel=1e-12)


def _t_grid(div):
    lo, hi = div.domain
    lo = max(lo, -5.0) + (1e-3 if math.isfinite(div.domain[0]) and div.name != "total variation" else 0.0)
    hi = min(hi, 5.0) - (1e-3 if math.isfinite(div.domain[1]) and div.name != "total variation" else 0.0)
    return np.linspace(lo, hi, 401)


@pytest.mark.parametrize("key", list(L.DIVERGENCES))
def test_fenchel_young_inequality_and_equality(key):
    div = L.DIVERGENCES[key]
    u = np.geomspace(0.05, 20.0, 61)
    t = _t_grid(div)
    fu, ft = num(div.f(u)), num(div.conjugate(t))
    gap = fu[:, None] + ft[None, :] - u[:, None] * t[None, :]
    assert gap.min() >= -1e-9, f"{key}: f(u) + f*(t) < u t somewhere"
    tp = num(div.f_prime(u))
    assert np.all((tp >= div.domain[0]) & (tp <= div.domain[1]))
    equality = fu + num(div.conjugate(tp)) - u * tp
    np.testing.assert_allclose(equality, 0.0, atol=1e-9 * (1 + np.abs(u * tp)).max())
    assert num(div.f(np.array([1.0])))[0] == pytest.approx(0.0, abs=1e-12)  # f(1) = 0


@pytest.mark.parametrize("key", list(L.DIVERGENCES))
def test_activation_maps_into_the_domain_of_the_conjugate(key):
    div = L.DIVERGENCES[key]
    v = np.linspace(-30.0, 30.0, 601)
    t = num(div.activation(v))
    lo, hi = div.domain
    if div.name == "total variation":  # closed domain [-1/2, 1/2]
        assert t.min() >= lo and t.max() <= hi
    else:
        assert t.min() > lo and t.max() < hi
    assert np.all(np.isfinite(num(div.conjugate(t))))


@pytest.mark.parametrize("key", list(L.DIVERGENCES))
def test_stable_conjugate_of_activation(key):
    div = L.DIVERGENCES[key]
    v = np.linspace(-8.0, 8.0, 161)
    np.testing.assert_allclose(num(div.conj_act(v)), num(div.conjugate(div.activation(v))), rtol=1e-9, atol=1e-9)
    wide = np.linspace(-30.0, 30.0, 61).astype(np.float32)  # where the naive composition overflows in float32
    assert np.all(np.isfinite(num(div.conj_act(wide))))


# ----------------------------------------------------------------------------- penalties
def _linear(w, b):
    w = tf.constant(w, tf.float32)
    return lambda x: tf.linalg.matvec(x, w) + b


@pytest.mark.parametrize("w", [[0.3, -0.4, 1.2], [2.0, 0.0, 0.0], [0.1, 0.1, 0.1]])
def test_penalties_of_a_linear_critic(w):
    rng = np.random.default_rng(0)
    xr = rng.normal(size=(16, 3)).astype(np.float32)
    xf = rng.normal(size=(16, 3)).astype(np.float32)
    a = rng.uniform(size=(16, 1)).astype(np.float32)
    norm = np.linalg.norm(w)
    assert num(L.wgan_gp_penalty(_linear(w, 0.7), xr, xf, a)) == pytest.approx((norm - 1) ** 2, rel=1e-5, abs=1e-6)
    assert num(L.r1_penalty(_linear(w, 0.7), xr)) == pytest.approx(norm**2, rel=1e-5)


def test_penalties_are_per_sample_gradient_norms():
    """D(x) = ½‖x‖² has ∇D = x: both penalties are means of per-row norms, not a batch norm."""
    rng = np.random.default_rng(1)
    xr = rng.normal(size=(8, 4)).astype(np.float32)
    xf = rng.normal(size=(8, 4)).astype(np.float32)
    a = rng.uniform(size=(8, 1)).astype(np.float32)
    critic = lambda x: 0.5 * tf.reduce_sum(x * x, axis=-1)
    xh = a * xr + (1 - a) * xf
    gp_ref = np.mean((np.linalg.norm(xh, axis=1) - 1) ** 2)
    assert num(L.wgan_gp_penalty(critic, xr, xf, a)) == pytest.approx(gp_ref, rel=1e-5)
    assert num(L.r1_penalty(critic, xr)) == pytest.approx(np.mean(np.sum(xr**2, axis=1)), rel=1e-5)


def test_penalty_gradient_reaches_critic_weights():
    w = tf.Variable([0.5, 0.5], dtype=tf.float32)
    x = np.ones((4, 2), np.float32)
    with tf.GradientTape() as tape:
        r1 = L.r1_penalty(lambda t: tf.linalg.matvec(t, w), x)
    np.testing.assert_allclose(tape.gradient(r1, w).numpy(), [1.0, 1.0], rtol=1e-6)  # ∂‖w‖²/∂w = 2w


def test_encoder_loss_sums_dimensions_and_averages_rows():
    z = np.array([[1.0, 2.0], [0.0, 0.0]], np.float32)
    zh = np.array([[0.0, 0.0], [3.0, 0.0]], np.float32)
    assert num(L.encoder_loss(z, zh)) == pytest.approx((5.0 + 9.0) / 2)


# ----------------------------------------------------------------------------- registry
def test_registry_holds_every_loss_with_its_penalty():
    expected = {"standard", "rsgan", "rasgan", "fgan_kl", "fgan_rkl", "fgan_pearson", "fgan_hellinger",
                "fgan_js", "fgan_tv", "hinge", "wgan_gp", "energy"}
    assert set(L.LOSSES) == expected
    assert L.LOSSES["wgan_gp"].penalty == "wgan_gp"
    assert L.LOSSES["energy"].penalty == "r1" and L.LOSSES["energy"].energy
    assert all(L.LOSSES[n].penalty == "none" for n in expected - {"wgan_gp", "energy"})
    for name, loss in L.LOSSES.items():
        assert loss.name == name
        assert np.isfinite(num(loss.d_loss(V_REAL, V_FAKE))) and np.isfinite(num(loss.g_loss(V_REAL, V_FAKE)))


def test_get_loss_rejects_unknown_names():
    with pytest.raises(ValueError, match="'wgan' is not one of: standard"):
        L.get_loss("wgan")
    with pytest.raises(ValueError, match="f-GAN generator loss 'sat'"):
        L.get_loss("fgan_js", fgan_generator="sat")
