"""Flows: exact invertibility, log-determinants against brute-force Jacobians, actnorm's
data-dependent initialisation, the LU 1×1 convolution, and likelihood on a 2-D mixture."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from spectraforge.generative.flows.bijectors import (
    ActNorm, AdditiveCoupling, AffineCoupling, Invertible1x1Conv, Reverse, Scaling, Squeeze, half_shape,
)
from spectraforge.generative.flows.conditioners import conditioner_factory
from spectraforge.generative.flows.flow import build_flow
from spectraforge.generative.flows.model import FlowConfig, FlowModel

SHAPE = (4, 2)  # (length, channels): 8 dimensions, small enough for a brute-force Jacobian
COND = 4


def _randomise(layer, seed=0, scale=0.4):
    """Replace zero-initialised weights (identity couplings) by random ones, so tests bite."""
    rng = np.random.default_rng(seed)
    for w in layer.weights:
        if w.trainable:
            w.assign(w.numpy() + rng.normal(0, scale, w.shape).astype("float32"))


def _x(n=5, shape=SHAPE, seed=1):
    return tf.constant(np.random.default_rng(seed).normal(size=(n,) + shape).astype("float32"))


def _cond(n=5, seed=2):
    y = np.random.default_rng(seed).integers(0, COND, n)
    return tf.constant(np.eye(COND, dtype="float32")[y])


def _brute_logdet(fn, x):
    """log|det J| of a map between (B, ...) tensors, per example, from autodiff Jacobians."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    jac = tape.batch_jacobian(y, x)
    n = int(np.prod(x.shape[1:]))
    return np.linalg.slogdet(tf.reshape(jac, (x.shape[0], n, n)).numpy().astype(np.float64))[1]


def _layers():
    fac = conditioner_factory("dense", hidden=[16])
    conv = conditioner_factory("conv", filters=8, kernel_size=3)
    half_alt, half_ch = half_shape(SHAPE, "alternating"), half_shape(SHAPE, "channel")
    double = lambda s: (s[0], 2 * s[1])  # noqa: E731
    return {
        "additive_alternating": AdditiveCoupling(fac(half_alt, half_alt, COND), "alternating"),
        "additive_channel_conv": AdditiveCoupling(conv(half_ch, half_ch, COND), "channel", parity=1),
        "scaling": Scaling(SHAPE),
        "affine_tanh": AffineCoupling(fac(half_alt, double(half_alt), COND), "alternating", parity=1),
        "affine_sigmoid_channel": AffineCoupling(fac(half_ch, double(half_ch), COND), "channel", scale="sigmoid"),
        "actnorm": ActNorm(SHAPE[1]),
        "inv1x1": Invertible1x1Conv(SHAPE[1], seed=3),
        "reverse": Reverse(),
    }


@pytest.mark.parametrize("name", list(_layers()))
def test_layer_inverts_and_logdet_matches_brute_force(name):
    layer = _layers()[name]
    x, c = _x(), _cond()
    layer.forward(x, c)  # build (and initialise actnorm)
    _randomise(layer)
    y, logdet = layer.forward(x, c)
    assert y.shape == x.shape and logdet.shape == (x.shape[0],)
    np.testing.assert_allclose(layer.inverse(y, c).numpy(), x.numpy(), atol=1e-4)
    brute = _brute_logdet(lambda t: layer.forward(t, c)[0], x)
    np.testing.assert_allclose(logdet.numpy(), brute, atol=1e-4)


def test_squeeze_is_a_reshape_that_inverts():
    x = _x(shape=(8, 3))
    y, logdet = Squeeze(2).forward(x)
    assert y.shape == (5, 4, 6)
    np.testing.assert_array_equal(Squeeze(2).inverse(y).numpy(), x.numpy())
    np.testing.assert_array_equal(logdet.numpy(), 0.0)
    with pytest.raises(ValueError, match="divisible"):
        Squeeze(2).forward(_x(shape=(7, 3)))


def test_actnorm_data_dependent_init_gives_zero_mean_unit_variance():
    x = tf.constant(np.random.default_rng(0).normal(3.0, 5.0, size=(64, 10, 3)).astype("float32"))
    layer = ActNorm(3)
    y, _ = layer.forward(x)
    assert layer.initialized
    np.testing.assert_allclose(y.numpy().mean(axis=(0, 1)), 0.0, atol=1e-4)
    np.testing.assert_allclose(y.numpy().std(axis=(0, 1)), 1.0, atol=1e-4)
    y2, _ = layer.forward(x * 2)  # initialised once: later batches do not re-initialise
    assert not np.allclose(y2.numpy().std(axis=(0, 1)), 1.0, atol=1e-2)


def test_inv1x1_logdet_matches_slogdet_of_its_matrix():
    layer = Invertible1x1Conv(6, seed=1)
    _randomise(layer, scale=0.2)
    w = layer.weight_matrix().numpy().astype(np.float64)
    x = _x(n=3, shape=(7, 6))
    _, logdet = layer.forward(x)
    np.testing.assert_allclose(logdet.numpy(), 7 * np.linalg.slogdet(w)[1], rtol=1e-5, atol=1e-5)
    # the LU parameterisation: W = P L (U + diag(s)) with the fixed permutation P
    np.testing.assert_allclose(np.abs(np.linalg.det(w)), np.exp(layer.log_s.numpy().sum()), rtol=1e-4)


@pytest.mark.parametrize("recipe,levels", [("nice", 1), ("realnvp", 2), ("glow", 2)])
@pytest.mark.parametrize("conditioner", ["dense", "conv"])
def test_full_flow_inverts_and_logdet_matches_brute_force(recipe, levels, conditioner):
    keras.utils.set_random_seed(0)
    fac = conditioner_factory(conditioner, hidden=[16], filters=4, kernel_size=3)
    flow = build_flow(recipe, (8, 1), fac, COND, n_levels=levels, steps=2)
    x, c = _x(shape=(8, 1)), _cond()
    flow.log_prob(x, c)
    _randomise(flow, scale=0.2)
    zs, logdet = flow.forward(x, c)
    assert sum(int(np.prod(z.shape[1:])) for z in zs) == 8
    np.testing.assert_allclose(flow.inverse(zs, c).numpy(), x.numpy(), atol=1e-4)
    flat = lambda t: tf.concat([tf.reshape(z, (t.shape[0], -1)) for z in flow.forward(t, c)[0]], 1)  # noqa: E731
    np.testing.assert_allclose(logdet.numpy(), _brute_logdet(flat, x), atol=1e-3)
    # sampling is the inverse applied to prior draws: with temperature 0 the class means
    noise = flow.noise(5, np.random.default_rng(0))
    s = flow.sample_from_noise(noise, c, temperature=1.0)
    assert s.shape == (5, 8, 1) and np.isfinite(s.numpy()).all()


def test_log_prob_is_a_normalised_density_in_2d():
    """A randomised 2-D flow's density integrates to 1 over a grid (change of variables)."""
    keras.utils.set_random_seed(1)
    flow = build_flow("realnvp", (2, 1), conditioner_factory("dense", hidden=[16]), 0, n_levels=1, steps=2)
    flow.log_prob(_x(shape=(2, 1)), None)
    _randomise(flow, scale=0.3)
    g = np.linspace(-9, 9, 361)
    grid = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2, 1).astype("float32")
    density = np.exp(flow.log_prob(tf.constant(grid), None).numpy())
    assert density.sum() * (g[1] - g[0]) ** 2 == pytest.approx(1.0, abs=0.02)


MEANS = np.array([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]])
COV = np.array([[0.5, 0.3], [0.3, 0.4]])


def _mixture(n, rng):
    return (MEANS[rng.integers(0, 3, n)] + rng.multivariate_normal([0, 0], COV, n)).astype("float32")


def _mixture_logpdf(x):
    comps = [multivariate_normal(m, COV).logpdf(x) for m in MEANS]
    return logsumexp(np.stack(comps), axis=0) - math.log(3)


@pytest.mark.slow
@pytest.mark.parametrize("recipe,gap", [("nice", 0.2), ("realnvp", 0.08), ("glow", 0.08)])
def test_flow_on_2d_mixture_reaches_its_entropy(recipe, gap):
    """Held-out NLL approaches the mixture's differential entropy (Monte Carlo, 4e5 draws)."""
    rng = np.random.default_rng(0)
    entropy = -_mixture_logpdf(_mixture(400_000, rng)).mean()
    train, test = _mixture(6000, rng), _mixture(20_000, rng)
    cfg = FlowConfig(recipe=recipe, n_levels=1, steps=6, hidden=[64, 64], epochs=150, patience=20, lr=3e-3)
    model = FlowModel(cfg).fit(train, np.zeros(len(train), int), seed=0)
    nll = -model.log_prob(test, np.zeros(len(test), int)).mean()
    assert entropy - 0.02 < nll < entropy + gap, (nll, entropy)


def _labelled(n=400, d=8, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.choice(3, n, p=[0.6, 0.25, 0.15])
    Z = rng.normal(size=(n, d)) + 2.0 * np.eye(d)[y * 2]
    return Z.astype("float32"), y


@pytest.mark.parametrize("conditioning", ["label", "per_class"])
def test_flow_model_same_seed_same_samples_and_class_separation(conditioning):
    Z, y = _labelled()
    cfg = FlowConfig(recipe="realnvp", conditioning=conditioning, n_levels=1, steps=2, hidden=[32], epochs=60,
                     batch_size=64, lr=3e-3)
    a = FlowModel(cfg).fit(Z, y, seed=3)
    b = FlowModel(cfg).fit(Z, y, seed=3)
    want = np.array([0] * 50 + [2] * 50)
    sa, sb = a.sample(want, seed=7), b.sample(want, seed=7)
    np.testing.assert_array_equal(sa, sb)
    assert not np.array_equal(sa, a.sample(want, seed=8))
    # class 2 lives at +2 on dimension 4, class 0 on dimension 0
    assert sa[50:, 4].mean() > 1.0 and abs(sa[:50, 4].mean()) < 0.8
    assert sa[:50, 0].mean() > 1.0
    lp = a.log_prob(Z, y)
    assert np.isfinite(lp).all()
    wrong = a.log_prob(Z, (y + 1) % 3)  # the right class explains a spectrum better
    assert (lp > wrong).mean() > 0.8


def test_flow_config_rejects_bad_values_naming_the_key():
    from spectraforge.params import ParamsError

    with pytest.raises(ParamsError, match=r"g\.recipe.*nice, realnvp, glow"):
        FlowConfig(recipe="maf").validate("g")
    with pytest.raises(ParamsError, match=r"g\.val_fraction"):
        FlowConfig(val_fraction=0.7).validate("g")
