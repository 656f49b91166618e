"""GAN networks, training modes and the GANModel feature model."""
import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from spectraforge.generative.base import FeatureModel
from spectraforge.generative.gan import GANConfig, GANModel, GANTrainer, get_loss
from spectraforge.generative.gan import losses as L
from spectraforge.generative.gan.nets import build_nets
from spectraforge.generative.gan.training import langevin_refine
from spectraforge.params import ParamsError


def tiny(**kw) -> GANConfig:
    base = {"g_widths": [16], "d_widths": [16], "latent_dim": 3, "label_dim": 4, "steps": 20, "batch_size": 16,
            "log_every": 10}
    base.update(kw)
    return GANConfig(**base)


def values(variables):
    return [np.array(v.numpy()) for v in variables]


# ----------------------------------------------------------------------------- networks
@pytest.mark.parametrize("conditioning", ["projection", "concat", "none"])
@pytest.mark.parametrize("architecture", ["dense", "conv"])
def test_network_shapes(architecture, conditioning):
    d = 50  # not a multiple of 4: the conv generator crops its surplus pixels
    cfg = tiny(architecture=architecture, conditioning=conditioning, g_widths=[8, 4, 4], d_widths=[4, 8],
               loss="energy", encoder_weight=0.1, spectral_norm=True)
    nets = build_nets(d, cfg, seed=0)
    z = tf.random.normal((5, 3))
    y = tf.constant([0, 1, 2, 3, 0])
    x = nets.generate(z, y)
    assert x.shape == (5, d)
    assert nets.critic(x, y, training=True).shape == (5,)
    assert nets.encode(x).shape == (5, 3)
    if conditioning != "none":  # the label changes both networks' outputs
        y2 = tf.constant([1, 2, 3, 0, 1])
        assert not np.allclose(nets.generate(z, y2), x)
        assert not np.allclose(nets.critic(x, y2), nets.critic(x, y))


def test_conv_discriminator_sees_position():
    """Spectral lines sit at fixed wavelengths: a shifted line must score differently."""
    cfg = tiny(architecture="conv", conditioning="none", g_widths=[4, 4], d_widths=[4, 4])
    nets = build_nets(64, cfg, seed=0)
    a, b = np.zeros((1, 64), np.float32), np.zeros((1, 64), np.float32)
    a[0, 10], b[0, 40] = 3.0, 3.0
    assert not np.isclose(float(nets.critic(a, None)[0]), float(nets.critic(b, None)[0]))


def test_same_seed_same_networks():
    cfg = tiny(spectral_norm=True, conditioning="projection")
    w1 = build_nets(4, cfg, seed=5).discriminator.get_weights()
    w2 = build_nets(4, cfg, seed=5).discriminator.get_weights()
    w3 = build_nets(4, cfg, seed=6).discriminator.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(w1, w2))
    assert not all(np.array_equal(a, b) for a, b in zip(w1, w3))


# ----------------------------------------------------------------------------- one loss = simultaneous step
def _simultaneous_reference(nets, loss, trainer, xr, yr, z, alpha, lr_d, lr_g):
    """Both players' plain-SGD updates from the same weights, each from its own loss (tapes by hand)."""
    d_vars, g_vars = nets.d_variables, nets.g_variables
    with tf.GradientTape(persistent=True) as tape:
        xf = nets.generate(z, yr, training=True)
        vr, vf = nets.critic(xr, yr, training=True), nets.critic(xf, yr, training=True)
        d_obj = loss.d_loss(vr, vf)
        critic = lambda x: nets.critic(x, yr)
        if trainer.penalty == "wgan_gp":
            d_obj += trainer.gp_weight * L.wgan_gp_penalty(critic, xr, xf, alpha)
        elif trainer.penalty == "r1":
            d_obj += trainer.r1_weight * L.r1_penalty(critic, xr)
        g_obj = loss.g_loss(vr, vf)
        if nets.encoder is not None:
            g_obj += trainer.encoder_weight * L.encoder_loss(z, nets.encode(xf, training=True))
        both = d_obj + g_obj
    gd, gg = tape.gradient(d_obj, d_vars), tape.gradient(g_obj, g_vars)
    naive = tape.gradient(both, d_vars + g_vars)  # one loss WITHOUT stop-gradient routing
    dense = lambda g: tf.convert_to_tensor(g).numpy()
    new_d = [v.numpy() - lr_d * dense(g) for v, g in zip(d_vars, gd)]
    new_g = [v.numpy() - lr_g * dense(g) for v, g in zip(g_vars, gg)]
    naive_new = [v.numpy() - lr_d * dense(g) for v, g in zip(d_vars + g_vars, naive)]
    return new_d, new_g, naive_new


@pytest.mark.parametrize("loss_name,lr_g", [("standard", 0.05), ("rasgan", 0.05), ("fgan_kl", 0.05),
                                            ("hinge", 0.05), ("wgan_gp", 0.05), ("energy", 0.05),
                                            ("standard", 0.02)])
def test_one_loss_step_equals_simultaneous_step(loss_name, lr_g):
    lr_d = 0.05
    cfg = tiny(loss=loss_name, mode="one_loss", g_widths=[12, 12], d_widths=[12, 12], encoder_weight=0.5,
               r1_weight=2.0)
    nets = build_nets(5, cfg, seed=3)
    loss = get_loss(loss_name)
    two = lr_g != lr_d  # different rates: one gradient, one SGD per player
    trainer = GANTrainer(
        nets, loss, mode="one_loss", penalty=cfg.resolved_penalty, gp_weight=10.0, r1_weight=2.0,
        encoder_weight=0.5,
        opt_one=None if two else keras.optimizers.SGD(lr_d),
        opt_d=keras.optimizers.SGD(lr_d) if two else None, opt_g=keras.optimizers.SGD(lr_g) if two else None,
    )
    rng = np.random.default_rng(0)
    xr = tf.constant(rng.normal(size=(16, 5)), tf.float32)
    yr = tf.constant(rng.integers(0, 4, 16), tf.int32)
    z = tf.constant(rng.normal(size=(16, 3)), tf.float32)
    alpha = tf.constant(rng.uniform(size=(16, 1)), tf.float32)
    new_d, new_g, naive = _simultaneous_reference(nets, loss, trainer, xr, yr, z, alpha, lr_d, lr_g)
    before = values(nets.d_variables + nets.g_variables)
    trainer.build_optimizers()
    parts = tf.function(trainer.one_loss_step)(xr, yr, z, alpha)
    after_d, after_g = values(nets.d_variables), values(nets.g_variables)
    for got, want in zip(after_d + after_g, new_d + new_g):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    kernels = [i for i, v in enumerate(nets.d_variables + nets.g_variables) if "bias" not in v.path]
    moved = [np.abs((after_d + after_g)[i] - before[i]).max() for i in kernels]
    assert min(moved) > 0  # every weight matrix (D, G and E) took a step (a WGAN's last bias has no gradient)
    # the routing matters: without stop-gradients one loss is NOT the simultaneous step
    if not two:
        assert max(np.abs(a - b).max() for a, b in zip(after_d + after_g, naive)) > 1e-4
    assert np.isfinite(float(parts["g_loss"]))


# ----------------------------------------------------------------------------- training lowers the loss
@pytest.mark.parametrize("loss_name", ["standard", "rsgan", "fgan_pearson", "hinge", "wgan_gp", "energy"])
def test_player_steps_lower_their_losses(loss_name):
    cfg = tiny(loss=loss_name, encoder_weight=0.1)
    nets = build_nets(2, cfg, seed=1)
    loss = get_loss(loss_name)
    trainer = GANTrainer(nets, loss, penalty=cfg.resolved_penalty, encoder_weight=0.1,
                         opt_d=keras.optimizers.Adam(1e-2), opt_g=keras.optimizers.Adam(1e-2))
    trainer.build_optimizers()
    rng = np.random.default_rng(1)
    xr = tf.constant(rng.normal(size=(64, 2)) + [2.0, -1.0], tf.float32)
    yr = tf.constant(rng.integers(0, 4, 64), tf.int32)
    z = tf.constant(rng.normal(size=(64, 3)), tf.float32)
    a = tf.constant(rng.uniform(size=(64, 1)), tf.float32)
    xf = nets.generate(z, yr)
    d0 = float(trainer.d_objective(xr, yr, xf, a)[0])
    d_step, g_step = tf.function(trainer.d_step), tf.function(trainer.g_step)
    for _ in range(15):
        d_step(xr, yr, z, a)
    d1 = float(trainer.d_objective(xr, yr, xf, a)[0])
    assert d1 < d0 - 0.05, f"{loss_name}: D steps did not lower the D loss ({d0:.4f} -> {d1:.4f})"
    g0 = float(trainer.g_objective(xr, yr, z)[0])
    for _ in range(15):
        g_step(xr, yr, z)
    g1 = float(trainer.g_objective(xr, yr, z)[0])
    assert g1 < g0 - 0.01, f"{loss_name}: G steps did not lower the G loss ({g0:.4f} -> {g1:.4f})"


@pytest.mark.parametrize("mode,conditioning", [("alternating", "projection"), ("one_loss", "concat")])
def test_conditional_gan_learns_class_locations(mode, conditioning):
    """Two classes far apart and away from the untrained generator's output near 0."""
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 2000) * 3  # star (0) and unknown (3)
    centres = {0: np.array([3.0, -2.0]), 3: np.array([-2.0, 3.0])}
    Z = np.stack([centres[c] for c in y]) + rng.normal(0, 0.3, (2000, 2))
    cfg = tiny(mode=mode, conditioning=conditioning, g_widths=[64, 64], d_widths=[64, 64], latent_dim=2,
               steps=600, batch_size=128, lr_g=1e-3, lr_d=1e-3, log_every=100, standardise=False)
    model = GANModel(cfg)
    untrained = GANModel(dataclasses.replace(cfg, steps=1)).fit(Z, y, seed=0)
    model.fit(Z.astype(np.float32), y, seed=0)
    assert [h["step"] for h in model.history] == [100, 200, 300, 400, 500, 600]
    assert set(model.history[0]) == {"step", "d_loss", "g_loss", "penalty", "encoder", "seconds"}
    for c, mu in centres.items():
        other = centres[3 - c]  # 7.1 away: a generator ignoring y would sit between the two
        far = np.linalg.norm(untrained.sample(np.full(500, c), seed=1).mean(0) - mu)
        S = model.sample(np.full(500, c), seed=1)
        near = np.linalg.norm(S.mean(0) - mu)
        own = np.mean(np.linalg.norm(S - mu, axis=1) < np.linalg.norm(S - other, axis=1))
        # GAN training oscillates: the mean wanders a few tenths around the centre, hence 1.0
        assert far > 2.0 and near < 1.0, f"class {c}: sample mean {far:.2f} -> {near:.2f} from its centre"
        assert own > 0.95, f"class {c}: only {own:.0%} of its samples nearer its own centre"


def test_standardise_and_target_only_handle_class_location_outside_the_networks():
    """standardise: even an untrained generator samples around each class's own centre and
    scale; target_only: the classes not asked for are not trained and cannot be sampled."""
    rng = np.random.default_rng(3)
    y = np.repeat([0, 1, 2], [900, 60, 40])
    centres = np.array([[0.0, 0.0], [5.0, -3.0], [-4.0, 6.0]])
    Z = (centres[y] + rng.normal(0, 0.5, (len(y), 2))).astype(np.float32)
    model = GANModel(tiny(latent_dim=2, steps=1, standardise=True))
    model.classes = [1, 2]
    model.fit(Z, y, seed=0)
    for c in (1, 2):
        S = model.sample(np.full(400, c), seed=1)
        assert np.linalg.norm(S.mean(0) - centres[c]) < 1.0
    with pytest.raises(ValueError, match="class 0 was not trained"):
        model.sample(np.array([0]))


# ----------------------------------------------------------------------------- the ring of 8 Gaussians
RADIUS, STD = 2.0, 0.02
CENTRES = RADIUS * np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], 1)


def ring(n, seed=0):
    rng = np.random.default_rng(seed)
    return (CENTRES[rng.integers(0, 8, n)] + rng.normal(0, STD, (n, 2))).astype(np.float32)


def mode_coverage(S, min_count=20):
    """(modes with >= min_count samples within 3 std, share of samples within 3 std of any mode)."""
    dist = np.linalg.norm(S[:, None, :] - CENTRES[None], axis=-1)
    good = dist.min(1) < 3 * STD
    counts = np.bincount(dist.argmin(1)[good], minlength=8)
    return int((counts >= min_count).sum()), float(good.mean())


def test_mode_coverage_metric():
    S = ring(2000, seed=5)
    assert mode_coverage(S) == (8, pytest.approx(0.9889, abs=0.01))  # P(‖N(0, I₂)‖ < 3) = 1 − e^{−4.5}
    collapsed = CENTRES[[0]] + np.random.default_rng(0).normal(0, STD, (2000, 2))
    assert mode_coverage(collapsed) == (1, pytest.approx(0.99, abs=0.01))
    assert mode_coverage(np.zeros((2000, 2))) == (0, 0.0)


RING_CFG = {"conditioning": "none", "g_widths": [128, 128, 128], "d_widths": [128, 128, 128], "latent_dim": 2,
            "steps": 2000, "batch_size": 128, "lr_g": 2e-4, "lr_d": 2e-4, "encoder_weight": 0.01, "log_every": 500,
            "standardise": False}  # the raw ring: the losses alone must find the modes


@pytest.mark.slow
@pytest.mark.parametrize("loss_name,mode", [("standard", "alternating"), ("rasgan", "one_loss"),
                                            ("fgan_js", "alternating"), ("hinge", "one_loss"),
                                            ("energy", "alternating")])
def test_ring_of_8_mode_coverage(loss_name, mode):
    X = ring(20000)
    model = GANModel(GANConfig(loss=loss_name, mode=mode, **RING_CFG)).fit(X, np.zeros(len(X), np.int64), seed=0)
    modes, quality = mode_coverage(model.sample(np.zeros(2000, np.int64), seed=1))
    assert modes >= 6 and quality >= 0.2, f"{loss_name}/{mode}: {modes}/8 modes, {quality:.3f} high quality"


# ----------------------------------------------------------------------------- the FeatureModel contract
@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(300, 6)).astype(np.float32)
    y = rng.integers(0, 4, 300)
    return Z, y, GANModel(tiny(steps=30)).fit(Z, y, seed=4)


def test_same_seed_same_samples(fitted):
    Z, y, model = fitted
    labels = np.array([0, 1, 2, 3] * 5)
    a, b = model.sample(labels, seed=7), model.sample(labels, seed=7)
    assert a.dtype == np.float32 and a.shape == (20, 6)
    assert np.array_equal(a, b)
    assert not np.allclose(a, model.sample(labels, seed=8))
    refit = GANModel(tiny(steps=30)).fit(Z, y, seed=4)  # the same seed trains the same model
    assert np.array_equal(refit.sample(labels, seed=7), a)
    assert not np.array_equal(GANModel(tiny(steps=30)).fit(Z, y, seed=5).sample(labels, seed=7), a)


def test_temperature_scales_the_latent_noise(fitted):
    _, _, model = fitted
    labels = np.zeros(400, np.int64)
    cold = model.sample(labels, seed=1, temperature=0.01)
    hot = model.sample(labels, seed=1, temperature=1.0)
    assert cold.std(0).mean() < 0.1 * hot.std(0).mean()


def test_feature_model_contract_and_bad_input(fitted):
    Z, y, model = fitted
    assert isinstance(model, FeatureModel) and not model.has_density
    with pytest.raises(NotImplementedError):
        model.log_prob(Z, y)
    assert model.sample(np.zeros(0, np.int64)).shape == (0, 6)
    with pytest.raises(ValueError, match="codes 0..3"):
        model.sample(np.array([4]))
    with pytest.raises(ValueError, match="temperature"):
        model.sample(np.array([0]), temperature=0.0)
    with pytest.raises(ValueError, match="non-finite"):
        GANModel(tiny()).fit(np.full((4, 2), np.nan, np.float32), np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="length 4"):
        GANModel(tiny()).fit(np.zeros((4, 2), np.float32), np.zeros(3, np.int64))
    with pytest.raises(RuntimeError, match="before fit"):
        GANModel(tiny()).sample(np.array([0]))


def test_conv_model_fits_and_samples_spectra():
    rng = np.random.default_rng(3)
    Z = rng.normal(size=(64, 100)).astype(np.float32)
    y = rng.integers(0, 4, 64)
    cfg = tiny(architecture="conv", g_widths=[8, 4, 4], d_widths=[4, 8], spectral_norm=True, loss="hinge",
               steps=4, log_every=2)
    S = GANModel(cfg).fit(Z, y, seed=0).sample(y[:5], seed=0)
    assert S.shape == (5, 100) and S.dtype == np.float32 and np.isfinite(S).all()


# ----------------------------------------------------------------------------- Langevin / MALA
def test_mala_targets_the_energy_distribution():
    """On E(z) = ½‖z − 3‖² the chain must sample N(3, I), from a start far away at 0."""
    rng = np.random.default_rng(0)
    n, steps = 4000, 150
    z, rate = langevin_refine(lambda v: 0.5 * tf.reduce_sum(tf.square(v - 3.0), -1), np.zeros((n, 2), np.float32),
                              rng.standard_normal((steps, n, 2)), np.log(rng.uniform(size=(steps, n))), 0.3)
    z = z.numpy()
    assert 0.5 < rate < 1.0
    np.testing.assert_allclose(z.mean(0), [3.0, 3.0], atol=0.08)
    np.testing.assert_allclose(z.var(0), [1.0, 1.0], atol=0.1)


def test_energy_model_refines_samples_with_langevin():
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(200, 2)).astype(np.float32)
    y = np.zeros(200, np.int64)
    model = GANModel(tiny(loss="energy", steps=20, langevin_steps=5, langevin_step_size=0.05)).fit(Z, y, seed=0)
    a, b = model.sample(y[:50], seed=3), model.sample(y[:50], seed=3)
    assert np.array_equal(a, b) and 0.0 <= model.last_acceptance <= 1.0
    plain = GANModel(tiny(loss="energy", steps=20)).fit(Z, y, seed=0).sample(y[:50], seed=3)
    assert not np.allclose(a, plain)  # the refinement moved the latent codes


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize("field,value,message", [
    ("loss", "wgan", "gan.loss: 'wgan' is not one of: standard, rsgan"),
    ("mode", "simultaneous", "gan.mode: 'simultaneous' is not one of: alternating, one_loss"),
    ("architecture", "resnet", "gan.architecture: 'resnet' is not one of: conv, dense"),
    ("conditioning", "film", "gan.conditioning: 'film' is not one of: projection, concat, none"),
    ("penalty", "gp", "gan.penalty: 'gp' is not one of: auto, none, wgan_gp, r1"),
    ("fgan_generator", "x", "gan.fgan_generator: 'x' is not one of: bound, nonsaturating"),
    ("g_widths", [], "gan.g_widths: must be a non-empty list"),
    ("d_widths", [8, 0], "gan.d_widths: must be a non-empty list"),
    ("latent_dim", 0, "gan.latent_dim: must be an integer >= 1"),
    ("steps", 2.5, "gan.steps: must be an integer >= 1"),
    ("batch_size", True, "gan.batch_size: must be an integer >= 1"),
    ("lr_g", 0.0, "gan.lr_g: must be a number in (0.0, inf)"),
    ("lr_d", -1e-3, "gan.lr_d: must be a number in (0.0, inf)"),
    ("beta_1", 1.0, "gan.beta_1: must be a number in [0.0, 1.0)"),
    ("gp_weight", -1.0, "gan.gp_weight: must be a number in [0.0, inf)"),
    ("r1_weight", float("nan"), "gan.r1_weight"),
    ("encoder_weight", "a", "gan.encoder_weight"),
    ("leak", 1.5, "gan.leak"),
    ("spectral_norm", "yes", "gan.spectral_norm: must be true or false"),
    ("langevin_steps", -1, "gan.langevin_steps: must be an integer >= 0"),
    ("langevin_step_size", 0.0, "gan.langevin_step_size"),
])
def test_config_validate_names_the_key(field, value, message):
    cfg = GANConfig(**{field: value})
    with pytest.raises(ParamsError, match="^params: " + message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace(".", r"\.")):
        cfg.validate("gan")
    with pytest.raises(ParamsError, match=f"augment.gan.{field}"):
        GANModel(cfg, key="augment.gan")


def test_config_cross_field_rules_and_from_params():
    with pytest.raises(ParamsError, match="gan.n_critic: must be 1 with mode 'one_loss'"):
        GANConfig(mode="one_loss", n_critic=5).validate()
    with pytest.raises(ParamsError, match="gan.langevin_steps: Langevin refinement needs loss 'energy'"):
        GANConfig(loss="hinge", langevin_steps=3).validate()
    with pytest.raises(ParamsError, match=r"gan.n_critc: unknown key \(did you mean 'n_critic'\?\)"):
        GANConfig.from_params({"n_critc": 5})
    cfg = GANConfig.from_params({"loss": "wgan_gp", "n_critic": 5})
    assert cfg.resolved_penalty == "wgan_gp" and GANConfig(loss="energy").resolved_penalty == "r1"
    assert GANConfig(loss="energy", penalty="none").resolved_penalty == "none"
    GANConfig().validate()  # the defaults are valid
