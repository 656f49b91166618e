"""The F1 family: the soft macro-F1 loss (kexue.fm/archives/5505) and the hard metrics it stands in for."""
import math

import numpy as np
import pytest

import keras
import tensorflow as tf

from spectraforge.metrics import bootstrap_macro_f1_ci, confusion, macro_f1, per_class_f1
from spectraforge.models.losses import get_loss, macro_f1_loss


def test_value_equals_the_hand_computed_soft_f1():
    y = np.array([[1, 0], [0, 1], [1, 0]], dtype="float32")
    p = np.array([[0.8, 0.2], [0.4, 0.6], [0.3, 0.7]], dtype="float32")
    # class 0: 2·(0.8 + 0.3) / (2 + 1.5) ; class 1: 2·0.6 / (1 + 1.5)
    expected = -math.log((2.2 / 3.5 + 1.2 / 2.5) / 2)
    assert float(macro_f1_loss(y, p, eps=0.0)) == pytest.approx(expected, rel=1e-6)
    # ε enters once per sample and class in the denominator: Σ_b (y + p + ε)
    eps = 0.01
    with_eps = -math.log((2.2 / (3.5 + 3 * eps) + 1.2 / (2.5 + 3 * eps)) / 2)
    assert float(macro_f1_loss(y, p, eps=eps)) == pytest.approx(with_eps, rel=1e-6)


def test_perfect_predictions_cost_nothing_and_worse_ones_cost_more():
    y = np.eye(4, dtype="float32")
    assert float(macro_f1_loss(y, y)) == pytest.approx(0.0, abs=1e-5)
    uniform = np.full((4, 4), 0.25, dtype="float32")
    assert float(macro_f1_loss(y, uniform)) == pytest.approx(-math.log(0.5 / 2), rel=1e-5)


def test_one_sgd_step_on_logits_moves_probability_to_the_true_class():
    rng = np.random.default_rng(0)
    labels = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    y = tf.constant(np.eye(4, dtype="float32")[labels])
    z = tf.Variable(rng.normal(size=(8, 4)).astype("float32"))
    with tf.GradientTape() as tape:
        p = tf.nn.softmax(z)
        loss = macro_f1_loss(y, p)
    dz, dp = tape.gradient(loss, [z, p])
    # ∂L/∂p is negative on the true class, positive elsewhere
    assert (dp.numpy()[y.numpy() == 1] < 0).all() and (dp.numpy()[y.numpy() == 0] > 0).all()
    z_new = z - 0.5 * dz
    p_new = tf.nn.softmax(z_new)
    assert float(macro_f1_loss(y, p_new)) < float(loss)
    true_before = p.numpy()[np.arange(8), labels]
    true_after = p_new.numpy()[np.arange(8), labels]
    assert (true_after > true_before).all()


def test_works_as_a_keras_loss_and_by_name():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="softmax")])
    model.compile(optimizer="sgd", loss=get_loss("macro_f1"))
    x = np.random.default_rng(1).normal(size=(8, 3)).astype("float32")
    y = np.eye(4, dtype="float32")[[0, 1, 2, 3] * 2]
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    with pytest.raises(ValueError, match="macro_f1"):
        get_loss("focal")


# ---- hard metrics (spectraforge.metrics), LABELS order star, galaxy, qso, unknown ----

Y_TRUE = [0, 0, 0, 1, 1, 2, 3, 3]
Y_PRED = [0, 0, 1, 1, 2, 2, 3, 0]


def test_confusion_rows_are_truth_columns_predictions():
    assert confusion(Y_TRUE, Y_PRED).tolist() == [
        [2, 1, 0, 0],
        [0, 1, 1, 0],
        [0, 0, 1, 0],
        [1, 0, 0, 1],
    ]


def test_per_class_and_macro_f1_by_hand():
    # F1 = 2TP / (#true + #predicted): star 4/6, galaxy 2/4, qso 2/3, unknown 2/3
    f1 = per_class_f1(Y_TRUE, Y_PRED)
    assert list(f1) == ["star", "galaxy", "qso", "unknown"]
    assert f1 == pytest.approx({"star": 2 / 3, "galaxy": 0.5, "qso": 2 / 3, "unknown": 2 / 3})
    assert macro_f1(Y_TRUE, Y_PRED) == pytest.approx(0.625)


def test_absent_classes_follow_sklearn():
    # neither true nor predicted: left out of the mean; predicted but never true: F1 = 0
    assert macro_f1([0, 0, 1], [0, 1, 1]) == pytest.approx(2 / 3)
    assert math.isnan(per_class_f1([0, 0, 1], [0, 1, 1])["qso"])
    assert macro_f1([0, 0], [0, 2]) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="0..3"):
        macro_f1([0, 4], [0, 1])


def test_bootstrap_interval_by_hand_and_against_a_plain_loop():
    assert bootstrap_macro_f1_ci(Y_TRUE, Y_TRUE, n=50, seed=0) == (1.0, 1.0)
    # two pairs (star→star, galaxy→star): resamples score 1, 1/3 or 0, so the 95 % interval is [0, 1]
    assert bootstrap_macro_f1_ci([0, 1], [0, 0], n=2000, seed=1) == (0.0, 1.0)
    rng = np.random.default_rng(2)
    t = rng.integers(0, 4, 300)
    p = np.where(rng.random(300) < 0.8, t, rng.integers(0, 4, 300))
    idx = np.random.default_rng(3).integers(0, 300, size=(200, 300))
    loop = np.quantile([macro_f1(t[i], p[i]) for i in idx], [0.025, 0.975])
    for chunk in (300 * 7, 10**7):  # chunked or not, the same resamples
        assert bootstrap_macro_f1_ci(t, p, n=200, seed=3, chunk_elements=chunk) == pytest.approx(tuple(loop))
    lo, hi = loop
    assert lo < macro_f1(t, p) < hi
